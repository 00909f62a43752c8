"""Head pose, gaze, eye and mouth openness from 478-point MediaPipe landmarks.

Coordinate frame (all of mien): the camera frame of OpenCV and OpenFace — origin at the camera, x to the
image's right, y down, z away from the camera. Angles in degrees:

- yaw: rotation about the camera's y axis; positive when the face (or gaze) turns toward the image's left
  (the subject's right in an unmirrored frame).
- pitch: rotation about x; positive when the face (or gaze) points down.
- roll: rotation about z; positive when the top of the head tilts toward the image's right.

Head rotation is ``R = Rx(pitch) · Ry(yaw) · Rz(roll)`` mapping the canonical face (frontal, looking at the
camera) into the camera frame, the convention of OpenFace 2's ``pose_Rx, pose_Ry, pose_Rz``.
"""

from __future__ import annotations

from functools import lru_cache
from importlib import resources

import cv2
import numpy as np

from mien.face import landmarks as L
from mien.face.align import similarity_params, umeyama_batch

EYEBALL_RADIUS_CM = 1.2  # average human eyeball radius (≈12 mm)


@lru_cache(maxsize=1)
def canonical_face() -> np.ndarray:
    """MediaPipe's canonical face model in the OpenCV camera orientation.

    Returns:
        float32 (468, 3) in centimetres, x to the image's right, y down, z away from the camera, origin near
        the head centre. Source: MediaPipe ``canonical_face_model`` (Apache-2.0), shipped as
        ``mien/assets/canonical_face_model.npy``.
    """
    with resources.files("mien.assets").joinpath("canonical_face_model.npy").open("rb") as f:
        pts = np.load(f)
    return (pts * np.array([1.0, -1.0, -1.0], np.float32)).astype(np.float32)


def camera_matrix(width: int, height: int, focal_px: float | None = None) -> np.ndarray:
    """Pinhole intrinsics (3, 3) float64; focal length defaults to the image width in pixels (~53° FOV)."""
    f = float(focal_px or width)
    return np.array([[f, 0, width / 2.0], [0, f, height / 2.0], [0, 0, 1]], np.float64)


def rotation_to_euler(R: np.ndarray) -> np.ndarray:
    """Decompose rotation matrices ``R = Rx(pitch)·Ry(yaw)·Rz(roll)``.

    Args:
        R: (..., 3, 3) rotation matrices.

    Returns:
        (..., 3) float64 radians ordered (pitch, yaw, roll).
    """
    R = np.asarray(R, np.float64)
    yaw = np.arcsin(np.clip(R[..., 0, 2], -1.0, 1.0))
    pitch = np.arctan2(-R[..., 1, 2], R[..., 2, 2])
    roll = np.arctan2(-R[..., 0, 1], R[..., 0, 0])
    return np.stack([pitch, yaw, roll], -1)


def euler_to_rotation(pitch: float, yaw: float, roll: float) -> np.ndarray:
    """Inverse of :func:`rotation_to_euler` for one set of angles in radians; returns (3, 3) float64."""
    ca, sa, cb, sb, cc, sc = np.cos(pitch), np.sin(pitch), np.cos(yaw), np.sin(yaw), np.cos(roll), np.sin(roll)
    rx = np.array([[1, 0, 0], [0, ca, -sa], [0, sa, ca]])
    ry = np.array([[cb, 0, sb], [0, 1, 0], [-sb, 0, cb]])
    rz = np.array([[cc, -sc, 0], [sc, cc, 0], [0, 0, 1]])
    return rx @ ry @ rz


class HeadPoseEstimator:
    """Head pose by Perspective-n-Point of the 468 mesh points against the canonical face.

    OpenCV's SQPnP solver (Terzakis & Lourakis, ECCV 2020) finds the global least-squares pose in closed form
    for every face independently, so no state is carried between frames.

    Args:
        width, height: frame size in pixels.
        focal_px: focal length in pixels (default: the frame width).
    """

    def __init__(self, width: int, height: int, focal_px: float | None = None):
        self.K = camera_matrix(width, height, focal_px)
        self.model = canonical_face().astype(np.float64)

    def estimate(self, landmarks: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Pose of one face.

        Args:
            landmarks: (478, ≥2) or (468, ≥2) landmarks; x, y in source pixels.

        Returns:
            (R, t): rotation (3, 3) float64 canonical→camera, translation (3,) float64 in millimetres of the
            canonical head centre in the camera frame.
        """
        img = np.ascontiguousarray(landmarks[:468, :2], np.float64)
        _, rvec, tvec = cv2.solvePnP(self.model, img, self.K, None, flags=cv2.SOLVEPNP_SQPNP)
        R, _ = cv2.Rodrigues(rvec)
        return R, tvec.reshape(3) * 10.0  # cm -> mm


def eye_aspect_ratio(landmarks: np.ndarray) -> np.ndarray:
    """Eye Aspect Ratio of each eye (Soukupová & Čech, 2016), on the 3-D landmarks.

    Args:
        landmarks: (..., 478, 3) pixels (z in pixel scale).

    Returns:
        float32 (..., 2): EAR of (left, right) eye, the subject's sides; ~0.25–0.35 open, < ~0.15 closed.
    """
    out = []
    for idx in (L.EAR_LEFT, L.EAR_RIGHT):
        p = landmarks[..., idx, :]
        v = np.linalg.norm(p[..., 1, :] - p[..., 5, :], axis=-1) + np.linalg.norm(p[..., 2, :] - p[..., 4, :], axis=-1)
        h = np.linalg.norm(p[..., 0, :] - p[..., 3, :], axis=-1)
        out.append(v / np.maximum(2.0 * h, 1e-6))
    return np.stack(out, -1).astype(np.float32)


def mouth_openness(landmarks: np.ndarray) -> np.ndarray:
    """Inner-lip gap divided by inner mouth width (3-D), ~0 closed, ~0.5–1 wide open.

    Args:
        landmarks: (..., 478, 3).

    Returns:
        float32 (...,).
    """
    gap = np.linalg.norm(landmarks[..., L.MOUTH_INNER_UPPER, :] - landmarks[..., L.MOUTH_INNER_LOWER, :], axis=-1)
    width = np.linalg.norm(landmarks[..., L.MOUTH_CORNER_RIGHT, :] - landmarks[..., L.MOUTH_CORNER_LEFT, :], axis=-1)
    return (gap / np.maximum(width, 1e-6)).astype(np.float32)


def to_head_frame(landmarks: np.ndarray) -> np.ndarray:
    """Express 3-D landmarks in the canonical face's frame (centimetres, canonical orientation).

    Per face, the least-squares similarity of the 468 mesh points to the canonical face
    (:func:`mien.face.align.umeyama`: rotation, uniform scale, translation) is applied to all its landmarks,
    irises included; what remains is the face's own shape (identity shape plus expression).

    Args:
        landmarks: (..., K, 3) with K = 478 or 468, pixels (z in pixel scale, MediaPipe's convention).

    Returns:
        float64 (..., K, 3) in the frame and units of :func:`canonical_face`.

    Raises:
        ValueError: fewer than 468 points, non-finite or degenerate landmarks (see
            :func:`~mien.face.align.umeyama`).
    """
    pts = np.asarray(landmarks, np.float64)
    if pts.ndim < 2 or pts.shape[-2] < 468 or pts.shape[-1] != 3:
        raise ValueError(f"to_head_frame: expected (..., 478, 3) landmarks, got {pts.shape}")
    flat = pts.reshape(-1, *pts.shape[-2:])
    s, R, t = umeyama_batch(flat[:, :468], _canonical_face64())
    out = s[:, None, None] * np.matmul(flat, R.transpose(0, 2, 1)) + t[:, None, :]
    return out.reshape(pts.shape)


@lru_cache(maxsize=1)
def _canonical_face64() -> np.ndarray:
    out = canonical_face().astype(np.float64)
    out.flags.writeable = False
    return out


@lru_cache(maxsize=1)
def canonical_face_size_cm() -> float:
    """Side in centimetres of the FFHQ-style crop square (:func:`mien.face.align.similarity_params`, margin 0)
    of the frontal :func:`canonical_face`: the face size that makes frontal landmarks crop-relative."""
    return float(2.0 * similarity_params(canonical_face()[None])[0, 2])


def frontal_landmarks(landmarks: np.ndarray) -> np.ndarray:
    """Expression shape of faces: x, y of :func:`to_head_frame` in units of the face size.

    Head position, size and rotation (in-plane and out-of-plane) are removed by the 3-D Umeyama alignment to
    the canonical face; dividing by :func:`canonical_face_size_cm` makes 0.01 one percent of the side of the
    face's crop square, the unit of prepare's window scoring (:func:`mien.data.selection.score_windows`).

    Args:
        landmarks: (..., K, 3), K = 478 or 468, pixels (z in pixel scale).

    Returns:
        float32 (..., K, 2) frontal x (image right), y (down) relative to the canonical head centre.

    Raises:
        ValueError: as :func:`to_head_frame`.
    """
    return (to_head_frame(landmarks)[..., :2] / canonical_face_size_cm()).astype(np.float32)


def gaze_directions(landmarks: np.ndarray, R: np.ndarray,
                    radius_cm: float = EYEBALL_RADIUS_CM) -> np.ndarray:
    """Per-eye gaze directions from the iris position on a spherical eyeball, head pose compensated.

    In the head frame (:func:`to_head_frame`), the iris centre's offset (dx, dy) from the centre of the
    eye-contour landmarks is taken as the projection of the gaze on an eyeball of radius ``radius_cm``; the
    resulting direction (eye in head) is rotated into the camera frame by the head rotation ``R``.

    Args:
        landmarks: (478, 3) pixels.
        R: (3, 3) head rotation canonical→camera.

    Returns:
        float64 (2, 3) unit vectors (left eye, right eye) in the camera frame, pointing from the eye
        outward (z < 0 when looking toward the camera).
    """
    head = to_head_frame(landmarks)
    dirs = []
    for contour, iris in ((L.EYE_LEFT, L.IRIS_LEFT_CENTER), (L.EYE_RIGHT, L.IRIS_RIGHT_CENTER)):
        d = (head[iris, :2] - head[contour, :2].mean(0)) / radius_cm
        n2 = min(float(d @ d), 0.99)
        g = np.array([d[0], d[1], -np.sqrt(1.0 - n2)])
        dirs.append(R @ g)
    dirs = np.array(dirs)
    return dirs / np.linalg.norm(dirs, axis=1, keepdims=True)


def direction_to_angles(v: np.ndarray) -> np.ndarray:
    """Yaw and pitch in degrees of direction vectors (..., 3) in the camera frame (conventions above).

    A direction toward the camera (0, 0, -1) is (0, 0); toward the image's left has positive yaw; downward
    has positive pitch. Returns float64 (..., 2) (yaw, pitch).
    """
    v = np.asarray(v, np.float64)
    yaw = np.degrees(np.arctan2(-v[..., 0], -v[..., 2]))
    pitch = np.degrees(np.arctan2(v[..., 1], -v[..., 2]))
    return np.stack([yaw, pitch], -1)
