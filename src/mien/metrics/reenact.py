"""Face-reenactment metrics on arrays (no face models run here; the evaluation pipeline computes the landmarks,
poses, descriptors and expression vectors they compare).

Self-reenactment (output vs the ground-truth driving frame): L1, PSNR, SSIM (torchmetrics), LPIPS
(Zhang et al., CVPR 2018, through torchmetrics' network; its AlexNet/VGG backbone needs torchvision's ImageNet
weights — :func:`lpips_network` returns None where they cannot be loaded, and reports say
"LPIPS: weights unavailable").
Cross-reenactment: CSIM (:func:`mien.metrics.identity.identity_similarity`), AKD — average keypoint distance
(Siarohin et al., FOMM, NeurIPS 2019), here normalised by the inter-ocular distance; APD — average pose distance
(degrees); AED — average expression distance (FOMM's AED uses identity embeddings; here, as in LivePortrait and
EMOPortraits, distances of expression vectors: AU probabilities, face-api expression embeddings); emotion
agreement (EMOPortraits, Drobyshev et al., CVPR 2024).

Images: float (B, 3, H, W) in [0, 1] (numpy or torch). All functions return float64 numpy values.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from mien.metrics.identity import identity_similarity

EYE_OUTER = (33, 263)
"""MediaPipe mesh indices of the outer eye corners (subject's right, left): the inter-ocular distance of
:func:`akd`."""


def _np(x: Any) -> np.ndarray:
    if hasattr(x, "detach"):
        x = x.detach().cpu().numpy()
    return np.asarray(x, np.float64)


def _torch(x: Any):
    import torch

    if isinstance(x, torch.Tensor):
        return x.detach().float().cpu()
    return torch.from_numpy(np.ascontiguousarray(x, np.float32))


def _check_images(pred, target) -> tuple:
    p, t = _torch(pred), _torch(target)
    if p.ndim != 4 or p.shape != t.shape or p.shape[1] != 3:
        raise ValueError(f"images must both be (B, 3, H, W); got {tuple(p.shape)} and {tuple(t.shape)}")
    return p.clamp(0, 1), t.clamp(0, 1)


def l1(pred, target) -> np.ndarray:
    """Mean absolute error per image, float64 (B,), images in [0, 1]."""
    p, t = _check_images(pred, target)
    return (p - t).abs().mean((1, 2, 3)).double().numpy()


def psnr(pred, target) -> np.ndarray:
    """Peak signal-to-noise ratio per image in dB (data range 1), float64 (B,); inf for identical images."""
    from torchmetrics.functional.image import peak_signal_noise_ratio

    p, t = _check_images(pred, target)
    return peak_signal_noise_ratio(p, t, data_range=1.0, reduction="none", dim=(1, 2, 3)).double().numpy()


def ssim(pred, target) -> np.ndarray:
    """Structural similarity per image (torchmetrics: 11-px Gaussian window, σ 1.5), float64 (B,) in [−1, 1]."""
    from torchmetrics.functional.image import structural_similarity_index_measure

    p, t = _check_images(pred, target)
    return structural_similarity_index_measure(p, t, data_range=1.0, reduction="none").double().numpy()


def lpips_network(net: str = "alex", random_backbone: bool = False):
    """torchmetrics' LPIPS network (linear calibration layers shipped with torchmetrics; backbone from
    torchvision's ImageNet weights; torchvision comes with ``mien[train]``'s timm).

    Args:
        net: "alex", "vgg" or "squeeze".
        random_backbone: random-init backbone (tests; the numbers are then not LPIPS).

    Returns:
        the network in eval mode, or None when the backbone weights cannot be loaded (no download possible and
        not in the torch hub cache) or torchvision is not installed.
    """
    try:
        from torchmetrics.functional.image.lpips import _LPIPS

        return _LPIPS(pretrained=True, net=net, pnet_rand=random_backbone).eval()
    except (OSError, RuntimeError, ValueError, ImportError, ModuleNotFoundError):  # URLError is an OSError
        return None


def lpips(pred, target, network) -> np.ndarray:
    """LPIPS distance per image, float64 (B,) ≥ 0 (lower = more similar).

    Args:
        pred, target: (B, 3, H, W) in [0, 1]; network: from :func:`lpips_network`.
    """
    import torch

    p, t = _check_images(pred, target)
    with torch.inference_mode():
        return network(p * 2 - 1, t * 2 - 1, normalize=False).reshape(-1).double().numpy()


def inter_ocular(landmarks) -> np.ndarray:
    """Distance between the outer eye corners (:data:`EYE_OUTER`) per face, float64 (B,), in landmark units."""
    lm = _np(landmarks)
    return np.linalg.norm(lm[..., EYE_OUTER[0], :2] - lm[..., EYE_OUTER[1], :2], axis=-1)


def akd(pred_landmarks, target_landmarks, normalise: bool = True) -> np.ndarray:
    """Average keypoint distance per face: mean over K landmarks of the 2-D Euclidean distance, divided by the
    target's inter-ocular distance when ``normalise``.

    Args:
        pred_landmarks, target_landmarks: (B, K, ≥2) in the same pixel frame (MediaPipe 478 for the
            normalisation).

    Returns:
        float64 (B,); NaN where either face is missing (NaN landmarks).
    """
    p, t = _np(pred_landmarks), _np(target_landmarks)
    if p.shape[:2] != t.shape[:2] or p.ndim != 3:
        raise ValueError(f"landmarks must both be (B, K, 2|3); got {p.shape} and {t.shape}")
    d = np.linalg.norm(p[..., :2] - t[..., :2], axis=-1).mean(1)
    return d / inter_ocular(t) if normalise else d


def apd(pred_pose, target_pose) -> np.ndarray:
    """Average pose distance per face: mean absolute yaw/pitch/roll difference in degrees (angles wrapped to
    ±180°).

    Args:
        pred_pose, target_pose: (B, ≥3) with yaw, pitch, roll in degrees first (e.g. a shard's pose.npy).

    Returns:
        float64 (B,) degrees.
    """
    p, t = _np(pred_pose)[..., :3], _np(target_pose)[..., :3]
    if p.shape != t.shape:
        raise ValueError(f"poses must have the same shape; got {p.shape} and {t.shape}")
    d = (p - t + 180.0) % 360.0 - 180.0
    return np.abs(d).mean(-1)


def aed(pred_vectors, target_vectors, kind: str = "l2") -> np.ndarray:
    """Average expression distance per face between expression vectors.

    Args:
        pred_vectors, target_vectors: (B, D) (AU probabilities, face-api expression embeddings, …).
        kind: "l2" (Euclidean distance) or "mae" (mean absolute difference over D, e.g. for AU probabilities).

    Returns:
        float64 (B,).
    """
    p, t = _np(pred_vectors), _np(target_vectors)
    if p.shape != t.shape or p.ndim != 2:
        raise ValueError(f"expression vectors must both be (B, D); got {p.shape} and {t.shape}")
    if kind == "l2":
        return np.linalg.norm(p - t, axis=1)
    if kind == "mae":
        return np.abs(p - t).mean(1)
    raise ValueError(f"kind must be 'l2' or 'mae', got {kind!r}")


def emotion_agreement(pred_probs, target_probs) -> np.ndarray:
    """Whether the most probable emotion of each output equals the driver's: float64 (B,) of 0/1 (mean =
    agreement rate); NaN where either row is not finite.

    Args:
        pred_probs, target_probs: (B, C) emotion scores/probabilities.
    """
    p, t = _np(pred_probs), _np(target_probs)
    if p.shape != t.shape or p.ndim != 2:
        raise ValueError(f"emotion scores must both be (B, C); got {p.shape} and {t.shape}")
    ok = np.isfinite(p).all(1) & np.isfinite(t).all(1)
    out = np.full(len(p), np.nan)
    out[ok] = (p[ok].argmax(1) == t[ok].argmax(1)).astype(np.float64)
    return out


def csim(pred_descriptors, source_descriptors) -> np.ndarray:
    """Identity similarity of outputs to their sources: cosine of identity descriptors, float64 (B,)
    (:func:`mien.metrics.identity.identity_similarity`)."""
    return identity_similarity(pred_descriptors, source_descriptors)


__all__ = ["EYE_OUTER", "aed", "akd", "apd", "csim", "emotion_agreement", "inter_ocular", "l1", "lpips",
           "lpips_network", "psnr", "ssim"]
