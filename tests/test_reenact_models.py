"""Reenactment models (mien.models.reenact): warp conventions, shapes per registered config, batched ==
per-sample, motion algebra, save/load parity."""

from __future__ import annotations

import math

import numpy as np
import pytest

torch = pytest.importorskip("torch")

import mien  # noqa: E402
from mien.errors import InputError  # noqa: E402
from mien.face.geometry import euler_to_rotation  # noqa: E402
from mien.models.reenact import Motion, load_reenact_model, pose_rotation, save_reenact_model  # noqa: E402
from mien.models.reenact.warp import WarpGenerator, identity_grid, warp_volume  # noqa: E402

pytestmark = pytest.mark.usefixtures("torch_one_thread")


def _blob(n=9, at=(6, 4, 4)) -> torch.Tensor:
    """(1, 1, n, n, n) volume, one hot voxel at (x, y, z) index ``at``."""
    v = torch.zeros(1, 1, n, n, n)
    x, y, z = at
    v[0, 0, z, y, x] = 1.0
    return v


def _argmax_xyz(v: torch.Tensor) -> tuple[int, int, int]:
    d, h, w = v.shape[-3:]
    i = int(v.flatten().argmax())
    return i % w, (i // w) % h, i // (w * h)


def _rot_y(deg: float) -> torch.Tensor:
    return torch.from_numpy(euler_to_rotation(0.0, math.radians(deg), 0.0)).float()[None]


def test_identity_transform_with_zero_flow_returns_the_volume():
    torch.manual_seed(0)
    v = torch.randn(2, 3, 8, 12, 16)
    eye, t0 = torch.eye(3).expand(2, 3, 3), torch.zeros(2, 3)
    for inverse in (False, True):
        out = warp_volume(v, eye, t0, torch.zeros(2, 3, 8, 12, 16), inverse=inverse)
        assert torch.allclose(out, v, atol=1e-5, rtol=0)  # float32 rounding of (2i + 1) / 12 - 1
    v2 = torch.randn(2, 3, 8, 16, 16)  # power-of-2 sides: voxel centres are exact binary fractions
    for inverse in (False, True):
        assert torch.equal(warp_volume(v2, eye, t0, torch.zeros(2, 3, 8, 16, 16), inverse=inverse), v2)
    # one identity grid, voxel centres under align_corners=False
    g = identity_grid(2, 2, 4)
    assert torch.allclose(g[0, 0, :, 0], torch.tensor([-0.75, -0.25, 0.25, 0.75]))
    assert torch.allclose(g[:, 0, 0, 2], torch.tensor([-0.5, 0.5]))


def test_known_rotation_and_translation_move_a_volume_as_expected():
    # blob at x index 6 of 9: normalised x = 13/9 - 1 = 0.444, y = z = 0
    v = _blob()
    r = _rot_y(90.0)  # Ry(90°): (x, 0, 0) -> (0, 0, -x)
    out = warp_volume(v, r, torch.zeros(1, 3), None, inverse=True)  # canonical -> observed: x_obs = R x
    assert _argmax_xyz(out) == (4, 4, 2)  # z = 5/9 - 1 = -0.444
    assert float(out.max()) == pytest.approx(1.0, abs=1e-5)
    back = warp_volume(out, r, torch.zeros(1, 3), None, inverse=False)  # observed -> canonical undoes it
    assert torch.allclose(back, v, atol=1e-5)
    # translation by +2 voxels in y (2 · 2/9 normalised): the blob moves down
    shifted = warp_volume(v, torch.eye(3)[None], torch.tensor([[0.0, 4 / 9, 0.0]]), None, inverse=True)
    assert _argmax_xyz(shifted) == (6, 6, 4)


def test_flow_is_signed_and_starts_at_zero():
    gen = WarpGenerator(10, (8, 8, 8), width=8, max_flow=0.5)
    z, e = torch.randn(2, 4), torch.randn(2, 6)
    assert torch.equal(gen(z, e), torch.zeros(2, 3, 8, 8, 8))  # untrained: the rigid warp alone
    torch.nn.init.normal_(gen.out.weight, std=1.0)
    f = gen(z, e)
    assert (f < 0).any() and (f > 0).any() and f.abs().max() <= 0.5  # the seed's ReLU→Tanh was never < 0


def test_pose_rotation_is_miens_convention():
    pose = torch.tensor([[20.0, -10.0, 5.0, 1.0, 2.0, 500.0]])  # yaw, pitch, roll deg, t mm
    want = euler_to_rotation(math.radians(-10), math.radians(20), math.radians(5))
    assert np.allclose(pose_rotation(pose, use_roll=True)[0].numpy(), want, atol=1e-6)
    no_roll = euler_to_rotation(math.radians(-10), math.radians(20), 0.0)
    assert np.allclose(pose_rotation(pose)[0].numpy(), no_roll, atol=1e-6)
    with pytest.raises(ValueError, match="pose"):
        pose_rotation(torch.zeros(6))


def test_registered_configs_shapes():
    names = mien.list_models("reenact")
    assert {"reenact-tiny", "reenact-base", "reenact-full", "reenact-student-tiny"} <= set(names)
    for name in ("reenact-tiny", "reenact-base", "reenact-full"):
        spec = mien.get_model_spec(name) if hasattr(mien, "get_model_spec") else None
        with torch.device("meta"):
            m = mien.create_model(name)
            s = m.size
            x, p = torch.rand(2, 3, s, s), torch.zeros(2, 6)
            app = m.encode_appearance(x)
            c = m.config
            assert app.volume.shape == (2, c.volume_channels, c.volume_depth, s // 4, s // 4)
            assert app.descriptor.shape == (2, c.descriptor_dim)
            mo = m.encode_motion(x, p)
            assert mo.rotation.shape == (2, 3, 3) and mo.translation.shape == (2, 3) and mo.z.shape == (2, c.z_dim)
            assert m.decode(app, mo, mo).shape == (2, 3, s, s)
        if spec is not None:
            assert spec.contract.crop_size == s and spec.contract.crop == "aligned-ffhq-0.0"
    with pytest.raises(ValueError, match="src must be"):
        mien.create_model("reenact-tiny").encode_appearance(torch.rand(1, 3, 32, 32))


def test_batched_equals_per_sample():
    torch.manual_seed(0)
    m = mien.create_model("reenact-tiny").eval()
    for p in m.parameters():  # zero-initialised flow heads: make the flow non-zero
        if p.abs().sum() == 0:
            torch.nn.init.normal_(p, std=0.05)
    src, drv = torch.rand(3, 3, 64, 64), torch.rand(3, 3, 64, 64)
    ps, pd = torch.tensor([[10.0, 5, 0, 0, 0, 500]] * 3), torch.tensor([[-15.0, 0, 3, 0, 0, 500]] * 3)
    with torch.no_grad():
        out = m(src, drv, ps, pd)
        one = torch.cat([m(src[i:i + 1], drv[i:i + 1], ps[i:i + 1], pd[i:i + 1]) for i in range(3)])
    assert out.shape == (3, 3, 64, 64) and 0 <= float(out.min()) and float(out.max()) <= 1
    assert torch.allclose(out, one, atol=1e-5)
    st = mien.create_model("reenact-student-tiny").eval()
    idx = torch.tensor([0, 3, 1])
    with torch.no_grad():
        a = st(drv, idx)
        b = torch.cat([st(drv[i:i + 1], idx[i:i + 1]) for i in range(3)])
    assert torch.allclose(a, b, atol=1e-5)


def test_relative_motion_and_edit():
    torch.manual_seed(0)
    r = [pose_rotation(torch.tensor([[a, b, 0.0, 0, 0, 0]])) for a, b in ((10, 5), (-20, 0), (30, -10))]
    ms, m0, mt = (Motion(ri, torch.randn(1, 3), torch.randn(1, 4)) for ri in r)
    same = Motion.relative(ms, m0, m0)
    assert torch.allclose(same.rotation, ms.rotation, atol=1e-6) and torch.allclose(same.z, ms.z)
    rel = Motion.relative(ms, m0, mt)
    assert torch.allclose(rel.rotation, mt.rotation @ m0.rotation.transpose(1, 2) @ ms.rotation)
    assert torch.allclose(rel.translation, ms.translation + mt.translation - m0.translation)
    m = mien.create_model("reenact-tiny")
    with pytest.raises(ValueError, match="no AU directions"):
        m.edit(ms, {"AU12": 1.0})
    m.au_directions = {"AU12": torch.ones(4)}
    assert torch.allclose(m.edit(ms, {"AU12": 0.5}).z, ms.z + 0.5)
    with pytest.raises(ValueError, match="unknown AU"):
        m.edit(ms, {"AU99": 1.0})


def test_save_load_identical(tmp_path):
    torch.manual_seed(1)
    m = mien.create_model("reenact-tiny").eval()
    m.au_directions = {"AU01": torch.randn(32), "AU12": torch.randn(32)}
    save_reenact_model(m, tmp_path / "m")
    back = load_reenact_model(tmp_path / "m")
    x, p = torch.rand(2, 3, 64, 64), torch.randn(2, 6) * 10
    with torch.no_grad():
        assert torch.equal(m(x, x.flip(0), p, p.flip(0)), back(x, x.flip(0), p, p.flip(0)))
    assert back.size == 64 and not back.training
    assert set(back.au_directions) == {"AU01", "AU12"} and torch.equal(back.au_directions["AU12"], m.au_directions["AU12"])
    with pytest.raises(InputError, match="config.json missing"):
        load_reenact_model(tmp_path / "nothing")
    save_reenact_model(mien.create_model("reenact-student-tiny"), tmp_path / "s")
    with pytest.raises(InputError, match="student"):
        load_reenact_model(tmp_path / "s")
