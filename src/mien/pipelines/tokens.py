"""Expression tokens of faces in frames and videos, with an exported expression tokenizer.

An exported tokenizer is a folder ``config.json + model.safetensors`` written by
:func:`mien.models.tokenizer.save_pretrained` (or ``mien export tokenizer`` / :func:`mien.tasks.tokenizer.
export_checkpoint`). Its input contract (crop size and crop kind) comes from the model's config
(:func:`mien.models.tokenizer.contract_of`), and crops are cut by the function the training data used
(:func:`mien.face.crops.face_crop`, as in :func:`mien.tasks.tokenizer.load_face_crops` and, for the aligned
kind, ``mien prepare``): by default the similarity-aligned FFHQ-style square from the eye and mouth centres
(``"aligned-ffhq-<margin>"``), or a square around the landmark box (``"landmark-box-square-<scale>"``); black
outside the frame, ``crop_size`` × ``crop_size``. ``mien prepare`` also smooths the crop transform over time;
single-frame crops here are not smoothed.

Main entry points:

* :class:`TokenExtractor` — ``.crop(image, bbox, landmarks)`` and ``extractor(crops) -> (B, D)`` tokens; the interface
  of :class:`mien.pipelines.face_models.ExpressionModel`, for ``mien analyze --tokenizer``.
* :func:`iter_face_crops` — stream (frame, crop, box) over a video, face boxes from :func:`mien.analyze`.
* :func:`video_tokens` — the (N, D) tokens of a video's frames that have a face.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np

from mien.errors import InputError
from mien.face.crops import face_crop

TOKEN_COLUMN = "expression_token"


def load_tokenizer(path: str | os.PathLike, device: str = "cpu"):
    """Load an exported expression tokenizer (eval mode) from a ``config.json + model.safetensors`` folder.

    Returns:
        :class:`mien.models.tokenizer.ExpressionTokenizer` on ``device``.

    Raises:
        InputError: ``path`` is not a folder holding a tokenizer export (missing files, a predictor export,
            not a mien export); the message names the path.
    """
    from mien.models.tokenizer import ExpressionTokenizer, load_pretrained

    p = str(path)
    if not os.path.isdir(p):
        raise InputError(p, "no such tokenizer folder (expected config.json + model.safetensors)")
    try:
        model = load_pretrained(p, device=device)
    except FileNotFoundError as e:
        raise InputError(p, f"not a tokenizer export ({os.path.basename(str(e).split(' ')[0])} missing)") from None
    except Exception as e:  # corrupt JSON/safetensors, wrong tensor shapes: SafetensorError, RuntimeError, …
        raise InputError(p, f"not a loadable tokenizer export ({str(e).splitlines()[0][:200]})") from None
    if not isinstance(model, ExpressionTokenizer):
        raise InputError(p, f"is a {type(model).__name__} export, not an expression tokenizer")
    return model


class TokenExtractor:
    """Batched expression tokens of face crops with an exported expression tokenizer.

    Mirrors :class:`mien.pipelines.face_models.ExpressionModel`: ``crop`` one face per call, then run the
    network on a stack of crops.

    Args:
        path: exported tokenizer folder (``config.json + model.safetensors``), or an already built
            :class:`~mien.models.tokenizer.ExpressionTokenizer` (used as is, put in eval mode).
        device: torch device string ("cpu", "cuda").
        subject_id: subject-embedding index used to encode faces when the model has subject embeddings
            (``config.max_subjects > 0``; the expression transformer attends to it); ignored by
            subject-invariant models. Unknown people have no own index: 0 is the default.
        batch_size: most crops per forward pass (larger inputs are split; results are identical).

    Attributes:
        name: "mien-tokenizer:<folder name>" (for ``meta["models"]``).
        files: paths of ``config.json`` and ``model.safetensors`` (empty for an in-memory model).
        input_size: crop side S in pixels (the model's ``config.crop_size``).
        dim: token size D.
        crop_contract: how faces are cut (:func:`mien.face.crops.parse_crop_contract`), from the model's config.
        max_subjects: size of the subject-embedding table (0 = subject-invariant).
        model: the :class:`~mien.models.tokenizer.ExpressionTokenizer`.

    Raises:
        InputError: ``path`` is not a tokenizer export.
        ValueError: ``subject_id`` out of range, or a crop contract other than a square landmark box.
    """

    def __init__(self, path, device: str = "cpu", subject_id: int = 0, batch_size: int = 32):
        import torch

        from mien.models.tokenizer import ExpressionTokenizer

        self._torch = torch
        self.device = device
        if isinstance(path, ExpressionTokenizer):
            self.model = path.to(device).eval()
            self.name, self.files = "mien-tokenizer:<in-memory>", ()
        else:
            self.model = load_tokenizer(path, device)
            p = os.path.abspath(str(path))
            self.name = f"mien-tokenizer:{os.path.basename(p.rstrip(os.sep))}"
            self.files = (os.path.join(p, "config.json"), os.path.join(p, "model.safetensors"))
        cfg = self.model.config
        self.input_size = int(cfg.crop_size)
        self.dim = int(cfg.dim)
        self.max_subjects = int(cfg.max_subjects)
        self.crop_contract = self.model.contract.crop
        self.batch_size = max(int(batch_size), 1)
        self.subject_id = self.check_subject(subject_id)

    # ---- crops ---------------------------------------------------------------------------------------------
    def crop(self, image: np.ndarray, bbox: np.ndarray | None, landmarks: np.ndarray | None = None) -> np.ndarray:
        """(S, S, 3) uint8 RGB crop of one face, cut as the model's contract says (:func:`mien.face.crops.face_crop`).

        Args:
            image: (H, W, 3) uint8 RGB; bbox: (4,) x0, y0, x1, y1 px; landmarks: (478, 2|3) px (aligned crops).

        Raises:
            ValueError: the contract needs landmarks (or a box) that were not given.
        """
        return face_crop(image, self.crop_contract, self.input_size, bbox, landmarks)

    def check_subject(self, subject_id: int | None, what: str = "subject id") -> int | None:
        """Validate a subject-embedding index for this model.

        Returns:
            the id as int, or None for a subject-invariant model (where ``subject_id`` is ignored).

        Raises:
            ValueError: out of range for a model with subject embeddings.
        """
        if self.max_subjects <= 0:
            return None
        sid = 0 if subject_id is None else int(subject_id)
        if not 0 <= sid < self.max_subjects:
            raise ValueError(f"{what} {sid} out of range: this tokenizer has {self.max_subjects} subject "
                             f"embeddings (0..{self.max_subjects - 1})")
        return sid

    def _ids(self, n: int, subject_id: int | None):
        if self.max_subjects <= 0:
            return None
        return self._torch.full((n,), subject_id, dtype=self._torch.long, device=self.device)

    def _to_input(self, crops: np.ndarray):
        crops = np.asarray(crops)
        if crops.ndim != 4 or crops.shape[1:] != (self.input_size, self.input_size, 3):
            raise ValueError(f"expected crops (B, {self.input_size}, {self.input_size}, 3) uint8, got "
                             f"{crops.shape}")
        x = self._torch.from_numpy(np.ascontiguousarray(crops, dtype=np.uint8)).to(self.device)
        return x.permute(0, 3, 1, 2).float().div_(255.0)

    # ---- network -------------------------------------------------------------------------------------------
    def __call__(self, crops: np.ndarray) -> np.ndarray:
        """Expression tokens of crops.

        Args:
            crops: uint8 (B, S, S, 3) RGB crops from :meth:`crop` (B may be 0).

        Returns:
            float32 (B, D) tokens with unit L2 norm.

        Raises:
            ValueError: wrong crop shape.
        """
        if len(crops) == 0:
            return np.zeros((0, self.dim), np.float32)
        out = []
        with self._torch.inference_mode():
            for i in range(0, len(crops), self.batch_size):
                x = self._to_input(crops[i:i + self.batch_size])
                out.append(self.model.encode(x, self._ids(x.shape[0], self.subject_id)).float().cpu().numpy())
        return np.concatenate(out).astype(np.float32, copy=False)

    def decode(self, tokens: np.ndarray, subject_id: int | None = None) -> np.ndarray:
        """Faces rendered from tokens with a subject embedding (another subject's = identity swap).

        Args:
            tokens: float (B, D).
            subject_id: subject-embedding index (default: the extractor's ``subject_id``); ignored by
                subject-invariant models.

        Returns:
            uint8 (B, S, S, 3) RGB.

        Raises:
            ValueError: wrong token size or subject id out of range.
        """
        sid = self.subject_id if subject_id is None else self.check_subject(subject_id)
        tokens = np.asarray(tokens, np.float32)
        if tokens.ndim != 2 or tokens.shape[1] != self.dim:
            raise ValueError(f"expected tokens (B, {self.dim}), got {tokens.shape}")
        if len(tokens) == 0:
            return np.zeros((0, self.input_size, self.input_size, 3), np.uint8)
        out = []
        with self._torch.inference_mode():
            for i in range(0, len(tokens), self.batch_size):
                z = self._torch.from_numpy(tokens[i:i + self.batch_size]).to(self.device)
                img = self.model.decode(z, self._ids(z.shape[0], sid))
                out.append(_to_uint8(img))
        return np.concatenate(out)

    def reconstruct(self, crops: np.ndarray, target_subject: int | None = None) -> tuple[np.ndarray, np.ndarray]:
        """Encode crops (with ``subject_id``) and decode them (with ``target_subject``, default the same).

        Args:
            crops: uint8 (B, S, S, 3).
            target_subject: subject-embedding index for the decoder (identity swap when it differs).

        Returns:
            tokens float32 (B, D) unit norm, faces uint8 (B, S, S, 3) RGB.
        """
        tgt = self.subject_id if target_subject is None else self.check_subject(target_subject, "target subject")
        if len(crops) == 0:
            return (np.zeros((0, self.dim), np.float32),
                    np.zeros((0, self.input_size, self.input_size, 3), np.uint8))
        toks, imgs = [], []
        with self._torch.inference_mode():
            for i in range(0, len(crops), self.batch_size):
                x = self._to_input(crops[i:i + self.batch_size])
                z = self.model.encode(x, self._ids(x.shape[0], self.subject_id))
                imgs.append(_to_uint8(self.model.decode(z, self._ids(x.shape[0], tgt))))
                toks.append(z.float().cpu().numpy())
        return np.concatenate(toks).astype(np.float32, copy=False), np.concatenate(imgs)

    def column_meta(self) -> dict:
        """``meta["extra_columns"]`` entry for the ``expression_token`` column."""
        return {"unit": "", "description": (
            f"({self.dim},) unit-norm expression token of the {self.input_size}-px face crop "
            f"({self.name}, subject id {self.subject_id})")}


def _to_uint8(img) -> np.ndarray:
    """float (B, 3, S, S) in [0, 1] torch tensor → uint8 (B, S, S, 3) numpy."""
    return (img.float().clamp(0, 1).mul(255).round().byte().permute(0, 2, 3, 1).cpu().numpy())


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
                  every: int = 1, device: str = "cpu"):
    """Face boxes of a video: :func:`mien.analyze` with the given window and stride (no neural extras).

    Raises:
        InputError: unreadable video.
    """
    import mien

    return mien.analyze(video, start=start, end=end, every=every, device=device, identity=False)


def resolve_analysis(video: str | os.PathLike, analysis=None, start: float | None = None, end: float | None = None,
                     every: int = 1, device: str = "cpu"):
    """The :class:`~mien.AnalysisResult` giving the face boxes of ``video``: ``analysis`` itself, the Parquet
    file it names (``mien analyze`` output, read with :func:`mien.read_results`), or a fresh
    :func:`analyze_video` when None.

    A given analysis must be of the same video; its ``frame`` indices are decoded-frame indices, so one
    made with another window or stride still lines up (processed frames it lacks count as frames without
    a face).

    Raises:
        InputError: unreadable video or results file; a results file of a different source size.
    """
    if analysis is None:
        return analyze_video(video, start, end, every, device)
    if isinstance(analysis, (str, os.PathLike)):
        import mien

        path = str(analysis)
        analysis = mien.read_results(path)
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
                      *, subject: int = 0, start: float | None = None, end: float | None = None, every: int = 1,
                      device: str = "cpu", tokens_out: str | os.PathLike | None = None,
                      analysis=None) -> dict:
    """Token plot of a video (:func:`mien.viz.tokens.plot_tokens`): cosine similarity to a reference frame
    over time and the 2-D PCA of the tokens.

    Args:
        video: input video; tokenizer: exported tokenizer folder or a :class:`TokenExtractor`.
        output: PNG path (written atomically).
        reference_frame: decoded frame index of the reference; when that frame has no face (or is not
            processed), the nearest processed frame with a face is used (reported as ``reference_frame``).
        subject: subject-embedding index used to encode; start, end, every: window (s) and stride.
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


__all__ = ["TOKEN_COLUMN", "FaceFrame", "TokenExtractor", "VideoTokens", "analyze_video",
           "first_faces", "iter_face_crops", "load_tokenizer", "plot_video_tokens", "reference_row",
           "resolve_analysis",
           "video_tokens"]
