"""Per-subject exemplar bank of the warp decoder (``TokenizerConfig.warp_bank``, issue 9).

One reference crop cannot show an open mouth, closed eyes or a smile's cheeks: a mesh warp only moves the pixels it
has. With a bank the decoder keeps M training frames per subject (crop + its 468 mesh points) and, for a wanted mesh
(the token's), retrieves the entries whose mesh is closest and warps them to the wanted mesh — exemplar-based
synthesis as in Bregler et al., "Video Rewrite" (SIGGRAPH 1997), here with the piecewise-affine mesh warp of
:mod:`mien.face.warp`. The top-k warped entries are blended with softmax weights of their distances
(``warp_bank_k``, ``warp_bank_temperature``); k = 1 is hard selection.

Mesh distances (``warp_bank_distance``), all RMS over the 468 points in crop px:

* ``"points"``: the raw point distance (pose included: a frame with the same head pose warps with less distortion);
* ``"aligned"``: after the least-squares similarity (rotation, scale, translation) that maps the wanted mesh onto the
  entry's (2-D Procrustes), i.e. the shape difference only;
* ``"aligned-expression"``: aligned, with the lips, eyes and brows points weighted ×:data:`EXPRESSION_WEIGHT`.

Identity swaps move the target by the source's motion. Measured from the subject's reference (its mean training
frame) an expressive subject's smile is partly in the reference and only the rest moves over; with each subject's
**neutral mesh** (:func:`neutral_meshes`, the mean mesh of the training frames a facial-expression classifier calls
neutral — face-api's FaceExpressionNet in :func:`mien.tasks.tokenizer.banks.fill_banks`) the whole expression moves
(:meth:`~mien.models.tokenizer.warp.WarpDecoder.transfer_points`), as expression cloning measures motion from a
neutral face (Noh & Neumann, "Expression Cloning", SIGGRAPH 2001).

Bank building (:func:`bank_frames`) picks the M entries of each subject among the frames it is given (the training
split) on pose-normalised meshes (each aligned to the subject's mean mesh, :func:`mien.face.align.align_to_reference`):
``"fps"`` — farthest-point sampling from the frame nearest the mean mesh (covers the extremes: the widest mouth, the closed eyes);
``"kmeans"`` — scikit-learn k-means (``mien[train]``), the member nearest each centre (typical frames).
"""

from __future__ import annotations

import numpy as np
import torch

from mien.models.tokenizer.config import BANK_DISTANCES

__all__ = ["EXPRESSION_WEIGHT", "MIN_NEUTRAL_FRAMES", "bank_baselines", "bank_frames", "blend_weights", "build_bank",
           "compose", "mesh_distance", "nearest", "neutral_meshes", "set_neutral_meshes"]

MIN_NEUTRAL_FRAMES = 3
"""Fewest neutral frames a subject needs for a neutral mesh (:func:`neutral_meshes`)."""

EXPRESSION_WEIGHT = 5.0
"""Weight of the lips, eyes and brows points in the ``"aligned-expression"`` distance (the others: 1)."""


def _point_weights(distance: str, device) -> torch.Tensor | None:
    if distance != "aligned-expression":
        return None
    from mien.face import landmarks as L

    w = torch.ones(468, device=device)
    idx = np.unique(np.concatenate([L.LIPS_OUTER, L.LIPS_INNER, L.EYE_LEFT, L.EYE_RIGHT, L.BROWS]))
    w[torch.as_tensor(idx, device=device)] = EXPRESSION_WEIGHT
    return w / w.mean()


def mesh_distance(query: torch.Tensor, entries: torch.Tensor, distance: str = "aligned") -> torch.Tensor:
    """RMS distance (crop px) of wanted meshes to bank entries.

    Args:
        query: float (N, 468, 2) wanted mesh points, crop px.
        entries: float (N, M, 468, 2) the candidate entries' points (each query's own subject's bank).
        distance: one of :data:`mien.models.tokenizer.config.BANK_DISTANCES`.

    Returns:
        float (N, M).

    Raises:
        ValueError: unknown distance.
    """
    if distance not in BANK_DISTANCES:
        raise ValueError(f"bank distance must be one of {BANK_DISTANCES}, got {distance!r}")
    q = query.double()[:, None]  # (N, 1, K, 2)
    e = entries.double()
    if distance != "points":  # the least-squares similarity of each query onto each entry (Umeyama)
        from mien.face.align import umeyama_torch

        s, r, t = umeyama_torch(q, e)
        q = s[..., None, None] * (q @ r.transpose(-1, -2)) + t[..., None, :]
    sq = ((q - e) ** 2).sum(-1)  # (N, M, K)
    w = _point_weights(distance, sq.device)
    return (sq.mean(-1) if w is None else (sq * w.double()).mean(-1)).sqrt().float()


def blend_weights(dist: torch.Tensor, valid: torch.Tensor, k: int, temperature: float
                  ) -> tuple[torch.Tensor, torch.Tensor]:
    """Top-k entries and their softmax weights exp(−d/τ) / Σ (invalid entries and non-finite distances never
    chosen, unless a row has nothing else).

    Args:
        dist: float (N, M) distances (crop px); valid: bool (N, M), ≥ 1 True per row.
        k: entries blended (clipped to M); temperature: τ in crop px (> 0).

    Returns:
        (long (N, k) entry indices, nearest first; float (N, k) weights, rows summing to 1; exactly [1] for k = 1).
    """
    d = dist.masked_fill(~valid | ~torch.isfinite(dist), float("inf"))
    k = min(int(k), d.shape[1])
    top, idx = torch.topk(d, k, dim=1, largest=False)
    if k == 1:
        return idx, torch.ones_like(top)
    return idx, torch.softmax(-(top - top[:, :1]) / float(temperature), dim=1)


def nearest(dec, points: torch.Tensor, ids: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Bank entries of subjects ``ids`` (long (N,)) for wanted meshes ``points`` (N, 468, 2) crop px by the
    decoder's distance, k and temperature: (long (N, k) indices, float (N, k) weights), see :func:`blend_weights`."""
    entries = dec.bank_points[ids]
    valid = torch.arange(entries.shape[1], device=ids.device)[None] < dec.bank_count[ids][:, None]
    return blend_weights(mesh_distance(points.detach(), entries, dec.bank_distance), valid, dec.bank_k,
                         dec.bank_temperature)


def compose(dec, points: torch.Tensor, ids: torch.Tensor, idx: torch.Tensor, weights: torch.Tensor
            ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Σ_j weights[:, j] · (bank entry idx[:, j] warped to ``points``) (the mesh warp, no gradient).

    Args:
        dec: a :class:`~mien.models.tokenizer.warp.WarpDecoder` with filled banks (``bank_size`` > 0).
        points: float (N, 468, 2) wanted mesh points, crop px.
        ids: long (N,) subject ids (banks set).
        idx, weights: long (N, k) entry indices (nearest first) and float (N, k) weights summing to 1 per row
            (:func:`nearest`).

    Returns:
        (blend float (N, 3, S, S) [0, 1], the nearest entry's crop (N, 3, S, S) and its flow (N, 2, S, S)).
    """
    out = flow0 = img0 = None
    for j in range(idx.shape[1]):
        img = dec.bank_images[ids, idx[:, j]].float() / 255.0
        warped, flow = dec.warp(img, dec.bank_points[ids, idx[:, j]], points)
        if j == 0:
            img0, flow0 = img, flow
            out = warped if idx.shape[1] == 1 else warped * weights[:, :1, None, None]
        else:
            out = out + warped * weights[:, j:j + 1, None, None]
    return out, img0, flow0


def bank_baselines(dec, points: torch.Tensor, ids: torch.Tensor, batch: int = 64
                   ) -> tuple[torch.Tensor, torch.Tensor]:
    """The bank's baselines at known meshes (e.g. a frame's true landmarks, no token): the nearest entry by
    :func:`nearest`, unwarped, and the decoder's k entries warped to the mesh and blended (:func:`compose`: the
    bank oracle), in batches of ``batch``, no gradient.

    Args:
        dec: a :class:`~mien.models.tokenizer.warp.WarpDecoder` with filled banks; points: float (N, 468, 2) crop
            px; ids: long (N,) subject ids.

    Returns:
        (nearest float (N, 3, S, S) [0, 1], oracle float (N, 3, S, S) clamped to [0, 1]).
    """
    near, blend = [], []
    with torch.inference_mode():
        for i in range(0, len(ids), batch):
            p, s = points[i:i + batch], ids[i:i + batch]
            idx, w = nearest(dec, p, s)
            near.append(dec.bank_images[s, idx[:, 0]].float() / 255.0)
            blend.append(compose(dec, p, s, idx, w)[0])
    return torch.cat(near), torch.cat(blend).clamp(0, 1)


def bank_frames(points: np.ndarray, subjects: np.ndarray, m: int, method: str = "fps", seed: int = 0
                ) -> dict[int, np.ndarray]:
    """The M bank entries of each subject among the given frames (row indices), on pose-normalised meshes.

    Args:
        points: float (N, K ≥ 468, 2|3) landmarks, crop px; subjects: int (N,) subject ids. Frames whose points
            are not finite are never chosen (counted in one warning).
        m: entries per subject (all of a subject's frames when it has ≤ m).
        method: "fps" (farthest-point sampling, starting from the frame nearest the subject's mean pose-normalised
            mesh) or "kmeans" (scikit-learn KMeans, ``seed``; the frame nearest each centre).

    Returns:
        {subject id: int64 (≤ m,) indices into ``points`` (distinct, in selection order)}; subjects without a
        finite frame are left out.

    Raises:
        ValueError: unknown method, m < 1 or mismatched lengths.
    """
    from mien.face.align import align_to_reference

    if method not in ("fps", "kmeans"):
        raise ValueError(f"bank method must be 'fps' or 'kmeans', got {method!r}")
    if m < 1:
        raise ValueError(f"bank size must be >= 1, got {m}")
    pts = np.asarray(points, np.float64)[:, :468, :2]
    subjects = np.asarray(subjects).reshape(-1)
    if len(pts) != len(subjects):
        raise ValueError(f"points and subjects differ in length: {len(pts)}, {len(subjects)}")
    finite = np.isfinite(pts).all((1, 2))
    if not finite.all():
        import warnings

        warnings.warn(f"{int((~finite).sum())} frame(s) with non-finite landmarks left out of the exemplar banks",
                      stacklevel=2)
    out = {}
    for s in np.unique(subjects[finite]):
        rows = np.flatnonzero((subjects == s) & finite)
        x = align_to_reference(pts[rows], pts[rows].mean(0)).reshape(len(rows), -1)
        if len(rows) <= m:
            out[int(s)] = rows.astype(np.int64)
            continue
        if method == "kmeans":
            from sklearn.cluster import KMeans

            km = KMeans(m, n_init=4, random_state=seed).fit(x)
            d = ((x[:, None] - km.cluster_centers_[None]) ** 2).sum(-1)  # (n, m)
            pick = []
            for c in range(m):  # nearest member of each centre, distinct
                order = np.argsort(d[:, c])
                pick.append(next(int(i) for i in order if int(i) not in pick))
        else:
            pick = [int(((x - x.mean(0)) ** 2).sum(1).argmin())]
            gap = ((x - x[pick[0]]) ** 2).sum(1)
            while len(pick) < m:
                pick.append(int(gap.argmax()))
                gap = np.minimum(gap, ((x - x[pick[-1]]) ** 2).sum(1))
        out[int(s)] = rows[np.asarray(pick)].astype(np.int64)
    return out


def build_bank(decoder, images: np.ndarray, points: np.ndarray, subjects: np.ndarray, method: str = "fps",
               seed: int = 0) -> dict[int, np.ndarray]:
    """Fill a :class:`~mien.models.tokenizer.warp.WarpDecoder`'s bank (``decoder.bank_size`` entries per
    subject) from the given frames only (pass the training split), by :func:`bank_frames`.

    Args:
        images: uint8 (N, 3, S, S) crops (float [0, 1] is rounded to uint8); points: (N, K ≥ 468, 2|3) crop px;
        subjects: int (N,). Numpy arrays or tensors on any device.

    Returns:
        The chosen row indices per subject (as :func:`bank_frames`).

    Raises:
        ValueError: as :func:`bank_frames` (method, M, lengths) and
            :meth:`~mien.models.tokenizer.warp.WarpDecoder.set_bank` (no bank, ids out of range, shapes).
    """
    points = torch.as_tensor(points).detach().cpu().numpy()
    chosen = bank_frames(points, subjects, decoder.bank_size, method, seed)
    for s, rows in chosen.items():
        decoder.set_bank(s, images[torch.as_tensor(rows)] if torch.is_tensor(images) else images[rows], points[rows])
    return chosen


def neutral_meshes(points: np.ndarray, subjects: np.ndarray, neutral: np.ndarray,
                   min_frames: int = MIN_NEUTRAL_FRAMES) -> dict[int, np.ndarray]:
    """Each subject's neutral mesh: the mean of its frames' points where ``neutral`` is True.

    Args:
        points: float (N, K ≥ 468, 2|3) landmarks, crop px (the aligned crops of one subject share a frame, as for
            the reference mesh); subjects: int (N,); neutral: bool (N,) frames classified neutral.
        min_frames: fewest finite neutral frames for a mesh; subjects with fewer are left out (their swaps keep the
            reference as anchor).

    Returns:
        {subject id: float32 (468, 2)}.

    Raises:
        ValueError: mismatched lengths.
    """
    pts = np.asarray(points, np.float64)[:, :468, :2]
    subjects, neutral = np.asarray(subjects).reshape(-1), np.asarray(neutral, bool).reshape(-1)
    if not len(pts) == len(subjects) == len(neutral):
        raise ValueError(f"points, subjects and neutral differ in length: {len(pts)}, {len(subjects)}, {len(neutral)}")
    keep = neutral & np.isfinite(pts).all((1, 2))
    out = {}
    for s in np.unique(subjects):
        rows = keep & (subjects == s)
        if rows.sum() >= min_frames:
            out[int(s)] = pts[rows].mean(0).astype(np.float32)
    return out


def set_neutral_meshes(decoder, points: np.ndarray, subjects: np.ndarray, neutral: np.ndarray,
                       min_frames: int = MIN_NEUTRAL_FRAMES) -> list[int]:
    """Store :func:`neutral_meshes` in a banked :class:`~mien.models.tokenizer.warp.WarpDecoder`
    (:meth:`~mien.models.tokenizer.warp.WarpDecoder.set_neutral`); warns once naming the subjects left without
    one (fewer than ``min_frames`` neutral frames; a mesh of theirs from an earlier fill is cleared). Returns the
    subject ids that got a neutral mesh (sorted). ValueError for subject ids outside [0, max_subjects)."""
    import warnings

    bad = [int(s) for s in np.unique(np.asarray(subjects)) if not 0 <= int(s) < decoder.max_subjects]
    if bad:
        raise ValueError(f"subject ids {bad} outside [0, {decoder.max_subjects})")
    meshes = neutral_meshes(points, subjects, neutral, min_frames)
    for s, m in meshes.items():
        decoder.set_neutral(s, m)
    missing = sorted({int(s) for s in np.unique(np.asarray(subjects))} - set(meshes))
    for s in missing:
        decoder.bank_neutral_set[s] = False
    if missing:
        warnings.warn(f"{len(missing)} subject(s) with fewer than {min_frames} neutral training frames keep their "
                      f"reference as the identity-swap anchor: ids {missing}", stacklevel=2)
    return sorted(meshes)
