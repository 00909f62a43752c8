"""Render videos with an expression tokenizer: reconstruction and identity swap, side by side with the input.

Every processed frame of the input (``start``/``end``/``every`` as in ``mien analyze``) gives one output
frame ``[face crop | rendered face]``, each panel ``size`` × ``size`` pixels (default: the tokenizer's crop
size S), so the output is (size, 2·size) RGB at the input frame rate / ``every``. Face boxes come from
:func:`mien.analyze` (first pass; or an earlier ``mien analyze`` Parquet file); frames are then decoded again
and processed in batches of
``batch_size`` (second pass), so memory does not grow with the video length. A frame without a face gets
the crop of the last face box seen (black before the first) and a black rendered panel. The MP4 is written
to a temporary name and renamed when complete (:func:`mien.io.atomic.atomic_output`).

* reconstruction: encode with subject ``subject`` and decode with the same subject embedding;
* swap: encode with ``subject`` and decode with ``target_subject`` — the input's expressions on another
  trained subject's face (needs a tokenizer with subject embeddings).
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np

from mien.errors import InputError
from mien.heads.tokens import SWAP_ANCHORS, TokenExtractor
from mien.io.video import Frame
from mien.pipelines.analyze import Step, StepCallback
from mien.pipelines.tokens import first_faces, resolve_analysis

KINDS = ("reconstruction", "swap")


@dataclass
class RenderReport:
    """What :func:`render_video` wrote.

    Attributes:
        output: the MP4 path; kind: "reconstruction" or "swap".
        frames: frames written (= frames processed); faces: frames that had a face.
        width, height: output size in pixels (2·size × size); fps: output frame rate (frames/s).
        subject, target_subject: subject-embedding indices used to encode and decode (None: invariant model).
        anchor: for a swap, what its motion was measured from (:meth:`mien.heads.tokens.TokenExtractor.swap_anchor`).
        seconds: wall time in s.
    """

    output: str
    kind: str
    frames: int
    faces: int
    width: int
    height: int
    fps: float
    subject: int | None = None
    target_subject: int | None = None
    seconds: float = 0.0
    meta: dict = field(default_factory=dict)
    anchor: str | None = None


def _panel(img: np.ndarray, size: int) -> np.ndarray:
    if img.shape[0] == size:
        return img
    interp = cv2.INTER_AREA if img.shape[0] > size else cv2.INTER_LINEAR
    return cv2.resize(img, (size, size), interpolation=interp)


def render_video(video: str | os.PathLike, tokenizer, output: str | os.PathLike, kind: str = "reconstruction",
                 *, subject: int | None = None, target_subject: int | None = None, anchor: str = "auto",
                 start: float | None = None,
                 end: float | None = None, every: int = 1, size: int | None = None, device: str = "cpu",
                 batch_size: int = 16, crf: int = 18, analysis=None,
                 on_frame: Callable[[Frame, Step], bool | None] | None = None) -> RenderReport:
    """Write a side-by-side ``[input crop | rendered face]`` MP4 of a video.

    Args:
        video: input video file.
        tokenizer: exported tokenizer folder, or a :class:`~mien.heads.tokens.TokenExtractor`.
        output: output .mp4 path (parent folders are created).
        kind: "reconstruction" or "swap".
        subject: subject-embedding index used to encode (and, for reconstruction, to decode); None: a person the
            tokenizer does not know (encoded with index 0). For a swap with a banked warp tokenizer also the subject
            whose neutral mesh the input's motion is measured from
            (:meth:`~mien.models.tokenizer.warp.WarpDecoder.transfer_points`).
        target_subject: subject-embedding index to decode with; required for "swap".
        anchor: "neutral", "reference" or "auto" (neutral when ``subject`` is given, else reference: another
            person's neutral face would add that person's typical expression to every frame): what a banked warp
            tokenizer's swap measures the motion from (:meth:`~mien.heads.tokens.TokenExtractor.reconstruct`);
            ignored by other tokenizers.
        start, end: time window in s; every: frame stride.
        size: panel side in px (default the tokenizer's crop size S).
        device: torch device; batch_size: frames per forward pass; crf: x264 quality.
        analysis: face boxes to use instead of analysing the video: an :class:`~mien.AnalysisResult` of it or
            the path of its Parquet file from ``mien analyze`` (see
            :func:`mien.pipelines.tokens.resolve_analysis`).
        on_frame: ``on_frame(frame, step)`` per analysed frame (``step``: :class:`~mien.pipelines.analyze.Step`
            "analysis"; none when ``analysis`` is given) and per output frame once written ("render", with the
            input :class:`~mien.io.video.Frame`); True ends that pass at that frame (a stopped analysis renders
            only the frames it saw: a shorter video); an exception it raises propagates and leaves no output file.

    Returns:
        :class:`RenderReport`.

    Raises:
        ValueError: unknown kind; swap without subject embeddings or without/with an out-of-range
            ``target_subject``; ``subject`` out of range; bad size/batch.
        InputError: unreadable video, tokenizer folder or analysis file, or no face in the analysis.
    """
    import time

    from mien.io.atomic import atomic_output
    from mien.io.video import VideoSource
    from mien.io.writer import VideoWriter

    t0 = time.perf_counter()
    if kind not in KINDS:
        raise ValueError(f"kind must be one of {KINDS}, got {kind!r}")
    if anchor not in (*SWAP_ANCHORS, "auto"):
        raise ValueError(f"swap anchor must be one of {(*SWAP_ANCHORS, 'auto')}, got {anchor!r}")
    if anchor == "auto":
        anchor = "neutral" if subject is not None else "reference"
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    ex = tokenizer if isinstance(tokenizer, TokenExtractor) else TokenExtractor(tokenizer, device)
    ex.subject_id = ex.check_subject(subject)
    if kind == "swap":
        if ex.max_subjects <= 0:
            raise ValueError(f"{_name(tokenizer)}: this tokenizer is subject-invariant (no subject embeddings); "
                             "identity swap needs one trained with subject embeddings")
        if target_subject is None:
            raise ValueError("swap needs a target subject id")
        tgt = ex.check_subject(target_subject, "target subject")
    else:
        tgt = ex.subject_id
    size = int(size or ex.input_size)
    if size < 2:
        raise ValueError(f"size must be >= 2 px, got {size}")

    n_pass = 1 if analysis is not None else 2
    first = StepCallback(on_frame, Step("analysis", 0, n_pass))
    boxes = first_faces(resolve_analysis(video, analysis, start, end, every, ex.device,
                                         first if on_frame is not None else None))
    if not boxes:
        raise InputError(str(video), "no face found in the processed frames")
    limit = first.limit
    step = StepCallback(on_frame, Step("render", n_pass - 1, n_pass))
    src = VideoSource(video, start=start, end=end, every=every)
    fps = (src.info.fps or 25.0) / every
    black = np.zeros((size, size, 3), np.uint8)
    frames = faces = 0
    last_box = None

    def flush(batch, writer) -> bool:
        """Write the batch's frames; True when ``on_frame`` asked to stop (the rest of the batch is dropped)."""
        nonlocal frames, faces
        crops = np.stack([c for _, c, has in batch if has]) if any(h for *_, h in batch) else None
        rendered = iter(ex.reconstruct(crops, tgt, anchor)[1]) if crops is not None else iter(())
        for fr, crop, has in batch:
            right = _panel(next(rendered), size) if has else black
            left = _panel(crop, size) if crop is not None else black
            writer.write(np.concatenate([left, right], axis=1))
            frames += 1
            faces += bool(has)
            if step(fr):
                return True
        return False

    with atomic_output(output) as tmp:
        with VideoWriter(tmp, fps, crf=crf) as writer:
            batch: list = []
            stopped, read = False, 0
            for fr in src:
                if limit is not None and read >= limit:
                    break
                read += 1
                b = boxes.get(fr.index)
                if b is not None:
                    last_box = b
                crop = ex.crop(fr.image, *last_box) if last_box is not None else None
                batch.append((fr, crop, b is not None))
                if len(batch) >= batch_size:
                    stopped = flush(batch, writer)
                    batch = []
                    if stopped:
                        break
            if batch and not stopped:
                flush(batch, writer)
    return RenderReport(str(Path(output)), kind, frames, faces, 2 * size, size, float(fps),
                        ex.subject_id, tgt, time.perf_counter() - t0,
                        meta={"tokenizer": ex.name, "frames_decoded": src.frames_decoded,
                              "corrupt_frames": src.corrupt_frames},
                        anchor=ex.swap_anchor(ex.subject_id, tgt, anchor) if kind == "swap" else None)


def render_reconstruction(video, tokenizer, output, **kw) -> RenderReport:
    """:func:`render_video` with ``kind="reconstruction"``."""
    return render_video(video, tokenizer, output, "reconstruction", **kw)


def render_swap(video, tokenizer, output, target_subject: int, **kw) -> RenderReport:
    """:func:`render_video` with ``kind="swap"`` (``target_subject``: the identity to render)."""
    return render_video(video, tokenizer, output, "swap", target_subject=target_subject, **kw)


def _name(tokenizer) -> str:
    return tokenizer.name if isinstance(tokenizer, TokenExtractor) else str(tokenizer)


__all__ = ["KINDS", "RenderReport", "render_reconstruction", "render_swap", "render_video"]
