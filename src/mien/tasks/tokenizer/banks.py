"""Exemplar banks of a trained warp tokenizer (``TokenizerConfig.warp_bank`` > 0), filled from training batches.

A bank holds, per subject, M training frames chosen on their meshes (:func:`mien.models.tokenizer.bank.build_bank`).
Training never needs it (the warp decoder trains on points, or draws from its reference); the bank is filled once,
after training, from the frames of the training split — ``mien export tokenizer CKPT -o DIR --bank-data DATASET``
(:func:`mien.export.tokenizer.export_checkpoint`) or :func:`fill_banks` on any iterable of batches.
"""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np
import torch

__all__ = ["fill_banks", "fill_from_frames", "fill_neutral"]


def fill_banks(task, batches: Iterable, method: str = "kmeans", pool: int = 512, seed: int = 0,
               source: str = "batches") -> dict[int, int]:
    """Fill the exemplar bank of every subject seen in ``batches`` (training data only).

    Frames are pooled per subject by reservoir sampling (at most ``pool`` frames each, uniform over everything
    seen; each kept frame is copied, so no batch stays alive), then :func:`~mien.models.tokenizer.bank.build_bank`
    picks the decoder's M entries among them, and each subject's neutral mesh (the identity-swap anchor,
    :func:`~mien.models.tokenizer.bank.set_neutral_meshes`) is the mean mesh of its pooled frames that face-api's
    FaceExpressionNet calls neutral (:func:`fill_neutral`). Frames whose landmarks are not finite are skipped, counted and warned
    about once.

    Args:
        task: a :class:`~mien.tasks.tokenizer.TokenizerTask` whose model has the warp decoder with ``warp_bank`` > 0.
        batches: training batches in any form :meth:`TokenizerTask.training_step` takes that carries
            ``landmarks`` (mien shards: ``video`` uint8 (B, T, 3, S, S), ``meta[i]["subject_id"]``, ``landmarks``
            (B, T, K ≥ 468, 2|3) crop px); crops are resized to the model's crop size as in training. Subject ids
            are per clip: (B,), or (B, T) constant along T (a clip has one subject).
        method: ``"kmeans"`` (scikit-learn, ``mien[train]``) or ``"fps"`` (:func:`~mien.models.tokenizer.bank.bank_frames`).
        pool: frames kept per subject before choosing.
        seed: reservoir and k-means seed.
        source: what ``batches`` come from (a dataset path), named in the errors.

    Returns:
        {subject id: frames seen (with finite landmarks)}.

    Raises:
        ValueError: the model has no exemplar bank.
        mien.errors.InputError: (``source``) a batch has no landmarks or subject ids, subject ids vary within a clip
            or lie outside [0, max_subjects), or no frame was given.
    """
    import warnings

    from mien.errors import InputError
    from mien.tasks.tokenizer.data import batch_landmarks, unpack_batch

    dec = getattr(task.model, "reconstruction", None)
    if getattr(dec, "bank_size", 0) <= 0:
        raise ValueError("this tokenizer has no exemplar bank (a warp decoder with TokenizerConfig.warp_bank > 0)")
    rng = np.random.default_rng(seed)
    kept: dict[int, list[tuple[np.ndarray, np.ndarray]]] = {}
    seen: dict[int, int] = {}
    skipped = 0
    size = task.model.config.crop_size
    for batch in batches:
        frames, ids = unpack_batch(batch, size)
        landmarks = batch_landmarks(batch, frames)
        if landmarks is None or ids is None:
            raise InputError(source, "exemplar banks need batches with landmarks and subject ids (mien shards)")
        ids = torch.as_tensor(ids).long().cpu()
        if ids.ndim == 2:  # (B, T): one subject per clip
            if not bool((ids == ids[:, :1]).all()):
                raise InputError(source, "subject ids vary within a clip (expected one subject id per clip)")
            ids = ids[:, 0]
        ids = ids.reshape(-1)
        bad = ids[(ids < 0) | (ids >= dec.max_subjects)]
        if bad.numel():
            raise InputError(source, f"subject id {int(bad[0])} outside the tokenizer's [0, {dec.max_subjects}) "
                                     "(not the dataset it was trained on?)")
        crops = (frames.clamp(0, 1) * 255).round().to(torch.uint8).cpu().numpy()
        points = landmarks.cpu().numpy()
        finite = np.isfinite(points[..., :2]).all((-1, -2))  # (B, T)
        skipped += int((~finite).sum())
        for b, sid in enumerate(ids.tolist()):
            for t in np.flatnonzero(finite[b]).tolist():
                n = seen.get(sid, 0)
                seen[sid] = n + 1
                slot = kept.setdefault(sid, [])
                if len(slot) < pool:
                    slot.append((crops[b, t].copy(), points[b, t].copy()))
                elif (j := int(rng.integers(n + 1))) < pool:
                    slot[j] = (crops[b, t].copy(), points[b, t].copy())
    if skipped:
        warnings.warn(f"{source}: {skipped} frame(s) with non-finite landmarks left out of the exemplar banks",
                      stacklevel=2)
    if not kept:
        raise InputError(source, "no frames to fill the exemplar banks from")
    subjects = np.concatenate([[s] * len(v) for s, v in kept.items()])
    images = np.stack([c for v in kept.values() for c, _ in v])
    points = np.stack([p for v in kept.values() for _, p in v])
    fill_from_frames(dec, images, points, subjects, method, seed)
    return seen


def fill_from_frames(decoder, images: np.ndarray, points: np.ndarray, subjects: np.ndarray, method: str = "kmeans",
                     seed: int = 0) -> tuple[dict[int, np.ndarray], list[int]]:
    """A banked warp decoder's exemplar banks (:func:`~mien.models.tokenizer.bank.build_bank`) and neutral meshes
    (:func:`fill_neutral`) from training frames: uint8 (N, 3, S, S) crops, float (N, K ≥ 468, 2|3) points (crop px)
    and int (N,) subject ids. Returns (the bank rows chosen per subject, the subjects given a neutral mesh).

    Raises:
        ValueError: as build_bank and set_neutral_meshes (unknown method, ids out of range, bad shapes).
    """
    from mien.models.tokenizer.bank import build_bank

    chosen = build_bank(decoder, images, points, subjects, method, seed)
    return chosen, fill_neutral(decoder, images, points, subjects)


def fill_neutral(decoder, images: np.ndarray, points: np.ndarray, subjects: np.ndarray) -> list[int]:
    """Set each subject's neutral mesh in a banked warp decoder from training frames: the mean mesh of the frames
    face-api's FaceExpressionNet (shipped, frozen) calls neutral (:func:`mien.models.tokenizer.bank.set_neutral_meshes`;
    subjects with fewer than :data:`~mien.models.tokenizer.bank.MIN_NEUTRAL_FRAMES` keep their reference as the
    identity-swap anchor, warned).

    Args:
        decoder: a :class:`~mien.models.tokenizer.warp.WarpDecoder` with ``bank`` > 0.
        images: uint8 (N, 3, S, S) RGB crops (float [0, 1] is rounded to uint8); points: float (N, K ≥ 468, 2|3) crop px; subjects: int (N,).

    Returns:
        The subject ids that got a neutral mesh (sorted).

    Raises:
        ValueError: subject ids outside [0, max_subjects), a decoder without a bank, mismatched lengths.
    """
    from mien.heads.faceapi import EMOTIONS, ExpressionHead
    from mien.models.tokenizer.bank import set_neutral_meshes

    images = torch.as_tensor(images).detach().cpu()
    if images.dtype != torch.uint8:  # float [0, 1], as set_bank takes
        images = (images.float() * 255.0).round().clamp(0, 255).to(torch.uint8)
    images = images.numpy()
    emotion = ExpressionHead(str(decoder.ref_points.device), backend="torch").emotions(images.transpose(0, 2, 3, 1))
    return set_neutral_meshes(decoder, torch.as_tensor(points).cpu().numpy(), np.asarray(subjects),
                              emotion.argmax(1) == EMOTIONS.index("neutral"))
