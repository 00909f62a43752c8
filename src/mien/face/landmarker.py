"""MediaPipe face detection + 478-point face mesh (with iris), the default landmark backend.

Uses MediaPipe 0.10.21's face-mesh graph (``face_landmark_front_cpu``, models shipped inside the
``mediapipe`` wheel, Apache-2.0) with its short-range face detector replaced by the full-range detector
(``face_detection_full_range_sparse.tflite``), which also finds small and distant faces. In video mode the
graph tracks each face from the previous frame's landmarks and runs the detector only when fewer than
``max_faces`` faces are tracked, as MediaPipe's own face mesh solution does.
"""

from __future__ import annotations

import contextlib
import os
import sys
from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np

from mien.face.tracking import box_iou

_GRAPH = "modules/face_landmark/face_landmark_front_cpu.binarypb"
_DETECTORS = {
    "full": ("FaceDetectionFullRangeCpu", "modules/face_detection/face_detection_full_range_sparse.tflite",
             "facedetectionfullrangecpu__facedetectionfullrange__facedetection__"
             "TensorsToDetectionsCalculator.min_score_thresh"),
    "short": ("FaceDetectionShortRangeCpu", "modules/face_detection/face_detection_short_range.tflite",
              "facedetectionshortrangecpu__facedetectionshortrange__facedetection__"
              "TensorsToDetectionsCalculator.min_score_thresh"),
}
_LANDMARK_MODEL = "modules/face_landmark/face_landmark_with_attention.tflite"


@contextlib.contextmanager
def quiet_native_stderr() -> Iterator[None]:
    """Send file descriptor 2 to /dev/null while MediaPipe's C++ start-up logs its absl/TFLite chatter.

    Python exceptions are unaffected. Set ``MIEN_NATIVE_LOGS=1`` to keep the native logs.
    """
    if os.environ.get("MIEN_NATIVE_LOGS") == "1":
        yield
        return
    try:
        sys.stderr.flush()
        saved = os.dup(2)
    except (OSError, ValueError):
        yield
        return
    devnull = os.open(os.devnull, os.O_WRONLY)
    try:
        os.dup2(devnull, 2)
        yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)
        os.close(devnull)


@dataclass
class FaceObservation:
    """One face found in one frame.

    Attributes:
        landmarks: float32 (478, 3): x, y in source-frame pixels; z in pixels (same scale as x), relative to
            the head centre, smaller = closer to the camera (MediaPipe convention). Indices 468–477 are the
            irises (468–472 subject's right eye = image left, 473–477 left eye).
        bbox: float32 (4,): x_min, y_min, x_max, y_max in pixels, the extent of the 478 landmarks.
        detection_score: score in [0, 1] of the face detection made in this frame that this face's
            landmarks came from, or None when the face was tracked from the previous frame.
    """

    landmarks: np.ndarray
    bbox: np.ndarray
    detection_score: float | None


class MediaPipeFaceMesh:
    """Face detection + 478 3-D landmarks for RGB frames.

    Args:
        max_faces: most faces returned per frame.
        static_image_mode: treat frames as unrelated images (detector on every frame) instead of a video.
        detector: "short" (short-range: faces within ~2 m of the camera, the usual video case; few false
            positives) or "full" (full-range: also small and distant faces, e.g. group photos).
        min_detection_confidence: face-detector score threshold in [0, 1].
        min_tracking_confidence: face-presence threshold in [0, 1] below which a tracked face is dropped
            and re-detected.
        max_side: frames larger than this (pixels, longer side) are downscaled with area averaging before
            MediaPipe sees them, whose own resampling does not anti-alias (the full-range detector misses the
            face of a 2560-px photo at 960 px and above, and finds it at 800); landmarks are scaled back to source pixels.

    Raises:
        ValueError: unknown detector name.
    """

    name = "mediapipe-face-mesh-0.10.21"

    def __init__(self, max_faces: int = 1, static_image_mode: bool = False, detector: str = "short",
                 min_detection_confidence: float = 0.5, min_tracking_confidence: float = 0.5,
                 max_side: int = 800):
        import mediapipe as mp
        from mediapipe.framework import calculator_pb2
        from mediapipe.python.solution_base import SolutionBase

        if detector not in _DETECTORS:
            raise ValueError(f"detector must be one of {sorted(_DETECTORS)}, got {detector!r}")
        if max_faces < 1:
            raise ValueError(f"max_faces must be >= 1, got {max_faces}")
        calc, det_model, thresh_param = _DETECTORS[detector]
        root = os.path.dirname(mp.__file__)
        graph = calculator_pb2.CalculatorGraphConfig()
        with open(os.path.join(root, _GRAPH), "rb") as f:
            graph.ParseFromString(f.read())
        for node in graph.node:
            if node.calculator == "FaceDetectionShortRangeCpu":
                node.calculator = calc
        self.model_files = {
            "face_detector": os.path.join(root, det_model),
            "face_landmarker": os.path.join(root, _LANDMARK_MODEL),
        }
        self.max_faces = max_faces
        self.max_side = max_side
        self._first = True
        with quiet_native_stderr():
            self._solution = SolutionBase(
                graph_config=graph,
                side_inputs={"num_faces": max_faces, "with_attention": True,
                             "use_prev_landmarks": not static_image_mode},
                calculator_params={thresh_param: min_detection_confidence,
                                   "facelandmarkcpu__ThresholdingCalculator.threshold": min_tracking_confidence},
                outputs=["multi_face_landmarks", "face_detections"],
            )
            self._solution._graph.wait_until_idle()  # calculators open asynchronously

    def process(self, image: np.ndarray) -> list[FaceObservation]:
        """Find faces in one RGB uint8 frame (H, W, 3); frames of a video must come in time order."""
        h, w = image.shape[:2]
        if max(h, w) > self.max_side:
            import cv2

            f = self.max_side / max(h, w)
            image = cv2.resize(image, (max(round(w * f), 1), max(round(h * f), 1)), interpolation=cv2.INTER_AREA)
        if self._first:  # the graph logs start-up warnings until its landmark model first runs
            with quiet_native_stderr():
                out = self._solution.process(image)
            self._first = not out.multi_face_landmarks
        else:
            out = self._solution.process(image)
        faces = out.multi_face_landmarks or []
        if not faces:
            return []
        scale = np.array([w, h, w], np.float32)
        obs = []
        for lm in faces:
            pts = np.array([(p.x, p.y, p.z) for p in lm.landmark], np.float32) * scale
            box = np.concatenate([pts[:, :2].min(0), pts[:, :2].max(0)]).astype(np.float32)
            obs.append(FaceObservation(pts, box, None))
        dets = out.face_detections or []
        if dets:
            det_boxes = []
            for d in dets:
                bb = d.location_data.relative_bounding_box
                det_boxes.append([bb.xmin * w, bb.ymin * h, (bb.xmin + bb.width) * w, (bb.ymin + bb.height) * h])
            iou = box_iou(np.array([o.bbox for o in obs]), np.array(det_boxes, np.float32))
            for i, o in enumerate(obs):
                j = int(iou[i].argmax())
                if iou[i, j] > 0.3:
                    o.detection_score = float(dets[j].score[0])
        return obs

    def close(self) -> None:
        self._solution.close()

    def __enter__(self) -> MediaPipeFaceMesh:
        return self

    def __exit__(self, *exc) -> None:
        self.close()
