"""Warp-guided reconstruction of an expression tokenizer (``TokenizerConfig.decoder = "warp"``, issue 9).

A from-scratch image decoder does not learn to draw faces in a CPU budget, so its tokens have nothing to carry.
This decoder draws a face by *moving the pixels of an identity reference* instead:

1. the expression token z (unit norm, D) → MLP → displacements Δ (468, 2) of MediaPipe's mesh points, in units
   of the crop side, relative to the subject's reference points (trained against the frame's own landmarks: a
   landmark loss, :attr:`mien.tasks.tokenizer.config.TokenizerWeights.landmarks`);
2. the subject's reference crop is warped by the piecewise-affine mesh warp of :mod:`mien.face.warp`
   (:func:`~mien.face.warp.mesh_warp`, the classical warp of ``mien evaluate reenact``'s baseline (b)) from its
   reference points P_ref to P_ref + S·Δ;
3. an optional refinement U-Net (:class:`mien.models.reenact.warpguided.WarpGuidedRefiner`, zero-initialised
   output layers: it returns the warp exactly until trained) adds what a warp cannot draw (mouth interior, eyelids)
   and is trained by the pixel loss.

The displacement head's last layer is zero-initialised, so an untrained decoder returns the reference itself:
the output is a face from step 0 and training only has to learn the geometry of the expression. Identity swap =
A's token with B's reference (relative motion: A's displacement from A's reference applied to B's reference
points); token swap = another frame's token with the same reference.

The references (crop + points per subject id) are buffers of the model (saved with the weights):
:meth:`WarpDecoder.set_references`; :func:`reference_frames` chooses one per subject from training frames. The
displacements stay relative to the reference points; with an exemplar bank (``bank`` > 0,
:mod:`mien.models.tokenizer.bank`) step 2 warps the subject's bank entries whose meshes are nearest the wanted mesh instead of the reference crop.

Related: the landmark-driven warp + refinement of Averbuch-Elor et al., "Bringing Portraits to Life" (SIGGRAPH
Asia 2017); relative keypoint motion as in Siarohin et al., "First Order Motion Model" (NeurIPS 2019).
"""

from __future__ import annotations

import math

import numpy as np
import torch
from torch import nn

__all__ = ["MESH_POINTS", "WarpDecoder", "reference_frames"]

MESH_POINTS = 468
"""Number of mesh points the decoder moves (MediaPipe's tessellated face mesh; the 10 iris points are not used)."""
DISPLACEMENT_UNIT = 0.01
"""The displacement MLP's output unit, as a fraction of the crop side (1 = 1 % of the side). Expression moves
points by ~1 % of the side; in this unit an AdamW step of size lr changes a displacement by ~lr %, not by ~lr
crop sides (which threw the points off the face within a few steps at lr 1e-3)."""
RING_CACHE = 16384
"""Most mesh-warp border rings a :class:`WarpDecoder` keeps (one per reference / bank entry; ~1.5 KiB each → ≤ 25 MiB)."""


def reference_frames(images: np.ndarray, points: np.ndarray, subjects: np.ndarray, kind: str = "medoid"
                     ) -> dict[int, tuple[np.ndarray, np.ndarray]]:
    """One reference (crop, points) per subject from its training frames.

    Args:
        images: float32 or uint8 (N, 3, S, S) RGB crops (uint8 is divided by 255).
        points: float (N, K ≥ 468, 2|3) landmarks in crop px.
        subjects: int (N,) subject ids.
        kind: "medoid" — the frame whose 468 points are closest (mean L2) to the subject's mean points (a sharp,
            typical frame); "mean" — the pixel mean of the frames with the mean points (blurry; equals the
            subject-mean baseline at zero displacement); "first" — the subject's first frame.

    Returns:
        {subject id: (float32 (3, S, S) in [0, 1], float32 (468, 2) crop px)}.

    Raises:
        ValueError: unknown kind or mismatched lengths.
    """
    if kind not in ("medoid", "mean", "first"):
        raise ValueError(f"reference kind must be 'medoid', 'mean' or 'first', got {kind!r}")
    images = np.asarray(images)
    points = np.asarray(points, np.float32)[:, :MESH_POINTS, :2]
    subjects = np.asarray(subjects).reshape(-1)
    if not len(images) == len(points) == len(subjects):
        raise ValueError(f"images, points and subjects differ in length: {len(images)}, {len(points)}, "
                         f"{len(subjects)}")
    scale = 255.0 if images.dtype == np.uint8 else 1.0
    out = {}
    for s in np.unique(subjects):
        idx = np.flatnonzero(subjects == s)
        p = points[idx]
        if kind == "mean":
            img = images[idx].astype(np.float64).mean(0) / scale
            out[int(s)] = (img.astype(np.float32), p.mean(0))
            continue
        j = idx[0] if kind == "first" else idx[int(np.linalg.norm(p - p.mean(0), axis=-1).mean(1).argmin())]
        out[int(s)] = ((images[j].astype(np.float32) / scale), points[j].copy())
    return out


class WarpDecoder(nn.Module):
    """Token → mesh displacements → piecewise-affine warp of the subject's reference (→ refinement).

    Args:
        dim: token size D.
        crop_size: S (square crops, the tokenizer's).
        max_subjects: number of subject ids (one reference, and one exemplar bank, per id).
        hidden: width of the displacement MLP (Linear D→hidden, GELU, Linear hidden→hidden, GELU,
            Linear hidden→468·2, the last zero-initialised), in units of :data:`DISPLACEMENT_UNIT` of the side.
        refiner_width: first-level width of the refinement U-Net; 0 = no refinement (pure warp).
        refiner_levels: its ×2 downsamplings (S must be divisible by 2**levels).
        bank: exemplar entries per subject M (0: no bank, the reference crop is warped — the decoder before banks);
            stored as uint8 (max_subjects, M, 3, S, S) crops + float32 (max_subjects, M, 468, 2) points
            (:meth:`set_bank`, :func:`mien.models.tokenizer.bank.build_bank`), and one neutral mesh per subject
            (float32 (max_subjects, 468, 2), :meth:`set_neutral`) that anchors identity swaps.
        bank_k, bank_temperature, bank_distance: entries blended, softmax temperature (crop px) and mesh distance
            of the bank selection (:func:`mien.models.tokenizer.bank.nearest`).

    Forward:
        tokens: float (M, D) unit-norm expression tokens.
        subject_ids: long (M,) ids with a reference set (:meth:`set_references`).
        source_ids: long (M,) the ids the tokens were encoded with, for an identity swap (:meth:`transfer_points`),
            or None.

    Returns:
        (images float (M, 3, S, S) RGB [0, 1]-ish (the refinement may leave [0, 1] slightly; clamp to show),
        points float (M, 468, 2) the target mesh points in crop px, differentiable w.r.t. the tokens).

    Raises:
        ValueError: wrong token shape, ids out of range or without a reference.
    """

    def __init__(self, dim: int, crop_size: int, max_subjects: int, hidden: int = 256, refiner_width: int = 8,
                 refiner_levels: int = 4, bank: int = 0, bank_k: int = 1, bank_temperature: float = 1.0,
                 bank_distance: str = "aligned"):
        super().__init__()
        if max_subjects <= 0:
            raise ValueError("the warp decoder needs max_subjects > 0 (one reference per subject id)")
        self.dim, self.size, self.max_subjects = dim, crop_size, max_subjects
        self.token_scale = math.sqrt(dim)
        self.displacement = nn.Sequential(nn.Linear(dim, hidden), nn.GELU(), nn.Linear(hidden, hidden), nn.GELU(),
                                          nn.Linear(hidden, MESH_POINTS * 2))
        nn.init.zeros_(self.displacement[-1].weight)
        nn.init.zeros_(self.displacement[-1].bias)
        self.register_buffer("ref_images", torch.zeros(max_subjects, 3, crop_size, crop_size))
        self.register_buffer("ref_points", torch.zeros(max_subjects, MESH_POINTS, 2))
        self.register_buffer("ref_set", torch.zeros(max_subjects, dtype=torch.bool))
        self.bank_size, self.bank_k, self.bank_temperature, self.bank_distance = (int(bank), int(bank_k),
                                                                                  float(bank_temperature), bank_distance)
        if bank > 0:
            self.register_buffer("bank_images", torch.zeros(max_subjects, bank, 3, crop_size, crop_size,
                                                            dtype=torch.uint8))
            self.register_buffer("bank_points", torch.zeros(max_subjects, bank, MESH_POINTS, 2))
            self.register_buffer("bank_count", torch.zeros(max_subjects, dtype=torch.long))
            self.register_buffer("bank_neutral_points", torch.zeros(max_subjects, MESH_POINTS, 2))
            self.register_buffer("bank_neutral_set", torch.zeros(max_subjects, dtype=torch.bool))
        self.refiner = None
        if refiner_width > 0:
            from mien.models.reenact.warpguided import WarpGuidedConfig, WarpGuidedRefiner

            self.refiner = WarpGuidedRefiner(WarpGuidedConfig(size=crop_size, width=refiner_width,
                                                              levels=refiner_levels))

    # ---- references ----------------------------------------------------------------------------------------
    def set_references(self, subject_ids, images, points) -> None:
        """Store reference crops and points for subject ids (overwriting).

        Args:
            subject_ids: int (R,) in [0, max_subjects).
            images: float (R, 3, S, S) RGB in [0, 1] (uint8 is divided by 255).
            points: float (R, K ≥ 468, 2|3) crop px.

        Raises:
            ValueError: ids out of range or wrong shapes.
        """
        ids = torch.as_tensor(np.asarray(subject_ids)).long().reshape(-1)
        img = torch.as_tensor(np.asarray(images))
        img = img.float() / 255.0 if img.dtype == torch.uint8 else img.float()
        pts = torch.as_tensor(np.asarray(points, np.float32))[:, :MESH_POINTS, :2]
        if img.shape != (len(ids), 3, self.size, self.size) or pts.shape != (len(ids), MESH_POINTS, 2):
            raise ValueError(f"expected images ({len(ids)}, 3, {self.size}, {self.size}) and points "
                             f"({len(ids)}, ≥{MESH_POINTS}, 2), got {tuple(img.shape)} and {tuple(pts.shape)}")
        if ids.numel() and (int(ids.min()) < 0 or int(ids.max()) >= self.max_subjects):
            raise ValueError(f"subject ids must lie in [0, {self.max_subjects})")
        dev = self.ref_images.device
        self.ref_images[ids.to(dev)] = img.to(dev)
        self.ref_points[ids.to(dev)] = pts.to(dev)
        self.ref_set[ids.to(dev)] = True

    def set_bank(self, subject_id: int, images, points) -> None:
        """Store a subject's exemplar bank (overwriting it): m ≤ ``bank`` entries.

        Args:
            subject_id: in [0, max_subjects).
            images: uint8 (m, 3, S, S) RGB crops (float [0, 1] is rounded to uint8); numpy or a tensor on any device.
            points: float (m, K ≥ 468, 2|3) their mesh points, crop px (finite).

        Raises:
            ValueError: no bank (``bank`` 0), id out of range, m outside [1, bank], wrong shapes or non-finite
                points.
        """
        if self.bank_size <= 0:
            raise ValueError("this warp decoder has no exemplar bank (TokenizerConfig.warp_bank = 0)")
        if not 0 <= int(subject_id) < self.max_subjects:
            raise ValueError(f"subject id must lie in [0, {self.max_subjects}), got {subject_id}")
        img = torch.as_tensor(images).detach().cpu()
        if img.dtype != torch.uint8:
            img = (img.float() * 255.0).round().clamp(0, 255).to(torch.uint8)
        pts = torch.as_tensor(points).detach().cpu().float()[:, :MESH_POINTS, :2]
        m = img.shape[0]
        if not 1 <= m <= self.bank_size or img.shape[1:] != (3, self.size, self.size) \
                or pts.shape != (m, MESH_POINTS, 2):
            raise ValueError(f"expected 1..{self.bank_size} bank crops (m, 3, {self.size}, {self.size}) and points "
                             f"(m, ≥{MESH_POINTS}, 2), got {tuple(img.shape)} and {tuple(pts.shape)}")
        if not bool(torch.isfinite(pts).all()):
            raise ValueError(f"bank points of subject {subject_id} are not all finite (NaN/inf landmarks)")
        s = int(subject_id)
        self.bank_images[s, :m] = img.to(self.bank_images.device)
        self.bank_points[s, :m] = pts.to(self.bank_points.device)
        self.bank_count[s] = m

    def set_neutral(self, subject_id: int, points) -> None:
        """Store a subject's neutral mesh (overwriting it), the anchor of its identity-swap motion
        (:meth:`transfer_points`); filled with the bank from training frames a facial-expression classifier calls
        neutral (:func:`mien.models.tokenizer.bank.neutral_meshes`).

        Args:
            subject_id: in [0, max_subjects).
            points: float (K ≥ 468, 2|3) crop px, finite.

        Raises:
            ValueError: no bank (``bank`` 0), id out of range, wrong shape or non-finite points.
        """
        if self.bank_size <= 0:
            raise ValueError("this warp decoder has no exemplar bank (TokenizerConfig.warp_bank = 0)")
        if not 0 <= int(subject_id) < self.max_subjects:
            raise ValueError(f"subject id must lie in [0, {self.max_subjects}), got {subject_id}")
        pts = torch.as_tensor(points).detach().cpu().float()
        if pts.ndim != 2 or pts.shape[0] < MESH_POINTS or pts.shape[1] < 2:
            raise ValueError(f"expected neutral points (≥{MESH_POINTS}, 2), got {tuple(pts.shape)}")
        pts = pts[:MESH_POINTS, :2]
        if not bool(torch.isfinite(pts).all()):
            raise ValueError(f"neutral points of subject {subject_id} are not all finite")
        self.bank_neutral_points[int(subject_id)] = pts.to(self.bank_neutral_points.device)
        self.bank_neutral_set[int(subject_id)] = True

    def anchors(self, source_ids, target_ids, neutral: bool = True) -> tuple[torch.Tensor, torch.Tensor]:
        """The meshes an identity swap's motion is measured from (source) and applied to (target), float (M, 468, 2)
        crop px each: both subjects' neutral meshes (:meth:`set_neutral`) where both are set (and ``neutral``),
        else both references (the motion the displacement head was trained on).

        Args:
            source_ids, target_ids: long (M,) subject ids with references.
            neutral: False: the references always (the swap before neutral meshes).

        Raises:
            ValueError: ids out of range, of different lengths or without a reference.
        """
        if source_ids is None or target_ids is None:
            raise ValueError("anchors need source and target subject ids")
        src = self._check_ids(source_ids, torch.as_tensor(source_ids).numel())
        return self._anchors(src, self._check_ids(target_ids, src.numel()), neutral)

    def _anchors(self, source_ids: torch.Tensor, target_ids: torch.Tensor, neutral: bool = True
                 ) -> tuple[torch.Tensor, torch.Tensor]:
        a_s, a_t = self.ref_points[source_ids], self.ref_points[target_ids]
        if neutral and self.bank_size > 0:
            both = self.neutral_anchored(source_ids, target_ids)[:, None, None]
            a_s = torch.where(both, self.bank_neutral_points[source_ids], a_s)
            a_t = torch.where(both, self.bank_neutral_points[target_ids], a_t)
        return a_s, a_t

    def neutral_anchored(self, source_ids: torch.Tensor, target_ids: torch.Tensor) -> torch.Tensor:
        """bool (M,): whether swaps from ``source_ids`` to ``target_ids`` (long (M,) valid ids) are anchored at
        neutral meshes (both subjects have one); all False without a bank."""
        if self.bank_size <= 0:
            return torch.zeros(len(source_ids), dtype=torch.bool, device=self.ref_set.device)
        return self.bank_neutral_set[source_ids] & self.bank_neutral_set[target_ids]

    def transfer_points(self, tokens: torch.Tensor, source_ids, target_ids) -> torch.Tensor:
        """Identity-swap mesh points (M, 468, 2) crop px: the motion of the token's mesh (decoded for its own
        subject) from the source's anchor, applied to the target's anchor (:meth:`anchors`): with neutral meshes
        the whole expression moves over, not its difference from the source's (often expressive) reference. Without
        them this equals :meth:`points` with the target's ids (the token's displacement on the target's reference).

        Args:
            tokens: float (M, D); source_ids, target_ids: long (M,) subject ids with references.

        Raises:
            ValueError: wrong token shape, ids out of range, of another count or without a reference.
        """
        m = self._check_tokens(tokens)
        src, tgt = self._check_ids(source_ids, m), self._check_ids(target_ids, m)
        a_s, a_t = self._anchors(src, tgt)
        return a_t + (self.ref_points[src] - a_s) + self._displacement(tokens)  # exactly _points(tokens, tgt) at refs

    def _check_tokens(self, tokens: torch.Tensor) -> int:
        """M of (M, D) tokens; ValueError for another shape."""
        if tokens.ndim != 2 or tokens.shape[1] != self.dim:
            raise ValueError(f"expected expression tokens (M, {self.dim}), got {tuple(tokens.shape)}")
        return tokens.shape[0]

    def _check_ids(self, subject_ids, m: int) -> torch.Tensor:
        from mien.models.tokenizer.nets import subject_index

        ids = subject_index(subject_ids, m, self.max_subjects, self.ref_set.device,
                            "the warp decoder draws a subject's reference: pass subject_ids")
        missing = sorted({int(i) for i in ids[~self.ref_set[ids]].tolist()})
        if missing:
            raise ValueError(f"no reference face set for subject id(s) {missing} (WarpDecoder.set_references)")
        return ids

    # ---- drawing -------------------------------------------------------------------------------------------
    def points(self, tokens: torch.Tensor, subject_ids) -> torch.Tensor:
        """Target mesh points (M, 468, 2) crop px: the subjects' reference points + S · displacement(token)."""
        return self._points(tokens, self._check_ids(subject_ids, self._check_tokens(tokens)))

    def _displacement(self, tokens: torch.Tensor) -> torch.Tensor:
        """The tokens' mesh displacements (M, 468, 2) crop px, relative to a reference."""
        return (self.size * DISPLACEMENT_UNIT) * self.displacement(tokens * self.token_scale).view(-1, MESH_POINTS, 2)

    def _points(self, tokens: torch.Tensor, ids: torch.Tensor) -> torch.Tensor:
        return self.ref_points[ids] + self._displacement(tokens)

    def warp(self, images: torch.Tensor, src: torch.Tensor, dst: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Mesh warp (:func:`mien.face.warp.mesh_warp`) of (M, 3, S, S) images moving ``src`` points to ``dst``
        (M, 468, 2) crop px; no gradient. Returns (warped (M, 3, S, S), flow (M, 2, S, S)
        (:func:`mien.models.reenact.warpguided.flow_field`))."""
        from mien.face.warp import mesh_warp
        from mien.models.reenact.warpguided import flow_field

        imgs = images.detach().float().permute(0, 2, 3, 1).cpu().numpy()
        s_np, d_np = src.detach().double().cpu().numpy(), dst.detach().double().cpu().numpy()
        warped, flows = [], []
        for img, s, d in zip(imgs, s_np, d_np, strict=True):
            w, mx, my = mesh_warp(np.ascontiguousarray(img), s, d, ring=self._ring(s, img.shape))
            warped.append(w)
            flows.append(flow_field(mx, my))
        dev = images.device
        return (torch.from_numpy(np.stack(warped)).permute(0, 3, 1, 2).to(dev),
                torch.from_numpy(np.stack(flows)).to(dev))

    def warp_references(self, ids: torch.Tensor, points: torch.Tensor, batch: int = 64) -> torch.Tensor:
        """The subjects' reference crops moved to ``points`` by the mesh warp alone (no bank, no refiner): the
        classical-warp baseline, float (N, 3, S, S) in [0, 1], in batches of ``batch``, no gradient.

        Args:
            ids: long (N,) subject ids with references; points: float (N, 468, 2) wanted mesh points, crop px.
        """
        with torch.inference_mode():
            return torch.cat([self.warp(self.ref_images[ids[i:i + batch]], self.ref_points[ids[i:i + batch]],
                                        points[i:i + batch])[0] for i in range(0, len(ids), batch)])

    def _ring(self, points: np.ndarray, shape: tuple) -> tuple[np.ndarray, np.ndarray]:
        """The border ring of ``mesh_warp`` for (468, 2) float64 points in an (H, W, C) image, computed once per
        reference or bank entry (:class:`mien.face.warp.BorderRings`, kept by the points' values: new references get
        new rings); room for every source twice over (at most :data:`RING_CACHE` rings, ~1.5 KiB each), resized when
        the image size or the bank size changes."""
        from mien.face.warp import BorderRings
        from mien.models.face3d.mien_face import canonical_triangles

        size = min(2 * self.max_subjects * max(self.bank_size, 1), RING_CACHE)
        rings = getattr(self, "_rings", None)
        if rings is None or (rings.height, rings.width, rings.size) != (*shape[:2], size):
            rings = self._rings = BorderRings(canonical_triangles(), shape[1], shape[0], size=size)
        return rings(points)

    def draw(self, points: torch.Tensor, subject_ids) -> torch.Tensor:
        """Faces (M, 3, S, S) of the subjects' references moved to ``points`` (M, 468, 2) crop px (+ refinement)."""
        return self._draw(points, self._check_ids(subject_ids, points.shape[0]))

    def _draw(self, points: torch.Tensor, ids: torch.Tensor) -> torch.Tensor:
        if self.bank_size > 0:
            from mien.models.tokenizer.bank import compose, nearest

            missing = sorted({int(i) for i in ids[self.bank_count[ids] == 0].tolist()})
            if missing:
                raise ValueError(f"no exemplar bank set for subject id(s) {missing}: banks are added after training "
                                 "(mien export tokenizer --bank N --bank-data SHARDS, or WarpDecoder.set_bank)")
            warped, ref, flow = compose(self, points, ids, *nearest(self, points, ids))
        else:
            ref = self.ref_images[ids]
            warped, flow = self.warp(ref, self.ref_points[ids], points)
        if self.refiner is None:
            return warped
        return self.refiner(warped, ref, flow, points.detach())

    def forward(self, tokens: torch.Tensor, subject_ids, source_ids=None) -> tuple[torch.Tensor, torch.Tensor]:
        """(faces, points) of tokens drawn as ``subject_ids``; with ``source_ids`` (the subjects the tokens were
        encoded from) an identity swap by :meth:`transfer_points`."""
        ids = self._check_ids(subject_ids, self._check_tokens(tokens))  # checked once for both steps
        pts = self._points(tokens, ids) if source_ids is None else self.transfer_points(tokens, source_ids, ids)
        return self._draw(pts, ids), pts
