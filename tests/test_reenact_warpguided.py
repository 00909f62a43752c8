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


def _batch(crops, subjects=(0, 0, 0, 0)):
    """Self-reenactment pairs (source frame 0, later drivers) with their mesh warp, as PairDataset(warp=True),
    collated as the loader of ``data.cross: true`` does (:func:`~mien.tasks.reenact.data.collate_pairs`)."""
    from mien.tasks.reenact.data import add_warp, collate_pairs

    items = []
    for d, subject in zip(crops[1:], subjects, strict=True):
        s = crops[0]
        items.append(add_warp({"src": torch.from_numpy(s.image).permute(2, 0, 1), "drv": torch.from_numpy(d.image)
                               .permute(2, 0, 1), "src_pose": torch.from_numpy(s.pose),
                               "drv_pose": torch.from_numpy(d.pose),
                               "src_landmarks": torch.from_numpy(s.landmarks[:, :2].copy()),
                               "drv_landmarks": torch.from_numpy(d.landmarks[:, :2].copy()),
                               "subject": torch.tensor(subject), "key": "k"}))
    return collate_pairs(items)


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


def test_region_mask_keeps_the_warp_outside_eyes_and_mouth(crops):
    """``region_mask``: a trained (here perturbed) refiner changes only the eye/brow and mouth boxes of the target
    points; every other pixel is the warp exactly; zero-initialised it is still the warp everywhere."""
    from mien.models.reenact.warpguided import LIPS_INNER
    from mien.pipelines.reenact import WarpReenactor

    w = WarpReenactor(128)
    st = w.encode_source(crops[0])
    warps = [w.warp(st, d, crops[1]) for d in crops[2:]]
    from mien.models.reenact.warpguided import flow_field

    def img(x):
        return torch.from_numpy(np.stack(x)).permute(0, 3, 1, 2).float() / 255.0

    args = (img([x[0] for x in warps]), img([crops[0].image] * 3),
            torch.from_numpy(np.stack([flow_field(x[1], x[2]) for x in warps])),
            torch.from_numpy(np.stack([x[3] for x in warps]).astype(np.float32)))
    m0 = create_model("reenact-warpguided-tiny", region_mask=True)
    with torch.no_grad():
        assert torch.equal(m0(*args), args[0])
    m = _perturbed()
    m.config.region_mask = True
    with torch.no_grad():
        out, mask = m(*args), m.region_mask(args[3])
    assert mask.shape == (3, 1, 128, 128) and float(mask.min()) == 0.0 and float(mask.max()) == 1.0
    outside = (mask == 0).expand_as(out)
    assert 0.3 < float(outside.float().mean()) < 0.95
    assert torch.equal(out[outside], args[0][outside])
    assert float((out - args[0]).abs()[~outside].max()) > 0.05
    inner = args[3][:, list(LIPS_INNER)].mean(1).round().long()  # the mouth centre is inside
    assert all(float(mask[i, 0, y, x]) == 1.0 for i, (x, y) in enumerate(inner.tolist()))


def test_relative_targets_and_cross_warp(crops):
    """Cross-identity training warps: another subject's source moved by the driver's motion relative to its own
    source frame (the targets of ``WarpReenactor`` at evaluation); None for a one-subject batch; the task's cross
    term at step 0 equals the warp's expression distance."""
    from mien.face.warp import relative_targets
    from mien.pipelines.reenact import WarpReenactor
    from mien.tasks.reenact import ReenactTask
    from mien.tasks.reenact.data import CROSS_KEYS, cross_warp

    a, b, c = (x.landmarks[:468, :2].astype(np.float64) for x in crops[:3])
    np.testing.assert_allclose(relative_targets(a, b, b), a)
    w = WarpReenactor(128)
    np.testing.assert_allclose(relative_targets(a, c, b), w.targets(w.encode_source(crops[0]), crops[2], crops[1]))
    batch = _batch(crops)
    assert cross_warp(batch) is None  # one subject
    assert len(batch["cross_rows"]) == 0 and batch["cross_warped"].shape == (0, 3, 128, 128)
    batch = _batch(crops, (0, 0, 1, 1))
    rows, srcs, warped, flow, points = cross_warp(batch)
    assert all(torch.equal(batch[k], x) for k, x in zip(CROSS_KEYS, (rows, srcs, warped, flow, points), strict=True))
    assert rows.tolist() == [0, 1, 2, 3] and srcs.tolist() == [2, 2, 0, 0]
    assert warped.shape == (4, 3, 128, 128) and flow.shape == (4, 2, 128, 128) and points.shape == (4, 468, 2)
    slm, dlm = batch["src_landmarks"].double().numpy(), batch["drv_landmarks"].double().numpy()
    np.testing.assert_allclose(points[0].numpy(), relative_targets(slm[2, :468], dlm[0, :468], slm[0, :468]),
                               atol=1e-4)
    task = ReenactTask("reenact-warpguided-tiny", {"region_mask": True}, stage="warpguided", color_jitter=0.0,
                       perceptual_stages=1, weights=dict(l1=1.0, perceptual=0.0, identity=0.0, expression=0.0,
                                                          cross=0.5))
    logs: dict = {}
    total, *_ = task._step(batch, logs)
    assert float(logs["cross_expression"].detach()) == pytest.approx(float(logs["cross_expression_warp"]), abs=1e-6)
    assert float(logs["cross_expression"].detach()) > 0
    total.backward()
    assert task.model.to_mask.weight.grad.abs().sum() > 0


def test_cross_expression_warp_is_computed_only_on_logged_steps(crops):
    """``cross_expression_warp`` (the warp's own cross-identity expression distance) is a metric only: its
    FaceExpressionNet pass runs on the training steps Lightning writes, not on the others, whose loss and
    gradients are the same."""
    from types import SimpleNamespace

    from mien.tasks.reenact import ReenactTask

    batch = _batch(crops, (0, 0, 1, 1))
    torch.manual_seed(0)
    task = ReenactTask("reenact-warpguided-tiny", stage="warpguided", color_jitter=0.0, perceptual_stages=1,
                       weights=dict(l1=1.0, perceptual=0.0, identity=0.0, expression=0.0, cross=0.5))
    calls = []
    expression = task.faceapi.expression
    task.faceapi.expression = lambda x: calls.append(len(x)) or expression(x)

    def step(logged: bool):
        task._trainer = SimpleNamespace(fast_dev_run=False, _logger_connector=SimpleNamespace(
            should_update_logs=logged))
        task.zero_grad(set_to_none=True)
        logs: dict = {}
        total, *_ = task._step(batch, logs)
        total.backward()
        return total.detach(), {n: p.grad.clone() for n, p in task.model.named_parameters() if p.grad is not None}, logs

    try:
        logged, quiet = step(True), step(False)
    finally:
        task._trainer = None
    assert "cross_expression_warp" in logged[2] and "cross_expression_warp" not in quiet[2]
    assert len(calls) == 3 + 2  # driver target, the warp (logged step only), the output
    assert torch.equal(logged[0], quiet[0]) and logged[1].keys() == quiet[1].keys() and logged[1]
    assert all(torch.equal(g, quiet[1][n]) for n, g in logged[1].items())
    task.eval()  # validation: always (epoch means)
    logs: dict = {}
    with torch.no_grad():
        task._step(batch, logs)
    assert "cross_expression_warp" in logs
