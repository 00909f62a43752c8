"""``mien export reenact``: a :class:`~mien.tasks.reenact.ReenactTask` checkpoint → ``config.json`` +
``model.safetensors`` (loaded by :func:`mien.models.reenact.load_reenact_model` / ``load_student_model``), the
student also as ``student.onnx`` (parity-checked with onnxruntime), and per-AU editing directions of the
expression latent (:func:`au_directions`) when a prepared dataset is given.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import torch

__all__ = ["au_directions", "export_reenact_checkpoint"]


def au_directions(model, root: str, every: int = 5, max_frames: int = 2000, ridge: float = 1e-2,
                  batch: int = 64) -> tuple[dict[str, torch.Tensor], dict]:
    """Directions of the expression latent z per AU, by ridge regression of z on mien's AU probabilities.

    Every ``every``-th frame of the prepared clips in ``root`` (at most ``max_frames``): AU probabilities from
    mien's default AU model (:func:`mien.models.au.au_features` + :func:`~mien.models.au.predict_au` on the shard
    crop and its landmarks) and z from ``model.encode_motion`` (crop resized to ``model.size``). With P the
    centred (N, A) probabilities and Z the centred (N, Z) latents, ``W = (PᵀP + λ N I)⁻¹ PᵀZ``; row k is the
    change of z per unit probability of AU k.

    Returns:
        ({"AU01": (Z,) float32 tensor, …}, fit statistics {"frames", "r2", "ridge", "source"}).

    Raises:
        mien.errors.InputError: ``root`` is not a prepared dataset or has no frames.
    """
    import torch.nn.functional as F

    from mien.data.reader import iter_samples
    from mien.errors import InputError
    from mien.models.au import au_features, au_names, predict_au

    crops, lms, poses = [], [], []
    n = 0
    for s in iter_samples(root, audio=False):
        v, lm, pose = s["mp4"][::every], s["landmarks.npy"][::every], s["pose.npy"][::every]
        take = min(len(v), max_frames - n)
        crops.append(v[:take])
        lms.append(lm[:take])
        poses.append(pose[:take])
        n += take
        if n >= max_frames:
            break
    if n < 2:
        raise InputError(root, "no frames to fit AU directions on")
    crops_np, lm_np, pose_np = np.concatenate(crops), np.concatenate(lms), np.concatenate(poses)
    probs = np.concatenate([predict_au(au_features(list(crops_np[i:i + batch]), lm_np[i:i + batch]))
                            for i in range(0, n, batch)]).astype(np.float64)
    zs = []
    dev = next(model.parameters()).device
    with torch.no_grad():
        for i in range(0, n, batch):
            x = torch.from_numpy(crops_np[i:i + batch]).permute(0, 3, 1, 2).float().div(255).to(dev)
            if x.shape[-1] != model.size:
                x = F.interpolate(x, size=(model.size, model.size), mode="bilinear", antialias=True,
                                  align_corners=False).clamp(0, 1)
            zs.append(model.encode_motion(x, torch.from_numpy(pose_np[i:i + batch]).float().to(dev)).z.cpu())
    z = torch.cat(zs).double().numpy()
    p = probs - probs.mean(0)
    zc = z - z.mean(0)
    a = p.T @ p + ridge * n * np.eye(p.shape[1])
    w = np.linalg.solve(a, p.T @ zc)  # (A, Z)
    resid = zc - p @ w
    r2 = float(1 - resid.var(0).sum() / max(zc.var(0).sum(), 1e-12))
    dirs = {name: torch.from_numpy(w[k]).float() for k, name in enumerate(au_names())}
    return dirs, {"frames": int(n), "r2": r2, "ridge": ridge, "source": str(root)}


def export_reenact_checkpoint(checkpoint: str | os.PathLike, directory: str | os.PathLike,
                              au_data: str | None = None, au_every: int = 5, au_max_frames: int = 2000,
                              onnx: bool = True, atol: float = 1e-3) -> Path:
    """Lightning checkpoint of a :class:`~mien.tasks.reenact.ReenactTask` → an export folder.

    Args:
        au_data: a prepared dataset (e.g. the training shards) to fit per-AU directions on (base/hr models).
        onnx: also write ``student.onnx`` for a student (inputs ``driver`` (B, 3, S, S) float32 [0, 1],
            ``avatar`` (B,) int64; output ``image``).

    Raises:
        FileNotFoundError: no such checkpoint.
    """
    if not Path(checkpoint).is_file():
        raise FileNotFoundError(f"{checkpoint} not found")
    from mien.tasks.reenact import ReenactTask

    task = ReenactTask.load_from_checkpoint(str(checkpoint), map_location="cpu", faceapi_pretrained=False)
    model = task.model.eval()
    extra: dict = {"checkpoint": Path(checkpoint).name}
    if au_data and task.stage in ("base", "hr"):  # the models with an expression latent
        model.au_directions, extra["au_directions_fit"] = au_directions(model, au_data, au_every, au_max_frames)
    if task.stage == "student":
        extra["avatar_subjects"] = task.avatar_subject.tolist()
    out = task.export(directory, extra)
    if task.stage == "student" and onnx:
        from mien.export.onnx import export_onnx

        s = model.size
        gen = torch.Generator().manual_seed(0)
        ex = (torch.rand(2, 3, s, s, generator=gen), torch.tensor([0, model.config.num_avatars - 1]))
        export_onnx(model, ex, Path(directory) / "student.onnx", ["driver", "avatar"], ["image"], atol=atol)
    return out
