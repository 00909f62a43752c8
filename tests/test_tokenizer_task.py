"""TokenizerTask (mien.tasks.tokenizer): schedule (mien.tasks.schedules), losses, training on real face crops, checkpoint export, CLI."""

from __future__ import annotations

import math

import pytest

torch = pytest.importorskip("torch")
pl = pytest.importorskip("lightning.pytorch")
pytest.importorskip("timm")

from mien.cli.train import build_cli, config_path  # noqa: E402
from mien.export.tokenizer import export_checkpoint  # noqa: E402
from mien.models.tokenizer import load_pretrained  # noqa: E402
from mien.tasks.schedules import WarmupDecaySchedule  # noqa: E402
from mien.tasks.tokenizer import (  # noqa: E402
    ClipTensorDataset,
    PerceptualLoss,
    PredictorTask,
    TokenizerTask,
    clips_from_crops,
    diversity_loss,
    load_face_crops,
    prediction_losses,
    temporal_losses,
)
from mien.tasks.tokenizer.config import ScheduleConfig as S  # noqa: E402
from mien.tasks.tokenizer.config import TokenizerLoss as Loss  # noqa: E402
from mien.tasks.tokenizer.config import TokenizerWeights as W  # noqa: E402
from mien.tasks.tokenizer.data import unpack_batch  # noqa: E402

VIDEO = "videos/talking/face_1.mp4"
# intentional in these tests: frozen sub-modules stay in eval mode, no validation data, argv given to the CLI
pytestmark = [pytest.mark.filterwarnings("ignore:Found .* module\\(s\\) in eval mode"),
              pytest.mark.filterwarnings("ignore:You defined a `validation_step` but have no `val_dataloader`"),
              pytest.mark.filterwarnings("ignore:Total length of `list` across ranks is zero"),
              pytest.mark.filterwarnings("ignore:LightningCLI's args parameter is intended"),
              pytest.mark.usefixtures("torch_one_thread")]
FIXED = {"recon": 1.0, "temporal": 0.05, "diversity": 0.05, "perceptual": 0.0}



@pytest.fixture(scope="module")
def real_clips(shared_data):
    """uint8 (4, 6, 3, 64, 64) clips of real face crops (first second of a talking-head video)."""
    crops = load_face_crops(shared_data / VIDEO, 64, end=1.0)
    assert crops.shape[0] >= 20 and crops.shape[1:] == (64, 64, 3)
    assert 40 < crops.mean() < 220  # a real, exposed face, not black padding
    clips = clips_from_crops(crops, 6, 4)[:4]
    assert clips.shape == (4, 6, 3, 64, 64) and clips.dtype == torch.uint8
    return clips


def _loader(clips, batch_size=4):
    ds = ClipTensorDataset(clips, torch.tensor([0, 0, 1, 1])[: len(clips)])
    return torch.utils.data.DataLoader(ds, batch_size=batch_size, shuffle=False)


def _trainer(tmp_path, steps, **kw):
    return pl.Trainer(max_steps=steps, accelerator="cpu", logger=False, enable_checkpointing=False,
                      enable_progress_bar=False, enable_model_summary=False, default_root_dir=tmp_path, **kw)


# ---- schedule -----------------------------------------------------------------------------------------------
def test_schedule_values():
    s = WarmupDecaySchedule(1e-6, 5e-5, 1e-6, warmup_steps=100, total_steps=1100, floor=1e-6)
    assert s(0) == pytest.approx(1e-6)
    assert s(50) == pytest.approx((1e-6 + 5e-5) / 2)
    assert s(100) == pytest.approx(5e-5)
    assert s(600) == pytest.approx((5e-5 + 1e-6) / 2)
    assert s(1100) == pytest.approx(1e-6) and s(10_000) == pytest.approx(1e-6)
    w = WarmupDecaySchedule(0.01, 0.2, 0.5, warmup_steps=10, total_steps=30)
    assert [w(k) for k in (0, 5, 10, 20, 30, 99)] == pytest.approx([0.01, 0.105, 0.2, 0.35, 0.5, 0.5])
    assert WarmupDecaySchedule(1.0, 2.0, 0.0, 0, 10)(0) == 2.0  # no warm-up: starts at the peak
    with pytest.raises(ValueError):
        WarmupDecaySchedule(0, 1, 0, warmup_steps=10, total_steps=5)
    # the AU tasks' LR factor: (k + 1) / W during warm-up, then cosine to the final ratio
    c = WarmupDecaySchedule(0.0, 1.0, 0.1, warmup_steps=4, total_steps=14, decay="cosine", warmup_offset=1)
    assert [c(k) for k in (0, 3, 4, 9, 14, 50)] == pytest.approx([0.25, 1.0, 1.0, 0.55, 0.1, 0.1])
    with pytest.raises(ValueError):
        WarmupDecaySchedule(0, 1, 0, 0, 1, decay="step")


def test_task_lr_really_warms_up():
    task = TokenizerTask("tokenizer-tiny", schedule=S(lr=1e-3, min_lr=1e-5, warmup_steps=10, total_steps=30),
                         weights=W(recon=(0.01, 0.2, 0.5)))
    conf = task.configure_optimizers()
    opt, sched = conf["optimizer"], conf["lr_scheduler"]["scheduler"]
    assert conf["lr_scheduler"]["interval"] == "step"
    lrs = []
    for _ in range(31):
        lrs.append(opt.param_groups[0]["lr"])
        opt.step()
        sched.step()
    assert lrs[0] == pytest.approx(1e-5)  # starts at min_lr, not at the peak (the seed's joint-run bug)
    assert lrs[5] == pytest.approx((1e-5 + 1e-3) / 2)
    assert lrs[10] == pytest.approx(1e-3) and max(lrs) == pytest.approx(1e-3)
    assert lrs[20] == pytest.approx((1e-3 + 1e-5) / 2) and lrs[30] == pytest.approx(1e-5)
    assert all(a <= b for a, b in zip(lrs[:10], lrs[1:11], strict=True))  # monotone warm-up
    w = task.loss_weights(5)
    assert w["recon"] == pytest.approx(0.105) and w["temporal"] == pytest.approx(0.35)
    assert task.loss_weights(30)["diversity"] == pytest.approx(0.2)


# ---- losses -------------------------------------------------------------------------------------------------
def test_loss_definitions():
    same = torch.nn.functional.normalize(torch.ones(2, 8, 4), dim=-1)
    coh, con = temporal_losses(same, stride=5)
    assert float(coh) == pytest.approx(0, abs=1e-6) and float(con) == pytest.approx(1)
    assert float(diversity_loss(same, stride=5)) == pytest.approx(1)
    eye = torch.eye(4).unsqueeze(0)  # 4 orthogonal tokens
    coh, con = temporal_losses(eye, stride=5)
    assert float(coh) == pytest.approx(1) and float(con) == 0  # T <= stride: no contrast term
    assert float(diversity_loss(eye, stride=1)) == pytest.approx(0)
    opp = torch.stack([eye[0, 0], -eye[0, 0]]).unsqueeze(0)  # cos = -1: clamped to 0
    assert float(diversity_loss(opp, stride=1)) == 0
    assert float(diversity_loss(eye[:, :1], stride=1)) == 0
    # two clips, each internally orthogonal, but clip 1 == clip 0: only the batch scope sees it
    two = torch.cat([eye[:, :2], eye[:, :2]])
    assert float(diversity_loss(two, stride=1, scope="clip")) == pytest.approx(0)
    assert float(diversity_loss(two, stride=1, scope="batch")) == pytest.approx(2 * 2 / (4 * 3))
    with pytest.raises(ValueError, match="scope"):
        diversity_loss(two, scope="nope")


def test_perceptual_loss_random_frozen_net():
    perc = PerceptualLoss("resnet10t", pretrained=False, out_indices=(1, 2))
    a = torch.rand(2, 3, 64, 64, requires_grad=True)
    assert float(perc(a, a.detach()).detach()) == pytest.approx(0, abs=1e-6)
    loss = perc(a, torch.rand(2, 3, 64, 64))
    loss.backward()
    assert float(loss.detach()) > 0 and a.grad is not None
    assert not any(p.requires_grad for p in perc.parameters())


# ---- training on real crops ---------------------------------------------------------------------------------
def test_training_on_real_faces_reduces_loss(real_clips, tmp_path):
    torch.manual_seed(0)
    task = TokenizerTask("tokenizer-tiny", schedule=S(lr=3e-3, min_lr=1e-4, warmup_steps=3, total_steps=25),
                         weights=W(recon=(1, 1, 1), temporal=(0.05, 0.05, 0.05), diversity=(0.05, 0.05, 0.05),
                                   perceptual=(0.1, 0.1, 0.1)),
                         loss=Loss(recon="mse+l1", perceptual_net="resnet10t", perceptual_pretrained=False))
    frames, ids = real_clips.float() / 255, torch.tensor([0, 0, 1, 1])
    with torch.no_grad():
        before = task.compute_losses(frames, ids, FIXED)
    trainer = _trainer(tmp_path, 25)
    trainer.fit(task, _loader(real_clips))
    assert trainer.global_step == 25
    with torch.no_grad():
        after = task.compute_losses(frames, ids, FIXED)
    assert float(after["loss"]) < 0.7 * float(before["loss"])
    assert float(after["loss_recon"]) < 0.7 * float(before["loss_recon"])
    logged = trainer.callback_metrics
    for k in ("loss", "loss_recon", "loss_perceptual", "loss_temporal", "loss_coherence", "loss_contrast",
              "loss_diversity", "w_recon", "w_temporal", "w_diversity", "w_perceptual", "lr", "sim_mean"):
        assert f"train/{k}" in logged, k
        assert math.isfinite(float(logged[f"train/{k}"]))
    assert float(logged["train/lr"]) < 3e-3  # decaying after the warm-up


def test_freeze_expression_transformer(real_clips, tmp_path):
    torch.manual_seed(0)
    task = TokenizerTask("tokenizer-tiny", schedule=S(lr=1e-3, warmup_steps=0, total_steps=3),
                         freeze_expression_transformer=True)
    frozen = {k: v.clone() for k, v in task.model.expression.state_dict().items()}
    recon = {k: v.clone() for k, v in task.model.reconstruction.state_dict().items()}
    opt = task.configure_optimizers()["optimizer"]
    n_opt = sum(p.numel() for g in opt.param_groups for p in g["params"])
    assert n_opt == sum(p.numel() for p in task.model.parameters() if p.requires_grad)
    assert not any(p.requires_grad for p in task.model.expression.parameters())
    _trainer(tmp_path, 3).fit(task, _loader(real_clips[:2], 2))
    assert not task.model.expression.training
    assert all(torch.equal(v, task.model.expression.state_dict()[k]) for k, v in frozen.items())
    assert any(not torch.equal(v, task.model.reconstruction.state_dict()[k]) for k, v in recon.items())


def test_checkpoint_export_load_identical(real_clips, tmp_path):
    torch.manual_seed(0)
    task = TokenizerTask("tokenizer-vit-tiny", schedule=S(lr=1e-3, warmup_steps=1, total_steps=2))
    crops56 = torch.nn.functional.interpolate(real_clips[:2].flatten(0, 1).float(), size=(56, 56),
                                              mode="area").round().to(torch.uint8).reshape(2, 6, 3, 56, 56)
    trainer = _trainer(tmp_path, 2)
    trainer.fit(task, _loader(crops56, 2))
    ckpt = tmp_path / "last.ckpt"
    trainer.save_checkpoint(ckpt)
    out = export_checkpoint(ckpt, tmp_path / "export")
    assert {p.name for p in out.iterdir()} == {"config.json", "model.safetensors"}
    loaded = load_pretrained(out)
    task.eval()
    x, ids = crops56.float() / 255, torch.tensor([0, 1])
    with torch.no_grad():
        a, b = task.model(x, ids), loaded(x, ids)
    assert torch.equal(a.tokens, b.tokens) and torch.equal(a.recon, b.recon)


def test_cli_tiny_config_fits(shared_data, tmp_path):
    cfg = config_path("tokenizer", "tiny")
    assert cfg.is_file()
    videos = f"[{shared_data / VIDEO}, {shared_data / 'videos/talking/face_2.mp4'}]"
    cli = build_cli("tokenizer", ["fit", "--config", str(cfg), f"--data.init_args.videos={videos}",
                    "--data.init_args.val_videos=[1]", "--data.init_args.clip_len=6",
                    "--data.init_args.end=0.5", "--trainer.max_steps=2", "--trainer.logger=false",
                    f"--trainer.default_root_dir={tmp_path}", "--trainer.enable_checkpointing=false"])
    assert cli.trainer.global_step == 2
    assert isinstance(cli.model, TokenizerTask) and cli.model.hparams.model == "tokenizer-tiny"
    assert set(cli.datamodule.train_set.subject_id.tolist()) == {0}
    assert set(cli.datamodule.val_set.subject_id.tolist()) == {1}
    assert "val/loss" in cli.trainer.callback_metrics and "val/loss_recon" in cli.trainer.callback_metrics


def test_predictor_task_trains_on_frozen_tokenizer(real_clips, tmp_path):
    torch.manual_seed(0)
    task = PredictorTask(schedule=S(lr=3e-3, min_lr=1e-4, warmup_steps=2, total_steps=15))
    frozen = {k: v.clone() for k, v in task.tokenizer.state_dict().items()}
    frames, ids = real_clips.float() / 255, torch.tensor([0, 0, 1, 1])
    fixed = {"prediction": 1.0, "temporal": 0.0, "diversity": 0.0}
    with torch.no_grad():
        before = task.compute_losses(frames, ids, fixed)
    trainer = _trainer(tmp_path, 15)
    trainer.fit(task, _loader(real_clips))
    with torch.no_grad():
        after = task.compute_losses(frames, ids, fixed)
    assert float(after["loss_prediction"]) < float(before["loss_prediction"])
    assert all(torch.equal(v, task.tokenizer.state_dict()[k]) for k, v in frozen.items())
    assert "train/loss_prediction" in trainer.callback_metrics and "train/lr" in trainer.callback_metrics
    with pytest.raises(ValueError, match="dim"):
        PredictorTask(predictor="tokenizer-predictor-s")
    # a perfect predictor has zero prediction loss
    z = torch.nn.functional.normalize(torch.randn(2, 5, 8), dim=-1)
    assert float(prediction_losses(z, z[:, 1:])["loss_prediction"]) == pytest.approx(0, abs=1e-6)


def test_cli_predictor_config_and_bad_task(shared_data, tmp_path):
    cli = build_cli("predictor", ["fit", "--config", "tiny",
                                  f"--data.init_args.videos=[{shared_data / VIDEO}]", "--data.init_args.clip_len=4",
                                  "--data.init_args.end=0.4", "--trainer.max_steps=2", "--trainer.logger=false",
                                  f"--trainer.default_root_dir={tmp_path}", "--trainer.enable_checkpointing=false"])
    assert isinstance(cli.model, PredictorTask) and cli.trainer.global_step == 2
    with pytest.raises(ValueError, match="task"):
        build_cli("nope", [])


def test_clips_from_crops_and_empty_datamodule(tmp_path):
    import numpy as np

    from mien.tasks.tokenizer import VideoCropsDataModule

    crops = np.zeros((10, 8, 8, 3), np.uint8)
    crops[:, 0, 0, 0] = np.arange(10)
    clips = clips_from_crops(crops, 4, 3)
    assert clips.shape == (3, 4, 3, 8, 8) and clips[1, 0, 0, 0, 0] == 3  # starts 0, 3, 6
    assert clips_from_crops(crops[:3], 4).shape == (0, 4, 3, 8, 8)
    dm = VideoCropsDataModule([], crop_size=8)
    with pytest.raises(ValueError, match="no training clip"):
        dm.setup("fit")


def test_backbone_token_cache_skips_the_backbone_and_matches(monkeypatch):
    """With cache_backbone_tokens, a keyed batch runs the frozen backbone once; losses match the uncached run."""
    import torch

    from mien.tasks.tokenizer import TokenizerTask

    torch.manual_seed(0)
    task = TokenizerTask(model="tokenizer-vit-tiny", cache_backbone_tokens=True,
                         schedule=S(warmup_steps=1, total_steps=4))
    task.eval()
    size = task.model.config.crop_size
    frames = torch.rand(2, 3, 3, size, size)
    batch = {"video": (frames * 255).to(torch.uint8), "meta": [{"subject_id": 0}, {"subject_id": 1}],
             "__key__": ["a", "b"]}
    calls = []
    bb = task.model.tokenizer.backbone
    orig = bb.forward_features
    monkeypatch.setattr(bb, "forward_features", lambda x: calls.append(x.shape[0]) or orig(x))
    f, ids = unpack_batch(batch, size)
    first = task.compute_losses(f, ids, weights={"recon": 1, "temporal": 0, "diversity": 0, "perceptual": 0},
                                backbone_tokens=task.backbone_tokens_for(batch, f))
    assert calls == [6] and set(task._backbone_cache) == {"a", "b"}
    second = task.compute_losses(f, ids, weights={"recon": 1, "temporal": 0, "diversity": 0, "perceptual": 0},
                                 backbone_tokens=task.backbone_tokens_for(batch, f))
    assert calls == [6]  # served from the cache
    plain = task.compute_losses(f, ids, weights={"recon": 1, "temporal": 0, "diversity": 0, "perceptual": 0})
    assert torch.allclose(first["loss"], plain["loss"], atol=1e-3)  # float16 cache
    assert torch.allclose(first["loss"], second["loss"])


def test_fit_refuses_data_cut_differently_from_the_model():
    """A datamodule whose crops differ from the model's crop contract is refused before training."""
    from types import SimpleNamespace

    from mien.tasks.tokenizer import TokenizerTask

    task = TokenizerTask(model="tokenizer-tiny", model_overrides={"crop": "landmark-box-square-1.1"})
    task._trainer = SimpleNamespace(datamodule=SimpleNamespace(crop_contract="aligned-ffhq-0.0"))
    with pytest.raises(ValueError, match="crop contract"):
        task.on_fit_start()
    task._trainer = SimpleNamespace(datamodule=SimpleNamespace(crop_contract="landmark-box-square-1.1"))
    task.on_fit_start()
    with pytest.raises(ValueError, match="unsupported crop contract"):
        TokenizerTask(model="tokenizer-tiny", model_overrides={"crop": "stretched"})


def test_motion_weights_emphasise_what_moves():
    import torch

    from mien.tasks.tokenizer import TokenizerTask, motion_weights

    frames = torch.full((2, 4, 3, 8, 8), 0.5)
    frames[0, ::2, :, 2, 3] = 1.0  # one pixel blinks in clip 0; clip 1 is static
    w = motion_weights(frames, gain=4.0)
    assert w.shape == (2, 4, 1, 8, 8)
    torch.testing.assert_close(w[1], torch.ones_like(w[1]))  # nothing moves: uniform
    assert float(w[0, 0, 0, 2, 3]) > 3.0 and float(w[0, 0, 0, 0, 0]) == 1.0
    torch.testing.assert_close(motion_weights(frames, gain=0.0), torch.ones_like(w))
    torch.testing.assert_close(motion_weights(frames[:, :1]), torch.ones_like(w[:, :1]))
    # the weighted reconstruction loss differs from the uniform one exactly when the error sits where it moves
    torch.manual_seed(0)
    plain = TokenizerTask(model="tokenizer-tiny", loss=Loss(motion_gain=0.0))
    moving = TokenizerTask(model="tokenizer-tiny", loss=Loss(motion_gain=4.0))
    moving.load_state_dict(plain.state_dict())
    x = torch.rand(2, 4, 3, 64, 64)
    ids = torch.tensor([0, 1])
    plain.eval(), moving.eval()
    w1 = {"recon": 1.0, "temporal": 0.0, "diversity": 0.0, "perceptual": 0.0}
    a = plain.compute_losses(x, ids, w1)["loss_recon"]
    b = moving.compute_losses(x, ids, w1)["loss_recon"]
    assert torch.isfinite(b) and not torch.isclose(a, b)


def test_variance_loss_penalises_constant_clips_only():
    import torch
    from torch.nn import functional as F

    from mien.tasks.tokenizer import variance_loss

    const = F.normalize(torch.ones(3, 6, 8), dim=-1)
    assert abs(float(variance_loss(const, 0.1)) - (0.1 - 1e-2)) < 1e-6  # sqrt(eps) = 0.01
    g = torch.Generator().manual_seed(0)
    varied = F.normalize(torch.randn(3, 6, 8, generator=g), dim=-1)  # per-dim std ≈ 1/sqrt(8) ≈ 0.35
    assert float(variance_loss(varied, 0.1)) < 0.01
    assert float(variance_loss(varied[:, :1], 0.1)) == 0.0
    z = const.clone().requires_grad_(True)
    variance_loss(z + 0.01 * torch.randn(3, 6, 8, generator=g), 0.1).backward()
    assert z.grad is not None and z.grad.abs().sum() > 0  # pushes constant clips apart
