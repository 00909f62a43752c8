"""The main job: frames → faces → per-(frame, face) records (:class:`~mien.AnalysisResult`)."""

from __future__ import annotations

import dataclasses
import os
import time
from collections.abc import Callable
from dataclasses import dataclass
from functools import lru_cache
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
from mien.io.hashing import sha256_file
from mien.io.video import Frame, ImageSource, VideoSource, WebcamSource, open_source
from mien.pipelines.face_models import EMOTIONS, ExpressionModel, IdentityModel, ReIdentifier
from mien.results.result import COLUMN_SPECS, AnalysisResult


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
        au_model: a checkpoint (.ckpt) or ONNX file made by ``mien train au`` / ``mien export au``, used
            instead of the default AU model (its crops follow the contract stored in the file).
        tokenizer: folder of an exported expression tokenizer (``mien export tokenizer``): adds the
            per-face ``expression_token`` column (D,), unit norm, encoded with subject 0's embedding.
        identity: re-identify a face that leaves and comes back with face-api FaceRecognitionNet descriptors
            (computed once per new track), so it keeps its ``face_id``; mean descriptors per id go in
            ``meta["identity"]``. None (default): on when PyTorch (the ``models`` extra) is installed.
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
    device: str = "cpu"
    progress: bool = False

    def __post_init__(self) -> None:
        if self.au_model and self.au_baseline:
            raise ValueError("au_baseline works with the default AU model only, not with au_model")
        if self.every < 1:
            raise ValueError(f"every must be >= 1, got {self.every}")
        if self.max_faces < 1:
            raise ValueError(f"max_faces must be >= 1, got {self.max_faces}")


def _torch_available() -> bool:
    import importlib.util

    return importlib.util.find_spec("torch") is not None and importlib.util.find_spec("safetensors") is not None


@lru_cache(maxsize=16)
def _sha256(path: str) -> str:
    return sha256_file(path)


def _model_meta(fa: FrameAnalyzer) -> dict:
    models = {k: {"name": fa.mesh.name, "file": os.path.basename(p), "sha256": _sha256(p)}
              for k, p in fa.mesh.model_files.items()}
    from mien.models.faceapi import EXPRESSION_WEIGHTS, RECOGNITION_WEIGHTS, asset_path

    for key, model, fname in (("expression", fa.expression, EXPRESSION_WEIGHTS),
                              ("identity", fa.reid.model, RECOGNITION_WEIGHTS)):
        if model is not None:
            p = str(asset_path(fname))
            models[key] = {"name": model.name, "file": fname, "sha256": _sha256(p)}
    if fa.custom_au is not None:
        models["au"] = {"name": "mien-au-trained", "file": os.path.basename(fa.options.au_model),
                        "sha256": _sha256(fa.options.au_model)}
    if fa.tokens is not None:
        models["tokenizer"] = {"name": fa.tokens.name, "files": {
            os.path.basename(f): _sha256(f) for f in fa.tokens.files}}
    canon = resources.files("mien.assets").joinpath("canonical_face_model.npy")
    with resources.as_file(canon) as p:
        models["head_pose_model"] = {"name": "mediapipe-canonical-face", "file": p.name, "sha256": _sha256(str(p))}
    return models


class FrameAnalyzer:
    """Per-frame analysis state: landmarker, tracker and pose estimator for one source.

    Args:
        width, height: frame size in pixels.
        options: :class:`AnalyzeOptions`.
        static: treat frames as unrelated images.
    """

    def __init__(self, width: int, height: int, options: AnalyzeOptions, static: bool = False):
        self.options = options
        self.static = static
        detector = options.detector if options.detector != "auto" else ("full" if static else "short")
        self.mesh = MediaPipeFaceMesh(options.max_faces, static_image_mode=static, detector=detector,
                                      min_detection_confidence=options.min_detection_confidence,
                                      min_tracking_confidence=options.min_tracking_confidence,
                                      max_side=options.max_side)
        self.tracker = IoUTracker()
        self.pose = HeadPoseEstimator(width, height, options.focal_px)
        needs = [name for name, on in (("--emotion", options.emotion), ("--au", options.au),
                                        ("--au-model", options.au_model), ("--tokenizer", options.tokenizer),
                                        ("--reid", options.identity)) if on]
        if needs and not _torch_available():
            raise ValueError(f"{', '.join(needs)}: needs PyTorch, which is not installed "
                             f"(pip install \"mien[models]\")")
        self.expression = ExpressionModel(options.device) if (options.emotion or options.au) else None
        self.tokens = None
        self._tok_crops: list[np.ndarray] = []
        self._tok_out: list[np.ndarray] = []
        if options.tokenizer:
            from mien.pipelines.tokens import TokenExtractor

            self.tokens = TokenExtractor(options.tokenizer, options.device)
        self.custom_au = None
        self._au_crops: list[np.ndarray] = []
        self._au_out: list[np.ndarray] = []
        self._au_int: list[np.ndarray] = []
        if options.au_model:
            from mien.tasks.au import load_au_model

            self.custom_au = load_au_model(options.au_model, options.device)
        self.au_model = None
        if options.au and not options.au_model:
            from mien.models.au import load_default_au_model

            self.au_model = load_default_au_model(options.device)
        use_identity = options.identity if options.identity is not None else _torch_available()
        self.reid = ReIdentifier(IdentityModel(options.device) if use_identity else None)
        self._conf: dict[int, float] = {}
        self._crops: list[np.ndarray] = []
        self._emotion: list[np.ndarray] = []
        self._embedding: list[np.ndarray] = []
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

    def _flush(self) -> None:
        """Run the expression net on the crops collected so far (batched for speed)."""
        if self.expression is not None and self._crops:
            probs, emb = self.expression(np.stack(self._crops))
            self._emotion.append(probs)
            self._embedding.append(emb)
            self._crops = []
        if self.custom_au is not None and self._au_crops:
            pred = self.custom_au.predict(np.stack(self._au_crops))
            self._au_out.append(pred["probs"])
            if "intensity" in pred:
                self._au_int.append(pred["intensity"])
            self._au_crops = []
        if self.tokens is not None and self._tok_crops:
            self._tok_out.append(self.tokens(np.stack(self._tok_crops)))
            self._tok_crops = []

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
            if self.expression is not None:
                self._crops.append(self.expression.crop(frame.image, face.bbox))
            if self.tokens is not None:
                self._tok_crops.append(self.tokens.crop(frame.image, face.bbox, face.landmarks))
            if self.custom_au is not None:
                self._au_crops.append(self.custom_au.crop_faces([frame.image], face.landmarks[None])[0])
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
        if max(len(self._crops), len(self._tok_crops), len(self._au_crops)) >= 32:
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
        extra_meta = {}
        if self.options.emotion:
            for label in EMOTIONS:
                extra_meta[f"emotion_{label}"] = {"unit": "probability", "description": (
                    f"probability of a {label} expression (face-api FaceExpressionNet, 7 classes sum to 1)")}
            extra_meta["expression_embedding"] = {"unit": "", "description": (
                "(256,) face-api FaceExpressionNet features of the 112-px face crop, non-negative")}
        if self.tokens is not None:
            from mien.pipelines.tokens import TOKEN_COLUMN

            extra_meta[TOKEN_COLUMN] = self.tokens.column_meta()
        if self.custom_au is not None:
            for name in self.custom_au.names:
                extra_meta[name] = {"unit": "probability", "description": (
                    f"probability that {name} is present ({os.path.basename(self.options.au_model)})")}
            meta["au"] = {"model": os.path.basename(self.options.au_model), "names": list(self.custom_au.names),
                          "thresholds": [0.5] * len(self.custom_au.names), "baseline": False}
            if self.custom_au.contract.get("intensity", "none") != "none":
                for name in self.custom_au.names:
                    extra_meta[f"{name}_intensity"] = {"unit": "FACS 0-5", "description": (
                        f"{name} intensity on the FACS scale 0 (absent) to 5 (E)")}
        if self.au_model is not None:
            for name in self.au_model.au_names:
                extra_meta[name] = {"unit": "probability", "description": (
                    f"probability that {name} is present (mien AU default model, posed CK+ training data)")}
            meta["au"] = {"model": "mien-au-default-ckplus", "names": list(self.au_model.au_names),
                          "thresholds": [float(t) for t in self.au_model.thresholds.cpu()],
                          "baseline": bool(self.options.au_baseline)}
        meta["extra_columns"] = extra_meta
        if self.reid.model is not None:
            meta["identity"] = {"model": self.reid.model.name, "descriptors": {
                str(k): v for k, v in self.reid.descriptors().items()}}
        if n == 0:
            extra = {}
            if self.options.emotion:
                extra = {f"emotion_{label}": np.zeros(0, np.float32) for label in EMOTIONS}
                extra["expression_embedding"] = np.zeros((0, 256), np.float32)
            if self.au_model is not None:
                extra.update({name: np.zeros(0, np.float32) for name in self.au_model.au_names})
            if self.tokens is not None:
                extra["expression_token"] = np.zeros((0, self.tokens.dim), np.float32)
            if self.custom_au is not None:
                extra.update({name: np.zeros(0, np.float32) for name in self.custom_au.names})
                if self.custom_au.contract.get("intensity", "none") != "none":
                    extra.update({f"{n}_intensity": np.zeros(0, np.float32) for n in self.custom_au.names})
            return AnalysisResult.from_columns({"frame": np.zeros(0, np.int64), **extra}, meta=meta)
        lm = np.stack(r["landmarks"])
        euler = np.degrees(np.array(r["euler"]))
        gaze = np.array(r["gaze"])  # (N, 2 eyes [left, right], 3)
        per_eye = direction_to_angles(gaze)
        both = direction_to_angles(gaze.sum(1))
        ear = eye_aspect_ratio(lm)
        t_mm = np.array(r["t_mm"])
        cols = dict(
            frame=np.array(r["frame"]), t_sec=np.array(r["t_sec"]), face_id=np.array(r["face_id"]),
            confidence=np.array(r["confidence"]), bbox=np.stack(r["bbox"]), landmarks=lm,
            pitch_deg=euler[:, 0], yaw_deg=euler[:, 1], roll_deg=euler[:, 2],
            tx_mm=t_mm[:, 0], ty_mm=t_mm[:, 1], tz_mm=t_mm[:, 2],
            gaze_yaw_deg=both[:, 0], gaze_pitch_deg=both[:, 1],
            gaze_left_yaw_deg=per_eye[:, 0, 0], gaze_left_pitch_deg=per_eye[:, 0, 1],
            gaze_right_yaw_deg=per_eye[:, 1, 0], gaze_right_pitch_deg=per_eye[:, 1, 1],
            ear_left=ear[:, 0], ear_right=ear[:, 1], mouth_open=mouth_openness(lm),
            blink=np.zeros(n, bool),
        )
        if self.options.emotion:
            probs = np.concatenate(self._emotion)
            for i, label in enumerate(EMOTIONS):
                cols[f"emotion_{label}"] = probs[:, i]
            cols["expression_embedding"] = np.concatenate(self._embedding)
        if self.tokens is not None:
            cols["expression_token"] = np.concatenate(self._tok_out)
        if self.custom_au is not None:
            probs = np.concatenate(self._au_out)
            cols.update({name: probs[:, i] for i, name in enumerate(self.custom_au.names)})
            if self._au_int:
                inten = np.concatenate(self._au_int) * 5.0  # model predicts FACS intensity / 5
                cols.update({f"{name}_intensity": inten[:, i] for i, name in enumerate(self.custom_au.names)})
        if self.au_model is not None:
            cols.update(self._action_units(np.concatenate(self._embedding), lm, cols["face_id"]))
        order = np.lexsort((cols["face_id"], cols["frame"]))
        cols = {k: v[order] for k, v in cols.items()}
        for fid in np.unique(cols["face_id"]):
            m = cols["face_id"] == fid
            cols["blink"][m] = detect_blinks(cols["t_sec"][m], (cols["ear_left"][m] + cols["ear_right"][m]) / 2)
        extra = {k: cols.pop(k) for k in list(cols) if k not in COLUMN_SPECS}
        return AnalysisResult(**cols, meta=meta, extra=extra)

    def _action_units(self, embedding: np.ndarray, landmarks: np.ndarray, face_id: np.ndarray) -> dict:
        """AU probability columns (N,) per AU name from embeddings (N, 256) and landmarks (N, 478, 3)."""
        from mien.models.au import combine_features, predict_au

        feats = combine_features(embedding, landmarks)
        if self.options.au_baseline:
            population = self.au_model.feature_mean.cpu().numpy()
            for fid in np.unique(face_id):
                m = face_id == fid
                feats[m] = feats[m] - np.median(feats[m], axis=0) + population
        probs = predict_au(feats, self.au_model)
        return {name: probs[:, i] for i, name in enumerate(self.au_model.au_names)}

    def close(self) -> None:
        self.mesh.close()


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
