"""The one similarity estimator (Umeyama 1991) in mien.face.align: recovery, no reflections, batching, errors."""

import numpy as np
import pytest
from scipy.spatial.transform import Rotation

from mien.face.align import align_to_reference, umeyama, umeyama_batch
from mien.face.geometry import canonical_face, to_head_frame


def _rot2(deg: float) -> np.ndarray:
    a = np.radians(deg)
    return np.array([[np.cos(a), -np.sin(a)], [np.sin(a), np.cos(a)]])


def _rot3(seed: int) -> np.ndarray:
    return Rotation.random(random_state=seed).as_matrix()


@pytest.mark.parametrize("d", [2, 3])
@pytest.mark.parametrize("noise", [0.0, 0.01])
def test_recovers_known_similarity(d, noise):
    rng = np.random.default_rng(d)
    src = rng.normal(size=(200, d))
    R = _rot2(37.0) if d == 2 else _rot3(3)
    t = rng.normal(size=d) * 5
    dst = 1.7 * src @ R.T + t + rng.normal(scale=noise, size=src.shape)
    s, R2, t2 = umeyama(src, dst)
    tol = 1e-9 if noise == 0 else 5e-3
    assert s == pytest.approx(1.7, abs=tol * 2)
    np.testing.assert_allclose(R2, R, atol=tol)
    np.testing.assert_allclose(t2, t, atol=tol * 2)
    assert np.linalg.det(R2) == pytest.approx(1.0)
    s, R3, t3 = umeyama(src, dst, scale=False)  # rigid: same rotation, unit scale
    assert s == 1.0
    np.testing.assert_allclose(R3, R, atol=tol)


@pytest.mark.parametrize("d", [2, 3])
def test_reflected_target_gives_a_proper_rotation(d):
    """A mirrored copy has an exact fit only by a reflection; the estimate stays a rotation (det +1)."""
    rng = np.random.default_rng(7)
    src = rng.normal(size=(30, d))
    mirror = np.eye(d)
    mirror[0, 0] = -1
    s, R, _ = umeyama(src, src @ mirror.T)
    assert np.linalg.det(R) == pytest.approx(1.0)
    np.testing.assert_allclose(R @ R.T, np.eye(d), atol=1e-12)
    assert s > 0


def test_batched_equals_per_item():
    rng = np.random.default_rng(1)
    src = rng.normal(size=(6, 40, 3))
    dst = np.stack([rng.uniform(0.5, 2) * x @ _rot3(i).T + rng.normal(size=3) for i, x in enumerate(src)])
    dst += rng.normal(scale=0.05, size=dst.shape)
    s, R, t = umeyama_batch(src, dst)
    assert s.shape == (6,) and R.shape == (6, 3, 3) and t.shape == (6, 3)
    for i in range(6):
        si, Ri, ti = umeyama(src[i], dst[i])
        assert s[i] == pytest.approx(si, rel=1e-12)
        np.testing.assert_allclose(R[i], Ri, atol=1e-12)
        np.testing.assert_allclose(t[i], ti, atol=1e-12)
    # one shared target
    s2, R2, _ = umeyama_batch(src, dst[0])
    np.testing.assert_allclose(R2[0], R[0], atol=1e-12)
    aligned = align_to_reference(src, dst[0])
    assert aligned.shape == src.shape
    np.testing.assert_allclose(aligned[0], s[0] * src[0] @ R[0].T + t[0], atol=1e-12)


def test_degenerate_input_raises_clear_errors():
    rng = np.random.default_rng(2)
    good = rng.normal(size=(10, 3))
    with pytest.raises(ValueError, match="source points coincide"):
        umeyama(np.ones((10, 3)), good)
    with pytest.raises(ValueError, match="destination points coincide"):
        umeyama(good, np.full((10, 3), 0.3))
    line = np.outer(np.arange(10.0), [1.0, 2.0, 3.0]) + 0.1
    with pytest.raises(ValueError, match="one line"):
        umeyama(line, good)
    with pytest.raises(ValueError, match=r"item 1\b.*one line"):
        umeyama_batch(np.stack([good, line]), np.stack([good, good]))
    with pytest.raises(ValueError, match="at least 2 points"):
        umeyama(good[:1], good[:1])
    with pytest.raises(ValueError, match="same shape"):
        umeyama(good, good[:, :2])
    with pytest.raises(ValueError, match="NaN"):
        umeyama(np.where(np.eye(10, 3) > 0, np.nan, good), good)
    with pytest.raises(ValueError, match="2\\|3"):
        umeyama(good[None], good[None])


def test_head_frame_is_the_canonical_face_for_a_posed_face():
    """to_head_frame removes pose, size and position exactly; extra (iris) points follow the same map."""
    model = canonical_face().astype(np.float64)
    lm = np.zeros((478, 3))
    lm[:468] = model
    lm[468:] = model[:10]
    posed = 12.0 * lm @ _rot3(5).T + np.array([300.0, 200.0, 10.0])
    head = to_head_frame(posed)
    np.testing.assert_allclose(head, lm, atol=1e-9)
