"""Does an expression tokenizer carry expression? Linear probes and expression-transfer measures (``mien evaluate
tokens``, issue 9).

1. **Probes** (:func:`probe_report`): subject-disjoint linear probes (:mod:`mien.pipelines.probe`) from one feature
   vector per face to the CK+ FACS Action Units (F1 at 0.5 and ROC AUC per AU; means over AUs with ≥ 30 positive
   frames) and to the CK+48 emotion (accuracy, balanced accuracy), for three representations of the same faces:
   the tokenizer's tokens (D), the mean of its patch-encoder / frozen backbone tokens ("pooled backbone", the
   reference of what the backbone gives for free) and mien's default AU features (1660, the reference of a
   dedicated expression representation).
2. **Transfer** (:func:`transfer_report`): on held-out frames of a video (a source person known to the
   tokenizer by a subject id) and a target person (subject id + frames of the target), the rendered faces of a
   *token swap* (frame i decoded from the token of another frame j of the same source) and of an *identity
   swap* (frame i's token decoded with the target's subject embedding; a banked warp decoder moves the target's
   neutral mesh by the token's motion from the source's, :meth:`~mien.models.tokenizer.warp.WarpDecoder.transfer_points`
   — the report's ``anchor``) are measured against the source frames
   with face-api's expression net (emotion arg-max agreement) and mien's default AU model (per-AU decision
   agreement, mean |Δp|); the identity swap's CSIM (face-api recognition cosine) to the target's mean
   descriptor is reported next to the CSIM of the target's own mean frame (pixel mean of its crops) and of
   the source frames themselves (copy-the-source baseline).

All measures run on the tokenizer-size crops: the source crop and its rendering go through the same
resizing (to 112² for emotion, 150² for CSIM) and the same AU feature path (MediaPipe on the upscaled,
black-padded crop: :func:`mien.models.au.tight_crop_features`), so the comparison is like for like. Frames on
which MediaPipe finds no face in either image are left out of the AU agreement and counted.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from mien.data.au.images import read_rgb
from mien.heads.tokens import SWAP_ANCHORS, TokenExtractor

__all__ = ["NEUTRAL", "ProbeSet", "TransferFrames", "face_measures", "load_ckplus", "probe_report", "representations",
           "transfer_report", "warp_baselines"]

MIN_POSITIVES = 30


@dataclass
class ProbeSet:
    """Labelled face images for the probes.

    Attributes:
        images: N RGB uint8 images; subjects: (N,) str; labels: (N, A) float 0/1 (AU probe) or int (N,) (emotion);
        names: A AU names or C class names.
    """

    images: list[np.ndarray]
    subjects: np.ndarray
    labels: np.ndarray
    names: list[str]


def _keep_subjects(subjects: np.ndarray, max_subjects: int | None, seed: int) -> np.ndarray:
    uniq = np.unique(subjects)
    if max_subjects is None or max_subjects >= len(uniq):
        return np.ones(len(subjects), bool)
    keep = np.random.default_rng(seed).permutation(uniq)[:max_subjects]
    return np.isin(subjects, keep)


def load_ckplus(data_dir: str | os.PathLike, max_subjects: int | None = None, seed: int = 0
                ) -> tuple[ProbeSet, ProbeSet]:
    """The CK+ FACS frames (AU labels) and the CK+48 emotion images of ``<data_dir>/expressions``.

    Args:
        data_dir: the shared data folder (``expressions/ckplus48_facs_labels.csv`` and ``expressions/ckplus48``).
        max_subjects: keep only this many subjects (chosen with ``seed``), for quick runs.

    Returns:
        (AU set with the AUs of ≥ 10 positive sequences, emotion set).

    Raises:
        InputError: the label file or image folder is missing.
    """
    import pandas as pd

    from mien.errors import InputError

    root = Path(data_dir) / "expressions"
    csv = root / "ckplus48_facs_labels.csv"
    if not csv.is_file() or not (root / "ckplus48").is_dir():
        raise InputError(str(root), "no CK+ FACS labels / ckplus48 folder here")
    df = pd.read_csv(csv)
    df = df[_keep_subjects(df["subject"].to_numpy(), max_subjects, seed)].reset_index(drop=True)
    cols = sorted(c for c in df.columns if c.startswith("AU") and c[2:].isdigit())
    peak = df[df["is_peak_frame"] == 1]
    names = [c for c in cols if int(peak[c].sum()) >= 10 or max_subjects is not None and int(peak[c].sum()) >= 2]
    au = ProbeSet([read_rgb(root / p) for p in df["image"]], df["subject"].astype(str).to_numpy(),
                  df[names].to_numpy(np.float32), names)
    files = sorted((root / "ckplus48").glob("*/*.png"))
    emotions = sorted({p.parent.name for p in files})
    subj = np.array([p.name.split("_")[0] for p in files])
    keep = _keep_subjects(subj, max_subjects, seed)
    files = [p for p, k in zip(files, keep, strict=True) if k]
    emo = ProbeSet([read_rgb(p) for p in files], subj[keep], np.array([emotions.index(p.parent.name) for p in files]),
                   emotions)
    return au, emo


def representations(images: Sequence[np.ndarray], extractor: TokenExtractor) -> tuple[dict[str, np.ndarray], np.ndarray]:
    """Tokens, pooled backbone tokens and mien AU features of tight face images (e.g. CK+48).

    Landmarks: :func:`mien.models.au.features.tight_crop_landmarks`; the token crop is cut by the tokenizer's
    contract (:meth:`TokenExtractor.crop`).

    Returns:
        ({"tokens": (N, D), "pooled backbone": (N, C), "mien AU features": (N, 1660)} float32, face_found (N,)
        bool); rows without a face are zeros.
    """
    import torch

    from mien.models.au import combine_features, landmark_bboxes
    from mien.models.au.features import expression_embeddings, face_crops, tight_crop_landmarks

    rgb = [np.repeat(im[:, :, None], 3, 2) if im.ndim == 2 else im for im in images]
    lm = tight_crop_landmarks(rgb)
    ok = np.isfinite(lm).all(axis=(1, 2))
    idx = np.flatnonzero(ok)
    boxes = landmark_bboxes(lm[idx]) if len(idx) else np.zeros((0, 4), np.float32)
    crops = np.stack([extractor.crop(rgb[i], b, lm[i]) for i, b in zip(idx, boxes, strict=True)]) if len(idx) \
        else np.zeros((0, extractor.input_size, extractor.input_size, 3), np.uint8)
    tok = extractor(crops)
    pooled = []
    tk = extractor.model.tokenizer
    with torch.inference_mode():
        for i in range(0, len(crops), extractor.batch_size):
            x = torch.from_numpy(crops[i:i + extractor.batch_size]).permute(0, 3, 1, 2).float().div(255.0)
            t = tk.backbone_tokens(x) if hasattr(tk, "backbone_tokens") else tk(x)[0]
            pooled.append(t.mean(1).float().numpy())
    pooled = np.concatenate(pooled) if pooled else np.zeros((0, 1), np.float32)
    au = combine_features(expression_embeddings(face_crops([rgb[i] for i in idx], boxes)), lm[idx]) if len(idx) \
        else np.zeros((0, 1660), np.float32)
    out = {}
    for name, v in (("tokens", tok), ("pooled backbone", pooled), ("mien AU features", au)):
        full = np.zeros((len(rgb), v.shape[1]), np.float32)
        full[idx] = v
        out[name] = full
    return out, ok


def probe_report(au: ProbeSet, emo: ProbeSet, extractor: TokenExtractor, folds: int = 5, seed: int = 0,
                 min_positives: int = MIN_POSITIVES) -> dict:
    """Linear probes of the three representations (see the module docstring).

    Returns:
        ``{"au": {rep: {"mean_f1", "mean_auc", "aus_in_mean", "per_au": {AU: {"f1", "auc", "positives"}}}},
        "emotion": {rep: {"accuracy", "balanced_accuracy"}}, "dims": {rep: D}, "faces": {"au": [found, total], "emotion": [...]}}``.
    """
    from mien.pipelines.probe import linear_probe, linear_probe_classes

    out: dict = {"au": {}, "emotion": {}, "faces": {}, "min_positives": min_positives, "folds": folds}
    reps, ok = representations(au.images, extractor)
    out["dims"] = {name: int(x.shape[1]) for name, x in reps.items()}
    out["faces"]["au"] = [int(ok.sum()), len(ok)]
    for name, x in reps.items():
        r = linear_probe(x[ok], au.labels[ok], au.subjects[ok], folds=folds, seed=seed)
        out["au"][name] = {"mean_f1": r.mean_f1(min_positives), "mean_auc": r.mean_auc(min_positives),
                           "aus_in_mean": int((r.positives >= min_positives).sum()),
                           "per_au": {n: {"f1": float(r.f1[j]), "auc": float(r.auc[j]),
                                          "positives": int(r.positives[j])} for j, n in enumerate(au.names)}}
    reps, ok = representations(emo.images, extractor)
    out["faces"]["emotion"] = [int(ok.sum()), len(ok)]
    for name, x in reps.items():
        r = linear_probe_classes(x[ok], emo.labels[ok], emo.subjects[ok], folds=folds, seed=seed)
        out["emotion"][name] = {"accuracy": r.accuracy, "balanced_accuracy": r.balanced_accuracy}
    return out


@dataclass
class TransferFrames:
    """Crops (uint8 (N, S, S, 3)) of held-out source frames and of target frames, with their subject ids."""

    source: np.ndarray
    source_subject: int
    target: np.ndarray
    target_subject: int
    frames_without_face: dict = field(default_factory=dict)


def collect_crops(video: str | os.PathLike, extractor: TokenExtractor, start: float | None = None,
                  end: float | None = None, every: int = 1, max_frames: int | None = None) -> tuple[np.ndarray, int]:
    """Tokenizer crops of the frames of ``video`` that have a face (at most ``max_frames``, evenly spread).

    Returns:
        (uint8 (N, S, S, 3), frames without a face).
    """
    from mien.pipelines.tokens import iter_face_crops

    crops, missing = [], 0
    for ff in iter_face_crops(video, extractor, start, end, every):
        if ff.crop is None:
            missing += 1
        else:
            crops.append(ff.crop)
    crops = np.stack(crops) if crops else np.zeros((0, extractor.input_size, extractor.input_size, 3), np.uint8)
    if max_frames is not None and len(crops) > max_frames:
        crops = crops[np.linspace(0, len(crops) - 1, max_frames).round().astype(int)]
    return crops, missing


class FaceMeasures:
    """face-api emotion, face-api identity descriptor and mien AU probabilities of face crops (any size).

    One static MediaPipe face mesh is kept for the AU path; :meth:`close` releases it.
    """

    def __init__(self, device: str = "cpu"):
        from mien.face.landmarker import MediaPipeFaceMesh
        from mien.heads.faceapi import ExpressionHead, IdentityHead
        from mien.models.au import default_config, load_default_au_model

        self.expression = ExpressionHead(device, backend="torch", emit=True)
        self.identity = IdentityHead(device, backend="torch")
        self.au_model = load_default_au_model(device)
        self.au_thresholds = np.asarray(default_config()["thresholds"], np.float32)
        self.mesh = MediaPipeFaceMesh(static_image_mode=True, detector="full")

    def close(self) -> None:
        self.mesh.close()

    def emotion(self, crops: np.ndarray) -> np.ndarray:
        """(N, 7) emotion probabilities."""
        return self.expression.emotions(crops)

    def descriptor(self, crops: np.ndarray) -> np.ndarray:
        """(N, 128) face-api recognition descriptors."""
        from mien.heads.faceapi import resize_crops

        return self.identity.descriptors(resize_crops(crops, self.identity.contract.crop_size))

    def au(self, crops: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(N, A) AU probabilities of the default model (NaN rows where no face is found), face_found (N,)."""
        from mien.models.au import predict_au, tight_crop_features

        f, _, ok = tight_crop_features(list(crops), mirror=False, mesh=self.mesh)
        p = np.full((len(crops), self.au_model.num_aus), np.nan, np.float32)
        if ok.any():
            p[ok] = predict_au(f[ok], self.au_model)
        return p, ok

    def measure(self, crops: np.ndarray) -> dict:
        """{"emotion": (N,) arg-max class, "au": (N, A) probabilities, "face": (N,) bool} of crops."""
        p, ok = self.au(crops)
        return {"emotion": self.emotion(crops).argmax(1), "au": p, "face": ok}


def _take(m: dict, idx: np.ndarray) -> dict:
    return {k: v[idx] for k, v in m.items()}


NEUTRAL = 0
"""Index of "neutral" in face-api's emotion classes (:data:`mien.models.faceapi.nets.EXPRESSION_LABELS`)."""


def face_measures(a: dict, b: dict, thresholds: np.ndarray) -> dict:
    """Agreement of two paired sets of measured crops (:meth:`FaceMeasures.measure`, N each): emotion arg-max
    agreement (over all pairs, and over the pairs whose first crop — the source — is not "neutral": a neutral
    rendering agrees with every neutral source, so only the expressive frames show whether an expression was
    carried over), AU decision agreement at ``thresholds`` and mean |Δp| (over pairs where both have a face), and
    the numbers of pairs used."""
    both = a["face"] & b["face"]
    pa, pb = a["au"][both], b["au"][both]
    expressive = a["emotion"] != NEUTRAL
    same = a["emotion"] == b["emotion"]
    return {"emotion_agreement": float(same.mean()) if len(both) else float("nan"),
            "emotion_agreement_expressive": float(same[expressive].mean()) if expressive.any() else float("nan"),
            "pairs_expressive": int(expressive.sum()),
            "au_agreement": float(((pa >= thresholds) == (pb >= thresholds)).mean()) if both.any() else float("nan"),
            "au_abs_diff": float(np.abs(pa - pb).mean()) if both.any() else float("nan"),
            "pairs": int(len(both)), "pairs_with_faces": int(both.sum())}


def _check_anchor(anchor: str) -> None:
    if anchor not in SWAP_ANCHORS:
        raise ValueError(f"swap anchor must be one of {SWAP_ANCHORS}, got {anchor!r}")


def warp_baselines(frames: TransferFrames, extractor: TokenExtractor, batch: int = 64, anchor: str = "neutral"
                   ) -> dict[str, np.ndarray]:
    """Identity-swap baselines of a warp-decoder tokenizer that use the source frames' TRUE meshes (no token).

    The source frame's MediaPipe mesh found on its crop (as the ``crop-mesh`` condition) is moved to the target by
    its motion relative to the source's anchor, as the identity swap does (target anchor + source mesh − source
    anchor; the neutral meshes when the decoder has both, else the references:
    :meth:`~mien.models.tokenizer.warp.WarpDecoder.anchors`); rendered as the classical warp of the target's reference crop to it and, when the decoder has an
    exemplar bank (:mod:`mien.models.tokenizer.bank`), as the target's nearest bank entry unwarped and as the
    bank entries warped to it (the bank decoder's oracle, :func:`~mien.models.tokenizer.bank.bank_baselines`).
    Frames without a face keep the target's anchor mesh.

    Args:
        frames: the source crops (uint8 (N, S', S', 3), any size S': the mesh is found on them in unit crop
            coordinates and scaled to the decoder's crop size S) and subject ids (source and target, both with
            references in the decoder).
        extractor: the tokenizer (its ``model``).
        batch: frames warped at a time.
        anchor: "neutral" (the decoder's anchors) or "reference" (the references, as the swap before neutral meshes).

    Returns:
        {row name: uint8 (N, S, S, 3)}; {} for a tokenizer without the warp decoder.

    Raises:
        ValueError: an unknown anchor.
    """
    _check_anchor(anchor)
    model = extractor.model
    if model.config.decoder != "warp":
        return {}
    import torch

    from mien.heads.tokens import to_uint8
    from mien.models.tokenizer.bank import bank_baselines
    from mien.models.tokenizer.condition import crop_mesh_points, global_condition

    dec = model.reconstruction
    g, ok = global_condition(frames.source, "crop-mesh")
    mesh = crop_mesh_points(g, dec.size)
    dev = dec.ref_points.device
    ids = torch.full((len(mesh),), frames.target_subject, dtype=torch.long, device=dev)
    a_s, a_t = dec.anchors(torch.full_like(ids, frames.source_subject), ids, anchor == "neutral")  # as the swap's
    want = a_t + torch.from_numpy(mesh.astype(np.float32)).to(dev) - a_s
    want[torch.from_numpy(~ok).to(dev)] = a_t[0]
    out = {"classical warp of the target reference to the source mesh (baseline)": dec.warp_references(ids, want, batch)}
    if dec.bank_size > 0:
        near, oracle = bank_baselines(dec, want, ids, batch)
        out["target bank frame nearest the source mesh, unwarped (baseline)"] = near
        out["target bank frames warped to the source mesh (bank oracle)"] = oracle
    return {k: to_uint8(v) for k, v in out.items()}


def transfer_report(frames: TransferFrames, extractor: TokenExtractor, measures: FaceMeasures | None = None,
                    seed: int = 0, anchor: str = "neutral") -> dict:
    """Expression-transfer measures of token swaps and identity swaps (see the module docstring).

    Rows (each a dict of :func:`face_measures` against the **source** frame, plus ``csim_target`` where it
    applies): ``reconstruction`` (own token, own subject), ``token swap: vs token's frame`` / ``token swap: vs
    replaced frame`` (frame i decoded from frame j's token; compared with frame j and with frame i),
    ``identity swap`` (own token, target subject), baselines ``copy source`` (the source crop itself: CSIM of
    the source to the target) and ``target mean frame`` (the pixel mean of the target's crops: its CSIM to the
    target, and its agreement with the source frames); for a warp-decoder tokenizer also the rows of
    :func:`warp_baselines` (the target drawn at the source's true mesh: classical warp, nearest bank frame, bank
    oracle). ``anchor``: "neutral" (a banked warp decoder's swap and baselines measure motion from the subjects'
    neutral meshes) or "reference" (from their references: the swap before neutral meshes); reported as ``anchor``.

    Raises:
        ValueError: fewer than 2 source frames or no target frame, or an unknown anchor.
    """
    from mien.metrics.identity import identity_similarity
    from mien.metrics.reconstruction import same_subject_permutation

    _check_anchor(anchor)
    if len(frames.source) < 2 or len(frames.target) == 0:
        raise ValueError(f"transfer_report needs >= 2 source frames and >= 1 target frame, got "
                         f"{len(frames.source)} and {len(frames.target)}")
    m = measures or FaceMeasures(extractor.device)
    src = frames.source
    old = extractor.subject_id
    extractor.subject_id = extractor.check_subject(frames.source_subject)
    try:
        tokens, recon = extractor.reconstruct(src)
        perm = same_subject_permutation(np.zeros(len(src), np.int64), seed)
        tswap = extractor.decode(tokens[perm], frames.source_subject)
        iswap = extractor.decode(tokens, frames.target_subject,
                                 frames.source_subject if anchor == "neutral" else None)
    finally:
        extractor.subject_id = old
    tgt_desc = m.descriptor(frames.target).astype(np.float64)
    tgt_mean = tgt_desc.mean(0)

    def csim(crops):
        d = m.descriptor(crops)
        return float(np.nanmean(identity_similarity(d, np.repeat(tgt_mean[None], len(d), 0))))

    mean_frame = frames.target.astype(np.float64).mean(0).round().astype(np.uint8)[None]
    warped = warp_baselines(frames, extractor, anchor=anchor)
    try:
        ms, mr, mt, mi = (m.measure(x) for x in (src, recon, tswap, iswap))
        mm = _take(m.measure(mean_frame), np.zeros(len(src), np.int64))
        mw = {k: m.measure(v) for k, v in warped.items()}
    finally:
        if measures is None:
            m.close()
    thr = m.au_thresholds
    rows = {
        "reconstruction": face_measures(ms, mr, thr),
        "token swap: vs token's frame": face_measures(_take(ms, perm), mt, thr),
        "token swap: vs replaced frame": face_measures(ms, mt, thr),
        "identity swap": {**face_measures(ms, mi, thr), "csim_target": csim(iswap)},
        "copy source (baseline)": {**face_measures(ms, ms, thr), "csim_target": csim(src)},
        "target mean frame (baseline)": {**face_measures(ms, mm, thr), "csim_target": csim(mean_frame)},
        **{k: {**face_measures(ms, mw[k], thr), "csim_target": csim(v)} for k, v in warped.items()},
    }
    own = identity_similarity(tgt_desc, np.repeat(tgt_mean[None], len(tgt_desc), 0))
    rows["target frames (reference)"] = {"csim_target": float(np.nanmean(own)), "pairs": int(len(tgt_desc))}
    return {"rows": rows, "source_frames": int(len(src)), "target_frames": int(len(frames.target)),
            "source_subject": frames.source_subject, "target_subject": frames.target_subject,
            "anchor": extractor.swap_anchor(frames.source_subject, frames.target_subject, anchor)}

