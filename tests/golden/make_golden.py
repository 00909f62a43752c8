"""Fingerprints of `mien analyze` and `mien prepare` outputs on the shared samples.

Run once on a commit whose outputs are the reference (``python tests/golden/make_golden.py``): it writes
``tests/golden/outputs.json``. ``tests/test_golden.py`` recomputes the same fingerprints and compares them, so
that a refactor that changes any output array (gaze excepted, see below) fails.

A fingerprint is the SHA-256 of an array's bytes after rounding floats to 3 decimals (1/1000 px, deg, mm):
exact on one machine, and blind to last-bit differences of a different BLAS/SIMD path. Gaze columns are
excluded from the hashes (the architecture change moved the head frame to the shared Umeyama estimator and
sets gaze to NaN on closed eyes); their mean absolute values are stored instead so the shift can be reported.

The neural heads are run in PyTorch (``backend="torch"``, where that option exists): the reference was made
with PyTorch, and onnxruntime (the default where installed) differs in the last float bits, enough to flip a
few values rounded to 3 decimals; tests/test_heads.py checks that ORT matches PyTorch within 1e-4.
"""

from __future__ import annotations

import hashlib
import json
import os
import sys
import tempfile
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
SHARED = Path(os.environ.get("MIEN_SHARED_DATA", HERE.parents[2] / "shared" / "data"))

ANALYZE_CASES = {
    "single_face_default": ("samples/single_face.mp4", {}),
    "single_face_au_emotion": ("samples/single_face.mp4", {"au": True, "emotion": True}),
    "multi_face_image": ("samples/multi_face.jpg", {"max_faces": 5}),
    "driving_d0_every2": ("videos/expressive/driving_d0.mp4", {"every": 2}),
}
PREPARE_INPUTS = ["videos/expressive/driving_d0.mp4", "videos/talking/Input__00010.mp4"]
PREPARE_OPTS = dict(clip_seconds=1.0, fps=25.0, crop_size=128, clips_per_video=2, shard_samples=1)
# meta fields that legitimately differ between runs (timing, paths)
VOLATILE_META = {"elapsed_sec", "source", "created", "mien_version", "prepared_at", "key", "video_key"}
# prepare's sample keys and its random-mode windows are seeded by a hash of the source URI, so the inputs are
# linked under one fixed path: the fingerprints must not depend on where the checkout and ../shared lie
FIXED_INPUTS = Path(tempfile.gettempdir()) / "mien-golden-inputs"


def fixed_inputs() -> list[str]:
    """The prepare inputs as symbolic links under :data:`FIXED_INPUTS` (created when missing)."""
    FIXED_INPUTS.mkdir(parents=True, exist_ok=True)
    out = []
    for rel in PREPARE_INPUTS:
        link = FIXED_INPUTS / Path(rel).name
        target = (SHARED / rel).resolve()
        if not link.is_symlink() or link.resolve() != target:
            tmp = link.with_name(f".{link.name}.{os.getpid()}")
            tmp.unlink(missing_ok=True)
            tmp.symlink_to(target)
            os.replace(tmp, link)
        out.append(str(link))
    return out


def digest(a) -> str:
    a = np.asarray(a)
    if a.dtype.kind == "f":
        a = np.round(a.astype(np.float64), 3) + 0.0  # +0.0 folds -0.0 into 0.0
    return hashlib.sha256(np.ascontiguousarray(a).tobytes() + str(a.shape).encode()).hexdigest()[:16]


def is_gaze(name: str) -> bool:
    return name.startswith("gaze")


def analyze_fingerprints() -> dict:
    import dataclasses

    import mien

    pinned = {"backend": "torch"} if "backend" in {f.name for f in dataclasses.fields(mien.AnalyzeOptions)} else {}
    out = {}
    for case, (rel, kwargs) in ANALYZE_CASES.items():
        res = mien.analyze(SHARED / rel, **kwargs, **pinned)
        cols = res.columns() if hasattr(res, "columns") and callable(res.columns) else None
        cols = cols or {**{f.name: getattr(res, f.name) for f in res.__dataclass_fields__.values()
                           if f.name not in ("meta", "extra")}, **res.extra}
        out[case] = {
            "rows": len(res),
            "hashes": {k: digest(v) for k, v in sorted(cols.items()) if not is_gaze(k)},
            "gaze_mean_abs": {k: float(np.nanmean(np.abs(v))) if len(v) else 0.0
                              for k, v in sorted(cols.items()) if is_gaze(k) and k.endswith("_deg")},
        }
    return out


def prepare_fingerprints() -> dict:
    from mien.data.reader import iter_samples
    from mien.pipelines.prepare import PrepareOptions, prepare

    with tempfile.TemporaryDirectory() as tmp:
        prepare(fixed_inputs(), os.path.join(tmp, "ds"), PrepareOptions(**PREPARE_OPTS))
        samples = {}
        for s in iter_samples(os.path.join(tmp, "ds")):
            entry = {}
            for k, v in sorted(s.items()):
                if k.startswith("__"):
                    continue
                if k == "json":
                    entry[k] = digest(np.frombuffer(json.dumps(
                        {m: x for m, x in sorted(v.items()) if m not in VOLATILE_META}, sort_keys=True).encode(),
                        np.uint8))
                elif k == "mp4":  # decoded frames: the encoder's bytes are not the contract, the pixels are
                    entry[k] = digest(np.asarray(v).astype(np.int16) // 4)
                elif isinstance(v, np.ndarray):
                    entry[k] = digest(v)
            samples[s["__key__"]] = entry
    return samples


def fingerprints() -> dict:
    return {"analyze": analyze_fingerprints(), "prepare": prepare_fingerprints()}


if __name__ == "__main__":
    fp = fingerprints()
    path = HERE / "outputs.json"
    path.write_text(json.dumps(fp, indent=1, sort_keys=True) + "\n")
    print(f"wrote {path}", file=sys.stderr)
