"""The main job: frames → faces → per-(frame, face) records (:class:`~mien.results.result.AnalysisResult`).

:func:`analyze` opens a source and feeds its frames to a :class:`~mien.pipelines.frame_analyzer.FrameAnalyzer`
(landmarks, tracking, pose, gaze, heads); :func:`mien.pipelines.batch.analyze_files` runs it over many inputs
(in parallel) into a results dataset.

The per-frame callback contract of every long pipeline is :func:`analyze`'s ``on_frame(frame, state) -> bool |
None``; a job of several passes (the renders, ``mien react``) gives as ``state`` the :class:`Step` the frame belongs
to, through a :class:`StepCallback`.
"""

from __future__ import annotations

import dataclasses
import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from mien.io.video import Frame, ImageSource, VideoSource, WebcamSource, open_source
from mien.pipelines.frame_analyzer import FrameAnalyzer
from mien.results.result import AnalysisResult

__all__ = ["AnalyzeOptions", "FrameAnalyzer", "Step", "StepCallback", "analyze", "analyze_source"]


@dataclass(frozen=True)
class Step:
    """The step of a job of several passes that calls ``on_frame(frame, step)`` (the per-frame callback contract of
    :func:`analyze`, with this as its second argument).

    The steps of the renders (:func:`~mien.pipelines.render.render_video`,
    :func:`~mien.pipelines.face3d.render_face3d`, :func:`~mien.pipelines.face3d_transfer.expression_transfer`):
    "analysis" ("source" and "target" for the expression transfer: each processed frame of that input), then
    "render" (each output frame, given with the input frame it shows); a render given an earlier analysis has only
    "render". Of :func:`~mien.pipelines.react.react_to_files`: "speaker" (the speaker's analysed frames), "video<i>"
    (reaction i's mesh video) and "portrait<i>" (reaction i on the listener portrait), rendered frame k given at the
    speaker time start + k / fps s, so every step runs over the same time window.

    Attributes:
        name: the step. index: its 0-based position. count: steps of the run.
    """

    name: str
    index: int = 0
    count: int = 1


class StepCallback:
    """``on_frame`` bound to one :class:`Step`, as a pipeline's callback ``f(frame, state)`` (``state`` is
    ignored): calls ``on_frame(frame, step)`` with the frame's time shifted by ``t0`` s, and records the frames seen
    (``frames``; ``t_sec``: the last one's time as given to ``on_frame``, s) and whether it returned True
    (``stopped``; then :attr:`limit` is the frame count a later pass may render).

    Args:
        on_frame: the user's callback, or None (then the object only counts).
        step: the step.
        t0: seconds added to each frame's ``t_sec`` (a rendered frame k at ``t0 + k / fps``: the input's time axis).
    """

    def __init__(self, on_frame: Callable | None, step: Step, t0: float = 0.0):
        self.on_frame, self.step, self.t0 = on_frame, step, float(t0)
        self.frames = 0
        self.t_sec: float | None = None
        self.stopped = False

    def __call__(self, frame: Frame, _state=None) -> bool:
        if self.t0:
            frame = Frame(frame.index, self.t0 + frame.t_sec, frame.image)
        self.frames += 1
        self.t_sec = float(frame.t_sec)
        self.stopped = self.on_frame is not None and self.on_frame(frame, self.step) is True
        return self.stopped

    @property
    def limit(self) -> int | None:
        """Frames a later pass over the same input may take: the frames this step saw when ``on_frame`` stopped it
        (a stopped analysis renders only the frames it saw), else None (no limit)."""
        return self.frames if self.stopped else None


@dataclass
class AnalyzeOptions:
    """Options of :func:`analyze` (the CLI flags of ``mien analyze`` map one to one).

    Attributes:
        every: process every N-th frame.
        start, end: time window in seconds (None: whole video).
        max_faces: most faces per frame.
        detector: MediaPipe face detector: "auto" (default: short-range for videos and webcams, where faces
            are near the camera and it gives fewer false positives; full-range for still images, which also
            finds small faces in group photos), "short" or "full".
        min_detection_confidence: detector score threshold in [0, 1].
        min_tracking_confidence: face-presence threshold in [0, 1] for keeping a tracked face.
        focal_px: camera focal length in pixels for head pose (None: frame width).
        max_side: frames whose longer side exceeds this many pixels are downscaled (area averaging) for
            MediaPipe, whose detector does not anti-alias; results stay in source pixels.
        emotion: add per-face emotion probabilities (``emotion_<label>`` columns) and the 256-d
            ``expression_embedding`` (face-api FaceExpressionNet on a 112-px face crop). Off by default: it
            costs ~7–13 ms per face on a 2-core CPU (see docs/benchmarks.md). Needs the ``models`` extra.
        au: add Action Unit occurrence probabilities, one column per AU the model supports (``AU01``,
            ``AU02``, … FACS names), from mien's default AU model (trained on posed CK+ FACS labels; see
            ``mien/assets/au/PROVENANCE.md``) on the face-api expression embedding + aligned face mesh.
            Needs the ``models`` extra; costs like ``emotion``.
        au_baseline: person-specific normalisation of the AU features, as OpenFace does offline: each
            track's median feature vector is taken as its neutral face and replaced by the training
            population's mean before classification. Use on videos long enough to contain neutral moments.
            Feature AU models only (default or a safetensors folder).
        au_model: an AU model used instead of the default one: an ONNX file made by ``mien export au``
            (its crops follow the contract stored in the file; runs in onnxruntime, no PyTorch needed), or a
            folder written by :func:`mien.models.au.save_au_head`. A training checkpoint (.ckpt) is refused:
            convert it with ``mien export au --checkpoint X.ckpt -o X.onnx``.
        tokenizer: folder of an exported expression tokenizer (``mien export tokenizer``): adds the
            per-face ``expression_token`` column (D,), unit norm, encoded with subject 0's embedding.
        face3d: fit a parametric 3-D face to each face's landmarks (:mod:`mien.heads.face3d`, no network):
            per-row ``face3d_shape`` (S,) identity (one per track), ``face3d_expression`` (E,), ``face3d_jaw``
            (3,) rad, ``face3d_eyelids`` (2,), ``face3d_rotation`` (3, 3), ``face3d_scale`` px per model unit,
            ``face3d_translation`` (3,) px and ``face3d_residual`` px. Needs the ``models`` extra (PyTorch).
        face3d_model: the face model of ``face3d``: None (default) the shipped ``mien-face`` (MediaPipe
            topology, 478 vertices, cm); a ``.npz`` made by ``mien train face-model``; or
            ``flame:/path/generic_model.pkl`` for a FLAME 2020 file the user downloaded (never shipped; its
            ``mediapipe_landmark_embedding.npz`` next to it, or ``flame:MODEL.pkl,EMBEDDING.npz``).
        face3d_encoder: regress the ``face3d`` columns from each face's crop with a learned SMIRK/TEASER encoder
            (a ``mien export face3d`` folder; :mod:`mien.heads.face3d_learned`) instead of fitting them to the
            landmarks: the same columns (``face3d_shape`` per frame) plus ``face3d_camera`` (3,), the encoder's
            crop camera. Needs ``face3d``; not with ``face3d_model`` (the export names its face model).
        face3d_smooth: One Euro-filter the ``face3d`` expression, jaw, eyelid coefficients and pose over time
            per track (:data:`mien.heads.face3d.FACE3D_SMOOTHING`, recorded in ``meta["face3d"]``); removes
            frame-to-frame mesh jitter on still faces. Independent of ``smooth``.
        identity: re-identify a face that leaves and comes back with face-api FaceRecognitionNet descriptors
            (computed once per new track), so it keeps its ``face_id``; mean descriptors per id go in
            ``meta["identity"]``. None (default): on when PyTorch (the ``models`` extra) is installed.
        smooth: One Euro-filter (Casiez et al. 2012) landmarks, head pose and gaze over time per track
            (parameters in :data:`mien.face.smoothing.SMOOTHING`, recorded in ``meta["smoothing"]``); removes
            landmark jitter on still faces with little lag on movement. Eye ratios, mouth openness, blinks,
            boxes and the neural heads use the unsmoothed landmarks. Off by default.
        backend: what runs the face-api expression network: "auto" (onnxruntime when installed, ~2× faster on
            a CPU; exported once from the shipped weights, parity-checked and cached, see
            :mod:`mien.heads.backends`; values equal PyTorch's to ~1e-5), "torch" or "onnxruntime".
        batch_size: faces per batch of the neural heads (crops are collected across frames).
        threads: intra-op threads of the neural heads (PyTorch, set for the time of the analysis, and
            onnxruntime); None: half the CPU cores, at most ``$OMP_NUM_THREADS``
            (:func:`mien.heads.backends.head_threads`: the heads run alongside MediaPipe).
        device: device for neural models that run in PyTorch ("cpu", "cuda"); MediaPipe always runs on CPU.
        progress: show a progress bar.
    """

    every: int = field(default=1, metadata={"metavar": "N"})
    start: float | None = field(default=None, metadata={"metavar": "SEC"})
    end: float | None = field(default=None, metadata={"metavar": "SEC"})
    max_faces: int = field(default=1, metadata={"metavar": "N"})
    detector: str = field(default="auto", metadata={"choices": ("auto", "short", "full")})
    min_detection_confidence: float = 0.5
    min_tracking_confidence: float = 0.5
    focal_px: float | None = None
    max_side: int = field(default=800, metadata={"metavar": "PX"})
    emotion: bool = False
    au: bool = False
    au_baseline: bool = False
    au_model: str | None = field(default=None, metadata={"metavar": "PATH"})
    tokenizer: str | None = field(default=None, metadata={"metavar": "PATH"})
    face3d: bool = False
    face3d_model: str | None = None
    face3d_encoder: str | None = field(default=None, metadata={"metavar": "DIR"})
    face3d_smooth: bool = False
    identity: bool | None = field(default=None, metadata={"flag": "--reid"})
    smooth: bool = False
    backend: str = "auto"
    batch_size: int = 32
    threads: int | None = None
    device: str = "cpu"
    progress: bool = field(default=False, metadata={"cli": False})  # set by the command from the terminal

    def __post_init__(self) -> None:
        if self.au_model is not None:
            from mien.heads.au import refuse_checkpoint

            self.au_model = os.fspath(self.au_model)
            refuse_checkpoint(self.au_model)
            if self.au_baseline and not os.path.isdir(self.au_model):
                raise ValueError("au_baseline works with the default AU model only, not with au_model")
        if self.face3d_model is not None:
            self.face3d_model = os.fspath(self.face3d_model)
            if not self.face3d:
                raise ValueError("face3d_model needs face3d (--face3d)")
            from mien.models.face3d.spec import check_face_model_spec

            check_face_model_spec(self.face3d_model)
        if self.face3d_encoder is not None:
            self.face3d_encoder = os.fspath(self.face3d_encoder)
            if not self.face3d:
                raise ValueError("face3d_encoder needs face3d (--face3d)")
            if self.face3d_model is not None:
                raise ValueError("face3d_encoder and face3d_model exclude each other (the export names its model)")
        if self.every < 1:
            raise ValueError(f"every must be >= 1, got {self.every}")
        if self.max_faces < 1:
            raise ValueError(f"max_faces must be >= 1, got {self.max_faces}")
        if self.threads is not None and self.threads < 1:
            raise ValueError(f"threads must be >= 1, got {self.threads}")
        if self.batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {self.batch_size}")
        if self.backend not in ("auto", "torch", "onnxruntime"):
            raise ValueError(f"backend must be 'auto', 'torch' or 'onnxruntime', got {self.backend!r}")


def analyze(source: str | os.PathLike, options: AnalyzeOptions | None = None, *,
            on_frame: Callable[[Frame, FrameAnalyzer], bool | None] | None = None,
            **kwargs) -> AnalysisResult:
    """Analyse every face in a video, image or webcam stream.

    Per frame and face: face box, track id, 478 landmarks with iris (MediaPipe), head pose by PnP against
    the MediaPipe canonical face, per-eye and combined gaze, eye aspect ratios, mouth openness; blinks per
    track afterwards. Video is decoded as a stream; timestamps come from the container's presentation times.

    Args:
        source: video file, image file, or ``"webcam:N"``.
        options: :class:`AnalyzeOptions`; keyword arguments override its fields (``analyze(p, every=2)``).
        on_frame: called after each processed frame with the frame and the :class:`FrameAnalyzer` (whose
            ``rows`` hold the faces found so far; used by the webcam preview); return True to stop.

    Returns:
        :class:`~mien.AnalysisResult` with one row per (frame, face); ``meta`` holds source properties,
        frame counts (processed, decoded, corrupt), model names and file hashes, and the options.

    Raises:
        InputError: missing, empty, truncated or unreadable input (message names the file and reason).
        ValueError: invalid options.
    """
    options = dataclasses.replace(options or AnalyzeOptions(), **kwargs)
    src = open_source(source, start=options.start, end=options.end, every=options.every)
    return analyze_source(src, options, on_frame=on_frame)


def analyze_source(src: VideoSource | ImageSource | WebcamSource, options: AnalyzeOptions,
                   on_frame: Callable | None = None) -> AnalysisResult:
    """:func:`analyze` on an already opened frame source."""
    info = src.info
    fa = FrameAnalyzer(info.width, info.height, options, static=isinstance(src, ImageSource))
    bar = None
    if options.progress and info.kind == "video":
        from tqdm import tqdm

        total = None
        if info.duration_sec and info.fps:
            span = (options.end if options.end is not None else info.duration_sec) - (options.start or 0.0)
            total = max(int(span * info.fps / options.every), 1)
        bar = tqdm(total=total, unit="frame", desc=os.path.basename(info.path), leave=False, dynamic_ncols=True)
    processed = 0
    t0 = time.perf_counter()
    try:
        for frame in src:
            fa.process(frame)
            processed += 1
            if bar is not None:
                bar.update(1)
            if on_frame is not None and on_frame(frame, fa) is True:
                if isinstance(src, WebcamSource):
                    src.stop()
                break
    finally:
        fa.close()
        if bar is not None:
            bar.close()
    elapsed = time.perf_counter() - t0
    meta = {
        "source": info.path, "source_kind": info.kind, "width": info.width, "height": info.height,
        "fps": info.fps, "duration_sec": info.duration_sec, "codec": info.codec,
        "rotation_deg": info.rotation_deg, "mirrored": info.mirrored,
        "frames_processed": processed, "frames_decoded": src.frames_decoded,
        "corrupt_frames": src.corrupt_frames, "landmark_scheme": "mediapipe478",
        "camera": {"focal_px": float(fa.pose.K[0, 0]), "cx": float(fa.pose.K[0, 2]), "cy": float(fa.pose.K[1, 2])},
        "models": fa.model_meta(),
        "options": dataclasses.asdict(options) | {"progress": False},
        "elapsed_sec": round(elapsed, 3),
    }
    return fa.result(meta)
