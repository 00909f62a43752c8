"""``mien export``: export a registered model to ONNX (checked with onnxruntime)."""

from __future__ import annotations

import argparse


def add_parser(sub) -> None:
    p = sub.add_parser("export", help="export a registered model to ONNX",
                       description="Export a registered image model (mien.list_models()) to ONNX; the file is "
                                   "validated with onnx.checker and compared with PyTorch through onnxruntime.")
    p.add_argument("model", help="registered model name (e.g. faceapi-expression), or 'tokenizer' / 'au' / 'reenact' with "
                                 "--checkpoint")
    p.add_argument("checkpoint_pos", nargs="?", metavar="CKPT", help="the checkpoint (same as --checkpoint)")
    p.add_argument("-o", "--output", required=True,
                   help="output .onnx file (a folder for 'tokenizer' and for a feature-vector 'au' model)")
    p.add_argument("--checkpoint", help="Lightning checkpoint: for 'tokenizer' exported as config.json + "
                                        "model.safetensors (loadable without Lightning); for 'au' as ONNX (image "
                                        "models) or as au_default.safetensors + config.json (feature-vector "
                                        "models, -o DIR)")
    p.add_argument("--atol", type=float, default=1e-3, help="parity tolerance (default 1e-3)")
    p.add_argument("--au-data", metavar="DATASET", help="reenact: a prepared dataset to fit per-AU editing "
                                                        "directions of the expression latent on")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    if args.checkpoint_pos:
        if args.checkpoint and args.checkpoint != args.checkpoint_pos:
            raise ValueError("give the checkpoint once (CKPT or --checkpoint)")
        args.checkpoint = args.checkpoint_pos
    if args.model == "reenact":
        return _run_reenact(args)
    if args.model == "au":
        if not args.checkpoint:
            raise ValueError("mien export au needs --checkpoint CKPT")
        import os

        from mien.errors import InputError
        from mien.export.au import export_au_checkpoint

        if not os.path.isfile(args.checkpoint):
            raise InputError(args.checkpoint, "no such checkpoint")
        print(f"mien: wrote {export_au_checkpoint(args.checkpoint, args.output)}")
        return 0
    if args.model == "tokenizer":
        if not args.checkpoint:
            raise ValueError("mien export tokenizer needs --checkpoint CKPT")
        from mien.errors import InputError
        from mien.export.tokenizer import export_checkpoint

        try:
            out = export_checkpoint(args.checkpoint, args.output)
        except FileNotFoundError:
            raise InputError(args.checkpoint, "no such checkpoint") from None
        print(f"mien: wrote {out} (config.json + model.safetensors)")
        return 0
    from mien.export.onnx import export_registered

    try:
        report = export_registered(args.model, args.output, atol=args.atol)
    except KeyError as e:
        raise ValueError(str(e).strip("'\"")) from None
    print(f"mien: wrote {report.path} (opset {report.opset}); onnxruntime vs PyTorch max |diff| "
          f"{report.max_abs_diff:.2e}")
    return 0


def _run_reenact(args: argparse.Namespace) -> int:
    """``mien export reenact CKPT -o DIR [--au-data SHARDS]``."""
    import os

    from mien.errors import InputError

    if not args.checkpoint:
        raise ValueError("mien export reenact needs a checkpoint: mien export reenact CKPT -o DIR")
    if not os.path.isfile(args.checkpoint):
        raise InputError(args.checkpoint, "no such checkpoint")
    from mien.export.reenact import export_reenact_checkpoint

    out = export_reenact_checkpoint(args.checkpoint, args.output, au_data=args.au_data, atol=args.atol)
    print(f"mien: wrote {out} (config.json + model.safetensors)")
    return 0
