"""Backends that run a head's network: PyTorch eager, or onnxruntime (ORT).

:func:`resolve_backend` chooses: ``"auto"`` is ORT when ``onnxruntime`` is importable (and the device is the
CPU), PyTorch otherwise; ``"torch"`` / ``"onnxruntime"`` force one. A head whose ORT outputs would change
``mien analyze``'s rounded outputs maps ``"auto"`` to PyTorch itself (see :mod:`mien.heads.faceapi`).

Networks shipped as PyTorch weights are exported to ONNX once by :func:`cached_onnx_session` and cached under
the user cache directory (``$MIEN_CACHE_DIR`` or ``~/.cache/mien``) in ``onnx/<name>-<sha256[:16]>.onnx``,
keyed by the SHA-256 of the shipped weights, written atomically after a parity check against PyTorch on random
inputs, so a changed weights file gives a new export and a broken export is never cached.
"""

from __future__ import annotations

import importlib.util
import os
import warnings
from collections.abc import Callable
from pathlib import Path

import numpy as np

BACKENDS = ("auto", "torch", "onnxruntime")


def ort_available() -> bool:
    """Whether onnxruntime is importable."""
    return importlib.util.find_spec("onnxruntime") is not None


def resolve_backend(requested: str = "auto", device: str = "cpu") -> str:
    """The backend to use: "torch" or "onnxruntime".

    Args:
        requested: "auto" (ORT when installed and ``device`` is the CPU, else PyTorch), "torch" or
            "onnxruntime".
        device: the torch device asked for; ORT runs on the CPU here, so "auto" picks PyTorch for other devices.

    Raises:
        ValueError: unknown backend, or "onnxruntime" asked for but not installed.
    """
    if requested not in BACKENDS:
        raise ValueError(f"unknown backend {requested!r}; choose from {BACKENDS}")
    if requested == "auto":
        return "onnxruntime" if ort_available() and device == "cpu" else "torch"
    if requested == "onnxruntime" and not ort_available():
        raise ValueError("backend 'onnxruntime' asked for, but onnxruntime is not installed "
                         "(pip install onnxruntime)")
    return requested


def head_threads(requested: int | None = None) -> int:
    """Intra-op threads for the heads' networks.

    Args:
        requested: a count, or None: half the CPU cores (at least 1), at most ``$OMP_NUM_THREADS`` when set. The
            heads run alongside MediaPipe (which has its own threads); more threads than free cores make
            OpenMP's barriers spin against each other, which on a 2-core machine made one FaceRecognitionNet
            forward pass take 0.2–1.5 s instead of 12 ms.

    Raises:
        ValueError: ``requested`` < 1.
    """
    if requested is not None:
        if requested < 1:
            raise ValueError(f"threads must be >= 1, got {requested}")
        return int(requested)
    n = max(1, (os.cpu_count() or 1) // 2)
    env = int(os.environ.get("OMP_NUM_THREADS", "0") or 0)
    return min(n, env) if env > 0 else n


def cache_dir() -> Path:
    """``$MIEN_CACHE_DIR`` or ``~/.cache/mien`` (``$XDG_CACHE_HOME/mien`` when set)."""
    env = os.environ.get("MIEN_CACHE_DIR")
    if env:
        return Path(env)
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "mien"


def ort_session(path: str | os.PathLike, threads: int | None = None):
    """A CPU ``onnxruntime.InferenceSession`` of an ONNX file (intra-op threads: :func:`head_threads`)."""
    import onnxruntime as ort

    so = ort.SessionOptions()
    so.intra_op_num_threads = head_threads(threads)
    so.inter_op_num_threads = 1
    so.log_severity_level = 3
    # no busy-waiting of idle ORT threads: they would take CPU from MediaPipe running alongside
    so.add_session_config_entry("session.intra_op.allow_spinning", "0")
    return ort.InferenceSession(str(path), so, providers=["CPUExecutionProvider"])


def cached_onnx_session(name: str, weights_sha256: str, build: Callable[[], object], input_shape: tuple[int, ...],
                        output_names: list[str], atol: float = 1e-4):
    """ORT session of a PyTorch module exported to ONNX once and cached by the weights' hash.

    Args:
        name: file-name stem (e.g. "faceapi-expression").
        weights_sha256: SHA-256 of the weights the module is built from (the cache key).
        build: returns the module (eval mode, CPU) whose ``forward(x)`` gives ``output_names`` outputs.
        input_shape: (B, C, H, W) of the example input (batch is exported dynamic); input name ``"input"``.
        output_names: names of the graph outputs.
        atol: largest allowed absolute difference from PyTorch on random inputs in [0, 255].

    Returns:
        ``onnxruntime.InferenceSession``.

    Raises:
        ValueError: the export differs from PyTorch by more than ``atol`` (nothing is cached).
    """
    path = cache_dir() / "onnx" / f"{name}-{weights_sha256[:16]}.onnx"
    if path in _SESSIONS:
        return _SESSIONS[path]
    if not path.is_file():
        import torch

        from mien.io.atomic import atomic_output

        module = build()
        g = torch.Generator().manual_seed(0)
        x = torch.rand(*input_shape, generator=g) * 255
        path.parent.mkdir(parents=True, exist_ok=True)
        with atomic_output(path) as tmp, warnings.catch_warnings():
            warnings.simplefilter("ignore")  # tracer warnings about Python-side shape checks
            torch.onnx.export(module, (x,), str(tmp), input_names=["input"], output_names=output_names,
                              dynamic_axes={"input": {0: "batch"}, **{o: {0: "batch"} for o in output_names}},
                              opset_version=17, dynamo=False)
            check = torch.rand(input_shape[0] + 1, *input_shape[1:], generator=g) * 255
            with torch.inference_mode():
                ref = module(check)
            ref = [ref] if isinstance(ref, torch.Tensor) else list(ref)
            got = ort_session(tmp).run(None, {"input": check.numpy()})
            diff = max(float(np.abs(r.numpy() - o).max()) for r, o in zip(ref, got, strict=True))
            if diff > atol:
                raise ValueError(f"ONNX export of {name} differs from PyTorch by {diff:.2e} > {atol}")
    _SESSIONS[path] = ort_session(path)
    return _SESSIONS[path]


_SESSIONS: dict[Path, object] = {}  # one session per cached export and process (sessions are thread-safe)
