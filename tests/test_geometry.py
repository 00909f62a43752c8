"""Geometry: Euler conventions, PnP on a synthetic projection, gaze signs, EAR, tracking, blinks."""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mien.face import landmarks as L
from mien.face.blink import blink_events, detect_blinks
from mien.face.geometry import (
    HeadPoseEstimator,
    camera_matrix,
    canonical_face,
    direction_to_angles,
    euler_to_rotation,
    eye_aspect_ratio,
    frontal_landmarks,
    gaze_directions,
    rotation_to_euler,
)
from mien.face.tracking import IoUTracker, box_iou

angle = st.floats(-1.2, 1.2)


@given(angle, angle, angle)
@settings(max_examples=200, deadline=None)
def test_euler_round_trip(p, y, r):
    R = euler_to_rotation(p, y, r)
    assert np.allclose(R @ R.T, np.eye(3), atol=1e-12)
    assert np.allclose(rotation_to_euler(R), [p, y, r], atol=1e-9)


def _project(R, t_cm, w=640, h=480):
    K = camera_matrix(w, h)
    cam = canonical_face().astype(np.float64) @ R.T + t_cm
    return cam[:, :2] / cam[:, 2:] * K[0, 0] + K[:2, 2]


@pytest.mark.parametrize("pyr", [(0, 0, 0), (10, -25, 5), (-15, 30, -20)])
def test_pnp_recovers_synthetic_pose(pyr):
    R = euler_to_rotation(*np.radians(pyr))
    t = np.array([3.0, -2.0, 55.0])
    uv = _project(R, t)
    R2, t_mm = HeadPoseEstimator(640, 480).estimate(uv)
    assert np.allclose(np.degrees(rotation_to_euler(R2)), pyr, atol=1e-6)
    assert np.allclose(t_mm, t * 10, atol=1e-4)


def test_yaw_sign_convention():
    """Positive yaw turns the nose toward the image's left."""
    uv0 = _project(np.eye(3), np.array([0, 0, 50.0]))
    uv = _project(euler_to_rotation(0, np.radians(20), 0), np.array([0, 0, 50.0]))
    assert uv[1, 0] < uv0[1, 0] - 10  # landmark 1 = nose tip
    uv = _project(euler_to_rotation(np.radians(20), 0, 0), np.array([0, 0, 50.0]))
    assert uv[1, 1] > uv0[1, 1] + 10  # positive pitch: nose down


def _synthetic_landmarks(R=None, iris_shift_cm=(0.0, 0.0)):
    """478 camera-frame landmarks (pixel scale) of the canonical face with irises at the eye centres."""
    R = np.eye(3) if R is None else R
    model = canonical_face().astype(np.float64)
    pts = np.zeros((478, 3))
    pts[:468] = model
    for contour, iris in ((L.EYE_LEFT, L.IRIS_LEFT_CENTER), (L.EYE_RIGHT, L.IRIS_RIGHT_CENTER)):
        c = model[contour].mean(0)
        pts[iris] = c + np.array([iris_shift_cm[0], iris_shift_cm[1], 0.0])
    return (pts @ R.T) * 10.0 + np.array([320.0, 240.0, 0.0])  # 10 px per cm, weak perspective


def test_gaze_straight_and_shifted():
    lm = _synthetic_landmarks()
    ang = direction_to_angles(gaze_directions(lm, np.eye(3)))
    assert np.allclose(ang, 0, atol=1e-6)
    lm = _synthetic_landmarks(iris_shift_cm=(-0.3, 0.0))  # irises toward the image's left
    ang = direction_to_angles(gaze_directions(lm, np.eye(3)))
    assert (ang[:, 0] > 10).all() and np.allclose(ang[:, 1], 0, atol=1e-6)
    lm = _synthetic_landmarks(iris_shift_cm=(0.0, 0.3))  # irises down
    assert (direction_to_angles(gaze_directions(lm, np.eye(3)))[:, 1] > 10).all()


def test_gaze_is_head_pose_compensated():
    """Eyes centred in a turned head look where the head points."""
    R = euler_to_rotation(0, np.radians(25), 0)
    ang = direction_to_angles(gaze_directions(_synthetic_landmarks(R), R))
    assert np.allclose(ang[:, 0], 25, atol=1e-6)


def test_frontal_landmarks_remove_pose_and_size():
    """Prepare's scoring features: a turned, scaled, moved face gives its frontal shape in face-size units."""
    from mien.face.align import similarity_params

    R = euler_to_rotation(*np.radians([15.0, -30.0, 10.0]))
    frontal = frontal_landmarks(_synthetic_landmarks())
    turned = frontal_landmarks(_synthetic_landmarks(R)[None] * 2.5 + 40.0)[0]
    assert frontal.shape == (478, 2) and frontal.dtype == np.float32
    np.testing.assert_allclose(turned, frontal, atol=1e-5)
    side = 2 * similarity_params(np.concatenate([frontal, np.zeros((478, 1))], -1)[None])[0, 2]
    assert side == pytest.approx(1.0, rel=1e-5)  # the face's crop square has side 1


def test_eye_aspect_ratio_closes():
    lm = _synthetic_landmarks()
    open_ear = eye_aspect_ratio(lm)
    closed = lm.copy()
    for idx in (L.EAR_LEFT, L.EAR_RIGHT):
        for upper, lower in ((idx[1], idx[5]), (idx[2], idx[4])):  # lids meet (y and depth)
            mid = (closed[upper] + closed[lower]) / 2
            closed[[upper, lower], 1:] = mid[1:]
    assert (open_ear > 0.15).all()
    assert np.allclose(eye_aspect_ratio(closed), 0, atol=0.02)


def test_box_iou_values():
    a = np.array([[0, 0, 10, 10]])
    b = np.array([[0, 0, 10, 10], [5, 0, 15, 10], [20, 20, 30, 30]])
    assert np.allclose(box_iou(a, b), [[1.0, 50 / 150, 0.0]])


def test_tracker_keeps_and_renews_ids():
    tr = IoUTracker(max_gap=2)
    a, b = [10, 10, 50, 50], [200, 10, 240, 50]
    assert tr.update(np.array([a, b])).tolist() == [0, 1]
    assert tr.update(np.array([[205, 12, 245, 52], [12, 11, 52, 51]])).tolist() == [1, 0]
    for _ in range(3):  # face 0 gone longer than max_gap
        tr.update(np.array([b]))
    assert tr.update(np.array([a, b])).tolist() == [2, 1]


def test_detect_blinks_on_constructed_series():
    t = np.arange(100) / 25.0
    ear = np.full(100, 0.3)
    ear[20:24] = [0.2, 0.08, 0.07, 0.2]  # a 4-frame blink
    ear[60:90] = 0.05  # eyes shut 1.2 s: not a blink
    ear[40:42] = 0.2  # shallow dip: not a blink
    b = detect_blinks(t, ear)
    assert b[20:24].all() and b.sum() == 4
    ev = blink_events(t, np.arange(100), b)
    assert ev == [(20, 23, 20 / 25, 23 / 25)]
