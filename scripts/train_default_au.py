"""Train mien's default AU occurrence model on the CK+48 FACS labels, with subject-disjoint cross-validation.

Data: ``<data>/expressions/ckplus48_facs_labels.csv`` (729 CK+48 48×48 gray frames of 243 sequences, 85
subjects, human FACS codes; see ``<data>/manifests/ckplus48-facs.md``). CK+ is research-only: this script
reads the images in place and writes only the trained weights, the config and metric tables — never images,
crops or per-image features (``--cache`` writes per-image features to a path you give; keep it out of the repo).

Features (``mien.models.au.features``), exactly what ``mien analyze`` can compute on video frames:
MediaPipe 478 landmarks (:func:`tight_crop_landmarks`: 4× bicubic upscale + 50 % black border so the detector
fires on the tight crops) → the 1.1× square landmark-box crop at 112 px → face-api expression embedding (256)
‖ mesh aligned to the canonical face by a similarity transform, minus the canonical face (1404) = 1660.

Model: :class:`mien.models.au.head.AUHead` (standardisation, dropout 0.5, Linear 1660→128, GELU, dropout,
Linear 128→A), full-batch AdamW (lr 1e-3, weight decay 1e-2, 300 epochs), BCE-with-logits with
pos_weight = #neg / #pos per AU (capped at 20); every training frame is also used mirrored (flipped crop,
left/right-swapped mesh). AUs: those with >= 10 positive sequences (30 frames); the shipped model keeps those whose cross-validated
ROC AUC is >= 0.7 (``--min-auc``) and is refit on them.

Evaluation: 5-fold GroupKFold by subject (a subject's sequences, hence all frames of a sequence, stay in one
fold); metrics on the pooled out-of-fold probabilities: per-AU F1 at 0.5, F1 at the EER threshold (chosen on
the same out-of-fold scores: optimistic), ROC AUC, AP, and AUC/F1@0.5 on the FACS-coded peak frames only.
The shipped weights are refit on all frames; the shipped decision thresholds are 0.5 (the out-of-fold EER
thresholds are recorded in config.json).

Usage::

    PYTHONPATH=src python scripts/train_default_au.py                 # CV + train + write assets and table
    PYTHONPATH=src python scripts/train_default_au.py --fast --out /tmp/au   # quick smoke run (subset)
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
DEFAULT_DATA = Path(os.environ.get("MIEN_SHARED_DATA", REPO.parent / "shared" / "data"))
LABELS = "expressions/ckplus48_facs_labels.csv"

HPARAMS = {"hidden": 128, "dropout": 0.5, "lr": 1e-3, "weight_decay": 1e-2, "epochs": 300,
           "pos_weight_cap": 20.0}


def load_labels(data_dir: Path, min_sequences: int = 10, subjects: int | None = None, seed: int = 0):
    """Read the FACS label table. Returns (frame table, AU names with >= ``min_sequences`` positive sequences).

    ``subjects``: keep only this many subjects (chosen with ``seed``), for quick runs.
    """
    import pandas as pd

    df = pd.read_csv(data_dir / LABELS)
    if subjects is not None:
        keep = np.random.default_rng(seed).permutation(np.unique(df["subject"]))[:subjects]
        df = df[df["subject"].isin(keep)].reset_index(drop=True)
    au_cols = sorted(c for c in df.columns if c.startswith("AU") and c[2:].isdigit())
    peak = df[df["is_peak_frame"] == 1]
    names = [c for c in au_cols if int(peak[c].sum()) >= min_sequences]
    return df, names


def extract_features(df, data_dir: Path, verbose: bool = True) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Features of the frames and of their mirror images, and where a face was found.

    Returns:
        (N, 1660) float32 features, (N, 1660) float32 features of the horizontally flipped frames
        (flipped crop for the embedding, :func:`mirror_landmarks` for the mesh), (N,) bool mask.
    """
    import cv2

    from mien.models.au import combine_features, expression_embeddings, face_crops, landmark_bboxes
    from mien.models.au.features import mirror_landmarks, tight_crop_landmarks

    t0 = time.time()
    images = []
    for rel in df["image"]:
        g = cv2.imread(str(data_dir / "expressions" / rel), cv2.IMREAD_GRAYSCALE)
        if g is None:
            raise FileNotFoundError(data_dir / "expressions" / rel)
        images.append(np.repeat(g[:, :, None], 3, axis=2))
    lm = tight_crop_landmarks(images)
    ok = np.isfinite(lm).all(axis=(1, 2))
    feats = np.zeros((len(images), 1660), np.float32)
    flipped = np.zeros((len(images), 1660), np.float32)
    if ok.any():
        idx = np.nonzero(ok)[0]
        crops = face_crops([images[i] for i in idx], landmark_bboxes(lm[idx]))
        feats[idx] = combine_features(expression_embeddings(crops), lm[idx])
        widths = np.array([images[i].shape[1] for i in idx], np.float32)[:, None]
        lm_flip = mirror_landmarks(lm[idx], 0.0)
        lm_flip[..., 0] += widths
        flipped[idx] = combine_features(expression_embeddings(np.ascontiguousarray(crops[:, :, ::-1])), lm_flip)
    if verbose:
        print(f"features: {ok.sum()}/{len(ok)} frames with a face, {time.time() - t0:.1f} s", flush=True)
    return feats, flipped, ok


def group_kfold(groups: np.ndarray, n_splits: int, seed: int = 0) -> np.ndarray:
    """Fold index (N,) per sample; all samples of a group share a fold (like scikit-learn's GroupKFold:
    groups, shuffled with ``seed`` then sorted by size, go one by one to the fold with fewest samples).

    Raises:
        ValueError: fewer groups than folds.
    """
    uniq, counts = np.unique(groups, return_counts=True)
    if len(uniq) < n_splits:
        raise ValueError(f"{len(uniq)} groups cannot fill {n_splits} folds")
    order = np.random.default_rng(seed).permutation(len(uniq))
    order = order[np.argsort(-counts[order], kind="stable")]
    load = np.zeros(n_splits, np.int64)
    fold_of = {}
    for g in order:
        k = int(np.argmin(load))
        fold_of[uniq[g]] = k
        load[k] += counts[g]
    return np.array([fold_of[g] for g in groups])


def train_head(X: np.ndarray, Y: np.ndarray, au_names, seed: int = 0, epochs: int | None = None,
               X_flip: np.ndarray | None = None):
    """Fit an AUHead on (N, D) features and (N, A) 0/1 labels; returns it in eval mode.

    ``X_flip``: (N, D) features of the mirrored frames, added as extra samples with the same labels (CK+'s
    codes here are bilateral: the L/R prefixes were dropped).
    """
    import torch

    if X_flip is not None:
        X, Y = np.concatenate([X, X_flip]), np.concatenate([Y, Y])
    from mien.models.au.head import AUHead

    hp = HPARAMS
    torch.manual_seed(seed)
    model = AUHead(X.shape[1], au_names, hidden=hp["hidden"], dropout=hp["dropout"])
    xt, yt = torch.from_numpy(X.astype(np.float32)), torch.from_numpy(Y.astype(np.float32))
    model.set_normalization(xt.mean(0), xt.std(0))
    pos = yt.sum(0)
    pos_weight = ((len(yt) - pos) / pos.clamp_min(1)).clamp(1.0, hp["pos_weight_cap"])
    loss_fn = torch.nn.BCEWithLogitsLoss(pos_weight=pos_weight)
    opt = torch.optim.AdamW(model.parameters(), lr=hp["lr"], weight_decay=hp["weight_decay"])
    model.train()
    for _ in range(epochs or hp["epochs"]):
        opt.zero_grad()
        loss = loss_fn(model(xt), yt)
        loss.backward()
        opt.step()
    return model.eval()


def cross_validate(X, Y, groups, au_names, n_splits: int = 5, seed: int = 0, epochs: int | None = None,
                   X_flip: np.ndarray | None = None):
    """Out-of-fold probabilities (N, A) from subject-disjoint folds, and the fold index per frame.

    Mirrored frames (``X_flip``) of the training subjects augment each fold's training set; the held-out
    subjects are scored on their unflipped frames only.
    """
    folds = group_kfold(groups, n_splits, seed)
    oof = np.full(Y.shape, np.nan, np.float32)
    for k in range(n_splits):
        tr, te = folds != k, folds == k
        model = train_head(X[tr], Y[tr], au_names, seed=seed + k, epochs=epochs,
                           X_flip=None if X_flip is None else X_flip[tr])
        from mien.models.au import predict_au

        oof[te] = predict_au(X[te], model)
    return oof, folds


def cv_metrics(Y, P, peak, sequences, au_names) -> list[dict]:
    """Per-AU metric rows from labels (N, A), out-of-fold probabilities (N, A), peak mask and sequence ids."""
    from mien import metrics as M

    f1 = M.au_f1(Y, P, 0.5)
    f1_eer, thr = M.au_f1_at_eer(Y, P)
    auc = M.au_roc_auc(Y, P)
    ap = M.au_average_precision(Y, P)
    auc_pk = M.au_roc_auc(Y[peak], P[peak])
    f1_pk = M.au_f1(Y[peak], P[peak], 0.5)
    rows = []
    for j, au in enumerate(au_names):
        pos = Y[:, j] == 1
        rows.append({"au": au, "seq": int(len(np.unique(sequences[pos]))), "frames": int(pos.sum()),
                     "f1_05": f1[j], "f1_eer": f1_eer[j], "thr_eer": thr[j], "auc": auc[j], "ap": ap[j],
                     "auc_peak": auc_pk[j], "f1_05_peak": f1_pk[j]})
    return rows


def format_table(rows: list[dict]) -> str:
    head = ("| AU | positive sequences | positive frames | F1 @0.5 | F1 @EER thr | EER thr | ROC AUC | AP "
            "| AUC (peak frames) | F1 @0.5 (peak frames) |\n|---|---|---|---|---|---|---|---|---|---|\n")
    lines = []
    for r in rows:
        lines.append(f"| {r['au']} | {r['seq']} | {r['frames']} | {r['f1_05']:.3f} | {r['f1_eer']:.3f} | "
                     f"{r['thr_eer']:.3f} | {r['auc']:.3f} | {r['ap']:.3f} | {r['auc_peak']:.3f} | "
                     f"{r['f1_05_peak']:.3f} |")

    def m(key):
        return float(np.nanmean([r[key] for r in rows]))

    lines.append(f"| **mean** | | | **{m('f1_05'):.3f}** | **{m('f1_eer'):.3f}** | | **{m('auc'):.3f}** | "
                 f"**{m('ap'):.3f}** | **{m('auc_peak'):.3f}** | **{m('f1_05_peak'):.3f}** |")
    return head + "\n".join(lines) + "\n"


def save_model(model, au_names, eer_thresholds, out_dir: Path, summary: dict) -> None:
    """Write ``au_default.safetensors`` (weights + feature mean/std + thresholds) and ``config.json``.

    The shipped decision thresholds are 0.5 for every AU (on CK+ CV, F1 at 0.5 beats F1 at the out-of-fold
    EER thresholds, which are tiny for rare AUs); the EER thresholds are recorded in the config.
    """
    thresholds = np.full(len(au_names), 0.5)
    import torch
    from safetensors.torch import save_file

    from mien.models.au.features import CROP_SCALE, CROP_SIZE, TIGHT_CROP_PAD, TIGHT_CROP_UPSCALE

    out_dir.mkdir(parents=True, exist_ok=True)
    model.thresholds.copy_(torch.as_tensor(thresholds, dtype=torch.float32))
    state = {k: v.detach().contiguous().float() for k, v in model.state_dict().items()}
    tmp = out_dir / "au_default.safetensors.tmp"
    save_file(state, str(tmp), metadata={"format": "pt", "model": "mien-au-default"})
    os.chmod(tmp, 0o644)
    os.replace(tmp, out_dir / "au_default.safetensors")
    cfg = {
        "name": "mien-au-default-ckplus",
        "model": "AUHead",
        "in_features": int(model.in_features),
        "hidden": int(model.hidden),
        "dropout": HPARAMS["dropout"],
        "au_names": list(au_names),
        "thresholds": [round(float(t), 6) for t in thresholds],
        "thresholds_note": "decision thresholds (AU present when probability >= threshold); 0.5 for all AUs",
        "eer_thresholds": [round(float(t), 6) for t in eer_thresholds],
        "eer_thresholds_note": "per-AU EER thresholds of the pooled out-of-fold probabilities (subject-disjoint "
                               "CV); for rare AUs they are near 0 because the model is overconfident there",
        "output": "sigmoid probabilities (B, A) of AU occurrence, columns in au_names order",
        "features": {
            "dim": 1660,
            "order": ["expression", "geometry"],
            "expression": {
                "dim": 256,
                "net": "face-api FaceExpressionNet.embed (mien.models.faceapi.load_expression_net)",
                "crop": f"mien.face.crops.crop_square(rgb_uint8, square_box(landmark_bbox, {CROP_SCALE}), "
                        f"{CROP_SIZE}); landmark_bbox = min/max of the 478 landmarks' x, y in pixels; "
                        "black outside the image",
                "input": "to_batch_tensor(crops, 112): RGB float [0, 255]",
            },
            "geometry": {
                "dim": 1404,
                "definition": "first 468 landmarks aligned to mien.face.geometry.canonical_face() by the "
                              "least-squares similarity transform (Umeyama 1991), minus the canonical face; "
                              "x, y, z per point, centimetres",
            },
            "function": "mien.models.au.combine_features(embedding, landmarks) / au_features(images, landmarks)",
        },
        "normalisation": "standardisation (x - feature_mean) / feature_std inside the model; both (D,) buffers "
                         "are stored in au_default.safetensors (fit on all training frames)",
        "training_data": {
            "dataset": "CK+ (Lucey et al. 2010) 48x48 crops with FACS codes, posed expressions",
            "landmarks": f"MediaPipe face mesh (full-range detector, static) on a {TIGHT_CROP_UPSCALE}x bicubic "
                         f"upscale padded by {TIGHT_CROP_PAD} of its side with black "
                         "(mien.models.au.features.tight_crop_landmarks)",
        },
        "hyperparameters": HPARAMS,
        "cv_summary": summary,
    }
    tmp = out_dir / "config.json.tmp"
    tmp.write_text(json.dumps(cfg, indent=2) + "\n")
    os.replace(tmp, out_dir / "config.json")


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--data", type=Path, default=DEFAULT_DATA, help="shared data folder (default ../shared/data)")
    ap.add_argument("--out", type=Path, default=REPO / "src" / "mien" / "assets" / "au",
                    help="where to write au_default.safetensors and config.json")
    ap.add_argument("--table", type=Path, default=None,
                    help="write the CV table (markdown) here (default docs/au_cv_results.md, not in --fast)")
    ap.add_argument("--folds", type=int, default=5)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--min-sequences", type=int, default=10, help="keep AUs with at least this many sequences")
    ap.add_argument("--fast", action="store_true",
                    help="smoke run: 15 subjects, 3 folds, 40 epochs, AUs with >= 3 sequences")
    ap.add_argument("--cv-only", action="store_true", help="do not train the final model or write assets")
    ap.add_argument("--min-auc", type=float, default=0.7,
                    help="ship only AUs whose cross-validated ROC AUC reaches this (default 0.7)")
    args = ap.parse_args(argv)

    import torch

    torch.set_num_threads(min(2, os.cpu_count() or 1))
    torch.use_deterministic_algorithms(True)
    t0 = time.time()
    subjects = 15 if args.fast else None
    folds = 3 if args.fast else args.folds
    epochs = 40 if args.fast else None
    min_seq = 3 if args.fast else args.min_sequences
    df, au_names = load_labels(args.data, min_seq, subjects, args.seed)
    print(f"{len(df)} frames, {df['subject'].nunique()} subjects, {df['sequence'].nunique()} sequences; "
          f"{len(au_names)} AUs with >= {min_seq} positive sequences", flush=True)
    X, X_flip, ok = extract_features(df, args.data)
    df, X, X_flip = df[ok].reset_index(drop=True), X[ok], X_flip[ok]
    Y = df[au_names].to_numpy(np.float32)
    groups, seqs = df["subject"].to_numpy(), df["sequence"].to_numpy()
    peak = df["is_peak_frame"].to_numpy() == 1
    # a subject-disjoint split also keeps every sequence in one fold; check it
    P, fold = cross_validate(X, Y, groups, au_names, folds, args.seed, epochs, X_flip)
    for s in np.unique(seqs):
        assert len(np.unique(fold[seqs == s])) == 1, f"sequence {s} straddles folds"
    rows = cv_metrics(Y, P, peak, seqs, au_names)
    table = format_table(rows)
    print(f"\n{folds}-fold subject-disjoint CV ({len(df)} frames, {df['subject'].nunique()} subjects):\n")
    print(table, flush=True)
    summary = {
        "folds": folds, "frames": int(len(df)), "subjects": int(df["subject"].nunique()),
        "macro_f1_at_0.5": float(np.nanmean([r["f1_05"] for r in rows])),
        "macro_f1_at_eer": float(np.nanmean([r["f1_eer"] for r in rows])),
        "mean_auc": float(np.nanmean([r["auc"] for r in rows])),
        "mean_ap": float(np.nanmean([r["ap"] for r in rows])),
        "per_au": {r["au"]: {k: (round(float(v), 4) if isinstance(v, float) else v) for k, v in r.items()
                             if k != "au"} for r in rows},
    }
    min_auc = 0.0 if args.fast else args.min_auc
    keep = [j for j, r in enumerate(rows) if np.isfinite(r["auc"]) and r["auc"] >= min_auc]
    if not keep:
        raise SystemExit(f"no AU reaches a cross-validated ROC AUC of {min_auc}")
    dropped = [rows[j]["au"] for j in range(len(rows)) if j not in keep]
    summary["dropped_aus"] = dropped
    summary["dropped_rule"] = f"cross-validated ROC AUC < {min_auc}"
    print(f"shipping {len(keep)} AUs; dropped (CV ROC AUC < {min_auc}): {', '.join(dropped) or 'none'}")
    if not args.cv_only:
        ship = [au_names[j] for j in keep]
        model = train_head(X, Y[:, keep], ship, seed=args.seed, epochs=epochs, X_flip=X_flip)
        thr = np.array([rows[j]["thr_eer"] for j in keep], np.float64)
        thr = np.where(np.isfinite(thr), thr, 0.5)
        save_model(model, ship, thr, args.out, summary)
        print(f"wrote {args.out / 'au_default.safetensors'} and config.json", flush=True)
    table_path = args.table or (None if args.fast else REPO / "docs" / "au_cv_results.md")
    if table_path is not None:
        table_path.write_text(
            "# Default AU model: subject-disjoint cross-validation on CK+48 FACS labels\n\n"
            "Produced by `scripts/train_default_au.py` (seed "
            f"{args.seed}); {folds}-fold GroupKFold by subject, {len(df)} frames of "
            f"{df['subject'].nunique()} subjects. Not shipped (CV ROC AUC < {min_auc}): "
            f"{', '.join(dropped) or 'none'}. F1 @EER uses, per AU, the EER threshold of the same pooled "
            "out-of-fold scores (optimistic); the peak-frame columns use only the FACS-coded last frame of "
            "each sequence. Posed data (CK+): expect lower numbers on spontaneous video.\n\n" + table)
        print(f"wrote {table_path}")
    print(f"done in {time.time() - t0:.1f} s")
    summary["rows"] = rows
    return summary


if __name__ == "__main__":
    main(sys.argv[1:])
