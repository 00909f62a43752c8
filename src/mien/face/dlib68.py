"""dlib's 68-point landmark detector (iBUG 300-W scheme) — an independent reference for evaluating meshes fitted
to MediaPipe's landmarks (``mien evaluate face3d``).

Needs the ``eval3d`` extra: ``dlib`` (builds from source, ~25 min, so not in ``dev``) and
``face-recognition-models`` (the PyPI package holding ``shape_predictor_68_face_landmarks.dat``, dlib's model
trained on iBUG 300-W; that package's ``__init__`` needs ``pkg_resources``, so the file is located without
importing it). Faces are found by dlib's own HOG detector (not MediaPipe's box), so detection and landmarks are
both independent of the landmarks under test.
"""

from __future__ import annotations

import importlib.util
import os
from pathlib import Path

import numpy as np

from mien.errors import InputError

MODEL_FILE = "shape_predictor_68_face_landmarks.dat"
MIN_IOU = 0.3
"""Least IoU between a dlib detection and the face box it is matched to."""


def dlib_model_path() -> Path:
    """Path of dlib's 68-point model in the installed ``face-recognition-models`` package.

    Raises:
        InputError: the package or dlib is not installed (install the ``eval3d`` extra).
    """
    if importlib.util.find_spec("dlib") is None:
        raise InputError("dlib", "not installed (pip install 'mien[eval3d]'; dlib builds from source, ~25 min)")
    spec = importlib.util.find_spec("face_recognition_models")
    if spec is None or not spec.submodule_search_locations:
        raise InputError("face-recognition-models", "not installed (pip install 'mien[eval3d]')")
    path = Path(list(spec.submodule_search_locations)[0]) / "models" / MODEL_FILE
    if not path.is_file():
        raise InputError(str(path), "dlib's 68-point model file is missing from face-recognition-models")
    return path


def _iou(a: np.ndarray, b: np.ndarray) -> float:
    lo, hi = np.maximum(a[:2], b[:2]), np.minimum(a[2:], b[2:])
    inter = float(np.prod(np.clip(hi - lo, 0, None)))
    union = float(np.prod(a[2:] - a[:2]) + np.prod(b[2:] - b[:2])) - inter
    return inter / union if union > 0 else 0.0


class Dlib68:
    """dlib HOG face detector + 68-point shape predictor.

    Args:
        model: the ``.dat`` shape-predictor file (None: :func:`dlib_model_path`).

    Raises:
        InputError: dlib or the model is missing, or the file is not a dlib shape predictor.
    """

    def __init__(self, model: str | os.PathLike | None = None):
        path = Path(model) if model is not None else dlib_model_path()
        import dlib

        if not path.is_file():
            raise InputError(str(path), "no such file")
        self._detector = dlib.get_frontal_face_detector()
        try:
            self._predictor = dlib.shape_predictor(str(path))
        except RuntimeError as e:
            raise InputError(str(path), f"not a dlib shape-predictor model ({str(e).splitlines()[0]})") from None
        self._dlib = dlib
        self.model = path

    def __call__(self, image: np.ndarray, box: np.ndarray | None = None) -> np.ndarray | None:
        """68 landmarks of the face in ``image`` that best matches ``box``.

        Args:
            image: (H, W, 3) uint8 RGB.
            box: (4,) x_min, y_min, x_max, y_max px of the face to match (None: the largest detection).

        Returns:
            float64 (68, 2) x, y px in iBUG order, or None when dlib finds no face (overlapping ``box`` by at
            least :data:`MIN_IOU`).
        """
        img = np.ascontiguousarray(image)
        dets = list(self._detector(img, 0))
        if not dets and max(img.shape[:2]) < 800:
            dets = list(self._detector(img, 1))  # small faces (224-px clips) need one upsampling
        if not dets:
            return None
        boxes = np.array([[d.left(), d.top(), d.right(), d.bottom()] for d in dets], np.float64)
        if box is None:
            i = int(np.argmax(np.prod(boxes[:, 2:] - boxes[:, :2], 1)))
        else:
            ious = [_iou(b, np.asarray(box, np.float64)) for b in boxes]
            i = int(np.argmax(ious))
            if ious[i] < MIN_IOU:
                return None
        shape = self._predictor(img, dets[i])
        return np.array([[p.x, p.y] for p in shape.parts()], np.float64)
