"""The warp-guided hybrid reenactor (mien.models.reenact.warpguided): an untrained refiner's output is the
classical mesh warp of baseline (b) byte for byte; shapes and bad inputs; a few training steps of the reenact
task's ``warpguided`` stage on real frames lower the loss; checkpoint → ``mien export reenact`` → load gives
identical outputs and ``load_reenactor`` / ``mien.reenact`` pick the hybrid from the folder."""

from __future__ import annotations

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("lightning")
pytest.importorskip("safetensors")

from mien.models.registry import create_model  # noqa: E402

pytestmark = pytest.mark.usefixtures("torch_one_thread")

VIDEO = "videos/talking/Input__00010.mp4"  # 224², 25 fps, one subject
FRAMES = (0, 12, 24, 36, 48)


@pytest.fixture(scope="module")
def crops(shared_data):
    """FaceCrops (128², as `mien prepare` cuts them) of a few frames of one real talking-head clip."""
    from mien.io.video import VideoSource
    from mien.pipelines.reenact import FaceCropper

    src = VideoSource(shared_data / VIDEO)
    fc = FaceCropper(src.info.width, src.info.height, 128, static=True)
    out = []
    try:
        for fr in src:
            if fr.index in FRAMES:
                out.append(fc(fr.image, fr.index))
            if fr.index >= max(FRAMES):
                break
    finally:
        fc.close()
    assert all(c is not None for c in out)
    return out


def _perturbed(seed: int = 0):
    torch.manual_seed(seed)
    m = create_model("reenact-warpguided-tiny")
    for layer in (m.to_mask, m.to_residual):
        torch.nn.init.normal_(layer.weight, std=0.05)
        torch.nn.init.constant_(layer.bias, 0.1)
    return m.eval()


def test_untrained_refiner_is_the_warp_exactly(crops):
    from mien.pipelines.reenact import WarpGuidedReenactor, WarpReenactor, load_reenactor

    hybrid = load_reenactor(create_model("reenact-warpguided-tiny"))
    warp = WarpReenactor(128)
    assert isinstance(hybrid, WarpGuidedReenactor) and hybrid.size == 128
    src, ref, drivers = crops[0], crops[1], crops[2:]
    for reference, edit in ((ref, None), (None, None), (ref, {"AU12": 1.0})):
        a = hybrid.animate(hybrid.encode_source(src), drivers, reference, edit)
        b = warp.animate(warp.encode_source(src), drivers, reference, edit)
        assert a.shape == (3, 128, 128, 3) and a.dtype == np.uint8
        np.testing.assert_array_equal(a, b)
    assert not np.array_equal(b[0], src.image)  # the warp moved something
    out = load_reenactor(_perturbed()).animate(hybrid.encode_source(src), drivers, ref)
    assert np.abs(out.astype(int) - b).max() > 10  # a non-zero refiner changes it


def test_shapes_heatmaps_and_bad_inputs():
    m = create_model("reenact-warpguided-tiny")
    b, s = 2, m.size
    pts = torch.rand(b, 468, 2) * (s - 1)
    out = m(torch.rand(b, 3, s, s), torch.rand(b, 3, s, s), torch.zeros(b, 2, s, s), pts)
    assert out.shape == (b, 3, s, s) and out.dtype == torch.float32
    pts[:] = 40.0
    hm = m.heatmaps(pts)
    assert hm.shape == (b, 3, s, s) and float(hm[0, 0, 40, 40]) == pytest.approx(1.0)
    assert float(hm[0, 0, 40, 50]) < 1e-3 and float(hm[0, :, :20].abs().sum()) == 0.0
    with pytest.raises(ValueError, match="flow must be"):
        m(torch.rand(b, 3, s, s), torch.rand(b, 3, s, s), torch.zeros(b, 3, s, s), pts)
    with pytest.raises(ValueError, match="warped must be"):
        m(torch.rand(b, 3, 64, 64), torch.rand(b, 3, s, s), torch.zeros(b, 2, s, s), pts)


def _batch(crops):
    """Self-reenactment pairs (source frame 0, later drivers) with their mesh warp, as PairDataset(warp=True)."""
    from mien.tasks.reenact.data import add_warp

    items = []
    for d in crops[1:]:
        s = crops[0]
        items.append(add_warp({"src": torch.from_numpy(s.image).permute(2, 0, 1), "drv": torch.from_numpy(d.image)
                               .permute(2, 0, 1), "src_pose": torch.from_numpy(s.pose),
                               "drv_pose": torch.from_numpy(d.pose),
                               "src_landmarks": torch.from_numpy(s.landmarks[:, :2].copy()),
                               "drv_landmarks": torch.from_numpy(d.landmarks[:, :2].copy()),
                               "subject": torch.tensor(0), "key": "k"}))
    return torch.utils.data.default_collate(items)


def test_warpguided_stage_lowers_the_loss_and_exports(crops, tmp_path):
    import lightning.pytorch as pl

    from mien.export.reenact import export_reenact_checkpoint
    from mien.models.reenact import load_warpguided_model
    from mien.models.reenact.io import export_kind
    from mien.pipelines.reenact import WarpGuidedReenactor, load_reenactor
    from mien.tasks.reenact import ReenactTask

    batch = _batch(crops)
    assert batch["warped"].shape == (4, 3, 128, 128) and batch["flow"].shape == (4, 2, 128, 128)
    torch.manual_seed(0)
    task = ReenactTask("reenact-warpguided-tiny", stage="warpguided", color_jitter=0.0, perceptual_stages=1,
                       weights=dict(l1=1.0, perceptual=0.05, identity=0.0, expression=0.1, cross=0.0,
                                    mouth_region=3.0))
    logs: dict = {}
    total, b, out, _ = task._step(batch, logs)
    assert torch.equal(out, b["warped"])  # step 0: the output is the warp
    assert float(logs["l1"].detach()) > 0 and {"perceptual", "expression", "warp_l1"} <= set(logs)
    opt = torch.optim.Adam(task.model.parameters(), lr=1e-3)
    task.train()
    losses = []
    for _ in range(10):
        total, *_ = task._step(batch, {})
        opt.zero_grad()
        total.backward()
        opt.step()
        losses.append(float(total.detach()))
    assert losses[-1] < 0.97 * losses[0] and min(losses[-3:]) < min(losses[:3]), losses
    # checkpoint -> mien export reenact -> load: identical outputs; the folder selects the hybrid reenactor
    ckpt = tmp_path / "wg.ckpt"
    torch.save({"state_dict": task.state_dict(), "hyper_parameters": dict(task.hparams),
                "pytorch-lightning_version": pl.__version__}, ckpt)
    export_reenact_checkpoint(ckpt, tmp_path / "wg", au_data=str(tmp_path / "unused"))
    assert export_kind(tmp_path / "wg") == "warpguided"
    loaded = load_warpguided_model(tmp_path / "wg")
    task.model.eval()
    with torch.no_grad():
        args = (b["warped"], b["src"], b["flow"], b["points"])
        torch.testing.assert_close(loaded(*args), task.model(*args), rtol=0, atol=0)
    r = load_reenactor(tmp_path / "wg")
    assert isinstance(r, WarpGuidedReenactor) and r.name == "wg" and r.au_directions
