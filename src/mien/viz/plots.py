"""Time-series plots of analysis results (matplotlib, Agg backend)."""

from __future__ import annotations

import os

import numpy as np

from mien.io.atomic import atomic_output
from mien.results.result import AnalysisResult


def plot_timeseries(result: AnalysisResult, path: str | os.PathLike, title: str | None = None) -> None:
    """Write a PNG with four panels over time (s): head pose (deg), gaze (deg), eye openness (EAR) with
    blink events shaded, and mouth openness; one line per face track. Written atomically."""
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(4, 1, figsize=(11, 9), sharex=True, constrained_layout=True)
    panels = [
        ("head pose (deg)", [("yaw_deg", "yaw"), ("pitch_deg", "pitch"), ("roll_deg", "roll")]),
        ("gaze (deg)", [("gaze_yaw_deg", "yaw"), ("gaze_pitch_deg", "pitch")]),
        ("eye aspect ratio", [("ear_left", "left"), ("ear_right", "right")]),
        ("mouth openness", [("mouth_open", "mouth")]),
    ]
    ids = np.unique(result.face_id)
    for ax, (label, series) in zip(axes, panels, strict=True):
        for fid in ids:
            m = result.face_id == fid
            t = result.t_sec[m]
            for col, name in series:
                suffix = f" (id {fid})" if len(ids) > 1 else ""
                ax.plot(t, getattr(result, col)[m], lw=1, label=name + suffix)
        ax.set_ylabel(label)
        ax.grid(alpha=0.3)
        if len(ids):
            ax.legend(loc="upper right", fontsize=8, ncol=3)
    ev = result.blink_events()
    for _, e in ev.iterrows():
        axes[2].axvspan(e.onset_t_sec, e.offset_t_sec + 1e-3, color="red", alpha=0.25)
    axes[-1].set_xlabel("time (s)")
    if not len(result):
        axes[0].text(0.5, 0.5, "no face found", transform=axes[0].transAxes, ha="center")
    fig.suptitle(title or os.path.basename(str(result.meta.get("source", ""))))
    with atomic_output(path) as tmp:
        fig.savefig(tmp, dpi=90, format="png")
    plt.close(fig)
