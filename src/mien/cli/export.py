"""``mien export``: a registered image model → ONNX (checked with onnxruntime), or a training checkpoint of a
task → the files analysis and generation load without Lightning.

Checkpoint kinds (:data:`CHECKPOINT_KINDS`): ``tokenizer``, ``reenact``, ``face3d``, ``reaction`` → a folder of
``config.json + model.safetensors`` (``reenact``: + per-AU editing directions, + ``student.onnx`` for a
student); ``au`` → ONNX (image models) or ``au_default.safetensors + config.json`` (feature-vector models).
"""

from __future__ import annotations

import argparse
import os
from collections.abc import Callable


def _tokenizer(args) -> str:
    from mien.errors import InputError
    from mien.export.tokenizer import export_checkpoint

    try:
        out = export_checkpoint(args.checkpoint, args.output, bank_data=args.bank_data, bank_method=args.bank_method,
                                val_fraction=args.val_fraction, val_time_fraction=args.val_time_fraction,
                                bank=args.bank, bank_k=args.bank_k, bank_temperature=args.bank_temperature,
                                bank_distance=args.bank_distance)
    except InputError:
        raise  # names its own file (the dataset)
    except ValueError as e:
        raise InputError(args.checkpoint, str(e)) from None
    return f"{out} (config.json + model.safetensors)"


def _au(args) -> str:
    from mien.export.au import export_au_checkpoint

    return str(export_au_checkpoint(args.checkpoint, args.output))


def _reenact(args) -> str:
    from mien.export.reenact import export_reenact_checkpoint

    out = export_reenact_checkpoint(args.checkpoint, args.output, au_data=args.au_data, atol=args.atol)
    return f"{out} (config.json + model.safetensors)"


def _face3d(args) -> str:
    from mien.errors import InputError
    from mien.export.face3d import export_face3d_checkpoint

    try:
        out = export_face3d_checkpoint(args.checkpoint, args.output, bn_data=args.bn_data,
                                       val_fraction=args.val_fraction, val_time_fraction=args.val_time_fraction)
    except InputError:
        raise  # names its own file (the dataset)
    except ValueError as e:
        raise InputError(args.checkpoint, str(e).split(": ", 1)[-1]) from None
    return f"{out} (config.json + model.safetensors)"


def _reaction(args) -> str:
    from mien.export.reaction import export_reaction_checkpoint

    kind, out = export_reaction_checkpoint(args.checkpoint, args.output)
    return f"{out} (reaction {kind}: config.json + model.safetensors)"


CHECKPOINT_KINDS: dict[str, Callable[[argparse.Namespace], str]] = {
    "tokenizer": _tokenizer, "au": _au, "reenact": _reenact, "face3d": _face3d, "reaction": _reaction,
}
"""``mien export <kind> CKPT -o OUT``: kind → the exporter (returns what it wrote, for the one-line report)."""


def add_parser(sub) -> None:
    from mien.models.tokenizer.config import BANK_DISTANCES

    p = sub.add_parser("export", help="export a registered model to ONNX, or a training checkpoint",
                       description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("model", help="registered model name (e.g. faceapi-expression), or a checkpoint kind: "
                                 + " / ".join(CHECKPOINT_KINDS) + " (with CKPT or --checkpoint)")
    p.add_argument("checkpoint_pos", nargs="?", metavar="CKPT", help="the checkpoint (same as --checkpoint)")
    p.add_argument("-o", "--output", required=True,
                   help="output .onnx file, or a folder for the checkpoint kinds (and a feature-vector 'au' model)")
    p.add_argument("--checkpoint", help="the Lightning checkpoint of a `mien train` run (for the checkpoint kinds)")
    p.add_argument("--atol", type=float, default=1e-3, help="parity tolerance (default 1e-3)")
    p.add_argument("--au-data", metavar="DATASET", help="reenact: a prepared dataset to fit per-AU editing "
                                                        "directions of the expression latent on")
    p.add_argument("--bn-data", metavar="DATASET", help="face3d: recompute the encoders' batch-norm statistics on "
                                                        "the training clips of this `mien prepare` dataset "
                                                        "(--val-fraction, --val-time-fraction as in training)")
    p.add_argument("--bank", type=int, metavar="N", help="tokenizer (warp decoder): add an exemplar bank of N "
                                                         "training frames per subject (with --bank-data)")
    p.add_argument("--bank-k", type=int, help="tokenizer --bank: entries blended (default 1)")
    p.add_argument("--bank-temperature", type=float,
                   help="tokenizer --bank: blend temperature, crop px of mesh distance (default 1)")
    p.add_argument("--bank-distance", choices=BANK_DISTANCES,
                   help="tokenizer --bank: mesh distance of the selection (default aligned)")
    p.add_argument("--bank-data", metavar="DATASET", help="tokenizer with exemplar banks (--bank or warp_bank > 0): "
                                                          "fill them from the training clips of this `mien prepare` "
                                                          "dataset (--val-fraction, --val-time-fraction as in "
                                                          "training)")
    p.add_argument("--bank-method", choices=("kmeans", "fps"), default="kmeans",
                   help="tokenizer --bank-data: how each subject's frames are chosen (default kmeans: needs "
                        "scikit-learn, mien[train])")
    p.add_argument("--val-fraction", type=float, default=0.1,
                   help="--bank-data / --bn-data: subject fraction held out, as in training (ClipDataModule; "
                        "default 0.1)")
    p.add_argument("--val-time-fraction", type=float, default=0.0,
                   help="--bank-data / --bn-data: fraction of each training video held out by time, as in training "
                        "(ClipDataModule; default 0)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from mien.errors import InputError

    if args.checkpoint_pos:
        if args.checkpoint and args.checkpoint != args.checkpoint_pos:
            raise ValueError("give the checkpoint once (CKPT or --checkpoint)")
        args.checkpoint = args.checkpoint_pos
    exporter = CHECKPOINT_KINDS.get(args.model)
    if exporter is not None:
        if not args.checkpoint:
            raise ValueError(f"mien export {args.model} needs a checkpoint: mien export {args.model} CKPT -o OUT")
        if not os.path.isfile(args.checkpoint):
            raise InputError(args.checkpoint, "no such checkpoint")
        try:
            print(f"mien: wrote {exporter(args)}")
        except FileNotFoundError:
            raise InputError(args.checkpoint, "no such checkpoint") from None
        return 0
    from mien.export.onnx import export_registered

    try:
        report = export_registered(args.model, args.output, atol=args.atol)
    except KeyError as e:
        raise ValueError(str(e).strip("'\"")) from None
    print(f"mien: wrote {report.path} (opset {report.opset}); onnxruntime vs PyTorch max |diff| "
          f"{report.max_abs_diff:.2e}")
    return 0
