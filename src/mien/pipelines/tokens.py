"""Expression tokens of the faces in a video, with an exported expression tokenizer.

The per-face model is :class:`mien.heads.tokens.TokenExtractor` (crops cut as the tokenizer's contract says);
this module streams videos through it.

Main entry points:

* :func:`iter_face_crops` — stream (frame, crop, box) over a video, face boxes from
  :func:`mien.pipelines.analyze.analyze` (or a given analysis).
* :func:`video_tokens` — the (N, D) tokens of a video's frames that have a face.
* :func:`plot_video_tokens` — cosine-to-reference and PCA plot of a video's tokens.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import numpy as np

from mien.errors import InputError
from mien.heads.tokens import TokenExtractor


# ------------------------------------------------------------------------------------------------------------
# videos
def first_faces(result) -> dict[int, tuple[np.ndarray, np.ndarray]]:
    """Per frame index, (box (4,) px, landmarks (478, 3) px) of the face with the lowest ``face_id`` (the rule
    of :func:`mien.tasks.tokenizer.load_face_crops`). Frames without a face are absent."""
    best: dict[int, tuple[int, int]] = {}
    for r, (f, fid) in enumerate(zip(result.frame.tolist(), result.face_id.tolist(), strict=True)):
        if f not in best or fid < best[f][0]:
            best[f] = (fid, r)
    return {f: (result.bbox[r], result.landmarks[r]) for f, (_, r) in best.items()}


@dataclass
class FaceFrame:
    """One processed frame of a video with its face crop.

    Attributes:
        index: 0-based decoded frame index; t_sec: presentation time in s.
        image: (H, W, 3) uint8 RGB source frame.
        bbox: (4,) float32 px landmark box of the first face, or None when the frame has no face.
        crop: (S, S, 3) uint8 crop of that face, or None.
    """

    index: int
    t_sec: float
    image: np.ndarray
    bbox: np.ndarray | None
    crop: np.ndarray | None


def analyze_video(video: str | os.PathLike, start: float | None = None, end: float | None = None,
                  every: int = 1, device: str = "cpu", on_frame: Callable | None = None):
    """Face boxes of a video: :func:`mien.analyze` with the given window and stride (no neural extras);
    ``on_frame`` is :func:`mien.analyze`'s (True ends the analysis at that frame).

    Raises:
        InputError: unreadable video.
    """
    from mien.pipelines.analyze import analyze

    return analyze(video, start=start, end=end, every=every, device=device, identity=False, on_frame=on_frame)


def resolve_analysis(video: str | os.PathLike, analysis=None, start: float | None = None, end: float | None = None,
                     every: int = 1, device: str = "cpu", on_frame: Callable | None = None):
    """The :class:`~mien.AnalysisResult` giving the face boxes of ``video``: ``analysis`` itself, the Parquet
    file it names (``mien analyze`` output, read with :func:`mien.read_results`), or a fresh
    :func:`analyze_video` when None.

    A given analysis must be of the same video; its ``frame`` indices are decoded-frame indices, so one
    made with another window or stride still lines up (processed frames it lacks count as frames without
    a face). ``on_frame`` is passed to :func:`analyze_video` (not called for a given analysis).

    Raises:
        InputError: unreadable video or results file; a results file of a different source size.
    """
    if analysis is None:
        return analyze_video(video, start, end, every, device, on_frame)
    if isinstance(analysis, (str, os.PathLike)):
        from mien.results import read_results

        path = str(analysis)
        analysis = read_results(path)
        w, h = analysis.meta.get("width"), analysis.meta.get("height")
        if w and h:
            from mien.io.video import VideoSource

            info = VideoSource(video).info
            if (int(w), int(h)) != (info.width, info.height):
                raise InputError(path, f"analysis of a {w}x{h} source, but {video} is "
                                       f"{info.width}x{info.height}")
    return analysis


def iter_face_crops(video: str | os.PathLike, extractor: TokenExtractor, start: float | None = None,
                    end: float | None = None, every: int = 1, analysis=None) -> Iterator[FaceFrame]:
    """Stream every processed frame of a video with the crop of its first face (one frame in memory).

    Face boxes come from ``analysis`` (an :class:`~mien.AnalysisResult` of the same video or the path of its
    Parquet file, see :func:`resolve_analysis`) or from :func:`analyze_video`; frames are then decoded with
    :class:`mien.io.video.VideoSource` (same ``start``/``end``/``every``, so indices match).

    Yields:
        :class:`FaceFrame` for every processed frame, faces or not, in order.

    Raises:
        InputError: unreadable video.
    """
    from mien.io.video import VideoSource

    faces = first_faces(resolve_analysis(video, analysis, start, end, every, extractor.device))
    for fr in VideoSource(video, start=start, end=end, every=every):
        b, lm = faces.get(fr.index, (None, None))
        crop = extractor.crop(fr.image, b, lm) if b is not None else None
        yield FaceFrame(fr.index, fr.t_sec, fr.image, b, crop)


@dataclass
class VideoTokens:
    """Expression tokens of the frames of a video that have a face.

    Attributes:
        frame: int64 (N,) decoded frame indices; t_sec: float64 (N,) seconds; tokens: float32 (N, D) unit norm.
        frames_processed: number of frames processed (with and without a face).
    """

    frame: np.ndarray
    t_sec: np.ndarray
    tokens: np.ndarray
    frames_processed: int


def video_tokens(video: str | os.PathLike, extractor: TokenExtractor, start: float | None = None,
                 end: float | None = None, every: int = 1, analysis=None) -> VideoTokens:
    """Tokens of every processed frame with a face (crops batched by ``extractor.batch_size``; frames are
    streamed, only the (N, D) tokens are kept).

    Raises:
        InputError: unreadable video.
    """
    frames, times, toks, batch = [], [], [], []
    n = 0
    for ff in iter_face_crops(video, extractor, start, end, every, analysis):
        n += 1
        if ff.crop is None:
            continue
        frames.append(ff.index)
        times.append(ff.t_sec)
        batch.append(ff.crop)
        if len(batch) >= extractor.batch_size:
            toks.append(extractor(np.stack(batch)))
            batch = []
    if batch:
        toks.append(extractor(np.stack(batch)))
    tokens = np.concatenate(toks) if toks else np.zeros((0, extractor.dim), np.float32)
    return VideoTokens(np.asarray(frames, np.int64), np.asarray(times, np.float64), tokens, n)


def reference_row(frame: np.ndarray, reference_frame: int) -> int:
    """Row of ``frame`` (sorted frame indices with a face) nearest to video frame ``reference_frame``
    (ties: the earlier frame).

    Raises:
        ValueError: no frame or a negative ``reference_frame``.
    """
    if reference_frame < 0:
        raise ValueError(f"reference frame must be >= 0, got {reference_frame}")
    if len(frame) == 0:
        raise ValueError("no frame with a face")
    return int(np.argmin(np.abs(np.asarray(frame, np.int64) - int(reference_frame))))


def plot_video_tokens(video: str | os.PathLike, tokenizer, output: str | os.PathLike, reference_frame: int = 0,
                      *, subject: int | None = None, start: float | None = None, end: float | None = None, every: int = 1,
                      device: str = "cpu", tokens_out: str | os.PathLike | None = None,
                      analysis=None) -> dict:
    """Token plot of a video (:func:`mien.viz.tokens.plot_tokens`): cosine similarity to a reference frame
    over time and the 2-D PCA of the tokens.

    Args:
        video: input video; tokenizer: exported tokenizer folder or a :class:`TokenExtractor`.
        output: PNG path (written atomically).
        reference_frame: decoded frame index of the reference; when that frame has no face (or is not
            processed), the nearest processed frame with a face is used (reported as ``reference_frame``).
        subject: subject-embedding index used to encode (None: 0); start, end, every: window (s) and stride.
        tokens_out: also write ``frame`` (N,), ``t_sec`` (N,) and ``tokens`` (N, D) to this .npz (atomic).
        analysis: face boxes to use instead of analysing the video (see :func:`resolve_analysis`).

    Returns:
        {"output", "frames_processed", "tokens" (N), "dim", "reference_frame", "cosine" (N,), "pca" (N, 2),
        "explained" (2,)}.

    Raises:
        InputError: unreadable video/tokenizer, or no face in the processed frames.
        ValueError: subject out of range, negative reference frame.
    """
    from mien.io.atomic import atomic_output
    from mien.viz.tokens import plot_tokens

    ex = tokenizer if isinstance(tokenizer, TokenExtractor) else TokenExtractor(tokenizer, device)
    ex.subject_id = ex.check_subject(subject)
    if reference_frame < 0:
        raise ValueError(f"reference frame must be >= 0, got {reference_frame}")
    vt = video_tokens(video, ex, start, end, every, analysis)
    if len(vt.tokens) == 0:
        raise InputError(str(video), "no face found in the processed frames")
    ref = reference_row(vt.frame, reference_frame)
    if tokens_out is not None:
        with atomic_output(tokens_out) as tmp:
            with open(tmp, "wb") as f:
                np.savez(f, frame=vt.frame, t_sec=vt.t_sec, tokens=vt.tokens)
    res = plot_tokens(vt.t_sec, vt.tokens, output, ref, frame=vt.frame,
                      title=f"{os.path.basename(str(video))}: expression tokens ({ex.name}, D = {ex.dim})")
    return {"output": str(output), "frames_processed": vt.frames_processed, "tokens": len(vt.tokens),
            "dim": ex.dim, "reference_frame": int(vt.frame[ref]), "cosine": res["cosine"], "pca": res["pca"],
            "explained": res["explained"]}


__all__ = ["FaceFrame", "VideoTokens", "analyze_video", "first_faces", "iter_face_crops", "plot_video_tokens",
           "reference_row", "resolve_analysis", "video_tokens"]
