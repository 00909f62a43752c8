"""Convert face-api's TF.js weights (manifest + binary shards) to PyTorch ``safetensors`` files.

Source of the weights: the npm package ``@vladmandic/face-api`` (face-api by Vincent Mühler, maintained by
Vladimir Mandic; MIT), folder ``model/``. Its weights are TF.js "weights manifests": a JSON list of
groups, each with ``paths`` (shard files, concatenated in order) and ``weights`` (``name``, ``shape``,
``dtype`` and an optional ``quantization`` of ``{"dtype": "uint8" | "uint16", "scale", "min"}`` or
``{"dtype": "float16"}``).
Dequantisation follows TF.js ``io.decodeWeights``: ``value = q * scale + min`` computed in double precision
and stored as float32.

Usage::

    python -m mien.models.faceapi.convert PACKAGE_DIR OUT_DIR

where PACKAGE_DIR is the unpacked npm package (the folder holding ``package.json`` and ``model/``) or its
``model/`` folder itself.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np

from mien.errors import InputError
from mien.io.hashing import sha256_file as _sha256

__all__ = [
    "DEFAULT_DTYPES",
    "NETS",
    "convert_faceapi",
    "dequantize",
    "main",
    "read_tfjs_weights",
    "to_torch_state_dict",
]

NETS: dict[str, dict[str, str]] = {
    "expression": {"model_name": "face_expression_model", "output": "face_expression.safetensors"},
    "recognition": {"model_name": "face_recognition_model", "output": "face_recognition.safetensors"},
}
"""face-api model names converted by :func:`convert_faceapi` and the file each is written to."""

DEFAULT_DTYPES: dict[str, str] = {"expression": "float32", "recognition": "float16"}
"""Storage dtypes of the shipped files. float16 changes the expression probabilities by up to 3e-3, so that
net stays float32 (1.3 MB); for the recognition net float16 changes descriptor values by at most 4e-4
(measured on 365 faces) and halves the file (11 MB instead of 22 MB)."""

_DTYPE_BYTES = {"float32": 4, "int32": 4, "uint8": 1, "uint16": 2, "float16": 2}


def dequantize(data: bytes, spec: Mapping) -> np.ndarray:
    """Decode one TF.js weight from its bytes, dequantising it if the manifest says it is quantised.

    Args:
        data: the weight's bytes, exactly ``prod(shape) * bytes_per_value`` long (little-endian).
        spec: the manifest entry: ``name``, ``shape``, ``dtype`` (``float32`` or ``int32``) and an optional
            ``quantization``: ``{"dtype": "uint8" | "uint16", "scale": s, "min": m}`` (value = q * s + m, in
            float64 then cast, as TF.js does) or ``{"dtype": "float16"}``.

    Returns:
        Array of ``spec["shape"]`` in TF.js layout; float32 for float32 weights (int32 weights are rounded
        like TF.js and returned as int32).

    Raises:
        ValueError: unknown dtype or quantisation, missing ``scale``/``min``, or a byte count that does not
            match the shape.
    """
    name = spec.get("name", "?")
    shape = [int(d) for d in spec["shape"]]
    dtype = spec["dtype"]
    size = int(np.prod(shape)) if shape else 1
    if dtype not in ("float32", "int32"):
        raise ValueError(f"weight {name}: unsupported dtype {dtype!r}")
    quant = spec.get("quantization")
    stored = quant["dtype"] if quant else dtype
    if stored not in _DTYPE_BYTES:
        raise ValueError(f"weight {name}: unknown quantization dtype {stored!r} (uint8, uint16, float16)")
    expected = size * _DTYPE_BYTES[stored]
    if len(data) != expected:
        raise ValueError(
            f"weight {name}: {len(data)} bytes for shape {shape} of {stored}, expected {expected}"
        )
    if quant is None:
        return np.frombuffer(data, dtype="<f4" if dtype == "float32" else "<i4").reshape(shape).copy()
    if stored in ("uint8", "uint16"):
        if "scale" not in quant or "min" not in quant:
            raise ValueError(f"weight {name}: {stored} quantization without scale and min")
        q = np.frombuffer(data, dtype=np.uint8 if stored == "uint8" else "<u2").astype(np.float64)
        values = q * float(quant["scale"]) + float(quant["min"])
        if dtype == "int32":
            return np.floor(values + 0.5).astype(np.int32).reshape(shape)  # JS Math.round
        return values.astype(np.float32).reshape(shape)
    if stored == "float16":
        if dtype != "float32":
            raise ValueError(f"weight {name}: float16 quantization of {dtype} weights is not supported")
        return np.frombuffer(data, dtype="<f2").astype(np.float32).reshape(shape)
    raise ValueError(f"weight {name}: quantization dtype {stored!r} is not valid for a weight")


def read_tfjs_weights(manifest_path: str | os.PathLike) -> dict[str, np.ndarray]:
    """Read a TF.js weights manifest and its shards into numpy arrays.

    Args:
        manifest_path: path of ``<model>-weights_manifest.json``; its shard paths are relative to its folder.

    Returns:
        ``{tfjs_name: array}`` in manifest order, TF.js layouts (conv filters HWIO, depthwise filters
        (3, 3, C, 1), FC weights (in, out)), float32 after dequantisation.

    Raises:
        InputError: the manifest or a shard is missing or unreadable, or the shards hold fewer or more bytes
            than the manifest describes.
        ValueError: a weight's dtype or quantisation is not supported (see :func:`dequantize`).
    """
    manifest_path = Path(manifest_path)
    try:
        manifest = json.loads(manifest_path.read_text())
    except (OSError, ValueError) as exc:
        raise InputError(manifest_path, f"cannot read TF.js weights manifest ({exc})") from exc
    if isinstance(manifest, dict) and "weightsManifest" in manifest:  # model.json style
        manifest = manifest["weightsManifest"]
    if not isinstance(manifest, list):
        raise InputError(manifest_path, "not a TF.js weights manifest (expected a list of weight groups)")
    weights: dict[str, np.ndarray] = {}
    for group in manifest:
        blobs = []
        for rel in group["paths"]:
            shard = manifest_path.parent / rel
            try:
                blobs.append(shard.read_bytes())
            except OSError as exc:
                raise InputError(shard, f"cannot read weight shard ({exc})") from exc
        buffer = b"".join(blobs)
        offset = 0
        for spec in group["weights"]:
            quant = spec.get("quantization")
            stored = quant["dtype"] if quant else spec["dtype"]
            n_bytes = int(np.prod(spec["shape"])) * _DTYPE_BYTES.get(stored, 0)
            if offset + n_bytes > len(buffer):
                raise InputError(manifest_path, f"shards end before weight {spec['name']}")
            weights[spec["name"]] = dequantize(buffer[offset : offset + n_bytes], spec)
            offset += n_bytes
        if offset != len(buffer):
            raise InputError(manifest_path, f"{len(buffer) - offset} unused bytes after the last weight")
    return weights


def _torch_layout(key: str, value: np.ndarray) -> np.ndarray:
    if key.endswith("depthwise.weight"):  # (3, 3, C, 1) -> (C, 1, 3, 3)
        return value.transpose(2, 3, 0, 1)
    if value.ndim == 4:  # HWIO -> OIHW (also 1x1 pointwise filters)
        return value.transpose(3, 2, 0, 1)
    if value.ndim == 2:  # (in, out) -> nn.Linear (out, in)
        return value.T
    return value


def to_torch_state_dict(net: str, weights: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Rename and transpose face-api TF.js weights into the state dict of the matching mien module.

    Args:
        net: ``"expression"`` (:class:`~mien.models.faceapi.nets.FaceExpressionNet`) or ``"recognition"``
            (:class:`~mien.models.faceapi.nets.FaceRecognitionNet`).
        weights: ``{tfjs_name: array}`` from :func:`read_tfjs_weights`.

    Returns:
        ``{state_dict_key: contiguous float32 array}`` in PyTorch layouts (conv OIHW, linear (out, in)).

    Raises:
        ValueError: unknown ``net`` or a weight name that the module does not have.
    """
    if net not in NETS:
        raise ValueError(f"unknown face-api net {net!r}; expected one of {sorted(NETS)}")
    out: dict[str, np.ndarray] = {}
    for name, value in weights.items():
        parts = name.split("/")
        if net == "expression":
            leaf = {
                "filters": "weight",
                "depthwise_filter": "depthwise.weight",
                "pointwise_filter": "pointwise.weight",
                "weights": "weight",
                "bias": "bias",
            }.get(parts[-1])
            if leaf is None or not (parts[0].startswith("dense") or parts[0] == "fc"):
                raise ValueError(f"unexpected weight {name!r} in the face expression model")
            prefix = parts[:-1] if parts[0] == "fc" else ["features", *parts[:-1]]
        else:
            if name == "fc":
                prefix, leaf = ["fc"], "weight"
            else:
                leaf = {"filters": "weight", "bias": "bias", "weights": "weight", "biases": "bias"}.get(
                    parts[-1]
                )
                if leaf is None or len(parts) < 3:
                    raise ValueError(f"unexpected weight {name!r} in the face recognition model")
                prefix = parts[:-1]
        key = ".".join([*prefix, leaf])
        out[key] = np.ascontiguousarray(_torch_layout(key, np.asarray(value, dtype=np.float32)))
    return out


def _package_info(package_dir: Path) -> tuple[Path, str, str]:
    """(model dir, npm package name, version) of an unpacked face-api package or its model folder."""
    for root in (package_dir, package_dir.parent):
        pj = root / "package.json"
        if pj.is_file() and (root / "model").is_dir():
            try:
                meta = json.loads(pj.read_text())
            except (OSError, ValueError):
                meta = {}
            return root / "model", str(meta.get("name", "unknown")), str(meta.get("version", "unknown"))
    if (package_dir / "model").is_dir():
        return package_dir / "model", "unknown", "unknown"
    return package_dir, "unknown", "unknown"


def convert_faceapi(
    package_dir: str | os.PathLike,
    out_dir: str | os.PathLike,
    dtypes: Mapping[str, str] | None = None,
    nets: Sequence[str] = ("expression", "recognition"),
) -> dict[str, Path]:
    """Convert face-api's expression and recognition weights to ``safetensors`` files.

    Args:
        package_dir: unpacked ``@vladmandic/face-api`` npm package (holding ``package.json`` and ``model/``),
            or the ``model/`` folder itself (as in face-api.js' ``weights/``).
        out_dir: folder to write ``face_expression.safetensors`` and ``face_recognition.safetensors`` to
            (created if missing).
        dtypes: storage dtype per net, ``"float32"`` or ``"float16"``; nets not given use
            :data:`DEFAULT_DTYPES` (what mien ships). The loaders cast to float32.
        nets: which nets to convert (keys of :data:`NETS`).

    Returns:
        ``{net: path of the written file}``. Each file's metadata key ``mien_faceapi_provenance`` holds a JSON
        object with the source package, version, manifest and shard names with their sha256, and the storage
        dtype. The output is byte-for-byte reproducible.

    Raises:
        InputError: ``package_dir`` has no face-api manifest for a requested net, or a shard is missing or
            truncated.
        ValueError: unknown net or dtype.
    """
    from safetensors.numpy import save_file

    package_dir = Path(package_dir)
    if not package_dir.is_dir():
        raise InputError(package_dir, "not a folder (expected the unpacked @vladmandic/face-api package)")
    model_dir, pkg_name, pkg_version = _package_info(package_dir)
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    dtypes = dict(dtypes or {})
    written: dict[str, Path] = {}
    for net in nets:
        if net not in NETS:
            raise ValueError(f"unknown face-api net {net!r}; expected one of {sorted(NETS)}")
        dtype = dtypes.get(net, DEFAULT_DTYPES[net])
        if dtype not in ("float32", "float16"):
            raise ValueError(f"unsupported storage dtype {dtype!r} for {net}; use float32 or float16")
        model_name = NETS[net]["model_name"]
        manifest_path = model_dir / f"{model_name}-weights_manifest.json"
        if not manifest_path.is_file():
            raise InputError(manifest_path, "face-api weights manifest not found")
        state = to_torch_state_dict(net, read_tfjs_weights(manifest_path))
        state = {k: v.astype(dtype) for k, v in state.items()}
        shards = [p for g in json.loads(manifest_path.read_text()) for p in g["paths"]]
        provenance = {
            "source_package": pkg_name,
            "source_version": pkg_version,
            "source_model": model_name,
            "source_manifest": f"{manifest_path.name} sha256:{_sha256(manifest_path)}",
            "source_shards": " ".join(f"{s} sha256:{_sha256(model_dir / s)}" for s in shards),
            "storage_dtype": dtype,
            "licence": "MIT (face-api, Vincent Mühler / Vladimir Mandic)",
            "converted_by": "mien.models.faceapi.convert",
        }
        # One metadata key: safetensors writes several keys in hash order, which would make the bytes differ
        # between runs; a single sorted JSON string keeps the output byte-for-byte reproducible.
        metadata = {"mien_faceapi_provenance": json.dumps(provenance, sort_keys=True, ensure_ascii=False)}
        out_path = out_dir / NETS[net]["output"]
        save_file(state, str(out_path), metadata=metadata)
        written[net] = out_path
    return written


def main(argv: Sequence[str] | None = None) -> int:
    """Command line: ``python -m mien.models.faceapi.convert PACKAGE_DIR OUT_DIR [--float32]``.

    Returns:
        0 on success, 2 on an input error (message on stderr).
    """
    parser = argparse.ArgumentParser(
        prog="python -m mien.models.faceapi.convert",
        description="Convert @vladmandic/face-api TF.js weights (model/*.json + *.bin) to safetensors.",
    )
    parser.add_argument("package_dir", help="unpacked @vladmandic/face-api npm package, or its model/ folder")
    parser.add_argument("out_dir", help="output folder for face_expression/face_recognition.safetensors")
    parser.add_argument(
        "--float32",
        action="store_true",
        help="store every net in float32 (default: as shipped, recognition float16, expression float32)",
    )
    args = parser.parse_args(argv)
    dtypes = {n: "float32" for n in NETS} if args.float32 else None
    try:
        written = convert_faceapi(args.package_dir, args.out_dir, dtypes=dtypes)
    except (InputError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    for net, path in written.items():
        print(f"{net}: {path} ({path.stat().st_size} bytes, sha256 {_sha256(path)})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
