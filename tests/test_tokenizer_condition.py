"""Global conditioning of the expression tokenizer on mien's AU-model outputs (TokenizerConfig.global_condition)."""

import numpy as np
import pytest

torch = pytest.importorskip("torch")


def test_config_switch():
    from mien.models.au import au_names
    from mien.models.tokenizer import TokenizerConfig

    assert TokenizerConfig().global_dim == 0
    assert TokenizerConfig(global_condition="au-features").global_dim == 1660
    assert TokenizerConfig(global_condition="au-probabilities").global_dim == len(au_names())
    with pytest.raises(ValueError, match="global_condition"):
        TokenizerConfig(global_condition="emotion")


def test_conditioned_tokenizer_shapes_gradients_and_export(tmp_path):
    import mien
    from mien.models.tokenizer import load_pretrained, save_pretrained

    torch.manual_seed(0)
    model = mien.create_model("tokenizer-tiny", global_condition="au-probabilities", max_subjects=4)
    g = model.config.global_dim
    frames = torch.rand(2, 3, 3, 64, 64)
    ids = torch.tensor([0, 1])
    cond = torch.rand(2, 3, g)
    out = model(frames, ids, condition=cond)
    assert out.tokens.shape == (2, 3, model.config.dim) and out.recon.shape == (2, 3, 3, 64, 64)
    out.recon.mean().backward()
    grad = model.expression.global_proj[1].weight.grad
    assert grad is not None and grad.abs().sum() > 0  # the condition reaches the loss
    model.eval()
    with torch.no_grad():
        a = model.encode(frames, ids, cond)
        b = model.encode(frames, ids, torch.zeros_like(cond))
    assert not torch.allclose(a, b)  # the token depends on the condition
    with pytest.raises(ValueError, match="condition"):
        model.encode(frames, ids)
    with pytest.raises(ValueError, match="condition"):
        model.encode(frames, ids, cond[..., :-1])
    with pytest.raises(ValueError, match="no global condition"):
        mien.create_model("tokenizer-tiny", max_subjects=0).encode(frames[0], None, cond[0])
    same = load_pretrained(save_pretrained(model, tmp_path / "m"))
    assert same.config.global_condition == "au-probabilities" and same.config.global_dim == g
    with torch.no_grad():
        torch.testing.assert_close(same.encode(frames, ids, cond), a)


def test_global_condition_of_real_crops(shared_data):
    import mien
    from mien.heads.tokens import TokenExtractor
    from mien.io.video import VideoSource
    from mien.models.tokenizer.condition import global_condition
    from mien.pipelines.tokens import analyze_video, first_faces

    video = shared_data / "samples" / "single_face.mp4"
    faces = first_faces(analyze_video(video, end=0.2, every=3))
    ex = TokenExtractor(mien.create_model("tokenizer-tiny", global_condition="au-probabilities", max_subjects=2))
    crops = np.stack([ex.crop(fr.image, *faces[fr.index]) for fr in VideoSource(video, end=0.2, every=3)
                      if fr.index in faces][:2])
    g, ok = global_condition(crops, "au-probabilities")
    assert g.shape == (2, ex.model.config.global_dim) and ok.all() and ((g >= 0) & (g <= 1)).all()
    tokens = ex(crops)  # the extractor computes the condition itself
    assert tokens.shape == (2, ex.dim) and np.allclose(np.linalg.norm(tokens, axis=1), 1, atol=1e-5)
