"""ExpressionNetLoss and the tokenizer task's expression / emotion / identity-swap emotion terms (issue 9)."""

from __future__ import annotations

import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("lightning.pytorch")

from mien.tasks.tokenizer import TokenizerTask  # noqa: E402
from mien.tasks.tokenizer.config import ScheduleConfig as S  # noqa: E402
from mien.tasks.tokenizer.config import TokenizerWeights as W  # noqa: E402
from mien.tasks.tokenizer.losses import ExpressionNetLoss  # noqa: E402

pytestmark = [pytest.mark.usefixtures("torch_one_thread"),
              pytest.mark.filterwarnings("ignore:Found .* module\\(s\\) in eval mode")]
ZERO = (0.0, 0.0, 0.0)


@pytest.fixture(scope="module")
def face112(shared_data):
    """float (2, 3, 112, 112) [0, 1]: two real CK+48 faces (happy, surprise), upscaled to face-api's 112²."""
    import cv2
    import numpy as np

    from mien.data.au.images import read_rgb

    imgs = []
    for emotion in ("happy", "surprise"):
        path = sorted((shared_data / "expressions/ckplus48" / emotion).glob("*.png"))[0]
        im = read_rgb(path)
        im = np.repeat(im[:, :, None], 3, 2) if im.ndim == 2 else im
        imgs.append(cv2.resize(im, (112, 112), interpolation=cv2.INTER_LINEAR))
    return torch.from_numpy(np.stack(imgs)).permute(0, 3, 1, 2).float() / 255.0


def test_expression_net_loss_matches_faceapi_and_passes_gradients(face112):
    from mien.models.faceapi import load_expression_net

    xl = ExpressionNetLoss()
    net = load_expression_net()
    # normalisation wired like face-api's own [0, 255] path: same probabilities
    with torch.no_grad():
        want = net.predict_proba(face112 * 255.0)
    got = xl.log_probs(xl.feature_map(face112)).exp()
    assert torch.allclose(got, want, atol=1e-5)
    # zero for the target itself, positive otherwise, gradient reaches the prediction but not the net
    same = xl(face112, face112)
    assert float(same["feature"]) == pytest.approx(0, abs=1e-6) and float(same["emotion"]) == pytest.approx(0, abs=1e-5)
    pred = face112.flip(0).clone().requires_grad_(True)
    res = xl(pred, face112)
    kl = (want * (want.log() - want.flip(0).log())).sum(1).mean()
    assert float(res["emotion"].detach()) == pytest.approx(float(kl), rel=1e-3)
    assert float(res["emotion"].detach()) > 0.01
    assert float(res["feature"]) > 0.01
    (res["feature"] + res["emotion"]).backward()
    assert pred.grad is not None and float(pred.grad.abs().sum()) > 0
    assert not any(p.requires_grad for p in xl.parameters())
    # the target as cached backbone tokens (M, 49, 256) gives the same numbers as target images
    tokens = xl.feature_map(face112).flatten(2).transpose(1, 2)
    res2 = xl(face112.flip(0), target_map=tokens)
    assert torch.allclose(res2["feature"], res["feature"].detach(), rtol=1e-4)
    with pytest.raises(ValueError, match="target"):
        xl(face112)


def _task(**weights):
    torch.manual_seed(0)
    w = dict(recon=ZERO, temporal=ZERO, diversity=ZERO)
    w.update(weights)
    return TokenizerTask("tokenizer-faceapi-expression",
                         model_overrides=dict(dim=32, expr_heads=2, expr_layers=1, expr_ff=64, max_subjects=4,
                                              recon_heads=2, recon_cross_layers=1, recon_self_layers=0, recon_ff=64,
                                              decoder_channels=16, dropout=0.0),
                         schedule=S(warmup_steps=1, total_steps=4), weights=W(**w))


def test_task_expression_terms_enter_the_total(face112):
    frames = face112.unsqueeze(1).expand(2, 2, 3, 112, 112).contiguous()  # 2 clips × 2 frames
    ids = torch.tensor([0, 1])
    off = _task()
    assert off.expression_loss is None and "loss_expression" not in off.compute_losses(frames, ids)
    task = _task(expression=(1, 1, 1), emotion=(1, 1, 1), swap_emotion=(1, 1, 1))
    w = {"recon": 0.0, "temporal": 0.0, "diversity": 0.0, "perceptual": 0.0, "expression": 0.5, "emotion": 2.0,
         "swap_emotion": 3.0}
    logs = task.compute_losses(frames, ids, weights=w)
    for k in ("expression", "emotion", "swap_emotion"):
        assert float(logs[f"loss_{k}"]) > 0, k
    want = 0.5 * logs["loss_expression"] + 2.0 * logs["loss_emotion"] + 3.0 * logs["loss_swap_emotion"]
    assert torch.allclose(logs["loss"], want)
    # cached backbone tokens of a faceapi-expression tokenizer are its FaceExpressionNet map: same numbers
    cached = task.model.tokenizer.backbone_tokens(frames.flatten(0, 1))
    logs2 = task.compute_losses(frames, ids, weights=w, backbone_tokens=cached)
    assert torch.allclose(logs2["loss_expression"], logs["loss_expression"], rtol=1e-4)


def test_swap_emotion_decodes_tokens_with_another_subject(face112):
    frames = torch.stack([face112, face112.flip(0)], 1)  # 2 clips × 2 frames, different faces per frame
    task = _task(swap_emotion=(1, 1, 1))
    task.eval()
    w = {"recon": 0.0, "temporal": 0.0, "diversity": 0.0, "perceptual": 0.0, "swap_emotion": 1.0}
    same = task.compute_losses(frames, torch.tensor([1, 1]), weights=w)
    assert float(same["loss_swap_emotion"]) == 0  # no clip of another subject in the batch
    ids = torch.tensor([0, 2])
    logs = task.compute_losses(frames, ids, weights=w)
    # by hand: frame 0 of each clip decoded with the other clip's subject, KL from the source frame's emotion
    xl = task.expression_loss
    with torch.no_grad():
        z = task.model.encode(frames, ids)[:, ::2]  # (2, 1, D)
        swapped = task.model.decode(z, torch.tensor([2, 0])).flatten(0, 1)
        p = xl.log_probs(xl.feature_map(frames[:, 0])).exp()
        want = torch.nn.functional.kl_div(xl.log_probs(xl.feature_map(swapped)), p, reduction="batchmean")
    assert float(logs["loss_swap_emotion"]) == pytest.approx(float(want), rel=1e-4) and float(want) > 0
    task.train()
    logs = task.compute_losses(frames, ids, weights=w)
    logs["loss"].backward()
    dec = task.model.reconstruction.decoder.head[-1].weight.grad
    assert dec is not None and float(dec.abs().sum()) > 0  # the decoder is trained by the swap term
