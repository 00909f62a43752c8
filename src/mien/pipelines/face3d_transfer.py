"""``mien render expression-transfer SOURCE TARGET -o OUT.mp4``: the target's identity and appearance with the
source's expression, frame by frame (as SMIRK/TEASER's ``test_image_swap_expression.py``, on video).

Both inputs are analysed (:func:`mien.analyze`) and fitted with the per-frame 3-D fit
(:class:`~mien.heads.face3d.Face3DHead`); each output frame pairs processed source frame *i* with target frame
*i* (a target image is used for every frame; a target video shorter than the source starts again). The
transferred mesh is the target's identity (shape) and pose with the source's expression, jaw and eyelids
(``relative``: the source's deviations from its own median expression added to the target's median — removes
person-specific offsets of the expression coefficients). The video shows
``[source | target | transferred mesh | mesh over the target]``; with a face3d-learn export
(``encoder``, :mod:`mien.pipelines.face3d_encoder`) the neural renderer's image of the target with the source's
expression is added, and ``swap="tokens"`` renders the source's geometry with the target's appearance tokens
(TEASER's token swap).
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import cv2
import numpy as np

from mien.errors import InputError
from mien.pipelines.analyze import Step, StepCallback

if TYPE_CHECKING:
    from mien.io.video import Frame

TRANSFERRED = ("face3d_expression", "face3d_jaw", "face3d_eyelids")
"""The coefficients taken from the source; shape and pose stay the target's."""


@dataclass
class TransferReport:
    """What :func:`expression_transfer` wrote.

    Attributes:
        output: the MP4 path. frames: frames written. transferred: frames with a transferred face (source and
            target face both found). width, height: output size, px. fps: frames/s (the source's). seconds:
            wall time. panels: panel names left to right. meta: options, model and fit metadata.
    """

    output: str
    frames: int
    transferred: int
    width: int
    height: int
    fps: float
    seconds: float = 0.0
    panels: list = field(default_factory=list)
    meta: dict = field(default_factory=dict)


def transfer_coefficients(source: dict[str, np.ndarray], target: dict[str, np.ndarray], *,
                          relative: bool = False) -> dict[str, np.ndarray]:
    """Target rows' face3d columns with the source rows' expression, jaw and eyelids.

    Args:
        source, target: face3d columns (:meth:`mien.heads.face3d.Face3DHead.columns`) of N paired rows each
            (``source`` may hold more rows: with ``relative`` all of them give its median).
        relative: use ``source − median(source) + median(target)`` for each transferred group (medians over
            all rows given).

    Returns:
        face3d columns of the N target rows (copies) with :data:`TRANSFERRED` replaced.
    """
    n = len(target["face3d_expression"])
    out = {k: np.array(v, copy=True) for k, v in target.items()}
    for k in TRANSFERRED:
        s = np.asarray(source[k], np.float32)[:n]
        if relative:
            s = s - np.median(source[k], 0) + np.median(target[k], 0)
        out[k] = s.astype(np.float32)
    return out


def _panel(img: np.ndarray, height: int) -> np.ndarray:
    h, w = img.shape[:2]
    k = height / h
    pw = max(2, 2 * int(round(w * k / 2)))
    if (pw, height) == (w, h):
        return img
    return cv2.resize(img, (pw, height), interpolation=cv2.INTER_AREA if k < 1 else cv2.INTER_LINEAR)


def _target_frames(path: str, every: int) -> Iterator:
    """Frames of the target: an image forever, a video again and again (streamed)."""
    from mien.io.video import open_source

    while True:
        src = open_source(path, every=every)
        got = False
        for fr in src:
            got = True
            if src.info.kind == "image":
                while True:
                    yield fr
            yield fr
        if not got:
            return


def _rows_by_frame(frames: np.ndarray) -> dict[int, int]:
    out: dict[int, int] = {}
    for i, f in enumerate(frames):
        out.setdefault(int(f), i)  # first face of the frame (max_faces=1 gives one)
    return out


def expression_transfer(source: str | os.PathLike, target: str | os.PathLike, output: str | os.PathLike, *,
                        model: str | None = None, smooth: bool = False, relative: bool = False,
                        start: float | None = None, end: float | None = None, every: int = 1,
                        height: int | None = None, encoder: str | os.PathLike | None = None,
                        swap: str | None = None, alpha: float = 0.6, crf: int = 18,
                        on_frame: Callable[[Frame, Step], bool | None] | None = None) -> TransferReport:
    """Write the expression-transfer video (see the module docstring).

    Args:
        source: video or image whose expressions are transferred. target: video or image whose identity,
            pose and appearance are kept. output: .mp4 (written atomically; parent folders created).
        model: face-model spec (:func:`mien.models.face3d.spec.open_face_model`). smooth: One Euro-smooth the
            fits per track. relative: transfer the source's expression relative to its median (see
            :func:`transfer_coefficients`).
        start, end: time window of the source, s; every: frame stride of both.
        height: panel height, px (default: the source's, at most 512).
        encoder: a face3d-learn export folder (adds the neural-render panel). swap: None, or "tokens"
            (TEASER's token swap; needs an export with a token encoder).
        alpha: opacity of the mesh over the target. crf: x264 quality.
        on_frame: ``on_frame(frame, step)`` per analysed frame of the source and of the target (``step``:
            :class:`~mien.pipelines.analyze.Step` "source", "target") and per output frame once written
            ("render", with the source :class:`~mien.io.video.Frame`); True ends that pass at that frame (a
            stopped analysis renders only the frame pairs it saw: a shorter video); an exception it raises
            propagates and leaves no output file.

    Returns:
        :class:`TransferReport`.

    Raises:
        InputError: unreadable input, model or encoder; no face in the source or the target.
        ValueError: bad options.
    """
    from mien.heads.face3d import Face3DHead
    from mien.io.atomic import atomic_output
    from mien.io.video import open_source
    from mien.io.writer import VideoWriter
    from mien.pipelines.analyze import analyze
    from mien.pipelines.face3d import fit_result
    from mien.viz.mesh import draw_mesh

    t0 = time.perf_counter()
    if every < 1:
        raise ValueError(f"every must be >= 1, got {every}")
    if swap not in (None, "tokens"):
        raise ValueError(f"swap must be None or 'tokens', got {swap!r}")
    if swap and encoder is None:
        raise ValueError("--swap tokens needs --encoder DIR (a face3d-learn export with a token encoder)")
    if height is not None and height < 16:
        raise ValueError(f"height must be >= 16 px, got {height}")
    head = Face3DHead(model, smooth=smooth)
    neural = None
    if encoder is not None:
        from mien.pipelines.face3d_encoder import open_encoder

        neural = open_encoder(encoder)
        if swap == "tokens" and not neural.has_tokens:
            raise InputError(str(encoder), "the export has no token encoder (TEASER); --swap tokens needs one")
    s_cb, t_cb, r_cb = (StepCallback(on_frame, Step(name, i, 3)) for i, name in
                        enumerate(("source", "target", "render")))
    s_an = analyze(source, start=start, end=end, every=every, max_faces=1, identity=False,
                   on_frame=s_cb if on_frame is not None else None)
    if len(s_an) == 0:
        raise InputError(str(source), "no face found in the processed frames")
    info = open_source(source).info  # the target is analysed only as far as the source lasts
    stop = s_cb.t_sec if s_cb.stopped else end if end is not None else info.duration_sec
    span = None if stop is None or info.kind != "video" else stop - (start or 0.0) + 1.0
    t_an = analyze(target, end=span, every=every, max_faces=1, identity=False,
                   on_frame=t_cb if on_frame is not None else None)
    if len(t_an) == 0:
        raise InputError(str(target), "no face found in the processed frames")
    limit = min((n for n in (s_cb.limit, t_cb.limit) if n is not None), default=None)  # the frame pairs seen
    fs, ft = fit_result(s_an, head=head), fit_result(t_an, head=head)
    s_rows, t_rows = _rows_by_frame(fs.frame), _rows_by_frame(ft.frame)
    s_box, s_lm = _boxes(s_an)
    t_box, t_lm = _boxes(t_an)
    med = {k: np.median(fs.columns[k], 0) for k in TRANSFERRED} if relative else None
    t_med = {k: np.median(ft.columns[k], 0) for k in TRANSFERRED} if relative else None
    m = head.model
    tri = np.asarray(m.triangles, np.int64)
    src = open_source(source, start=start, end=end, every=every)
    fps = (src.info.fps or 25.0) / every if src.info.kind == "video" else 25.0
    panels = ["source", "target", "transferred mesh", "mesh over target"]
    if neural is not None:
        panels.append("neural transfer" if swap is None else "token swap")
    frames = done = 0
    W = H = 0
    targets = _target_frames(os.fspath(target), every)
    with atomic_output(output) as tmp, VideoWriter(tmp, fps, crf=crf) as writer:
        for fr in src:
            if limit is not None and frames >= limit:
                break
            tf = next(targets, None)
            if tf is None:
                raise InputError(str(target), "could not be read again")
            H = int(height or min(fr.image.shape[0], 512))
            s_img, t_img = _panel(fr.image, H), _panel(tf.image, H)
            k = H / tf.image.shape[0]
            shaded, over = np.zeros_like(t_img), t_img.copy()
            neural_img = np.zeros_like(t_img) if neural is not None else None
            i, j = s_rows.get(fr.index), t_rows.get(tf.index)
            if i is not None and j is not None:
                c = {key: v[j:j + 1] for key, v in ft.columns.items()}
                for key in TRANSFERRED:
                    v = fs.columns[key][i:i + 1]
                    c[key] = v - med[key] + t_med[key] if relative else v
                X = m.vertices(c["face3d_shape"], c["face3d_expression"], c["face3d_jaw"], c["face3d_eyelids"])[0]
                pts = (c["face3d_scale"][0] * X @ c["face3d_rotation"][0].T + c["face3d_translation"][0]) * k
                draw_mesh(shaded, pts, tri)
                draw_mesh(over, pts, tri, alpha=alpha)
                if neural is not None:
                    neural_img = _panel(neural.transfer((fr.image, s_box[i], s_lm[i]), (tf.image, t_box[j], t_lm[j]),
                                                        swap=swap), H)
                done += 1
            row = [s_img, t_img, shaded, over] + ([neural_img] if neural_img is not None else [])
            out = np.concatenate(row, axis=1)
            W = out.shape[1]
            writer.write(out)
            frames += 1
            if r_cb(fr):
                break
    return TransferReport(str(Path(output)), frames, done, W, H, float(fps), time.perf_counter() - t0, panels,
                          meta={"face3d": fs.meta, "relative": relative, "smooth": smooth,
                                "source": os.fspath(source), "target": os.fspath(target),
                                "encoder": os.fspath(encoder) if encoder else None, "swap": swap,
                                "source_faces": len(fs.frame), "target_faces": len(ft.frame)})


def _boxes(analysis) -> tuple[np.ndarray, np.ndarray]:
    """Face boxes and landmarks of an analysis in the row order of its fit (by frame, then face)."""
    c = analysis.columns()
    order = np.lexsort((c["face_id"], c["frame"]))
    return c["bbox"][order], c["landmarks"][order]
