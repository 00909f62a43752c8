"""Fixed inputs for checking the face-api port against the original TF.js nets, and their regeneration.

The inputs are defined here so that ``tests/test_faceapi.py`` rebuilds exactly the arrays that
``scripts/faceapi_reference.mjs`` was fed; ``tests/data/faceapi_reference.json`` holds the TF.js outputs and
the sha256 of every input array. Regenerate (needs node, npm and ``/work/shared/data``)::

    npm install --prefix /tmp/faceapi_ref @vladmandic/face-api@1.7.15 @tensorflow/tfjs@4.22.0 \\
        @tensorflow/tfjs-backend-wasm@4.22.0
    python -m mien.models.faceapi.reference --prefix /tmp/faceapi_ref --data /work/shared/data \\
        --out tests/data/faceapi_reference.json

Images from the data folder are read in place and never copied; the raw float32 inputs go to a temporary
folder that is deleted afterwards. Source of the nets: face-api (Vincent Mühler / vladmandic), MIT.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import math
import os
import subprocess
import sys
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

HEAD = 16
"""How many leading values of each embedding / descriptor the reference file keeps."""

SINGLE_FACE_BOX = (170, 120, 410, 400)
"""(left, top, right, bottom) pixel box of the face in ``samples/single_face.jpg`` (572 x 562)."""

CKPLUS_FOLDERS = ("anger", "disgust", "fear", "happy", "sadness", "surprise")


@dataclass(frozen=True)
class ReferenceInput:
    """One reference input: ``name``, how it is made (``source``), and which nets run on it."""

    name: str
    source: str
    nets: tuple[str, ...] = ("expression", "recognition")
    params: dict = field(default_factory=dict)


def synthetic_pattern(height: int, width: int) -> np.ndarray:
    """Deterministic smooth RGB test pattern.

    Returns:
        (H, W, 3) float32 in [0, 255]: R = 255 x / (W - 1), G = 255 y / (H - 1),
        B = 127.5 + 127.5 sin(2 pi (x + 2 y) / 64) cos(2 pi (x - y) / 97), computed in float64 then cast.
    """
    y, x = np.mgrid[0:height, 0:width].astype(np.float64)
    r = 255.0 * x / (width - 1)
    g = 255.0 * y / (height - 1)
    b = 127.5 + 127.5 * np.sin(2 * math.pi * (x + 2 * y) / 64.0) * np.cos(2 * math.pi * (x - y) / 97.0)
    return np.stack([r, g, b], axis=-1).astype(np.float32)


def load_rgb(path: str | os.PathLike, box: Sequence[int] | None = None) -> np.ndarray:
    """Decode an image with Pillow into (H, W, 3) float32 RGB in [0, 255] (gray is replicated to RGB).

    Args:
        path: image file.
        box: optional (left, top, right, bottom) crop, applied after decoding.
    """
    from PIL import Image

    with Image.open(path) as im:
        im = im.convert("RGB")
        if box is not None:
            im = im.crop(tuple(box))
        return np.asarray(im, dtype=np.uint8).astype(np.float32)


def ckplus_selection(data_dir: str | os.PathLike) -> list[str]:
    """The CK+48 images used as reference inputs: first and last file (sorted) of each emotion folder.

    Returns:
        Paths relative to ``<data_dir>/expressions/ckplus48``, e.g. ``happy/S010_006_00000013.png``.
    """
    root = Path(data_dir) / "expressions" / "ckplus48"
    chosen = []
    for folder in CKPLUS_FOLDERS:
        files = sorted(p.name for p in (root / folder).glob("*.png"))
        chosen += [f"{folder}/{files[0]}", f"{folder}/{files[-1]}"]
    return chosen


def reference_inputs(ckplus_files: Sequence[str]) -> list[ReferenceInput]:
    """All reference inputs, given the CK+48 selection (see :func:`ckplus_selection`)."""
    items = [
        ReferenceInput("synthetic_112", "synthetic", params={"height": 112, "width": 112}),
        ReferenceInput("synthetic_150", "synthetic", params={"height": 150, "width": 150}),
        ReferenceInput("synthetic_90x130", "synthetic", params={"height": 90, "width": 130}),
        ReferenceInput(
            "single_face_crop",
            "image",
            params={"path": "samples/single_face.jpg", "box": list(SINGLE_FACE_BOX)},
        ),
    ]
    for rel in ckplus_files:
        items.append(
            ReferenceInput(
                "ckplus48/" + rel,
                "image",
                nets=("expression", "recognition"),
                params={"path": f"expressions/ckplus48/{rel}"},
            )
        )
    return items


def build_input(item: ReferenceInput, data_dir: str | os.PathLike | None) -> np.ndarray:
    """The (H, W, 3) float32 [0, 255] array of a reference input.

    Raises:
        FileNotFoundError: an image input is requested and ``data_dir`` is missing or lacks the file.
    """
    if item.source == "synthetic":
        return synthetic_pattern(item.params["height"], item.params["width"])
    if data_dir is None:
        raise FileNotFoundError(f"{item.name}: needs the shared data folder")
    path = Path(data_dir) / item.params["path"]
    if not path.is_file():
        raise FileNotFoundError(path)
    return load_rgb(path, item.params.get("box"))


def array_sha256(a: np.ndarray) -> str:
    """sha256 of a float32 C-contiguous array's little-endian bytes."""
    return hashlib.sha256(np.ascontiguousarray(a, dtype="<f4").tobytes()).hexdigest()


def _summary(v: Sequence[float]) -> dict:
    arr = np.asarray(v, dtype=np.float64)
    return {
        "head": [float(x) for x in arr[:HEAD]],
        "norm": float(np.linalg.norm(arr)),
        "sum": float(arr.sum()),
        "dim": int(arr.size),
    }


def generate(prefix: str, data_dir: str, out: str, script: str) -> dict:
    """Write the inputs as raw float32, run the node script, and save the reference JSON to ``out``."""
    items = reference_inputs(ckplus_selection(data_dir))
    with tempfile.TemporaryDirectory(prefix="faceapi_ref_") as tmp:
        spec = {"inputs": []}
        arrays = {}
        for i, item in enumerate(items):
            arr = build_input(item, data_dir)
            arrays[item.name] = arr
            f = Path(tmp) / f"input_{i}.f32"
            np.ascontiguousarray(arr, dtype="<f4").tofile(f)
            spec["inputs"].append(
                {"name": item.name, "file": str(f), "shape": list(arr.shape), "nets": list(item.nets)}
            )
        (Path(tmp) / "spec.json").write_text(json.dumps(spec))
        out_json = Path(tmp) / "out.json"
        cmd = [
            "node",
            script,
            "--prefix",
            prefix,
            "--spec",
            str(Path(tmp) / "spec.json"),
            "--out",
            str(out_json),
        ]
        subprocess.run(cmd, check=True)
        raw = json.loads(out_json.read_text())
    entries = []
    for item in items:
        res = raw["results"][item.name]
        entry = {
            "name": item.name,
            "source": item.source,
            "params": item.params,
            "shape": list(arrays[item.name].shape),
            "input_sha256": array_sha256(arrays[item.name]),
        }
        if "expression" in res:
            e = res["expression"]
            entry["expression"] = {
                "probs": e["probs"],
                "logits": e["logits"],
                "embedding": _summary(e["embedding"]),
                "batch_tensor_sum": e["batch_tensor_sum"],
            }
        if "recognition" in res:
            r = res["recognition"]
            entry["recognition"] = {
                "descriptor": _summary(r["descriptor"]),
                "batch_tensor_sum": r["batch_tensor_sum"],
            }
        entries.append(entry)
    report = {
        "description": (
            "Outputs of the original face-api TF.js nets (FaceExpressionNet, FaceRecognitionNet) on fixed "
            "inputs, for tests/test_faceapi.py. Inputs are (H, W, 3) float32 RGB arrays in [0, 255] built by "
            "mien.models.faceapi.reference (synthetic_pattern formula, or Pillow-decoded images read in "
            "place from the shared data folder, optional crop box), written as raw float32 and fed to "
            "scripts/faceapi_reference.mjs; face-api did its own pad-to-square + resizeBilinear "
            "(NetInput.toBatchTensor tensor path) and normalisation. 'embedding' is the 256-d pooled "
            "FaceFeatureExtractor output, 'descriptor' the 128-d FaceRecognitionNet output; for both, 'head' "
            f"is the first {HEAD} values. 'probs'/'logits' are in face-api label order."
        ),
        "labels": ["neutral", "happy", "sad", "angry", "fearful", "disgusted", "surprised"],
        "faceapi_package": "@vladmandic/face-api",
        "faceapi_version": raw["faceapi_version"],
        "tfjs_version": raw["tfjs_version"],
        "tfjs_backend": raw["backend"],
        "node_version": subprocess.run(["node", "--version"], capture_output=True, text=True).stdout.strip(),
        "regenerate": "python -m mien.models.faceapi.reference --prefix /tmp/faceapi_ref "
        "--data /work/shared/data --out tests/data/faceapi_reference.json",
        "inputs": entries,
    }
    Path(out).parent.mkdir(parents=True, exist_ok=True)
    Path(out).write_text(json.dumps(report, indent=1) + "\n")
    return report


def main(argv: Sequence[str] | None = None) -> int:
    """Command line for :func:`generate`. Returns the process exit status."""
    here = Path(__file__).resolve()
    default_script = here.parents[4] / "scripts" / "faceapi_reference.mjs"
    parser = argparse.ArgumentParser(
        prog="python -m mien.models.faceapi.reference", description=__doc__.split("\n")[0]
    )
    parser.add_argument(
        "--prefix", default="/tmp/faceapi_ref", help="npm prefix where face-api and tfjs are installed"
    )
    parser.add_argument("--data", default="/work/shared/data", help="shared data folder (read in place)")
    parser.add_argument("--out", default="tests/data/faceapi_reference.json")
    parser.add_argument("--script", default=str(default_script), help="path of scripts/faceapi_reference.mjs")
    args = parser.parse_args(argv)
    report = generate(args.prefix, args.data, args.out, args.script)
    print(f"wrote {len(report['inputs'])} reference entries to {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
