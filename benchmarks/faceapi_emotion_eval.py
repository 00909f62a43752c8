"""Emotion accuracy and macro-F1 of face-api's FaceExpressionNet (mien's PyTorch port) on CK+48 and FER2013.

The data sets are read in place from the shared data folder (research-only; never copied):

* ``expressions/ckplus48/<emotion>/*.png``: 48x48 gray CK+ frames (anger, disgust, fear, happy, sadness,
  surprise; a ``contempt`` folder, if present, is skipped because face-api has no contempt class).
* ``expressions/fer2013_publictest/<emotion>/*``: FER2013 PublicTest (angry, disgust, fear, happy, neutral,
  sad, surprise).

Each gray image is replicated to RGB and upscaled to 112x112 with face-api's own input path
(:func:`mien.models.faceapi.to_batch_tensor`: TF.js legacy bilinear). Two scores are reported per data set:

* ``argmax7``: the prediction is the argmax over all 7 face-api classes (a CK+ face predicted "neutral" is
  an error, since CK+48 has no neutral folder). This is the primary number.
* ``argmax_present``: the argmax over only the classes that occur in the data set's labels.

Macro-F1 averages the per-class F1 over the classes that occur in the labels.

Usage::

    PYTHONPATH=src python benchmarks/faceapi_emotion_eval.py [--data /work/shared/data] [--json out.json]
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
import torch

from mien.models.faceapi import EXPRESSION_LABELS, load_expression_net, to_batch_tensor
from mien.models.faceapi.reference import load_rgb

FOLDER_TO_LABEL = {
    # CK+48
    "anger": "angry",
    "disgust": "disgusted",
    "fear": "fearful",
    "happy": "happy",
    "sadness": "sad",
    "surprise": "surprised",
    # FER2013
    "angry": "angry",
    "neutral": "neutral",
    "sad": "sad",
}
"""Data set folder name -> face-api label. Folders not listed (e.g. CK+ ``contempt``) are skipped."""

DATASETS = {"ckplus48": "expressions/ckplus48", "fer2013_publictest": "expressions/fer2013_publictest"}


def list_dataset(root: Path) -> tuple[list[Path], np.ndarray, list[str]]:
    """(files, label indices into EXPRESSION_LABELS, skipped folder names) of one data set folder."""
    files, labels, skipped = [], [], []
    for folder in sorted(p for p in root.iterdir() if p.is_dir()):
        label = FOLDER_TO_LABEL.get(folder.name)
        if label is None:
            skipped.append(folder.name)
            continue
        for f in sorted(folder.iterdir()):
            if f.suffix.lower() in (".png", ".jpg", ".jpeg"):
                files.append(f)
                labels.append(EXPRESSION_LABELS.index(label))
    return files, np.asarray(labels, dtype=np.int64), skipped


@torch.no_grad()
def predict(net: torch.nn.Module, files: list[Path], batch_size: int = 128) -> np.ndarray:
    """(N, 7) float32 probabilities for the given image files."""
    out = []
    for i in range(0, len(files), batch_size):
        x = to_batch_tensor([load_rgb(f) for f in files[i : i + batch_size]], net.input_size)
        out.append(net.predict_proba(x).numpy())
    return np.concatenate(out)


def scores(y_true: np.ndarray, y_pred: np.ndarray, classes: list[int]) -> dict:
    """Accuracy, macro-F1 over ``classes``, per-class F1/recall and the confusion matrix (rows = truth)."""
    per_class = {}
    f1s = []
    for c in classes:
        tp = int(np.sum((y_pred == c) & (y_true == c)))
        fp = int(np.sum((y_pred == c) & (y_true != c)))
        fn = int(np.sum((y_pred != c) & (y_true == c)))
        precision = tp / (tp + fp) if tp + fp else 0.0
        recall = tp / (tp + fn) if tp + fn else 0.0
        f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
        f1s.append(f1)
        per_class[EXPRESSION_LABELS[c]] = {"n": int(np.sum(y_true == c)), "recall": recall, "f1": f1}
    confusion = np.zeros((len(EXPRESSION_LABELS), len(EXPRESSION_LABELS)), dtype=np.int64)
    np.add.at(confusion, (y_true, y_pred), 1)
    return {
        "accuracy": float(np.mean(y_true == y_pred)),
        "macro_f1": float(np.mean(f1s)),
        "per_class": per_class,
        "confusion": confusion.tolist(),
    }


def evaluate(net: torch.nn.Module, root: Path) -> dict:
    """Both scores (argmax7, argmax_present) of ``net`` on one data set folder."""
    files, y_true, skipped = list_dataset(root)
    t0 = time.perf_counter()
    probs = predict(net, files)
    seconds = time.perf_counter() - t0
    classes = sorted(set(y_true.tolist()))
    restricted = np.full_like(probs, -np.inf)
    restricted[:, classes] = probs[:, classes]
    return {
        "n_images": len(files),
        "classes": [EXPRESSION_LABELS[c] for c in classes],
        "skipped_folders": skipped,
        "seconds": seconds,
        "argmax7": scores(y_true, probs.argmax(1), classes),
        "argmax_present": scores(y_true, restricted.argmax(1), classes),
    }


def main(argv: list[str] | None = None) -> int:
    """Evaluate on the data sets present under ``--data`` and print a summary; 2 if none is found."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--data", default="/work/shared/data", help="shared data folder (read in place)")
    parser.add_argument("--json", help="write the full results (per class, confusion) to this file")
    args = parser.parse_args(argv)
    torch.set_num_threads(max(1, torch.get_num_threads()))
    net = load_expression_net()
    results = {}
    for name, rel in DATASETS.items():
        root = Path(args.data) / rel
        if not root.is_dir():
            print(f"{name}: {root} not found, skipped", file=sys.stderr)
            continue
        r = evaluate(net, root)
        results[name] = r
        print(
            f"{name}: {r['n_images']} images, classes {', '.join(r['classes'])}"
            + (f" (skipped folders: {', '.join(r['skipped_folders'])})" if r["skipped_folders"] else "")
        )
        for mode in ("argmax7", "argmax_present"):
            s = r[mode]
            print(f"  {mode:15s} accuracy {100 * s['accuracy']:.1f} %  macro-F1 {100 * s['macro_f1']:.1f} %")
        recalls = ", ".join(f"{k} {100 * v['recall']:.0f}%" for k, v in r["argmax7"]["per_class"].items())
        print(f"  per-class recall (argmax7): {recalls}   [{r['seconds']:.1f} s]")
    if not results:
        return 2
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
