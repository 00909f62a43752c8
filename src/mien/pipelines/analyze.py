"""The main job: frames → faces → per-(frame, face) records (:class:`~mien.results.result.AnalysisResult`).

Per frame: MediaPipe landmarks, tracking (+ re-identification), head pose and gaze; per face the crops the
heads' contracts ask for are collected and the heads (:mod:`mien.heads`) run on batches across faces and
frames. After the last frame: blinks per track, the heads' per-track post-steps, optional One Euro smoothing.
"""

from __future__ import annotations

import dataclasses
import os
import time
from collections.abc import Callable
from dataclasses import dataclass
from importlib import resources

import numpy as np

from mien.face.blink import detect_blinks
from mien.face.geometry import (
    HeadPoseEstimator,
    direction_to_angles,
    eye_aspect_ratio,
    gaze_directions,
    mouth_openness,
    rotation_to_euler,
)
from mien.face.landmarker import MediaPipeFaceMesh
from mien.face.tracking import IoUTracker
from mien.heads import build_heads, column_meta, empty_columns
from mien.heads.base import file_info, torch_available
from mien.heads.faceapi import ReIdentifier
from mien.io.video import Frame, ImageSource, VideoSource, WebcamSource, open_source
from mien.results.result import COLUMN_SPECS, AnalysisResult

GAZE_MIN_EAR = 0.15
"""Gaze is reported (``gaze_valid``) only where the mean eye aspect ratio of both eyes is at least this. Below it
the lids cover most of the iris (open eyes give ~0.25–0.35, a blink's closed frames < 0.1, :mod:`mien.face.blink`
uses the same scale), so MediaPipe's iris landmarks, and the gaze from them, are guesses: on the demo clip the
gaze swings ±20° while the subject laughs with eyes shut."""
GAZE_COLUMNS = ("gaze_yaw_deg", "gaze_pitch_deg", "gaze_left_yaw_deg", "gaze_left_pitch_deg",
                "gaze_right_yaw_deg", "gaze_right_pitch_deg")
POSE_COLUMNS = ("pitch_deg", "yaw_deg", "roll_deg", "tx_mm", "ty_mm", "tz_mm")


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
        identity: re-identify a face that leaves and comes back with face-api FaceRecognitionNet descriptors
            (computed once per new track), so it keeps its ``face_id``; mean descriptors per id go in
            ``meta["identity"]``. None (default): on when PyTorch (the ``models`` extra) is installed.
        smooth: One Euro-filter (Casiez et al. 2012) landmarks, head pose and gaze over time per track
            (parameters in :data:`mien.face.smoothing.SMOOTHING`, recorded in ``meta["smoothing"]``); removes
            landmark jitter on still faces with little lag on movement. Eye ratios, mouth openness, blinks,
            boxes and the neural heads use the unsmoothed landmarks. Off by default.
        backend: what runs the face-api networks: "auto" (PyTorch: onnxruntime's last-bit differences would
            change rounded outputs), "torch" or "onnxruntime" (~2× faster on CPU; exported once from the
            shipped weights and cached, see :mod:`mien.heads.backends`).
        batch_size: faces per batch of the neural heads (crops are collected across frames).
        device: device for neural models that run in PyTorch ("cpu", "cuda"); MediaPipe always runs on CPU.
        progress: show a progress bar.
    """

    every: int = 1
    start: float | None = None
    end: float | None = None
    max_faces: int = 1
    detector: str = "auto"
    min_detection_confidence: float = 0.5
    min_tracking_confidence: float = 0.5
    focal_px: float | None = None
    max_side: int = 800
    emotion: bool = False
    au: bool = False
    au_baseline: bool = False
    au_model: str | None = None
    tokenizer: str | None = None
    identity: bool | None = None
    smooth: bool = False
    backend: str = "auto"
    batch_size: int = 32
    device: str = "cpu"
    progress: bool = False

    def __post_init__(self) -> None:
        if self.au_model is not None:
            from mien.heads.au import refuse_checkpoint

            self.au_model = os.fspath(self.au_model)
            refuse_checkpoint(self.au_model)
            if self.au_baseline and not os.path.isdir(self.au_model):
                raise ValueError("au_baseline works with the default AU model only, not with au_model")
        if self.every < 1:
            raise ValueError(f"every must be >= 1, got {self.every}")
        if self.max_faces < 1:
            raise ValueError(f"max_faces must be >= 1, got {self.max_faces}")
        if self.batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {self.batch_size}")
        if self.backend not in ("auto", "torch", "onnxruntime"):
            raise ValueError(f"backend must be 'auto', 'torch' or 'onnxruntime', got {self.backend!r}")


def _model_meta(fa: FrameAnalyzer) -> dict:
    models = {k: file_info(fa.mesh.name, p) for k, p in fa.mesh.model_files.items()}
    for head in fa.heads:
        models[head.name] = head.model_info()
    if fa.reid.head is not None:
        models["identity"] = fa.reid.head.model_info()
    canon = resources.files("mien.assets").joinpath("canonical_face_model.npy")
    with resources.as_file(canon) as p:
        models["head_pose_model"] = file_info("mediapipe-canonical-face", p)
    return models


class FrameAnalyzer:
    """Per-frame analysis state: landmarker, tracker, pose estimator and heads for one source.

    Args:
        width, height: frame size in pixels.
        options: :class:`AnalyzeOptions`.
        static: treat frames as unrelated images.

    Attributes:
        heads: the :class:`~mien.heads.base.Head` list of the options (:func:`mien.heads.build_heads`).
        rows: the per-face core values collected so far (lists by column).
    """

    def __init__(self, width: int, height: int, options: AnalyzeOptions, static: bool = False):
        self.options = options
        self.static = static
        self.heads = build_heads(options)
        use_identity = options.identity if options.identity is not None else torch_available()
        if use_identity and not torch_available():
            raise ValueError("--reid: needs PyTorch, which is not installed (pip install \"mien[models]\")")
        identity = None
        if use_identity:
            from mien.heads.faceapi import IdentityHead

            identity = IdentityHead(options.device, "torch" if options.backend == "auto" else options.backend)
        self.reid = ReIdentifier(identity)
        detector = options.detector if options.detector != "auto" else ("full" if static else "short")
        self.mesh = MediaPipeFaceMesh(options.max_faces, static_image_mode=static, detector=detector,
                                      min_detection_confidence=options.min_detection_confidence,
                                      min_tracking_confidence=options.min_tracking_confidence,
                                      max_side=options.max_side)
        self.tracker = IoUTracker()
        self.pose = HeadPoseEstimator(width, height, options.focal_px)
        # one crop per face and distinct contract, shared by the heads with that contract
        self._contracts = {h.contract.key: h.contract for h in self.heads if h.contract is not None}
        self._crops: dict[tuple, list[np.ndarray]] = {k: [] for k in self._contracts}
        self._landmarks: list[np.ndarray] = []
        self._out: list = []  # per flushed batch: the {column: array} of the heads, or its Future
        self._pool = None
        if self.heads and not static:
            from concurrent.futures import ThreadPoolExecutor

            # the heads run in one worker thread while MediaPipe finds the next frames' faces (both release the
            # GIL); batches are the same as when run inline, so outputs are identical
            self._pool = ThreadPoolExecutor(1, thread_name_prefix="mien-heads")
        self._conf: dict[int, float] = {}
        self.rows: dict[str, list] = {k: [] for k in (
            "frame", "t_sec", "face_id", "confidence", "bbox", "landmarks", "euler", "t_mm", "gaze")}

    def _padded_retry(self, image: np.ndarray) -> list:
        """Still images that are tight face crops (the face fills the frame) defeat MediaPipe's detector; retry
        on the image framed by a black border of half its size and map the landmarks back."""
        h, w = image.shape[:2]
        pad = max(h, w) // 2
        padded = np.pad(image, ((pad, pad), (pad, pad), (0, 0)))
        faces = self.mesh.process(padded)
        for f in faces:
            f.landmarks[:, :2] -= pad
            f.bbox -= pad
        return faces

    def _run_heads(self, crops: dict[tuple, np.ndarray], lm: np.ndarray) -> dict[str, np.ndarray]:
        produced: dict[str, np.ndarray] = {}
        for head in self.heads:
            x = crops[head.contract.key] if head.contract is not None else None
            produced.update(head(x, lm, **{r: produced[r] for r in head.requires}))
        return produced

    def _flush(self) -> None:
        """Run the heads on the faces collected so far (one batch across faces and frames); in the worker
        thread for videos."""
        if not self._landmarks or not self.heads:
            return
        crops = {k: np.stack(v) for k, v in self._crops.items()}
        lm = np.stack(self._landmarks)
        if self._pool is not None:
            self._out.append(self._pool.submit(self._run_heads, crops, lm))
        else:
            self._out.append(self._run_heads(crops, lm))
        self._crops = {k: [] for k in self._contracts}
        self._landmarks = []

    def _head_outputs(self) -> dict[str, np.ndarray]:
        """The heads' columns of all rows so far, in processing order (waits for the worker)."""
        batches = [b.result() if hasattr(b, "result") else b for b in self._out]
        return {k: np.concatenate([b[k] for b in batches]) for k in (batches[0] if batches else {})}

    def process(self, frame: Frame) -> int:
        """Analyse one frame and append its rows; returns the number of faces found."""
        faces = self.mesh.process(frame.image)
        if not faces and self.static:
            faces = self._padded_retry(frame.image)
        if not faces:
            self.tracker.update(np.zeros((0, 4), np.float32))
            return 0
        boxes = np.stack([f.bbox for f in faces])
        track_ids = self.tracker.update(boxes)
        ids = self.reid.person_ids(frame.image, track_ids, boxes, self.tracker.live_ids)
        rows = self.rows
        for face, fid in zip(faces, ids, strict=True):
            if self.heads:
                for key, contract in self._contracts.items():
                    self._crops[key].append(contract.cut(frame.image, face.bbox, face.landmarks))
                self._landmarks.append(face.landmarks)
            if face.detection_score is not None:
                self._conf[fid] = face.detection_score
            R, t_mm = self.pose.estimate(face.landmarks)
            rows["frame"].append(frame.index)
            rows["t_sec"].append(frame.t_sec)
            rows["face_id"].append(fid)
            rows["confidence"].append(self._conf.get(fid, np.nan))
            rows["bbox"].append(face.bbox)
            rows["landmarks"].append(face.landmarks)
            rows["euler"].append(rotation_to_euler(R))
            rows["t_mm"].append(t_mm)
            rows["gaze"].append(gaze_directions(face.landmarks, R))
        if len(self._landmarks) >= self.options.batch_size:
            self._flush()
        if len(self._conf) > 64:  # forget ended tracks
            live = self.tracker.live_ids
            self._conf = {k: v for k, v in self._conf.items() if k in live}
        return len(faces)

    def result(self, meta: dict) -> AnalysisResult:
        """All rows so far as an :class:`AnalysisResult` (blinks detected per track, rows sorted)."""
        self._flush()
        r = self.rows
        n = len(r["frame"])
        meta = dict(meta)
        specs = [c for h in self.heads for c in h.columns()]
        meta["extra_columns"] = column_meta(specs)
        for h in self.heads:
            meta.update(h.meta())
        if self.reid.head is not None:
            meta["identity"] = {"model": self.reid.head.model_name, "descriptors": {
                str(k): v for k, v in self.reid.descriptors().items()}}
        if self.options.smooth:
            from mien.face.smoothing import smoothing_meta

            meta["smoothing"] = smoothing_meta()
        if n == 0:
            return AnalysisResult.from_columns({"frame": np.zeros(0, np.int64), **empty_columns(specs)}, meta=meta)
        cols = self._core_columns()
        cols.update(self._head_outputs())
        order = np.lexsort((cols["face_id"], cols["frame"]))
        cols = {k: v[order] for k, v in cols.items()}
        for fid in np.unique(cols["face_id"]):
            m = cols["face_id"] == fid
            cols["blink"][m] = detect_blinks(cols["t_sec"][m], (cols["ear_left"][m] + cols["ear_right"][m]) / 2)
        for h in self.heads:
            cols.update(h.finish(cols, cols["face_id"]))
        if self.options.smooth:
            from mien.face.smoothing import smooth_tracks

            smooth_tracks(cols, cols["face_id"], cols["t_sec"],
                          {"landmarks": ("landmarks",), "pose": POSE_COLUMNS, "gaze": GAZE_COLUMNS})
        core = {k: cols[k] for k in COLUMN_SPECS}
        extra = {c.name: cols[c.name] for c in specs}
        return AnalysisResult(**core, meta=meta, extra=extra)

    def _core_columns(self) -> dict[str, np.ndarray]:
        """The core columns of the rows in processing order (gaze NaN where the eyes are closed)."""
        r = self.rows
        lm = np.stack(r["landmarks"])
        euler = np.degrees(np.array(r["euler"]))
        gaze = np.array(r["gaze"])  # (N, 2 eyes [left, right], 3)
        per_eye = direction_to_angles(gaze)
        both = direction_to_angles(gaze.sum(1))
        ear = eye_aspect_ratio(lm)
        valid = ear.mean(1) >= GAZE_MIN_EAR
        t_mm = np.array(r["t_mm"])
        cols = dict(
            frame=np.array(r["frame"]), t_sec=np.array(r["t_sec"]), face_id=np.array(r["face_id"]),
            confidence=np.array(r["confidence"]), bbox=np.stack(r["bbox"]), landmarks=lm,
            pitch_deg=euler[:, 0], yaw_deg=euler[:, 1], roll_deg=euler[:, 2],
            tx_mm=t_mm[:, 0], ty_mm=t_mm[:, 1], tz_mm=t_mm[:, 2],
            gaze_yaw_deg=both[:, 0], gaze_pitch_deg=both[:, 1],
            gaze_left_yaw_deg=per_eye[:, 0, 0], gaze_left_pitch_deg=per_eye[:, 0, 1],
            gaze_right_yaw_deg=per_eye[:, 1, 0], gaze_right_pitch_deg=per_eye[:, 1, 1],
            gaze_valid=valid, ear_left=ear[:, 0], ear_right=ear[:, 1], mouth_open=mouth_openness(lm),
            blink=np.zeros(len(lm), bool),
        )
        for k in GAZE_COLUMNS:
            cols[k] = np.where(valid, cols[k], np.nan)
        return cols

    def close(self) -> None:
        """Release MediaPipe and the heads' worker thread (pending batches still finish)."""
        self.mesh.close()
        if self._pool is not None:
            self._flush()
            self._pool.shutdown(wait=True)
            self._pool = None


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
        "frames_processed": processed, "frames_decoded": src.frames_decoded,
        "corrupt_frames": src.corrupt_frames, "landmark_scheme": "mediapipe478",
        "camera": {"focal_px": float(fa.pose.K[0, 0]), "cx": float(fa.pose.K[0, 2]), "cy": float(fa.pose.K[1, 2])},
        "models": _model_meta(fa),
        "options": dataclasses.asdict(options) | {"progress": False},
        "elapsed_sec": round(elapsed, 3),
    }
    return fa.result(meta)


# ---------------------------------------------------------------------------------------------- batches
FORMAT_SUFFIX = {"parquet": ".parquet", "csv": ".csv", "openface": ".openface.csv"}


@dataclass
class BatchReport:
    """Outcome of :func:`analyze_files`.

    Attributes:
        ok: one dict per analysed input: input, outputs (paths), rows, faces, frames, seconds.
        skipped: inputs whose outputs already existed (resumed run), with their outputs.
        failed: one dict per bad input: input, reason.
        frames, seconds: totals over analysed inputs.
    """

    ok: list[dict] = dataclasses.field(default_factory=list)
    skipped: list[dict] = dataclasses.field(default_factory=list)
    failed: list[dict] = dataclasses.field(default_factory=list)
    frames: int = 0
    seconds: float = 0.0

    def to_json(self) -> str:
        import json

        return json.dumps(dataclasses.asdict(self), indent=2)


def output_paths(inputs: list[str], out_dir: str | os.PathLike, formats: tuple[str, ...], overlay: bool,
                 plot: bool) -> list[dict[str, str]]:
    """Output file paths per input: ``<out>/<stem><suffix>``; a stem shared by several inputs gets its
    parent folder's name prepended (``<parent>_<stem>``)."""
    from collections import Counter
    from pathlib import Path

    stems = [Path(s.replace(":", "")).stem for s in inputs]
    dup = Counter(stems)
    out = []
    for s, stem in zip(inputs, stems, strict=True):
        if dup[stem] > 1:
            stem = f"{Path(s).parent.name}_{stem}"
        d = {f: str(Path(out_dir) / f"{stem}{FORMAT_SUFFIX[f]}") for f in formats}
        if overlay:
            d["overlay"] = str(Path(out_dir) / f"{stem}.overlay.mp4")
        if plot:
            d["plot"] = str(Path(out_dir) / f"{stem}.plot.png")
        out.append(d)
    return out


def write_outputs(result: AnalysisResult, source: str, outputs: dict[str, str]) -> None:
    """Write each requested output of one analysed source (all atomically)."""
    from mien.viz import plot_timeseries, render_overlay

    for kind, path in outputs.items():
        if kind == "parquet":
            result.to_parquet(path)
        elif kind == "csv":
            result.to_csv(path)
        elif kind == "openface":
            result.to_openface(path)
        elif kind == "plot":
            plot_timeseries(result, path)
        elif kind == "overlay" and result.meta.get("source_kind") == "video":
            render_overlay(source, result, path)
        elif kind == "overlay":  # images: the annotated image as PNG next to the video overlays
            import PIL.Image

            from mien.io.atomic import atomic_output
            from mien.viz import draw_faces

            img = next(iter(open_source(source))).image
            with atomic_output(os.path.splitext(path)[0] + ".png") as tmp:
                PIL.Image.fromarray(draw_faces(img, result, np.arange(len(result)))).save(tmp, format="PNG")


def analyze_files(inputs: list[str], out_dir: str | os.PathLike, options: AnalyzeOptions | None = None,
                  formats: tuple[str, ...] = ("parquet",), overlay: bool = True, plot: bool = True,
                  overwrite: bool = False, log: Callable[[str], None] | None = None) -> BatchReport:
    """Analyse many inputs into ``out_dir``; bad inputs are skipped and reported, never fatal.

    Each input's outputs are written atomically once it is complete, so an interrupted batch restarted with
    the same arguments skips the inputs already done (unless ``overwrite``). ``<out_dir>/report.json``
    lists what was analysed, skipped and failed (with reasons).

    Args:
        inputs: media files (already expanded, see :func:`mien.io.video.expand_inputs`).
        out_dir: output folder (created).
        formats: any of "parquet", "csv", "openface".
        overlay: write ``<stem>.overlay.mp4`` (``.overlay.png`` for images).
        plot: write ``<stem>.plot.png``.
        log: called with one line per failed input.

    Returns:
        :class:`BatchReport`.
    """
    from mien.errors import InputError
    from mien.io.atomic import atomic_output

    options = options or AnalyzeOptions()
    unknown = set(formats) - set(FORMAT_SUFFIX)
    if unknown:
        raise ValueError(f"unknown output format(s) {sorted(unknown)}; choose from {sorted(FORMAT_SUFFIX)}")
    os.makedirs(out_dir, exist_ok=True)
    report = BatchReport()
    for src, outs in zip(inputs, output_paths(inputs, out_dir, formats, overlay, plot), strict=True):
        check = {k: (os.path.splitext(v)[0] + ".png" if k == "overlay" and _is_image(src) else v)
                 for k, v in outs.items()}
        if not overwrite and all(os.path.exists(p) for p in check.values()):
            report.skipped.append({"input": src, "outputs": check})
            continue
        t0 = time.perf_counter()
        try:
            res = analyze(src, options)
            write_outputs(res, src, outs)
        except InputError as e:
            report.failed.append({"input": src, "reason": e.reason})
            if log:
                log(str(e))
            continue
        dt = time.perf_counter() - t0
        n = int(res.meta["frames_processed"])
        report.ok.append({"input": src, "outputs": check, "rows": len(res),
                          "faces": int(len(np.unique(res.face_id))), "frames": n,
                          "corrupt_frames": int(res.meta["corrupt_frames"]), "seconds": round(dt, 3)})
        report.frames += n
        report.seconds += dt
    with atomic_output(os.path.join(out_dir, "report.json")) as tmp:
        tmp.write_text(report.to_json())
    return report


def _is_image(path: str) -> bool:
    from mien.io.video import IMAGE_SUFFIXES

    return os.path.splitext(path)[1].lower() in IMAGE_SUFFIXES
