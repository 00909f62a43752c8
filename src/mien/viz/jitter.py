"""The jitter figure of ``mien evaluate face3d``: frame-to-frame motion of the fitted 3-D face mesh over time,
without and with One Euro smoothing, next to MediaPipe's raw landmarks (matplotlib, Agg backend)."""

from __future__ import annotations

import os

import numpy as np

from mien.io.atomic import atomic_output


def plot_jitter(curves: dict[str, dict[str, np.ndarray]], path: str | os.PathLike, title: str | None = None) -> None:
    """Write a PNG with one panel per clip: mean frame-to-frame motion (px) of MediaPipe's landmarks, the posed
    mesh and the One Euro-smoothed posed mesh against time (s); still segments (where jitter is measured)
    shaded. Written atomically.

    Args:
        curves: {clip name: {"t": (T,) s, "landmarks", "raw", "smooth": (T − 1,) px per frame pair,
            "still": (T,) bool}}.
        path: output .png. title: figure title.
    """
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    n = max(len(curves), 1)
    fig, axes = plt.subplots(n, 1, figsize=(11, 2.6 * n + 0.6), squeeze=False, constrained_layout=True)
    for ax, (name, c) in zip(axes[:, 0], curves.items(), strict=False):
        t = np.asarray(c["t"], np.float64)[1:]
        still = np.asarray(c["still"], bool)
        pair = still[1:] & still[:-1]
        for x0, x1 in _runs(t, pair):
            ax.axvspan(x0, x1, color="green", alpha=0.12, lw=0)
        ax.plot(t, c["raw"], lw=1.0, label="mesh, per-frame fit")
        ax.plot(t, c["smooth"], lw=1.0, label="mesh, One Euro")
        ax.plot(t, c["landmarks"], lw=0.8, color="0.2", ls=":", label="MediaPipe landmarks", zorder=3)
        ax.set_ylabel("motion (px/frame)")
        ax.set_title(name, fontsize=10)
        ax.grid(alpha=0.3)
        ax.legend(loc="upper right", fontsize=8, ncol=3)
    axes[-1, 0].set_xlabel("time (s); shaded: still segments")
    if not curves:
        axes[0, 0].text(0.5, 0.5, "no video", transform=axes[0, 0].transAxes, ha="center")
    fig.suptitle(title or "frame-to-frame mesh motion")
    with atomic_output(path) as tmp:
        fig.savefig(tmp, dpi=90, format="png")
    plt.close(fig)


def _runs(t: np.ndarray, mask: np.ndarray) -> list[tuple[float, float]]:
    """(start, end) times of the runs of True in ``mask``."""
    out, start = [], None
    for i, m in enumerate(mask):
        if m and start is None:
            start = i
        if (not m or i == len(mask) - 1) and start is not None:
            end = i if m else i - 1
            out.append((float(t[start]), float(t[end])))
            start = None
    return out
