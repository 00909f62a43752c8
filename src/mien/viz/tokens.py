"""Plots of expression tokens over time (matplotlib, Agg backend): cosine similarity to a reference frame and
a 2-D PCA projection coloured by time."""

from __future__ import annotations

import os

import numpy as np

from mien.io.atomic import atomic_output


def cosine_to_reference(tokens: np.ndarray, reference: int) -> np.ndarray:
    """Cosine similarity of every token to ``tokens[reference]``.

    Args:
        tokens: float (N, D) (need not be unit norm; zero vectors give 0).
        reference: row index in [0, N).

    Returns:
        float64 (N,) in [-1, 1]; exactly 1.0 at ``reference`` for a non-zero token.

    Raises:
        ValueError: not (N, D) or reference out of range.
    """
    z = np.asarray(tokens, np.float64)
    if z.ndim != 2:
        raise ValueError(f"expected tokens (N, D), got {z.shape}")
    if not 0 <= reference < len(z):
        raise ValueError(f"reference row {reference} out of range for {len(z)} tokens")
    norm = np.linalg.norm(z, axis=1)
    z = z / np.where(norm > 0, norm, 1.0)[:, None]
    cos = np.clip(z @ z[reference], -1.0, 1.0)
    if norm[reference] > 0:
        cos[reference] = 1.0
    return cos


def pca_2d(tokens: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Project tokens on their first two principal components (numpy SVD of the centred tokens).

    Args:
        tokens: float (N, D).

    Returns:
        coordinates float64 (N, 2) (zero-padded when rank < 2), explained-variance ratios float64 (2,).

    Raises:
        ValueError: not (N, D).
    """
    z = np.asarray(tokens, np.float64)
    if z.ndim != 2:
        raise ValueError(f"expected tokens (N, D), got {z.shape}")
    xy = np.zeros((len(z), 2))
    ratio = np.zeros(2)
    if len(z) < 2:
        return xy, ratio
    c = z - z.mean(0)
    u, s, _ = np.linalg.svd(c, full_matrices=False)
    k = min(2, len(s))
    xy[:, :k] = u[:, :k] * s[:k]
    total = float((s ** 2).sum())
    if total > 0:
        ratio[:k] = s[:k] ** 2 / total
    return xy, ratio


def plot_tokens(t_sec: np.ndarray, tokens: np.ndarray, path: str | os.PathLike, reference: int = 0,
                title: str | None = None, frame: np.ndarray | None = None) -> dict:
    """Write a PNG: (top) cosine similarity of each token to the reference token over time (s), (bottom)
    2-D PCA of the tokens, points coloured by time, consecutive frames joined. Written atomically.

    Args:
        t_sec: float (N,) time of each token in s.
        tokens: float (N, D) expression tokens.
        path: output PNG.
        reference: row of ``tokens`` used as reference.
        title: figure title.
        frame: int (N,) frame indices, only to label the reference.

    Returns:
        {"cosine": (N,) float64, "pca": (N, 2) float64, "explained": (2,) float64, "reference": int}.

    Raises:
        ValueError: no tokens, mismatched lengths, reference out of range.
    """
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    t = np.asarray(t_sec, np.float64)
    z = np.asarray(tokens)
    if len(z) == 0:
        raise ValueError("no tokens to plot (no face found)")
    if len(t) != len(z):
        raise ValueError(f"{len(t)} times for {len(z)} tokens")
    cos = cosine_to_reference(z, reference)
    xy, ratio = pca_2d(z)
    ref_label = f"frame {int(frame[reference])}" if frame is not None else f"token {reference}"

    fig, (ax1, ax2) = plt.subplots(2, 1, figsize=(9, 9), gridspec_kw={"height_ratios": [1, 1.4]},
                                   constrained_layout=True)
    ax1.plot(t, cos, lw=1.2, color="tab:blue")
    ax1.scatter([t[reference]], [cos[reference]], color="tab:red", zorder=3, label=f"reference ({ref_label})")
    ax1.set_xlabel("time (s)")
    ax1.set_ylabel("cosine similarity to reference")
    lo = float(cos.min())
    pad = max(0.05 * (1.0 - lo), 1e-4)
    ax1.set_ylim(lo - pad, 1.0 + pad)  # zoomed on the data's range: near-identical tokens stay readable
    ax1.grid(alpha=0.3)
    ax1.legend(loc="lower left", fontsize=8)

    ax2.plot(xy[:, 0], xy[:, 1], lw=0.5, color="0.7", zorder=1)
    sc = ax2.scatter(xy[:, 0], xy[:, 1], c=t, cmap="viridis", s=14, zorder=2)
    ax2.scatter([xy[reference, 0]], [xy[reference, 1]], facecolors="none", edgecolors="tab:red", s=80,
                zorder=3, label="reference")
    ax2.set_xlabel(f"PC 1 ({100 * ratio[0]:.1f} % var.)")
    ax2.set_ylabel(f"PC 2 ({100 * ratio[1]:.1f} % var.)")
    ax2.set_aspect("equal", adjustable="datalim")
    ax2.grid(alpha=0.3)
    ax2.legend(loc="upper right", fontsize=8)
    fig.colorbar(sc, ax=ax2, label="time (s)")
    fig.suptitle(title or f"expression tokens (N = {len(z)}, D = {z.shape[1]})")
    try:
        with atomic_output(path) as tmp:
            fig.savefig(tmp, dpi=110, format="png")
    finally:
        plt.close(fig)
    return {"cosine": cos, "pca": xy, "explained": ratio, "reference": int(reference)}


__all__ = ["cosine_to_reference", "pca_2d", "plot_tokens"]
