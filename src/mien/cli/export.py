"""``mien export``: export a registered model to ONNX (checked with onnxruntime)."""

from __future__ import annotations

import argparse


def add_parser(sub) -> None:
    p = sub.add_parser("export", help="export a registered model to ONNX",
                       description="Export a registered image model (mien.list_models()) to ONNX; the file is "
                                   "validated with onnx.checker and compared with PyTorch through onnxruntime.")
    p.add_argument("model", help="registered model name, e.g. faceapi-expression")
    p.add_argument("-o", "--output", required=True, help="output .onnx file")
    p.add_argument("--atol", type=float, default=1e-3, help="parity tolerance (default 1e-3)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from mien.export.onnx import export_registered

    try:
        report = export_registered(args.model, args.output, atol=args.atol)
    except KeyError as e:
        raise ValueError(str(e).strip("'\"")) from None
    print(f"mien: wrote {report.path} (opset {report.opset}); onnxruntime vs PyTorch max |diff| "
          f"{report.max_abs_diff:.2e}")
    return 0
