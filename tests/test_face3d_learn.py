"""Learned 3-D face reconstruction (issue 11, seed 5): soft rasteriser vs OpenCV, SMIRK/TEASER encoders and neural
renderers, the training task on real faces, export/load parity and the CLI."""

from __future__ import annotations

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("timm")

from mien.models.face3d import (  # noqa: E402
    Face3DParams,
    landmarks_px,
    load_face3d,
    load_face3d_encoder,
    load_face3d_renderer,
    load_face_model,
    project,
    render_geometry,
)
from mien.models.face3d.encoders import default_camera  # noqa: E402
from mien.models.face3d.params import to_pixels  # noqa: E402
from mien.models.face3d.raster import soft_rasterize  # noqa: E402

pytestmark = [pytest.mark.usefixtures("torch_one_thread"),
              pytest.mark.filterwarnings("ignore:Found .* module\\(s\\) in eval mode"),
              pytest.mark.filterwarnings("ignore:LightningCLI's args parameter is intended"),
              pytest.mark.filterwarnings("ignore:.*isinstance\\(treespec, LeafSpec\\)"),
              pytest.mark.filterwarnings("ignore:You defined a `validation_step` but have no `val_dataloader`"),
              pytest.mark.filterwarnings("ignore:Using ModelCheckpoint with manual optimization")]
VIDEO = "videos/talking/face_1.mp4"


@pytest.fixture(scope="module")
def face_model():
    return load_face_model()


def _params(fm, b=2, seed=0, scale=1.0):
    g = torch.Generator().manual_seed(seed)
    cam = torch.tensor([default_camera(fm)] * b)
    cam[:, 0] *= scale
    return Face3DParams(torch.zeros(b, fm.n_shape), torch.randn(b, fm.n_expression, generator=g) * 0.3,
                        torch.zeros(b, 3), torch.zeros(b, 2),
                        torch.tensor([[0.0, 0.35, 0.0], [0.15, -0.25, 0.08]])[:b], cam)


def _opencv_silhouette(px: np.ndarray, tri: np.ndarray, size: int) -> np.ndarray:
    import cv2

    img = np.zeros((size, size), np.uint8)
    fz = np.cross(px[tri[:, 1]] - px[tri[:, 0]], px[tri[:, 2]] - px[tri[:, 0]])[:, 2]
    for f in tri[fz < 0]:
        cv2.fillConvexPoly(img, np.round(px[f, :2] * 16).astype(np.int32), 255, lineType=cv2.LINE_8, shift=4)
    return img > 0


# ---- rasteriser ---------------------------------------------------------------------------------------------
@pytest.mark.parametrize("size", [64, 160])
def test_soft_silhouette_matches_opencv(face_model, size):
    """The soft silhouette's 0.5 level is OpenCV's filled mesh up to a 1-pixel band along its outline."""
    import cv2

    p = _params(face_model, scale=0.8)
    with torch.no_grad():
        geo = render_geometry(face_model, p, size)
        n, _ = project(face_model, p)
        px = torch.cat([to_pixels(n, size), n[..., 2:]], -1).numpy()
    for i in range(len(p)):
        hard = _opencv_silhouette(px[i], face_model.triangles, size)
        soft = geo["mask"][i, 0].numpy() > 0.5
        k = np.ones((3, 3), np.uint8)
        band = cv2.dilate(hard.astype(np.uint8), k).astype(bool) & ~cv2.erode(hard.astype(np.uint8), k).astype(bool)
        diff = soft != hard
        assert hard.sum() > 0.2 * size * size  # a real face-sized silhouette
        assert not (diff & ~band).any(), f"{(diff & ~band).sum()} pixels differ outside the 1-px band"
        assert diff.sum() < 0.5 * band.sum()
    # shading, normals and depth are where the mask is, and sane
    m = geo["mask"] > 0.5
    assert geo["shaded"].shape == (2, 3, size, size) and float(geo["shaded"].max()) <= 1.0
    nrm = geo["normals"].norm(dim=1, keepdim=True)[m]
    assert torch.allclose(nrm, torch.ones_like(nrm), atol=1e-3)
    assert float(geo["normals"][:, 2:3][m].mean()) < -0.5  # front faces look at the camera (−z)
    assert float(geo["depth"][geo["mask"] < 1e-4].abs().max()) < 1e-2  # background depth 0


def test_soft_rasteriser_gradients_at_edges(face_model):
    """Gradients of the silhouette reach the vertices on the outline (finite, non-zero) and match finite
    differences of the silhouette area under a change of camera scale."""
    size = 48
    p = _params(face_model, b=1)
    tri = torch.as_tensor(face_model.triangles)
    with torch.no_grad():
        n, _ = project(face_model, p)
    px = torch.cat([to_pixels(n, size), n[..., 2:]], -1).requires_grad_(True)
    _, sil = soft_rasterize(px, tri, px[..., 2:], size, sigma=0.5)
    target = torch.rand(1, 1, size, size, generator=torch.Generator().manual_seed(1))
    (sil * target).sum().backward()
    g = px.grad[0, :468, :2]
    assert torch.isfinite(px.grad).all()
    # the mesh's open edges (face outline, eye and mouth openings) lie on silhouette edges
    edges = np.sort(np.concatenate([face_model.triangles[:, [0, 1]], face_model.triangles[:, [1, 2]],
                                    face_model.triangles[:, [2, 0]]]), 1)
    uniq, count = np.unique(edges, axis=0, return_counts=True)
    outline = torch.as_tensor(np.unique(uniq[count == 1]))
    assert len(outline) > 30
    assert (g[outline].norm(dim=-1) > 1e-6).float().mean() > 0.8
    # d(area)/d(scale): autograd vs central differences
    cam = p.camera.clone().requires_grad_(True)

    def area(c):
        return render_geometry(face_model, p.replace(camera=c), size)["mask"].sum()

    a = area(cam)
    (d,) = torch.autograd.grad(a, cam)
    h = 1e-3 * float(cam[0, 0].detach())
    with torch.no_grad():
        up, dn = cam.clone(), cam.clone()
        up[0, 0] += h
        dn[0, 0] -= h
        fd = (area(up) - area(dn)) / (2 * h)
    assert float(d[0, 0]) > 0 and abs(float(d[0, 0]) - float(fd)) < 0.05 * abs(float(fd))


def test_soft_rasterize_bad_shapes():
    with pytest.raises(ValueError, match="px"):
        soft_rasterize(torch.zeros(1, 5, 2), torch.zeros(1, 3, dtype=torch.long), torch.zeros(1, 5, 1), 8)


# ---- encoders and neural renderers --------------------------------------------------------------------------
@pytest.mark.parametrize("name", ["smirk-tiny", "teaser-tiny", "smirk-faceapi-tiny"])
def test_encoder_renderer_shapes_and_batching(name):
    from mien.models.registry import create_model, get_model_spec

    torch.manual_seed(0)
    net = create_model(name).eval()
    spec = get_model_spec(name)
    assert spec.family == "face3d" and spec.contract.crop_size == net.encoder.size == 64
    x = torch.rand(3, 3, 64, 64, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        p, img = net(x)
        p1, img1 = net(x[1:2])
    fm = net.face_model
    assert p.shape.shape == (3, min(300, fm.n_shape)) and p.expression.shape == (3, 50)
    assert p.jaw.shape == (3, 3) and p.eyelids.shape == (3, 2) and p.rotation.shape == (3, 3)
    assert p.camera.shape == (3, 3) and float(p.camera[:, 0].min()) > 0
    assert (p.tokens is None) == name.startswith("smirk")
    if p.tokens is not None:
        assert p.tokens.shape == (3, 4, 32)
    assert img.shape == (3, 3, 64, 64) and 0 <= float(img.min()) and float(img.max()) <= 1
    for a, b in zip(p1.as_dict().values(), p[1:2].as_dict().values(), strict=True):
        assert torch.allclose(a, b, atol=1e-5)
    assert torch.allclose(img1, img[1:2], atol=1e-5)  # deterministic hint pixels at eval
    with pytest.raises(ValueError, match="64"):
        net.encoder(torch.rand(1, 3, 32, 32))
    if name == "smirk-faceapi-tiny":  # the shipped face-api features stay frozen and in eval mode
        net.train()
        bb = net.encoder.expression.encoder
        assert not bb.net.training and not any(q.requires_grad for q in bb.parameters())


def test_teaser_token_decoder_starts_at_zero():
    """A fresh TEASER generator's token branch is zero-initialised: changing the tokens only acts through AdaIN."""
    from mien.models.face3d.generators import UNetGenerator

    g = UNetGenerator(6, 8, 3, 1, token_dim=16, size=32).eval()
    x = torch.rand(2, 6, 32, 32)
    t = torch.randn(2, 4, 16)
    for z in g.zero:
        assert float(z.weight.detach().abs().max()) == 0
    with torch.no_grad():
        assert g(x, t).shape == (2, 3, 32, 32)
    with pytest.raises(ValueError, match="tokens"):
        g(x)


def test_augment_expressions_groups(face_model):
    from mien.tasks.face3d import CycleConfig, augment_expressions, expression_templates

    p = _params(face_model, b=2)
    p = p.replace(expression=torch.randn(16, face_model.n_expression), shape=torch.zeros(16, face_model.n_shape),
                  jaw=torch.zeros(16, 3), eyelids=torch.zeros(16, 2), rotation=torch.zeros(16, 3),
                  camera=p.camera[:1].expand(16, 3))
    std = torch.ones(face_model.n_expression)
    tmpl = expression_templates(face_model, face_model.n_expression)
    assert tmpl is not None and tmpl.shape == (20, face_model.n_expression) and np.abs(tmpl).max() > 0
    q = augment_expressions(p, CycleConfig(groups=("zero",), noise=0.0), std, None, torch.Generator().manual_seed(0))
    assert float(q.expression.abs().max()) == 0 and float(q.jaw[:, 1:].abs().max()) <= 0.2
    assert 0 <= float(q.eyelids.min()) and float(q.eyelids.max()) <= 1
    q = augment_expressions(p, CycleConfig(), std, torch.as_tensor(tmpl), torch.Generator().manual_seed(0))
    assert q.expression.shape == p.expression.shape and not torch.equal(q.expression, p.expression)
    assert torch.equal(q.rotation, p.rotation) and not q.expression.requires_grad
    with pytest.raises(ValueError, match="unknown cycle group"):
        augment_expressions(p, CycleConfig(groups=("nope",)), std, None)


def test_unpack_shard_batch():
    """Shard batches (clips, crop px landmarks) become frames at the model size with [-1, 1] landmarks."""
    from mien.tasks.face3d import Face3DTask

    task = Face3DTask("smirk-tiny", weights={"perceptual": 0.0, "emotion": 0.0})
    lm = torch.rand(2, 5, 478, 3) * 95
    lm[..., 0, :2] = torch.tensor([-0.5, 95.5])  # pixel-edge positions of a 96-px crop
    batch = {"video": torch.randint(0, 255, (2, 5, 3, 96, 96), dtype=torch.uint8), "landmarks": lm}
    img, n = task.unpack(batch)
    assert img.shape == (4, 3, 64, 64) and n.shape == (4, 478, 3) and img.dtype == torch.float32
    assert torch.allclose(n[:, 0, :2], torch.tensor([-1.0, 1.0]).expand(4, 2), atol=1e-6)
    img, n = task.unpack(batch, sample=False)
    assert img.shape == (10, 3, 64, 64)


# ---- training on real faces, export, CLI --------------------------------------------------------------------
@pytest.fixture(scope="module")
def face_images(shared_data, tmp_path_factory):
    """A folder of 8 real frames (PNG) of a talking-head video, 7 with their MediaPipe landmarks as ``.npy``
    (source px), one without (the data module computes it)."""
    import cv2

    import mien
    from mien.io.video import VideoSource
    from mien.pipelines.tokens import first_faces

    folder = tmp_path_factory.mktemp("faces")
    faces = first_faces(mien.analyze(shared_data / VIDEO, end=1.0))
    n = 0
    for fr in VideoSource(shared_data / VIDEO, end=1.0):
        if fr.index in faces and fr.index % 3 == 0 and n < 8:
            cv2.imwrite(str(folder / f"f{n:02d}.png"), cv2.cvtColor(fr.image, cv2.COLOR_RGB2BGR))
            if n:
                np.save(folder / f"f{n:02d}.npy", faces[fr.index][1])
            n += 1
    assert n == 8
    return folder


def test_train_tiny_loses_loss_and_exports(face_images, tmp_path):
    """A few REAL optimisation steps of smirk-tiny on one batch of real faces lower the loss; the export loads
    without Lightning and gives the task's outputs."""
    import lightning.pytorch as pl

    from mien.tasks.face3d import Face3DImageDataModule, Face3DTask

    torch.manual_seed(0)
    dm = Face3DImageDataModule([str(face_images)], size=64, batch_size=4, val_fraction=0.0)
    dm.setup()
    assert len(dm.train_set) == 8
    batch = next(iter(torch.utils.data.DataLoader(dm.train_set, batch_size=4)))
    task = Face3DTask("smirk-tiny", optim={"lr": 5e-3, "encoder_lr_scale": 0.2, "frames_per_clip": 1},
                      total_steps=100)

    def path1_loss():  # the reconstruction path's weighted loss on the batch, same hint pixels each time
        torch.manual_seed(1)
        with torch.no_grad():
            img, lm = task.unpack(batch)
            terms = task.path1(img, lm)[0]
            return float(task.weighted(terms)), float(terms["photometric"])

    before = path1_loss()
    trainer = pl.Trainer(max_steps=12, accelerator="cpu", logger=False, enable_checkpointing=False,
                         enable_progress_bar=False, enable_model_summary=False)
    trainer.fit(task, train_dataloaders=torch.utils.data.DataLoader([batch] * 6, batch_size=None))
    assert task._batches == 5  # 6 batches, 12 optimiser steps (encoders + generator)
    after = path1_loss()
    assert after[0] < 0.97 * before[0] and after[1] < 0.85 * before[1], (before, after)
    out = task.export(tmp_path / "exp")
    enc, ren = load_face3d_encoder(out), load_face3d_renderer(out)
    assert not enc.training and enc.size == 64 and enc.face_model.name == "mien-face"
    task.eval()
    x = batch["image"]
    with torch.no_grad():
        p0 = task.net.encoder(x)
        p1 = enc(x)
        assert torch.allclose(p0.expression, p1.expression, atol=1e-5)
        assert torch.allclose(task.net.renderer.render(x, p0), ren.render(x, p1), atol=1e-5)
        geo = render_geometry(enc.face_model, p1, enc.size)
        lm = landmarks_px(enc.face_model, p1, enc.size)
    assert geo["mask"].shape == (4, 1, 64, 64) and lm.shape == (4, 478, 3) and torch.isfinite(lm).all()
    # after a few steps the reconstructed landmarks already sit on the face (crop px)
    assert float((lm[:, :468, :2] - batch["landmarks"][:, :468, :2]).norm(dim=-1).median()) < 10


def test_cli_train_teaser_tiny_then_export(face_images, tmp_path, monkeypatch):
    from mien.cli.main import main

    monkeypatch.chdir(tmp_path)
    rc = main(["train", "face3d", "fit", "--config", "teaser-tiny", "--data", "mien.tasks.face3d.Face3DImageDataModule",
               f"--data.init_args.train=[{face_images}]", "--data.init_args.batch_size=4",
               "--data.init_args.val_fraction=0.25", "--trainer.max_steps=4", "--trainer.val_check_interval=2",
               "--trainer.limit_val_batches=1", f"--trainer.default_root_dir={tmp_path}",
               f"--trainer.logger.init_args.save_dir={tmp_path / 'runs'}"])
    assert rc == 0
    (ckpt,) = list(tmp_path.rglob("*.ckpt"))
    assert ckpt.name == "last.ckpt"  # the config's ModelCheckpoint(save_last) writes one at the end of training
    assert main(["export", "face3d", str(ckpt), "-o", str(tmp_path / "exp")]) == 0
    net = load_face3d(tmp_path / "exp")
    assert net.encoder.has_tokens and net.cfg.token_backbone
    assert main(["export", "face3d", str(tmp_path / "nope.ckpt"), "-o", "x"]) == 2
    (tmp_path / "bad").mkdir()
    (tmp_path / "bad" / "config.json").write_text("{}")
    (tmp_path / "bad" / "model.safetensors").write_bytes(b"")
    from mien.errors import InputError

    with pytest.raises(InputError, match="not a mien-face3d"):
        load_face3d_encoder(tmp_path / "bad")


def test_encoder_on_a_flame_file(tmp_path, monkeypatch):
    """The same configs run on a user-supplied FLAME model (here the synthetic file in FLAME's format)."""
    from mien.models.face3d import Face3DConfig, Face3DNet, load_flame
    from mien.models.face3d.learned import CONFIGS
    from test_face3d import _fake_flame

    path, _ = _fake_flame(tmp_path, monkeypatch)
    emb = tmp_path / "emb.npz"
    ids = np.arange(12)
    np.savez(emb, lmk_face_idx=ids // 3, lmk_b_coords=np.eye(3)[ids % 3], landmark_indices=ids)
    net = Face3DNet(Face3DConfig(**CONFIGS["smirk-tiny"]), load_flame(path, emb, n_shape=4)).eval()
    assert net.face_model.name == "flame" and net.encoder.n_shape == 4 and net.encoder.n_expression == 2
    with torch.no_grad():
        p, img = net(torch.rand(2, 3, 64, 64))
    assert p.shape.shape == (2, 4) and p.expression.shape == (2, 2) and img.shape == (2, 3, 64, 64)


def test_shipped_configs_state_every_weight():
    """Every loss weight, cycle and optimiser option is written in each shipped config (none left to defaults)."""
    from dataclasses import fields

    import yaml

    from mien.cli.train import TASKS, config_path
    from mien.models.face3d.learned import CONFIGS
    from mien.tasks.face3d import CycleConfig, Face3DOptim, Face3DWeights

    assert "face3d" in TASKS
    for name in ("smirk-tiny", "teaser-tiny", "smirk-faceapi-tiny", "smirk", "teaser"):
        cfg = yaml.safe_load(config_path("face3d", name).read_text())
        assert cfg["model"]["model"] == name and name in CONFIGS
        for key, cls in (("weights", Face3DWeights), ("cycle", CycleConfig), ("optim", Face3DOptim)):
            assert set(cfg["model"][key]) == {f.name for f in fields(cls)}, (name, key)
        assert cfg["trainer"]["max_steps"] == 2 * cfg["model"]["total_steps"]


def test_build_cli_instantiates_tiny_configs(tmp_path):
    from mien.cli.train import build_cli

    for name in ("smirk-tiny", "teaser-tiny"):
        cli = build_cli("face3d", ["--config", name, "--data.init_args.root", str(tmp_path),
                                   f"--trainer.default_root_dir={tmp_path}"], run=False)
        assert cli.model.net.cfg.size == 64 and cli.model.w.landmark == 100.0
        sched = cli.model.configure_optimizers()[1][0]
        assert sched.lr_lambdas[0](0) == 1.0 and abs(sched.lr_lambdas[0](200) - 0.01) < 1e-9


def test_batchnorm_statistics_frozen_and_recalibrated():
    """Generated images in the cycle terms must not move the encoders' BN statistics; recalibration on real crops
    gives the plain average of their batch statistics."""
    from mien.tasks.face3d import bn_statistics_frozen, recalibrate_batchnorm

    m = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 1), torch.nn.BatchNorm2d(4)).train()
    before = m[1].running_mean.clone()
    with bn_statistics_frozen(m):
        m(torch.randn(2, 3, 8, 8) + 5).sum().backward()
    assert torch.equal(m[1].running_mean, before) and m[1].training and m[0].weight.grad is not None
    xs = [torch.randn(4, 3, 8, 8) + i for i in range(3)]
    assert recalibrate_batchnorm(m, xs) == 12 and m[1].momentum == 0.1
    with torch.no_grad():
        means = torch.stack([m[0](x).mean((0, 2, 3)) for x in xs]).mean(0)
    assert torch.allclose(m[1].running_mean, means, atol=1e-5)


def test_fit_distill_targets_the_per_frame_fit(face_images):
    """The optional distillation term is zero at the per-frame fit's own coefficients, positive for the
    untrained encoder, and its gradient reaches the expression encoder; off (0) by default."""
    import dataclasses

    from mien.models.face3d.fit import fit_landmarks
    from mien.tasks.face3d import Face3DImageDataModule, Face3DTask

    assert Face3DTask("smirk-tiny", weights={"perceptual": 0.0, "emotion": 0.0}).w.fit_distill == 0.0
    dm = Face3DImageDataModule([str(face_images)], size=64, batch_size=4, val_fraction=0.0)
    dm.setup()
    batch = next(iter(torch.utils.data.DataLoader(dm.train_set, batch_size=4)))
    task = Face3DTask("smirk-tiny", weights={"perceptual": 0.0, "emotion": 0.0, "fit_distill": 1.0})
    img, lm = task.unpack(batch)
    terms, p, _ = task.path1(img, lm)
    assert float(terms["fit_distill"]) > 0
    terms["fit_distill"].backward()
    grads = [q.grad for q in task.net.encoder.expression.parameters() if q.grad is not None]
    assert grads and any(float(g.abs().sum()) > 0 for g in grads)
    f = fit_landmarks(lm.double().numpy(), task.net.face_model, n_expression=task.net.encoder.n_expression)
    q = dataclasses.replace(p, **{k: torch.as_tensor(f[k], dtype=torch.float32)
                                   for k in ("expression", "jaw", "eyelids")})
    assert float(task._fit_distill(q, lm)) < 1e-8
