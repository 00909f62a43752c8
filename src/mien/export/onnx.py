"""ONNX export of PyTorch models, checked with ``onnx.checker`` and for parity with onnxruntime."""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from mien.io.atomic import atomic_output


@dataclass
class OnnxExportReport:
    """Result of an export.

    Attributes:
        path: written ONNX file.
        opset: ONNX opset version.
        max_abs_diff: largest |PyTorch − onnxruntime| over all outputs on the check inputs.
        outputs: output names.
    """

    path: str
    opset: int
    max_abs_diff: float
    outputs: list[str]


def export_onnx(model, example_inputs: Sequence, path: str | os.PathLike, input_names: Sequence[str],
                output_names: Sequence[str], dynamic_batch: bool = True, opset: int = 17,
                atol: float = 1e-4, check_inputs: Sequence | None = None) -> OnnxExportReport:
    """Export ``model`` (put in eval mode) to ONNX, validate it and compare it with PyTorch.

    Args:
        model: ``torch.nn.Module``; its ``forward`` takes the example inputs positionally.
        example_inputs: tensors used for tracing, e.g. ``[torch.zeros(2, 3, 112, 112)]``.
        path: output ``.onnx`` file (written atomically).
        input_names, output_names: ONNX graph names.
        dynamic_batch: make dimension 0 of every input and output dynamic.
        opset: ONNX opset version.
        atol: largest allowed absolute difference between PyTorch and onnxruntime outputs.
        check_inputs: inputs for the parity check (default: the example inputs).

    Returns:
        :class:`OnnxExportReport`.

    Raises:
        onnx.checker.ValidationError: the exported graph is invalid.
        ValueError: onnxruntime outputs differ from PyTorch by more than ``atol``.
    """
    import onnx
    import onnxruntime as ort
    import torch

    model = model.eval()
    example_inputs = tuple(example_inputs)
    axes = None
    if dynamic_batch:
        axes = {n: {0: "batch"} for n in list(input_names) + list(output_names)}
    with atomic_output(path) as tmp:
        with torch.no_grad():
            torch.onnx.export(model, example_inputs, str(tmp), input_names=list(input_names),
                              output_names=list(output_names), dynamic_axes=axes, opset_version=opset,
                              dynamo=False)
        onnx.checker.check_model(onnx.load(str(tmp)), full_check=True)
        sess = ort.InferenceSession(str(tmp), providers=["CPUExecutionProvider"])
        inputs = tuple(check_inputs) if check_inputs is not None else example_inputs
        with torch.no_grad():
            ref = model(*inputs)
        ref = [ref] if isinstance(ref, torch.Tensor) else list(ref)
        got = sess.run(list(output_names), {n: t.numpy() for n, t in zip(input_names, inputs, strict=True)})
        diff = max(float(np.abs(r.numpy() - g).max()) if r.numel() else 0.0 for r, g in zip(ref, got, strict=True))
        if diff > atol:
            raise ValueError(f"onnxruntime differs from PyTorch by {diff:.3g} (> {atol})")
    return OnnxExportReport(str(path), opset, diff, list(output_names))


def export_registered(name: str, path: str | os.PathLike, batch: int = 2, seed: int = 0,
                      atol: float = 1e-3) -> OnnxExportReport:
    """Export a registered image model (see :func:`mien.models.list_models`) with an input built from its
    :class:`~mien.models.registry.InputContract` (batch, 3, crop_size, crop_size) in its value range.

    Raises:
        KeyError: unknown model name.
        ValueError: the model's contract has no fixed crop size, or parity fails.
    """
    import torch

    from mien.models.registry import create_model, get_model_spec

    spec = get_model_spec(name)
    size = spec.contract.crop_size
    if size is None:
        raise ValueError(f"model {name!r} has no fixed input size; export it with export_onnx()")
    hi = 255.0 if spec.contract.value_range == "0-255" else 1.0
    g = torch.Generator().manual_seed(seed)
    x = torch.rand(batch, 3, size, size, generator=g) * hi
    model = create_model(name)
    with torch.no_grad():
        out = model(x)
    n_out = 1 if isinstance(out, torch.Tensor) else len(out)
    outputs = ["output"] if n_out == 1 else [f"output_{i}" for i in range(n_out)]
    check = torch.rand(batch + 1, 3, size, size, generator=g) * hi  # a different batch size too
    return export_onnx(model, [x], path, ["image"], outputs, atol=atol, check_inputs=[check])
