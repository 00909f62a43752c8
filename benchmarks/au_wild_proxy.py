"""Out-of-domain sanity check of the default AU model on in-the-wild photos, through emotion labels.

There are no AU labels for in-the-wild faces in shared/data, so this uses the noisy emotion labels of the
muxspace subset (LFW / film stills, ~250 px colour) as a proxy: an AU that is part of an emotion's prototype
(Ekman & Friesen; e.g. AU12 for happiness, AU01+AU02+AU05+AU26/27 for surprise) should rank that emotion's
photos above the others. Reported: ROC AUC of the AU probability for "emotion vs the rest". The photos go
through exactly the ``mien analyze`` path: MediaPipe (static, full-range) → landmark-box crop → features.

Usage::

    PYTHONPATH=src python benchmarks/au_wild_proxy.py [--per-class 60]
"""

from __future__ import annotations

import argparse
import os
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
DATA = Path(os.environ.get("MIEN_SHARED_DATA", REPO.parent / "shared" / "data"))

PROXIES = [  # (AU, emotion whose photos should score higher than the rest)
    ("AU12", "happiness"), ("AU06", "happiness"), ("AU25", "happiness"),
    ("AU01", "surprise"), ("AU02", "surprise"), ("AU05", "surprise"), ("AU27", "surprise"),
    ("AU04", "anger"), ("AU04", "sadness"), ("AU15", "sadness"), ("AU09", "disgust"),
]


def main() -> None:
    import cv2
    import pandas as pd

    from mien import metrics as M
    from mien.face.landmarker import MediaPipeFaceMesh
    from mien.models.au import au_features, au_names, predict_au
    from mien.models.au.features import tight_crop_landmarks

    ap = argparse.ArgumentParser()
    ap.add_argument("--per-class", type=int, default=60)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    root = DATA / "expressions" / "muxspace_subset"
    df = pd.read_csv(root / "legend_subset.csv").drop_duplicates("image")
    df["emotion"] = df["emotion"].str.lower()
    df = df[df["emotion"].isin(["happiness", "surprise", "anger", "sadness", "disgust", "neutral"])]
    df = pd.concat([g.sample(min(len(g), args.per_class), random_state=args.seed)
                    for _, g in df.groupby("emotion")])
    t0 = time.time()
    images, lms, emos = [], [], []
    n_padded = 0
    with MediaPipeFaceMesh(static_image_mode=True, detector="full") as mesh:
        for rel, emo in zip(df["image"], df["emotion"], strict=True):
            bgr = cv2.imread(str(root / "images" / rel))
            if bgr is None:
                continue
            rgb = np.ascontiguousarray(cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB))
            faces = mesh.process(rgb)
            if faces:
                lm = faces[0].landmarks
            else:  # most of these photos are tight face crops: retry with a black border (no upscale)
                lm = tight_crop_landmarks([rgb], mesh, upscale=1)[0]
                if not np.isfinite(lm).all():
                    continue
                n_padded += 1
            images.append(rgb)
            lms.append(lm)
            emos.append(emo)
    emos = np.array(emos)
    probs = predict_au(au_features(images, np.stack(lms)))
    names = au_names()
    print(f"{len(emos)} of {len(df)} photos with a face ({n_padded} found only with a black border; "
          f"{time.time() - t0:.0f} s); per emotion: "
          + ", ".join(f"{e} {int((emos == e).sum())}" for e in np.unique(emos)))
    print("\n| AU | emotion (positive class) | ROC AUC emotion vs rest | mean p (emotion) | mean p (rest) |")
    print("|---|---|---|---|---|")
    for au, emo in PROXIES:
        if au not in names:
            continue
        p = probs[:, names.index(au)]
        y = (emos == emo).astype(float)
        auc = M.au_roc_auc(y, p)[0]
        print(f"| {au} | {emo} | {auc:.3f} | {p[y == 1].mean():.2f} | {p[y == 0].mean():.2f} |")


if __name__ == "__main__":
    main()
