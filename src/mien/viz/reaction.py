"""Listener reactions made visible: a mesh video of the 25 REACT attributes (:func:`render_reaction_video`) and
plots of AUs/expressions over time (:func:`plot_reactions`).

The face is the py-feat AU+pose → 478-point PLS mesh model shipped in ``mien/assets/face3d`` (MIT; see
:mod:`mien.models.face3d.au`), driven by the 15 REACT AU values (occurrences or probabilities in [0, 1], used
as PLS intensities; NaN → 0) with a frontal head, drawn by :func:`mien.viz.mesh.draw_mesh`. Valence/arousal and
expressions are printed under the face, not rendered.
"""

from __future__ import annotations

import os
from pathlib import Path

import cv2
import numpy as np

from mien.io.atomic import atomic_output
from mien.metrics.react import (
    AU_SLICE,
    EXPRESSION_SLICE,
    REACT_ATTRIBUTES,
    REACT_AUS,
    REACT_EXPRESSIONS,
    VA_SLICE,
)


def _attrs(a, name: str, ndim: int) -> np.ndarray:
    x = np.asarray(a, np.float32)
    if x.ndim != ndim or x.shape[-1] != len(REACT_ATTRIBUTES):
        raise ValueError(f"{name} must be ({'R, ' if ndim == 3 else ''}T, 25) REACT attributes, got {x.shape}")
    return x


def reaction_meshes(attrs: np.ndarray) -> np.ndarray:
    """PLS meshes of the 15 REACT AUs per frame: float32 (T, 478, 3), PLS frame (y up, z toward the viewer)."""
    from mien.models.face3d.au import pls_input_columns, pls_mesh

    x = _attrs(attrs, "attrs", 2)
    cols = pls_input_columns()
    inputs = np.zeros((len(x), len(cols)), np.float64)
    for i, au in enumerate(REACT_AUS):
        inputs[:, cols.index(au)] = np.nan_to_num(np.clip(x[:, AU_SLICE][:, i], 0, 1))
    return pls_mesh(inputs)


def _to_pixels(meshes: np.ndarray, size: int) -> np.ndarray:
    """PLS frame → image pixels (x right, y down, z away), one fixed scale for all frames."""
    ref = reaction_meshes(np.zeros((1, len(REACT_ATTRIBUTES)), np.float32))[0]
    lo, hi = ref[:, :2].min(0), ref[:, :2].max(0)
    scale = 0.78 * size / float((hi - lo).max())
    centre = (lo + hi) / 2
    out = np.empty_like(meshes)
    out[..., 0] = (meshes[..., 0] - centre[0]) * scale + size / 2
    out[..., 1] = -(meshes[..., 1] - centre[1]) * scale + size * 0.46
    out[..., 2] = -meshes[..., 2] * scale
    return out


def _caption(img: np.ndarray, row: np.ndarray) -> None:
    ex = row[EXPRESSION_SLICE]
    lines = []
    if np.isfinite(ex).any():
        k = int(np.nanargmax(ex))
        lines.append(f"{REACT_EXPRESSIONS[k]} {ex[k]:.2f}")
    va = row[VA_SLICE]
    if np.isfinite(va).all():
        lines.append(f"V {va[0]:+.2f} A {va[1]:+.2f}")
    s = img.shape[0] / 256
    for i, text in enumerate(lines):
        cv2.putText(img, text, (int(6 * s), int(img.shape[0] - (8 + 18 * (len(lines) - 1 - i)) * s)),
                    cv2.FONT_HERSHEY_SIMPLEX, 0.45 * s, (235, 235, 235), 1, cv2.LINE_AA)


def _fit(image: np.ndarray, size: int) -> np.ndarray:
    h, w = image.shape[:2]
    s = size / max(h, w)
    small = cv2.resize(image, (max(1, round(w * s)), max(1, round(h * s))), interpolation=cv2.INTER_AREA)
    out = np.zeros((size, size, 3), np.uint8)
    y, x = (size - small.shape[0]) // 2, (size - small.shape[1]) // 2
    out[y:y + small.shape[0], x:x + small.shape[1]] = small
    return out


def _speaker_frames(path: str, fps: float, n: int, size: int):
    """Frame k of the speaker video shown at k / fps (latest frame at or before it), fitted to size²."""
    from mien.io.video import open_source

    last = np.zeros((size, size, 3), np.uint8)
    it = iter(open_source(path))
    pending = next(it, None)
    for k in range(n):
        t = k / fps
        while pending is not None and pending.t_sec <= t + 1e-3:
            last = _fit(pending.image, size)
            pending = next(it, None)
        yield last


def render_reaction_video(attrs: np.ndarray, fps: float, path: str | os.PathLike, *,
                          speaker_video: str | None = None, size: int = 256, on_frame=None) -> Path:
    """Write an MP4 of a listener reaction: the PLS face mesh moved by the reaction's AUs, one frame per row,
    beside the speaker video (sampled at the same times from its start) when given.

    Args:
        attrs: (T, 25) REACT attributes (:data:`~mien.metrics.react.REACT_ATTRIBUTES`; NaN allowed).
        fps: frame rate of ``attrs``. path: output ``.mp4`` (written atomically).
        speaker_video: optional video shown on the left. size: panel side in pixels.
        on_frame: called after each written frame as ``on_frame(frame, None)`` (the contract of
            :func:`mien.analyze`) with a :class:`~mien.io.video.Frame` of the rendered image at k / fps s; True
            ends the video there; an exception it raises leaves no file.

    Returns:
        ``Path(path)``; the video has T frames of (size, size or 2·size) pixels.

    Raises:
        ValueError: wrong ``attrs`` shape, T = 0, fps ≤ 0 or size < 32.
        InputError: ``speaker_video`` unreadable.
    """
    from mien.io.video import Frame
    from mien.io.writer import VideoWriter
    from mien.models.face3d.mien_face import canonical_triangles
    from mien.viz.mesh import draw_mesh

    x = _attrs(attrs, "attrs", 2)
    if not len(x) or fps <= 0 or size < 32:
        raise ValueError(f"need T >= 1 frames, fps > 0 and size >= 32; got T={len(x)}, fps={fps}, size={size}")
    tri = canonical_triangles()
    pix = _to_pixels(reaction_meshes(x), size)
    speaker = _speaker_frames(str(speaker_video), fps, len(x), size) if speaker_video else None
    with atomic_output(path) as tmp, VideoWriter(tmp, fps) as w:
        for k in range(len(x)):
            face = np.full((size, size, 3), 24, np.uint8)
            draw_mesh(face, pix[k], tri)
            _caption(face, x[k])
            img = np.concatenate([next(speaker), face], 1) if speaker is not None else face
            w.write(img)
            if on_frame is not None and on_frame(Frame(k, k / fps, img), None) is True:
                break
    return Path(path)


def plot_reactions(speaker_attrs: np.ndarray, reactions: np.ndarray, path: str | os.PathLike, *,
                   fps: float = 25.0, title: str | None = None) -> Path:
    """PNG of the speaker's and each reaction's AUs and expressions over time (written atomically).

    Panels: speaker AUs (heat map, AU × time), the R reactions' AUs (one heat map each, at most 6 shown), and
    the dominant expression probability curves of speaker and reactions.

    Args:
        speaker_attrs: (T, 25). reactions: (R, T', 25) REACT attributes (NaN shown blank). path: ``.png``.
        fps: frame rate (time axis in s).

    Raises:
        ValueError: wrong shapes.
    """
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    s = _attrs(speaker_attrs, "speaker_attrs", 2)
    r = _attrs(reactions, "reactions", 3)
    shown = r[:6]
    fig, axes = plt.subplots(2 + len(shown), 1, figsize=(11, 2.0 * (2 + len(shown))), constrained_layout=True)
    panels = [("speaker", s), *[(f"reaction {i}", x) for i, x in enumerate(shown)]]
    for ax, (label, x) in zip(axes[:-1], panels, strict=True):
        t_end = len(x) / fps
        ax.imshow(x[:, AU_SLICE].T, aspect="auto", vmin=0, vmax=1, cmap="magma", interpolation="nearest",
                  extent=(0, t_end, len(REACT_AUS) - 0.5, -0.5))
        ax.set_yticks(range(len(REACT_AUS)), REACT_AUS, fontsize=6)
        ax.set_ylabel(label)
    ax = axes[-1]
    for label, x, style in [("speaker", s, "-"), *[(f"r{i}", y, ":") for i, y in enumerate(shown)]]:
        ex = x[:, EXPRESSION_SLICE]
        if not np.isfinite(ex).any():
            continue
        k = int(np.nanargmax(np.nanmean(ex, 0)))
        ax.plot(np.arange(len(x)) / fps, ex[:, k], style, lw=1, label=f"{label}: {REACT_EXPRESSIONS[k]}")
    ax.set_ylabel("expression p")
    ax.set_xlabel("time (s)")
    ax.legend(fontsize=7, ncol=4, loc="upper right")
    fig.suptitle(title or f"speaker and {len(r)} reaction(s) (AU occurrence; {len(shown)} shown)")
    with atomic_output(path) as tmp:
        fig.savefig(tmp, dpi=80, format="png")
    plt.close(fig)
    return Path(path)
