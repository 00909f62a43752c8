"""Expression tokenizer family (mien.models.tokenizer): registry, shapes/dtypes, batching, export."""

from __future__ import annotations

import json

import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("timm")

import mien  # noqa: E402
from mien.models import get_model_spec, list_models  # noqa: E402
from mien.models.tokenizer import load_pretrained, save_pretrained  # noqa: E402

TIMM_TINY = dict(timm_name="resnet10t", pretrained=False, crop_size=64, dim=32, expr_heads=2, expr_layers=1,
                 expr_ff=64, max_subjects=4, recon_heads=2, recon_cross_layers=1, recon_self_layers=1,
                 recon_ff=64, decoder_channels=32, dropout=0.0)
# (registered name, overrides) of every configuration built in these tests (tiny ones; the full DINOv2
# config is built in test_dinov2_s14_full_config)
pytestmark = pytest.mark.usefixtures("torch_one_thread")
TINY_CONFIGS = [("tokenizer-tiny", {}), ("tokenizer-vit-tiny", {}), ("tokenizer-timm", TIMM_TINY),
                ("tokenizer-tiny", {"max_subjects": 0})]



def _build(name, overrides, seed=0):
    torch.manual_seed(seed)
    return mien.create_model(name, **overrides).eval()


def _ids(model, b):
    return torch.arange(b) % model.config.max_subjects if model.config.max_subjects else None


def test_registered_with_contracts():
    names = set(list_models("tokenizer"))
    assert {"tokenizer-tiny", "tokenizer-vit-tiny", "tokenizer-dinov2-s14", "tokenizer-dinov2-s14-inv",
            "tokenizer-timm", "tokenizer-predictor-tiny", "tokenizer-predictor-s"} <= names
    c = get_model_spec("tokenizer-dinov2-s14").contract
    assert c.crop_size == 518 and c.value_range == "0-1" and c.color == "RGB"
    assert c.mean == (0.485, 0.456, 0.406) and c.std == (0.229, 0.224, 0.225)
    assert get_model_spec("tokenizer-tiny").contract.crop_size == 64
    assert get_model_spec("tokenizer-vit-tiny").contract.crop_size == 56
    assert get_model_spec("tokenizer-dinov2-s14").defaults["timm_name"] == "vit_small_patch14_dinov2.lvd142m"


@pytest.mark.parametrize(("name", "overrides"), TINY_CONFIGS)
def test_shapes_dtypes_ranges(name, overrides):
    model = _build(name, overrides)
    s, d = model.config.crop_size, model.config.dim
    assert model.contract.crop_size == s
    b, t = 2, 3
    frames = torch.rand(b, t, 3, s, s)
    ids = _ids(model, b)
    with torch.no_grad():
        out = model(frames, ids)
        assert out.tokens.shape == (b, t, d) and out.tokens.dtype == torch.float32
        assert torch.allclose(out.tokens.norm(dim=-1), torch.ones(b, t), atol=1e-5)
        assert out.recon.shape == (b, t, 3, s, s) and out.recon.dtype == torch.float32
        assert float(out.recon.min()) >= 0 and float(out.recon.max()) <= 1
        # encode/decode give the same as forward; image input (B, 3, H, W) gives (B, D)
        assert torch.allclose(model.encode(frames, ids), out.tokens, atol=1e-6)
        assert torch.allclose(model.decode(out.tokens, ids), out.recon, atol=1e-6)
        single = model.encode(frames[:, 0], ids)
        assert single.shape == (b, d)
        # uint8 input is accepted (÷255)
        u8 = (frames * 255).round().to(torch.uint8)
        assert torch.allclose(model.encode(u8, ids), model.encode(u8.float() / 255, ids), atol=1e-6)
    tok, pos = model.tokenizer(frames[0])
    assert tok.shape == (t, model.tokenizer.num_patches, d) and pos.shape == (model.tokenizer.num_patches, d)


@pytest.mark.parametrize(("name", "overrides"), TINY_CONFIGS[:3])
def test_batched_equals_per_sample(name, overrides):
    model = _build(name, overrides)
    s = model.config.crop_size
    b, t = 2, 3
    frames = torch.rand(b, t, 3, s, s, generator=torch.Generator().manual_seed(1))
    ids = _ids(model, b)
    with torch.no_grad():
        out = model(frames, ids)
        for i in range(b):
            for j in range(t):
                one = model(frames[i:i + 1, j:j + 1], None if ids is None else ids[i:i + 1])
                assert torch.allclose(one.tokens[0, 0], out.tokens[i, j], atol=1e-5)
                assert torch.allclose(one.recon[0, 0], out.recon[i, j], atol=1e-5)


def test_positions_added_once():
    """ViT tokens already carry the ViT positions: the expression transformer gets pos=None (the seed adds
    DINOv2's table twice); the conv encoder's tokens have none, so its table is passed."""
    seen = {}

    def hook(mod, args, kwargs):
        seen["pos"] = args[1] if len(args) > 1 else kwargs.get("pos")

    for name, expect_none in (("tokenizer-vit-tiny", True), ("tokenizer-tiny", False)):
        model = _build(name, {})
        h = model.expression.register_forward_pre_hook(hook, with_kwargs=True)
        s = model.config.crop_size
        with torch.no_grad():
            model.encode(torch.rand(1, 3, s, s), torch.tensor([0]))
        h.remove()
        assert (seen["pos"] is None) == expect_none
        assert model.tokenizer.positions_in_tokens == expect_none
    vit = _build("tokenizer-vit-tiny", {})
    # the returned table is the ViT's own (patch part, prefix/CLS row dropped) and it is frozen
    assert torch.equal(vit.tokenizer.position_table(), vit.tokenizer.backbone.pos_embed[0, 1:])
    assert not any(p.requires_grad for p in vit.tokenizer.backbone.parameters())


def test_dinov2_s14_full_config():
    """The real seed architecture (timm DINOv2 ViT-S/14 at 518², random init: no download)."""
    model = _build("tokenizer-dinov2-s14", {"pretrained": False})
    tk = model.tokenizer
    assert tk.grid == (37, 37) and tk.num_patches == 1369 and tk.dim == 384 and tk.positions_in_tokens
    assert tk.position_table().shape == (1369, 384)
    assert model.expression.subject_embeddings.num_embeddings == 501
    assert len(model.expression.decoder.layers) == 4 and len(model.reconstruction.cross.layers) == 2
    assert len(model.reconstruction.self_attn.layers) == 2
    with torch.no_grad():
        out = model(torch.rand(1, 1, 3, 518, 518), torch.tensor([500]))
    assert out.tokens.shape == (1, 1, 384) and out.recon.shape == (1, 1, 3, 518, 518)
    with pytest.raises(ValueError, match="518x518"):
        model.encode(torch.rand(1, 3, 224, 224), torch.tensor([0]))


def test_subject_ids_validation_and_swap():
    model = _build("tokenizer-tiny", {})
    x = torch.rand(2, 2, 3, 64, 64)
    with pytest.raises(ValueError, match="subject_ids"):
        model.encode(x)
    with pytest.raises(ValueError, match=r"\[0, 16\)"):
        model.encode(x, torch.tensor([0, 16]))
    with pytest.raises(ValueError, match="expected 4 subject ids"):
        model.encode(x, torch.tensor([0, 1, 2]))
    with pytest.raises(ValueError, match="frames"):
        model.encode(torch.rand(3, 64, 64))
    with torch.no_grad():
        z = model.encode(x, torch.tensor([0, 1]))
        # per-frame ids (B, T) equal per-clip ids repeated
        assert torch.allclose(model.encode(x, torch.tensor([[0, 0], [1, 1]])), z, atol=1e-6)
        a, b = model.decode(z, torch.tensor([0, 1])), model.decode(z, torch.tensor([3, 3]))
    assert not torch.allclose(a, b)  # identity swap changes the face


def test_subject_only_in_decoder():
    """subject_in_encoder=False: tokens do not depend on the subject id, the reconstruction does."""
    model = _build("tokenizer-tiny", {"subject_in_encoder": False})
    x = torch.rand(2, 2, 3, 64, 64)
    with torch.no_grad():
        z = model.encode(x, torch.tensor([0, 1]))
        torch.testing.assert_close(model.encode(x, torch.tensor([5, 9])), z)
        assert not torch.allclose(model.decode(z, torch.tensor([0, 1])), model.decode(z, torch.tensor([5, 9])))
        out = model(x, torch.tensor([0, 1]))
    torch.testing.assert_close(out.tokens, z)
    with_subject = _build("tokenizer-tiny", {})
    with torch.no_grad():
        assert not torch.allclose(with_subject.encode(x, torch.tensor([0, 1])), with_subject.encode(x, torch.tensor([5, 9])))


def test_predictor_shapes_and_causality():
    pred = _build("tokenizer-predictor-tiny", {})
    h = torch.nn.functional.normalize(torch.randn(2, 6, 32), dim=-1)
    with torch.no_grad():
        y = pred(h)
        assert y.shape == (2, 6, 32) and torch.allclose(y.norm(dim=-1), torch.ones(2, 6), atol=1e-5)
        assert pred.predict_next(h).shape == (2, 32)
        h2 = h.clone()
        h2[:, 4:] = torch.randn(2, 2, 32)
        y2 = pred(h2)
    assert torch.allclose(y[:, :4], y2[:, :4], atol=1e-5)  # outputs before t=4 do not see the future
    assert not torch.allclose(y[:, 4:], y2[:, 4:])
    with pytest.raises(ValueError, match="max_len"):
        pred(torch.randn(1, 33, 32))


@pytest.mark.parametrize(("name", "overrides"), [*TINY_CONFIGS[:2], ("tokenizer-predictor-tiny", {})])
def test_export_round_trip(tmp_path, name, overrides):
    model = _build(name, overrides)
    save_pretrained(model, tmp_path / "m")
    meta = json.loads((tmp_path / "m" / "config.json").read_text())
    assert meta["format"] == "mien-tokenizer" and (tmp_path / "m" / "model.safetensors").is_file()
    torch.manual_seed(123)  # a different init: every weight must come from the file
    loaded = load_pretrained(tmp_path / "m")
    assert type(loaded) is type(model) and not loaded.training
    with torch.no_grad():
        if name.startswith("tokenizer-predictor"):
            h = torch.randn(2, 5, 32)
            assert torch.equal(loaded(h), model(h))
        else:
            s = model.config.crop_size
            x = torch.rand(2, 2, 3, s, s)
            a, b = model(x, _ids(model, 2)), loaded(x, _ids(model, 2))
            assert torch.equal(a.tokens, b.tokens) and torch.equal(a.recon, b.recon)


def test_load_pretrained_errors(tmp_path):
    from mien.errors import InputError

    with pytest.raises(InputError, match="config.json missing"):  # one line naming the folder, as every export
        load_pretrained(tmp_path)
    model = _build("tokenizer-tiny", {})
    save_pretrained(model, tmp_path)
    meta = json.loads((tmp_path / "config.json").read_text())
    (tmp_path / "config.json").write_text(json.dumps({**meta, "format": "other"}))
    with pytest.raises(ValueError, match="not a mien-tokenizer"):
        load_pretrained(tmp_path)
    with pytest.raises(TypeError):
        save_pretrained(torch.nn.Linear(2, 2), tmp_path / "x")


def test_config_errors():
    from mien.models.tokenizer import TokenizerConfig

    with pytest.raises(ValueError, match="backbone"):
        TokenizerConfig(backbone="nope")
    with pytest.raises(ValueError, match="timm_name"):
        TokenizerConfig(backbone="timm")
    with pytest.raises(ValueError, match="unknown TokenizerConfig keys"):
        TokenizerConfig.from_dict({"bogus": 1})
    with pytest.raises(ValueError, match="img_size"):  # a ViT needs its img_size to match the crop
        mien.create_model("tokenizer-timm", **{**TIMM_TINY, "timm_name": "vit_tiny_patch16_224"})


def test_token_scale_in_reconstruction_memory():
    """The unit token enters the reconstruction at the subject embeddings' scale (√D); False is the seed."""
    import math

    scaled = _build("tokenizer-tiny", {})
    seed = _build("tokenizer-tiny", {"recon_token_scale": False})
    seed.load_state_dict(scaled.state_dict())
    assert scaled.reconstruction.token_scale == math.sqrt(32) and seed.reconstruction.token_scale == 1.0
    z = torch.nn.functional.normalize(torch.randn(3, 32), dim=-1)
    ids = torch.tensor([0, 1, 2])
    with torch.no_grad():
        assert not torch.allclose(scaled.decode(z, ids), seed.decode(z, ids))
        torch.testing.assert_close(scaled.decode(z, ids), seed.decode(z * math.sqrt(32), ids))
