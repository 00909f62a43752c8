"""Pretrained offline patch backbones of the expression tokenizer (face-api feature maps), the DINOv2
offline default, and the linear representation probe (issue 9)."""

from __future__ import annotations

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from mien.models import get_model_spec  # noqa: E402
from mien.models.tokenizer import TokenizerConfig, load_pretrained, save_pretrained  # noqa: E402
from mien.models.tokenizer.config import FACEAPI_BACKBONES, FACEAPI_MEAN, FACEAPI_STD  # noqa: E402

pytestmark = pytest.mark.usefixtures("torch_one_thread")

# small heads on the real frozen backbones; D = 32 ≠ C exercises the trainable projection
SMALL_HEADS = dict(dim=32, expr_heads=2, expr_layers=1, expr_ff=64, max_subjects=4, recon_heads=2,
                   recon_cross_layers=1, recon_self_layers=1, recon_ff=64, decoder_channels=16, dropout=0.0)
NAMES = sorted(FACEAPI_BACKBONES)


def _tokenizer(name, dim=32):
    from mien.models.tokenizer.faceapi_patch import FaceApiPatchTokenizer

    return FaceApiPatchTokenizer(name, dim)


def _config(name, **kw):
    s = FACEAPI_BACKBONES[name]
    return TokenizerConfig(backbone=name, crop_size=s["crop_size"], mean=FACEAPI_MEAN, std=FACEAPI_STD,
                           **{**SMALL_HEADS, **kw})


@pytest.mark.parametrize("name", NAMES)
def test_shapes_and_contract(name):
    spec = FACEAPI_BACKBONES[name]
    tok = _tokenizer(name).eval()
    s = spec["crop_size"]
    assert (tok.crop_size, tok.grid, tok.backbone_dim) == (s, spec["grid"], spec["channels"])
    assert not tok.positions_in_tokens
    x = torch.rand(2, 3, s, s)
    tokens, pos = tok(x)
    n = spec["grid"][0] * spec["grid"][1]
    assert tokens.shape == (2, n, 32) and tokens.dtype == torch.float32
    assert pos.shape == (n, 32) and torch.isfinite(tokens).all()
    raw = tok.backbone_tokens(x)
    assert raw.shape == (2, n, spec["channels"]) and not raw.requires_grad
    with pytest.raises(ValueError, match=f"{s}x{s}"):
        tok(torch.rand(1, 3, s + 2, s + 2))
    with pytest.raises(TypeError):
        tok((x * 255).to(torch.uint8))


def test_normalisation_equals_faceapi():
    """[0, 1] input through the tokenizer == face-api's own [0, 255] path (its normalisation and graph)."""
    from mien.models.faceapi import load_expression_net
    from mien.models.faceapi.nets import MEAN_RGB

    assert FACEAPI_MEAN == tuple(m / 255.0 for m in MEAN_RGB)
    tok = _tokenizer("faceapi-expression", dim=256).eval()
    net = load_expression_net()
    x = torch.rand(3, 3, 112, 112)
    feats = tok.backbone_tokens(x)  # (3, 49, 256)
    pooled = feats.transpose(1, 2).reshape(3, 256, 7, 7)
    ref = net.embed(x * 255.0)  # face-api: avg_pool(7, stride 2) of the same 7×7 map
    assert torch.allclose(torch.nn.functional.avg_pool2d(pooled, 7, 2).flatten(1), ref, atol=1e-5)


def test_registered_configs_and_contract():
    for reg, back, size in [("tokenizer-faceapi-expression", "faceapi-expression", 112),
                            ("tokenizer-faceapi-recognition", "faceapi-recognition", 150)]:
        spec = get_model_spec(reg)
        assert spec.contract.crop_size == size and spec.defaults["backbone"] == back
        assert tuple(spec.contract.mean) == FACEAPI_MEAN and tuple(spec.contract.std) == FACEAPI_STD
    with pytest.raises(ValueError, match="crop_size=112"):
        TokenizerConfig(backbone="faceapi-expression", crop_size=64)
    with pytest.raises(ValueError, match="always frozen"):
        _config("faceapi-expression", freeze_backbone=False)
    with pytest.raises(ValueError, match="backbone must be"):
        TokenizerConfig(backbone="faceapi-nope")


@pytest.mark.parametrize("name", NAMES)
def test_frozen(name):
    from mien.models.tokenizer.nets import ExpressionTokenizer

    model = ExpressionTokenizer(_config(name))
    backbone = model.tokenizer.backbone
    assert all(not p.requires_grad for p in backbone.parameters())
    model.train()
    assert model.training and model.tokenizer.training and not backbone.training
    assert all(not m.training for m in backbone.modules())
    before = {k: v.clone() for k, v in backbone.state_dict().items()}
    opt = torch.optim.SGD([p for p in model.parameters() if p.requires_grad], lr=0.5)
    s = model.config.crop_size
    frames = torch.rand(1, 2, 3, s, s)
    out = model(frames, torch.tensor([1]))
    loss = (out.recon - frames).abs().mean() + out.tokens.sum()
    loss.backward()
    assert all(p.grad is None for p in backbone.parameters())
    proj_w = model.tokenizer.proj.weight
    assert proj_w.grad is not None and proj_w.grad.abs().sum() > 0  # the projection trains
    opt.step()
    after = backbone.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before)


@pytest.mark.parametrize("name", NAMES)
def test_batched_equals_per_sample(name):
    tok = _tokenizer(name).eval()
    s = tok.crop_size
    x = torch.rand(3, 3, s, s)
    with torch.no_grad():
        batched, _ = tok(x)
        single = torch.cat([tok(x[i:i + 1])[0] for i in range(3)])
    assert torch.allclose(batched, single, atol=1e-5)


@pytest.mark.parametrize("name", ["faceapi-expression", "faceapi-recognition"])
def test_export_load_parity(tmp_path, name):
    from mien.models.tokenizer.nets import ExpressionTokenizer

    torch.manual_seed(0)
    model = ExpressionTokenizer(_config(name)).eval()
    save_pretrained(model, tmp_path / "m")
    torch.manual_seed(123)  # a different init: every trainable weight must come from the file
    loaded = load_pretrained(tmp_path / "m")
    assert type(loaded.tokenizer) is type(model.tokenizer) and not loaded.training
    assert loaded.config == model.config
    s = model.config.crop_size
    x = torch.rand(1, 2, 3, s, s)
    ids = torch.tensor([2])
    with torch.no_grad():
        a, b = model(x, ids), loaded(x, ids)
    assert torch.equal(a.tokens, b.tokens) and torch.equal(a.recon, b.recon)


def test_cached_backbone_tokens_match():
    from mien.models.tokenizer.nets import ExpressionTokenizer

    torch.manual_seed(0)
    model = ExpressionTokenizer(_config("faceapi-expression")).eval()
    x = torch.rand(1, 2, 3, 112, 112)
    cache = model.tokenizer.backbone_tokens(x.flatten(0, 1))
    with torch.no_grad():
        a = model(x, torch.tensor([0]))
        b = model(x, torch.tensor([0]), backbone_tokens=cache)
    assert torch.allclose(a.tokens, b.tokens, atol=1e-6)


def test_dinov2_offline_default_and_clear_download_error(monkeypatch):
    """The registered DINOv2 configs build offline; a failing hub download gives one clear line."""
    timm = pytest.importorskip("timm")
    from mien.models.tokenizer.patch import DOWNLOAD_FAILED, PretrainedWeightsError, TimmPatchTokenizer

    assert get_model_spec("tokenizer-dinov2-s14").defaults["pretrained"] is False
    assert get_model_spec("tokenizer-dinov2-s14-inv").defaults["pretrained"] is False
    real = timm.create_model

    def offline(name, pretrained=False, **kw):
        if pretrained:  # what huggingface_hub raises offline without a cache (an OSError subclass)
            raise FileNotFoundError("An error happened while trying to locate the file on the Hub ...")
        return real(name, pretrained=False, **kw)

    monkeypatch.setattr(timm, "create_model", offline)
    kw = dict(timm_kwargs=dict(img_size=56, patch_size=14, embed_dim=32, depth=1, num_heads=2))
    with pytest.raises(PretrainedWeightsError) as err:
        TimmPatchTokenizer("vit_small_patch14_dinov2.lvd142m", 56, 32, pretrained=True, **kw)
    assert str(err.value) == DOWNLOAD_FAILED and err.value.__cause__ is None and "\n" not in str(err.value)
    assert "pass pretrained=False" in DOWNLOAD_FAILED
    tok = TimmPatchTokenizer("vit_small_patch14_dinov2.lvd142m", 56, 32, pretrained=False, **kw)
    assert tok(torch.rand(1, 3, 56, 56))[0].shape == (1, 16, 32)

    def unknown(name, pretrained=False, **kw):
        raise RuntimeError(f"Unknown model ({name})")

    monkeypatch.setattr(timm, "create_model", unknown)  # not a download problem: timm's own error
    with pytest.raises(RuntimeError, match="Unknown model"):
        TimmPatchTokenizer("nope", 56, 32, pretrained=True)


# --- linear probe (mien.pipelines.probe), on synthetic sets where the answer is known ---------------------


def _synthetic(n_subjects=12, per_subject=40, d=8, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n_subjects * per_subject, d))
    groups = np.repeat([f"S{i:03d}" for i in range(n_subjects)], per_subject)
    return rng, x, groups


def test_linear_probe_separable_and_random():
    from mien.pipelines.probe import linear_probe

    rng, x, groups = _synthetic()
    w = rng.normal(size=(8, 2))
    margin = x @ w
    keep = (np.abs(margin) > 0.3).all(1)  # a margin: linearly separable
    x, groups, margin = x[keep], groups[keep], margin[keep]
    y = (margin > np.array([0.0, 1.0])).astype(float)  # AU 2 rarer (about 25 % positives)
    res = linear_probe(x, y, groups, folds=4)
    assert res.f1.shape == (2,) and res.scores.shape == y.shape
    assert (res.f1 > 0.9).all() and (res.auc > 0.98).all()
    assert res.mean_f1(min_positives=30) > 0.9
    for s in np.unique(groups):  # subject-disjoint: every subject held out in exactly one fold
        assert len(set(res.fold[groups == s])) == 1
    assert set(res.fold) == {0, 1, 2, 3}

    rand = (rng.random((len(x), 3)) < [0.5, 0.3, 0.1]).astype(float)  # labels unrelated to the features
    res = linear_probe(x, rand, groups, folds=4)
    assert np.all(np.abs(res.auc - 0.5) < 0.12), res.auc


def test_linear_probe_nan_labels_and_errors():
    from mien.pipelines.probe import linear_probe

    rng, x, groups = _synthetic(n_subjects=6, per_subject=30, d=4, seed=1)
    y = (x[:, :1] > 0).astype(float)
    y_nan = y.copy()
    y_nan[::7] = np.nan  # not coded: ignored
    res = linear_probe(x, y_nan, groups, folds=3)
    assert res.positives[0] == int(np.nansum(y_nan)) and res.f1[0] > 0.9
    with pytest.raises(ValueError, match="n_splits"):
        linear_probe(x, y, groups, folds=7)
    with pytest.raises(ValueError, match="0, 1 or NaN"):
        linear_probe(x, y * 2, groups, folds=3)


def test_linear_probe_classes():
    from mien.pipelines.probe import linear_probe_classes

    rng, x, groups = _synthetic(n_subjects=10, per_subject=30, d=6, seed=2)
    y = np.argmax(x[:, :3] @ np.eye(3) * 3, 1)  # class = arg-max of the first 3 features: linear
    res = linear_probe_classes(x, y, groups, folds=5)
    assert res.probs.shape == (len(x), 3) and np.allclose(res.probs.sum(1), 1)
    assert res.accuracy > 0.9 and res.balanced_accuracy > 0.9 and (res.f1 > 0.85).all()
    rand = rng.integers(0, 4, len(x))
    res = linear_probe_classes(x, rand, groups, folds=5)
    assert abs(res.balanced_accuracy - 0.25) < 0.08, res.balanced_accuracy
    with pytest.raises(ValueError, match="class indices"):
        linear_probe_classes(x, rand - 1, groups)
