"""The shipped AU model through ``mien analyze --au`` on FACS-labelled face images — the check a new user makes
(issue 9's held-out check on 30 further CK+ subjects was made this way) — beside the same model on the training
feature path (:func:`mien.models.au.tight_crop_features`: 4× upscale + black border before MediaPipe).

Per AU: F1 at the shipped thresholds and ROC AUC for both paths, on the frames where ``mien analyze`` found a
face, and the mean |Δp| between the paths. On the training frames (the default) the absolute numbers are
in-sample; the point there is the gap between the two paths. Pass another labels file (same columns as
``ckplus48_facs_labels.csv``: ``image`` relative to ``--images``, ``is_peak_frame``, ``AU..``) for held-out data.

Usage::

    PYTHONPATH=src python benchmarks/au_analyze_eval.py [--labels CSV] [--images DIR] [--all-frames] [--json OUT]
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np

DATA = Path(__file__).resolve().parents[2] / "shared" / "data" / "expressions"


def main(argv=None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--labels", type=Path, default=DATA / "ckplus48_facs_labels.csv")
    ap.add_argument("--images", type=Path, default=DATA, help="folder the label file's image paths are relative to")
    ap.add_argument("--all-frames", action="store_true", help="all labelled frames, not only the FACS-coded peaks")
    ap.add_argument("--json", type=Path, default=None)
    args = ap.parse_args(argv)

    import pandas as pd
    import torch

    import mien
    from mien.data.au.images import read_rgb
    from mien.metrics.au import au_f1, au_roc_auc
    from mien.models.au import default_config, predict_au, tight_crop_features

    torch.set_num_threads(1)
    df = pd.read_csv(args.labels)
    if not args.all_frames:
        df = df[df["is_peak_frame"] == 1].reset_index(drop=True)
    cfg = default_config()
    names, thr = list(cfg["au_names"]), np.asarray(cfg["thresholds"], np.float64)
    paths = [args.images / p for p in df["image"]]
    t0 = time.time()
    feats, _, ok_train = tight_crop_features([read_rgb(p) for p in paths], mirror=False)
    p_train = np.full((len(df), len(names)), np.nan)
    p_train[ok_train] = predict_au(feats[ok_train])
    p_an = np.full_like(p_train, np.nan)
    for i, p in enumerate(paths):
        r = mien.analyze(p, au=True)
        if len(r):
            cols = r.columns()
            p_an[i] = [cols[n][0] for n in names]
    found = np.isfinite(p_an).all(1) & ok_train
    y = df[names].to_numpy(np.float64)[found]
    out = {"labels": str(args.labels), "frames": int(len(df)), "analyze_found": int(np.isfinite(p_an).all(1).sum()),
           "compared": int(found.sum()), "seconds": round(time.time() - t0, 1), "per_au": {}}
    for key, p in (("mien analyze", p_an[found]), ("training feature path", p_train[found])):
        f1, auc = au_f1(y, p, thr), au_roc_auc(y, p)
        out[key] = {"mean_f1_at_thresholds": float(np.nanmean(f1)), "mean_auc": float(np.nanmean(auc))}
        for j, n in enumerate(names):
            out["per_au"].setdefault(n, {})[key] = {"f1": round(float(f1[j]), 4), "auc": round(float(auc[j]), 4)}
    out["mean_abs_prob_diff"] = float(np.abs(p_an[found] - p_train[found]).mean())
    print(f"{out['compared']}/{out['frames']} frames; mean F1 @shipped thresholds / AUC over {len(names)} AUs:")
    for key in ("mien analyze", "training feature path"):
        print(f"  {key:24s} {out[key]['mean_f1_at_thresholds']:.3f} / {out[key]['mean_auc']:.3f}")
    print(f"  mean |p_analyze - p_training_path| = {out['mean_abs_prob_diff']:.4f}")
    if args.json:
        args.json.write_text(json.dumps(out, indent=1))
    return out


if __name__ == "__main__":
    main()
