"""mien.models.au: features, AUHead, the shipped default model on real CK+ frames, the script's folds (its trainer
runs are tested in test_au_features_task.py)."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from mien.face.align import umeyama  # noqa: E402
from mien.models.au import (  # noqa: E402
    FEATURE_DIM,
    au_features,
    au_names,
    combine_features,
    default_config,
    geometry_features,
    landmark_bboxes,
    load_default_au_model,
    predict_au,
)
from mien.models.au.features import tight_crop_landmarks  # noqa: E402
from mien.models.au.head import AUHead  # noqa: E402

REPO = Path(__file__).resolve().parents[1]


def _rotation(yaw: float, pitch: float, roll: float) -> np.ndarray:
    from mien.face.geometry import euler_to_rotation

    return euler_to_rotation(pitch, yaw, roll)


def test_au_head_shapes_and_errors():
    head = AUHead(10, ["AU01", "AU12"], hidden=8)
    x = torch.randn(3, 10)
    assert head(x).shape == (3, 2)
    p = head.predict_proba(x)
    assert p.shape == (3, 2) and p.dtype == torch.float32 and ((p >= 0) & (p <= 1)).all()
    assert AUHead(10, ["AU01"], hidden=0)(x).shape == (3, 1)
    with pytest.raises(ValueError):
        head(torch.randn(3, 9))
    with pytest.raises(ValueError):
        AUHead(10, ["AU01", "AU01"])


def test_umeyama_recovers_known_transform():
    rng = np.random.default_rng(0)
    src = rng.normal(size=(50, 3))
    R = _rotation(20.0, -10.0, 5.0)
    dst = 2.5 * src @ R.T + np.array([1.0, -2.0, 3.0])
    s, R2, t = umeyama(src, dst)
    assert s == pytest.approx(2.5)
    np.testing.assert_allclose(R2, R, atol=1e-9)
    np.testing.assert_allclose(t, [1.0, -2.0, 3.0], atol=1e-9)


def test_geometry_features_remove_pose_scale_position():
    from mien.face.geometry import canonical_face

    rng = np.random.default_rng(1)
    face = canonical_face().astype(np.float64) + rng.normal(scale=0.05, size=(468, 3))  # an "expression"
    lm = np.zeros((2, 478, 3))
    lm[0, :468] = 30 * face + 200  # in "pixels"
    lm[1, :468] = 55 * face @ _rotation(25.0, 10.0, -8.0).T + np.array([320.0, 240.0, 0.0])
    g = geometry_features(lm)
    assert g.shape == (2, 1404) and g.dtype == np.float32
    np.testing.assert_allclose(g[0], g[1], atol=1e-4)
    # the canonical face itself has zero residual
    canon = np.zeros((1, 478, 3))
    canon[0, :468] = 10 * canonical_face()
    assert np.abs(geometry_features(canon)).max() < 1e-4


def test_combine_features_shapes_and_errors():
    lm = np.zeros((2, 478, 3), np.float32)
    from mien.face.geometry import canonical_face

    lm[:, :468] = canonical_face() * 20 + 100
    f = combine_features(np.ones((2, 256), np.float32), lm)
    assert f.shape == (2, FEATURE_DIM) == (2, 1660)
    with pytest.raises(ValueError):
        combine_features(np.ones((3, 256)), lm)
    np.testing.assert_allclose(landmark_bboxes(lm)[0], [lm[0, :, 0].min(), lm[0, :, 1].min(),
                                                         lm[0, :, 0].max(), lm[0, :, 1].max()])


def test_default_model_contract():
    cfg = default_config()
    model = load_default_au_model()
    names = au_names()
    assert names == model.au_names and len(names) >= 10
    assert all(n.startswith("AU") and len(n) == 4 for n in names)
    assert "AU12" in names and "AU25" in names
    assert cfg["in_features"] == FEATURE_DIM == model.in_features
    assert len(cfg["thresholds"]) == len(names) == model.thresholds.numel()
    probs = predict_au(np.zeros((2, FEATURE_DIM), np.float32))
    assert probs.shape == (2, len(names)) and probs.dtype == np.float32
    assert np.isfinite(probs).all() and (probs >= 0).all() and (probs <= 1).all()
    with pytest.raises(ValueError):
        predict_au(np.zeros((2, 5)))


def _ckplus(shared_data: Path, emotion: str, n: int) -> list[np.ndarray]:
    import cv2

    files = sorted((shared_data / "expressions" / "ckplus48" / emotion).glob("*.png"))[:: 3][:n]
    assert files, f"no CK+48 {emotion} images"
    return [cv2.cvtColor(cv2.imread(str(f)), cv2.COLOR_BGR2RGB) for f in files]


def test_default_model_happy_faces_have_more_au12(shared_data):
    """Smile (AU12 lip-corner puller) must score higher on happy faces than on sad or angry ones.

    These CK+ frames were part of the training data, so this checks the shipped weights and the feature
    pipeline end to end, not generalisation (see docs/au_cv_results.md for the cross-validation).
    """
    happy = _ckplus(shared_data, "happy", 12)
    other = _ckplus(shared_data, "sadness", 6) + _ckplus(shared_data, "anger", 6)
    images = happy + other
    lm = tight_crop_landmarks(images)
    assert np.isfinite(lm).all(), "the landmarker missed a CK+48 face"
    probs = predict_au(au_features(images, lm))
    j = au_names().index("AU12")
    p_happy, p_other = probs[: len(happy), j], probs[len(happy):, j]
    assert p_happy.mean() > p_other.mean() + 0.3, (p_happy, p_other)
    assert np.median(p_happy) > 0.5 > np.median(p_other)


def test_default_model_on_a_real_photo(shared_data):
    """The in-the-wild path: MediaPipe landmarks on a photo -> crop + embedding + mesh -> probabilities."""
    import cv2

    from mien.face.landmarker import MediaPipeFaceMesh

    img = cv2.cvtColor(cv2.imread(str(shared_data / "samples" / "single_face.jpg")), cv2.COLOR_BGR2RGB)
    with MediaPipeFaceMesh(static_image_mode=True, detector="full") as mesh:
        faces = mesh.process(img)
    assert faces
    feats = au_features([img], faces[0].landmarks[None])
    assert feats.shape == (1, FEATURE_DIM) and np.isfinite(feats).all()
    probs = predict_au(feats)
    assert probs.shape == (1, len(au_names())) and np.isfinite(probs).all()


def _load_script():
    spec = importlib.util.spec_from_file_location("train_default_au", REPO / "scripts" / "train_default_au.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_group_kfold_keeps_groups_together():
    mod = _load_script()
    groups = np.repeat(np.array([f"S{i:03d}" for i in range(12)]), np.arange(1, 13))
    folds = mod.group_kfold(groups, 4, seed=0)
    for g in np.unique(groups):
        assert len(np.unique(folds[groups == g])) == 1
    assert set(folds) == {0, 1, 2, 3}
    np.testing.assert_array_equal(folds, mod.group_kfold(groups, 4, seed=0))  # deterministic
    with pytest.raises(ValueError):
        mod.group_kfold(groups[:3], 4)


def test_mirror_landmarks():
    from mien.face.geometry import canonical_face
    from mien.models.au.features import mirror_indices, mirror_landmarks

    m = mirror_indices()
    assert m.shape == (468,) and (m[m] == np.arange(468)).all()  # an involution
    face = canonical_face() * 10 + np.array([50.0, 60.0, 0.0], np.float32)  # symmetric about x = 50
    flipped = mirror_landmarks(face[None], width=100.0)
    np.testing.assert_allclose(flipped[0], face, atol=1e-4)  # the mirror of a symmetric face is itself
    # mirroring twice gives back any (asymmetric) face
    rng = np.random.default_rng(2)
    face2 = face + rng.normal(scale=0.3, size=face.shape).astype(np.float32)
    back = mirror_landmarks(mirror_landmarks(face2[None], 100.0), 100.0)
    np.testing.assert_allclose(back[0], face2, atol=1e-4)


def test_default_model_is_registered():
    from mien.models.registry import create_model, get_model_spec

    spec = get_model_spec("au-default")
    assert spec.family == "au" and spec.contract.crop_size == 112
    assert spec.contract.landmark_scheme == "mediapipe478"
    assert create_model("au-default").au_names == au_names()
