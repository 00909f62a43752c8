"""``mien models``: model utilities (``convert-faceapi``)."""

from __future__ import annotations

import argparse


def add_parser(sub) -> None:
    p = sub.add_parser("models", help="model utilities")
    msub = p.add_subparsers(dest="models_command", required=True, metavar="ACTION")
    c = msub.add_parser("convert-faceapi", help="convert the TF.js weights of @vladmandic/face-api to safetensors",
                        description="PACKAGE_DIR is an unpacked `npm pack @vladmandic/face-api` (the folder that "
                                    "holds model/). Writes face_expression.safetensors and "
                                    "face_recognition.safetensors into OUT_DIR.")
    c.add_argument("package_dir")
    c.add_argument("out_dir")
    c.add_argument("--float32", action="store_true", help="store the recognition net as float32 too")
    c.set_defaults(func=run_convert)


def run_convert(args: argparse.Namespace) -> int:
    from mien.models.faceapi.convert import NETS, convert_faceapi

    dtypes = {n: "float32" for n in NETS} if args.float32 else None
    for net, path in convert_faceapi(args.package_dir, args.out_dir, dtypes=dtypes).items():
        print(f"{net}: {path} ({path.stat().st_size} bytes)")
    return 0
