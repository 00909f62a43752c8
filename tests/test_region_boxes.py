"""Padded landmark boxes (:func:`mien.face.landmarks.region_box_masks`), the one definition behind the reenact
losses' region weights and the warp-guided refiner's region mask."""

from __future__ import annotations

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from mien.face import landmarks as L  # noqa: E402


def _points() -> torch.Tensor:
    """(2, 478, 2) px: every point at (5, 5) except a few per row."""
    p = torch.full((2, 478, 2), 5.0)
    p[0, 0], p[0, 1] = torch.tensor([10.0, 10.0]), torch.tensor([20.0, 30.0])  # box x 10…20, y 10…30
    p[1, 0], p[1, 1] = torch.tensor([2.0, 3.0]), torch.tensor([4.0, 4.0])
    return p


def test_region_box_masks_are_padded_boxes_over_pixel_centres():
    m = L.region_box_masks(_points(), [(0, 1), np.array([2, 3])], 40, 0.1)
    assert m.shape == (2, 2, 40, 40) and m.dtype == torch.bool
    # row 0, group 0: x in [10 − 1, 20 + 1], y in [10 − 2, 30 + 2]; pixel k's centre is k + 0.5
    ys, xs = torch.nonzero(m[0, 0], as_tuple=True)
    assert (int(xs.min()), int(xs.max()), int(ys.min()), int(ys.max())) == (9, 20, 8, 31)
    assert int(m[0, 0].sum()) == 12 * 24
    ys, xs = torch.nonzero(m[1, 0], as_tuple=True)  # x 1.8…4.2, y 2.9…4.1
    assert (int(xs.min()), int(xs.max()), int(ys.min()), int(ys.max())) == (2, 3, 3, 3)
    assert int(m[:, 1].sum()) == 0  # all points at (5, 5): a zero-size box holds no pixel centre
    assert L.region_box_masks(_points(), [], 40, 0.1).shape == (2, 0, 40, 40)


def test_refiner_mask_and_loss_weights_are_built_from_the_boxes():
    pytest.importorskip("lightning")
    import torch.nn.functional as F

    from mien.models.registry import create_model
    from mien.tasks.reenact.losses import region_weights

    rng = torch.Generator().manual_seed(0)
    lm = torch.rand(3, 478, 2, generator=rng) * 60 + 30
    boxes = L.region_box_masks(lm * 0.5, [L.EYE_LEFT, L.EYE_RIGHT, L.LIPS_OUTER], 64, 0.3).float()
    expected = 1 + 2.0 * boxes[:, 0] + 2.0 * boxes[:, 1] + 1.0 * boxes[:, 2]
    assert torch.equal(region_weights(lm, 128, 64, eye=2.0, mouth=1.0), expected[:, None])
    assert torch.equal(region_weights(lm, 128, 64, eye=0.0, mouth=0.0), torch.ones(3, 1, 64, 64))
    m = create_model("reenact-warpguided-tiny", region_mask=True)
    pts = lm[:, :468]
    any_box = L.region_box_masks(pts, m.region_index, m.size, m.config.mask_pad).any(1, keepdim=True).float()
    assert torch.equal(m.region_mask(pts), F.avg_pool2d(any_box, 5, stride=1, padding=2, count_include_pad=False))


def test_refiner_region_groups_move_with_the_module_and_stay_out_of_the_state_dict():
    """``region_index`` is the module's non-persistent buffers: ``.to()`` moves it (no per-forward copy), the state
    dict keeps its keys (exported weights load strictly both ways), and the mask is unchanged."""
    from mien.models.registry import create_model

    torch.manual_seed(0)
    m = create_model("reenact-warpguided-tiny", region_mask=True)
    sd = m.state_dict()
    assert not any("region" in k for k in sd)
    assert set(sd) == {n for n, _ in m.named_parameters()}  # the refiner has no persistent buffers
    fresh = create_model("reenact-warpguided-tiny", region_mask=True)
    fresh.load_state_dict(sd, strict=True)
    pts = torch.rand(2, 468, 2, generator=torch.Generator().manual_seed(1)) * 60 + 30
    assert torch.equal(fresh.region_mask(pts), m.region_mask(pts))
    assert [t.tolist() for t in m.region_index] == [
        [*L.EYE_RIGHT, *L.BROWS[:10]], [*L.EYE_LEFT, *L.BROWS[10:]], [*L.LIPS_OUTER, *L.LIPS_INNER]]
    m.to(torch.device("meta"))
    assert all(t.device.type == "meta" for t in m.region_index)
