"""Reenactment training (mien.tasks.reenact) on real shard frames: pairs, losses, each stage lowers its loss,
`mien train reenact` → checkpoint → `mien export reenact` → load gives identical outputs (student: ONNX too),
per-AU directions."""

from __future__ import annotations

import json

import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("lightning")

from mien.cli.main import main as mien_main  # noqa: E402
from mien.data.reader import shard_urls  # noqa: E402
from mien.models.reenact import load_reenact_model, load_student_model  # noqa: E402
from mien.pipelines.prepare import PrepareOptions, prepare  # noqa: E402
from mien.tasks.reenact import PairDataset, ReenactTask, cross_permutation  # noqa: E402
from mien.tasks.reenact.data import flip_pair  # noqa: E402
from mien.tasks.reenact.losses import cross_contrastive, region_weights  # noqa: E402

pytestmark = pytest.mark.usefixtures("torch_one_thread")

VIDEOS = ("videos/talking/Input__00010.mp4", "videos/talking/Input__00002.mp4")  # two subjects, 224², short
LIGHT = dict(l1=1.0, perceptual=0.1, identity=0.0, expression=0.0, cross=0.05)


@pytest.fixture(scope="module")
def shards(shared_data, tmp_path_factory):
    """A tiny prepared dataset: one 1-s clip (25 frames, 128² crops) from each of two subjects."""
    out = tmp_path_factory.mktemp("reenact") / "ds"
    prepare([str(shared_data / v) for v in VIDEOS], str(out),
            PrepareOptions(clip_seconds=1.0, fps=25.0, crop_size=128, clips_per_video=1, audio=False,
                           shard_samples=1))
    return out


@pytest.fixture(scope="module")
def batch(shards):
    ds = PairDataset(shard_urls(str(shards)), pairs_per_clip=2, train=False)
    return next(iter(torch.utils.data.DataLoader(ds, batch_size=4)))


def _fit_steps(task: ReenactTask, batch, steps: int, lr: float = 2e-3) -> list[float]:
    """Plain optimisation of the generator loss on one fixed batch (no Trainer), losses before each step."""
    params = [p for p in task.model.parameters() if p.requires_grad]
    opt = torch.optim.Adam(params, lr=lr)
    task.train()
    losses = []
    for _ in range(steps):
        total, *_ = task._step(batch, {})
        opt.zero_grad()
        total.backward()
        opt.step()
        losses.append(float(total))
    return losses


def test_pairs_and_loss_helpers(batch):
    assert batch["src"].shape == (4, 3, 128, 128) and batch["src"].dtype == torch.uint8
    assert batch["drv_landmarks"].shape == (4, 478, 2) and batch["src_pose"].shape == (4, 6)
    assert len(set(batch["subject"].tolist())) == 2 and not torch.equal(batch["src"][0], batch["drv"][0])
    one = {k: v[0] for k, v in batch.items() if torch.is_tensor(v)}
    f = flip_pair(one)
    assert torch.equal(f["src"], one["src"].flip(-1)) and f["drv_pose"][0] == -one["drv_pose"][0]
    perm, valid = cross_permutation(batch["subject"])
    assert valid.all() and (batch["subject"][perm] != batch["subject"]).all()
    w = region_weights(batch["drv_landmarks"], 128, 64, eye=2.0, mouth=1.0)
    assert w.shape == (4, 1, 64, 64) and float(w.min()) == 1.0 and float(w.max()) == 3.0
    z = torch.randn(4, 8)
    good = cross_contrastive([z], z, -z)  # anchors equal to the positive, opposite to the negative
    bad = cross_contrastive([z], -z, z)
    assert 0 <= float(good) < float(bad)  # minimising pulls towards the driver (the seed had the sign wrong)


def test_cross_warps_are_made_in_the_loader(shards, monkeypatch):
    """``data.cross``: the DataLoader's worker collates the pairs with their cross-identity warps
    (``collate_pairs``): the same seed gives the same pairs as without it, and the cross tensors are exactly
    ``cross_warp`` of that batch (what the task computed on the main process before); the warpguided step reads them
    and never warps; fitting without ``data.cross`` is refused."""
    from types import SimpleNamespace

    from mien.tasks.reenact import ReenactDataModule
    from mien.tasks.reenact import data as D

    def first_batch(cross: bool, workers: int):
        dm = ReenactDataModule(str(shards), val_root=str(shards), batch_size=4, num_workers=workers,
                               pairs_per_clip=2, buffer=4, seed=3, warp=True, cross=cross)
        dm.setup("fit")
        loader = dm.train_dataloader()
        assert (loader.collate_fn is D.collate_pairs) == cross
        return dm, next(iter(loader))

    _, plain = first_batch(False, 0)
    dm, batch = first_batch(True, 1)  # collated in the worker process
    assert len(set(plain["subject"].tolist())) == 2 and not set(D.CROSS_KEYS) & set(plain)
    for k, v in plain.items():
        assert batch[k] == v if k == "key" else torch.equal(batch[k], v), k
    want = D.cross_warp(plain)
    assert len(want[0]) == 4
    for k, x in zip(D.CROSS_KEYS, want, strict=True):
        assert torch.equal(batch[k], x), k

    def refuse(_batch):
        raise AssertionError("cross_warp ran on the main process")

    monkeypatch.setattr(D, "cross_warp", refuse)
    task = ReenactTask("reenact-warpguided-tiny", stage="warpguided", color_jitter=0.0, perceptual_stages=1,
                       weights=dict(l1=1.0, perceptual=0.0, identity=0.0, expression=0.0, cross=0.5))
    logs: dict = {}
    with torch.no_grad():
        task._step(batch, logs)
    assert float(logs["cross_expression"]) > 0
    with pytest.raises(ValueError, match="no cross-identity warps"):
        task._step(plain, {})
    dm.hparams.cross = False
    task._trainer = SimpleNamespace(datamodule=dm)
    try:
        with pytest.raises(ValueError, match="set data.cross: true"):
            task.on_fit_start()
    finally:
        task._trainer = None


def test_every_loss_term_is_computed_and_logged(batch):
    from mien.tasks.reenact.losses import d_hinge

    torch.manual_seed(0)
    w = dict(l1=1.0, perceptual=0.1, identity=0.1, expression=0.05, gan=0.1, feature_matching=1.0, cross=0.1)
    task = ReenactTask(weights=w, z_reg=0.01)
    logs: dict = {}
    total, b, out, _ = task._step(batch, logs)
    assert {"l1", "perceptual", "identity", "expression", "gan", "feature_matching", "cross", "cross_identity",
            "z_reg"} <= set(logs)
    assert all(torch.isfinite(v) for v in logs.values()) and float(total) > 0
    assert 0 <= float(logs["identity"]) <= 2 and float(d_hinge(task.disc(b["drv"]), task.disc(out))) >= 0


def test_base_stage_lowers_the_loss(batch):
    torch.manual_seed(0)
    task = ReenactTask(weights=LIGHT, perceptual_stages=1, color_jitter=0.0)
    logs: dict = {}
    task._step(batch, logs)
    assert {"l1", "perceptual", "cross"} <= set(logs)
    losses = _fit_steps(task, batch, 12)
    assert min(losses[-3:]) < 0.8 * losses[0], losses


def test_cli_fit_export_load_hr_and_student(shards, batch, tmp_path, capsys):
    from mien.cli.train import build_cli

    common = ["--data.root", str(shards), "--data.val_fraction", "0.5", "--data.batch_size", "2",
              "--data.num_workers", "0", "--data.buffer", "4", "--trainer.max_steps", "2",
              "--trainer.val_check_interval", "2", "--trainer.limit_val_batches", "1",
              "--trainer.enable_progress_bar", "false", "--trainer.logger", "false",
              "--trainer.default_root_dir", str(tmp_path), "--model.perceptual_stages", "1"]
    cli = build_cli("reenact", ["fit", "--config", "tiny", *common])
    ckpt = cli.trainer.checkpoint_callback.best_model_path
    assert ckpt and cli.trainer.global_step == 2
    out = tmp_path / "export"
    assert mien_main(["export", "reenact", ckpt, "-o", str(out), "--au-data", str(shards)]) == 0
    model = load_reenact_model(out)
    task = ReenactTask.load_from_checkpoint(ckpt, map_location="cpu", faceapi_pretrained=False).eval()
    b = task._images(batch, 64)
    with torch.no_grad():
        want = task.model(b["src"], b["drv"], b["src_pose"], b["drv_pose"])
        got = model(b["src"], b["drv"], b["src_pose"], b["drv_pose"])
    assert torch.equal(want, got)
    meta = json.loads((out / "config.json").read_text())
    assert meta["au_directions_fit"]["frames"] > 0 and "AU12" in model.au_directions
    m = model.encode_motion(b["src"], b["src_pose"])
    assert model.edit(m, {"AU12": 0.8}).z.shape == m.z.shape

    # hr stage: a GHR on the frozen exported base; target = the 128² shard crop
    torch.manual_seed(0)
    # (cycle term off: the 2-step base is far from the target, so faithfulness to it and the target conflict)
    hr = ReenactTask(stage="hr", teacher=str(out), weights={**LIGHT, "cycle": 0.0}, perceptual_stages=1)
    assert hr.model.size == 128 and all(not p.requires_grad for n, p in hr.model.named_parameters()
                                        if not n.startswith("ghr."))
    losses = _fit_steps(hr, batch, 8, lr=1e-3)
    assert min(losses[-2:]) < 0.95 * losses[0], losses

    # student stage: distilled from the export, through the CLI, exported with ONNX
    torch.manual_seed(0)
    st = ReenactTask(model="reenact-student-tiny", stage="student", teacher=str(out), weights=LIGHT)
    losses = _fit_steps(st, batch, 12)
    assert int((st.avatar_subject >= 0).sum()) == 2 and min(losses[-3:]) < 0.8 * losses[0], losses
    cli = build_cli("reenact", ["fit", "--config", "tiny", *common, "--model.stage", "student",
                                "--model.model", "reenact-student-tiny", "--model.teacher", str(out),
                                "--trainer.default_root_dir", str(tmp_path / "st")])
    st_out = tmp_path / "student"
    assert mien_main(["export", "reenact", cli.trainer.checkpoint_callback.best_model_path,
                      "-o", str(st_out)]) == 0
    student = load_student_model(st_out)
    assert (st_out / "student.onnx").is_file() and student.size == 64
    capsys.readouterr()
    assert mien_main(["export", "reenact", str(tmp_path / "missing.ckpt"), "-o", str(tmp_path / "x")]) == 2
    assert "missing.ckpt" in capsys.readouterr().err
