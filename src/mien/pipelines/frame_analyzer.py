"""Per-frame analysis state of :func:`mien.pipelines.analyze.analyze`: landmarks, tracking and re-identification,
head pose, gaze (NaN on closed eyes), and the heads (:mod:`mien.heads`) run on crops batched across faces and
frames; after the last frame, blinks per track, the heads' per-track post-steps and optional One Euro smoothing.
"""

from __future__ import annotations

from importlib import resources
from typing import TYPE_CHECKING

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
from mien.heads import base, build_heads, column_meta, empty_columns
from mien.heads.base import file_info
from mien.heads.faceapi import ReIdentifier
from mien.io.video import Frame
from mien.results.result import COLUMN_SPECS, AnalysisResult

if TYPE_CHECKING:  # pragma: no cover
    from mien.pipelines.analyze import AnalyzeOptions

GAZE_MIN_EAR = 0.15
"""Gaze is reported (``gaze_valid``) only where the mean eye aspect ratio of both eyes is at least this. Below it
the lids cover most of the iris (open eyes give ~0.25–0.35, a blink's closed frames < 0.1, :mod:`mien.face.blink`
uses the same scale), so MediaPipe's iris landmarks, and the gaze from them, are guesses: on the demo clip the
gaze swings ±20° while the subject laughs with eyes shut."""
MAX_PENDING_BATCHES = 4
"""Batches of crops waiting for the heads' worker at most; when the heads are slower than the landmarker, the
frame loop waits for them instead of queueing crops without bound (a live preview's bars lag by at most this many
batches)."""
GAZE_COLUMNS = ("gaze_yaw_deg", "gaze_pitch_deg", "gaze_left_yaw_deg", "gaze_left_pitch_deg",
                "gaze_right_yaw_deg", "gaze_right_pitch_deg")
POSE_COLUMNS = ("pitch_deg", "yaw_deg", "roll_deg", "tx_mm", "ty_mm", "tz_mm")


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
        use_identity = options.identity if options.identity is not None else base.torch_available()
        if use_identity and not base.torch_available():
            raise ValueError("--reid: needs PyTorch, which is not installed (pip install \"mien[models]\")")
        identity = None
        if use_identity:
            from mien.heads.faceapi import IdentityHead

            identity = IdentityHead(options.device, options.backend)
        self.reid = ReIdentifier(identity)
        self._torch_threads = None
        if identity is not None or any(h.backend == "torch" for h in self.heads):
            import torch

            from mien.heads.backends import head_threads

            # restored by close(); the heads run alongside MediaPipe and must not oversubscribe the cores
            self._torch_threads = torch.get_num_threads()
            torch.set_num_threads(head_threads(options.threads))
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
        self._out_start: list[int] = []  # per flushed batch: its first row
        self._latest: tuple | None = None  # latest_heads' last answer: (batch, finish, face ids, columns)
        self._pool = None
        if self.heads and not static:
            from concurrent.futures import ThreadPoolExecutor

            # the heads run in one worker thread while MediaPipe finds the next frames' faces (both release the
            # GIL); batches are the same as when run inline, so outputs are identical
            init = None
            if self._torch_threads is not None:
                import torch

                n = torch.get_num_threads()
                init = lambda: torch.set_num_threads(n)  # noqa: E731 (OpenMP thread counts are per thread)
            self._pool = ThreadPoolExecutor(1, thread_name_prefix="mien-heads", initializer=init)
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
        self._out_start.append(len(self.rows["frame"]) - len(lm))
        if self._pool is not None:
            if len(self._out) >= MAX_PENDING_BATCHES:  # the worker is FIFO: at most this many batches wait
                b = self._out[-MAX_PENDING_BATCHES]
                if hasattr(b, "result"):
                    b.result()
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

    def latest(self, frame_index: int) -> AnalysisResult:
        """The core columns of frame ``frame_index``'s rows, when it is the last frame processed (else no rows),
        without the after-the-fact steps (blinks, smoothing, heads); ``meta["camera"]`` holds the focal length.
        For previews (:func:`mien.viz.live.live_preview`)."""
        frames = self.rows["frame"]
        k = 0
        while k < len(frames) and frames[-1 - k] == frame_index:
            k += 1
        meta = {"camera": {"focal_px": float(self.pose.K[0, 0])}}
        if k == 0:
            return AnalysisResult.from_columns({"frame": np.zeros(0, np.int64)}, meta=meta)
        return AnalysisResult(**self._core_columns(len(frames) - k), meta=meta)

    def latest_heads(self, finish: tuple[str, ...] | None = None) -> tuple[np.ndarray, dict[str, np.ndarray]]:
        """The heads' columns of the most recent batch they have finished, without waiting (for live previews:
        the heads run in their worker thread while the next frames' faces are found, so these lag the latest
        frame by about the heads' time; with ``batch_size=1`` a batch is one frame's faces).

        Args:
            finish: names of the heads whose per-track post-step (:meth:`mien.heads.base.Head.finish`, e.g. the
                AU probabilities of "au") is run on these N rows alone (default: every head's).

        Returns:
            ``(face_id (N,) int, {column: (N, ...)})``, the batch's rows; N = 0 and ``{}`` when no batch has
            finished. While no newer batch has finished, the same batch's answer is returned again without
            re-running the post-steps (a live preview asks once per frame).
        """
        for start, b in zip(reversed(self._out_start), reversed(self._out), strict=True):
            if hasattr(b, "done") and not b.done():
                continue
            last = self._latest
            if last is not None and last[0] is b and last[1] == finish:
                return last[2], dict(last[3])
            cols = dict(b.result() if hasattr(b, "result") else b)
            n = len(next(iter(cols.values()))) if cols else 0
            if n == 0:
                break
            ids = np.asarray(self.rows["face_id"][start:start + n], np.int64)
            cols["landmarks"] = np.stack(self.rows["landmarks"][start:start + n])
            for h in self.heads:
                if finish is None or h.name in finish:
                    cols.update(h.finish(cols, ids))
            del cols["landmarks"]
            self._latest = (b, finish, ids, cols)
            return ids, dict(cols)
        return np.zeros(0, np.int64), {}

    def drop_rows(self, keep: int) -> None:
        """Forget all rows but (about) the last ``keep`` and the heads' batches before them; :meth:`result` then
        holds the rows kept (a live preview that keeps no table). With heads, rows are dropped up to the start
        of a batch, so that rows and the heads' outputs stay aligned."""
        n = len(self.rows["frame"])
        cut = max(n - keep, 0)
        if self.heads:
            starts = [s for s in self._out_start if s <= cut]
            cut = starts[-1] if starts else 0
            k = len(starts) - 1 if starts else 0
            self._out, self._out_start = self._out[k:], [s - cut for s in self._out_start[k:]]
        if cut:
            for v in self.rows.values():
                del v[:cut]

    def _core_columns(self, start: int = 0) -> dict[str, np.ndarray]:
        """The core columns of the rows (from row ``start``) in processing order (gaze NaN where the eyes are
        closed)."""
        r = {k: v[start:] for k, v in self.rows.items()} if start else self.rows
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

    def head(self, name: str):
        """The running head called ``name`` (e.g. "tokenizer", "expression", "au"), or None."""
        return next((h for h in self.heads if h.name == name), None)

    def model_meta(self) -> dict:
        """``meta["models"]``: name, file(s) and SHA-256 of the landmarker, each head, re-id and head-pose model."""
        models = {k: file_info(self.mesh.name, p) for k, p in self.mesh.model_files.items()}
        for head in self.heads:
            models[head.name] = head.model_info()
        if self.reid.head is not None:
            models["identity"] = self.reid.head.model_info()
        canon = resources.files("mien.assets").joinpath("canonical_face_model.npy")
        with resources.as_file(canon) as p:
            models["head_pose_model"] = file_info("mediapipe-canonical-face", p)
        return models

    def close(self) -> None:
        """Release MediaPipe and the heads' worker thread (pending batches still finish)."""
        self.mesh.close()
        if self._pool is not None:
            self._flush()
            self._pool.shutdown(wait=True)
            self._pool = None
        if self._torch_threads is not None:
            import torch

            torch.set_num_threads(self._torch_threads)
            self._torch_threads = None
