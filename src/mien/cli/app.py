"""``mien app``: the local web app (Gradio; ``pip install "mien[app]"``), one tab per capability."""

from __future__ import annotations

import argparse


def add_parser(sub) -> None:
    p = sub.add_parser("app", help="start the local web app (Analyze, Live webcam, Tokens, 3-D, Datasets)",
                       description="Serve mien's web app on http://HOST:PORT. It listens on 127.0.0.1 only "
                                   "unless --host says otherwise; uploads and results stay in a private "
                                   "temporary folder that is removed on exit.")
    p.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1: this machine "
                                                       "only; 0.0.0.0 exposes the app to the network)")
    p.add_argument("--port", type=int, default=7860, help="port (default 7860)")
    p.add_argument("--models", default=None, metavar="DIR",
                   help="folder of exported models as sub-folders; each tab lists its own family (`mien export "
                        "tokenizer`, `mien export reenact`, `mien export reaction`)")
    p.add_argument("--datasets", nargs="*", default=[], metavar="DIR",
                   help="prepared datasets (`mien prepare` outputs) to show in the Datasets tab")
    p.add_argument("--max-upload-mb", type=float, default=200.0, metavar="MB", help="largest upload (default 200)")
    p.add_argument("--max-video-seconds", type=float, default=600.0, metavar="SEC",
                   help="longest video accepted (default 600)")
    p.add_argument("--concurrency", type=int, default=1, metavar="N",
                   help="analyses/renders run at once; more wait in the queue (default 1)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    import importlib.util

    if importlib.util.find_spec("gradio") is None:
        raise ValueError('mien app needs Gradio: pip install "mien[app]"')
    if args.concurrency < 1:
        raise ValueError(f"--concurrency must be >= 1, got {args.concurrency}")
    from mien.app.main import make_context, serve
    from mien.app.safety import Limits

    ctx = make_context(args.models, args.datasets, Limits(args.max_upload_mb, args.max_video_seconds),
                       args.concurrency)
    print(f"mien app: http://{args.host}:{args.port}  (Ctrl-C to stop; uploads and results in {ctx.files.root}, "
          "removed on exit)", flush=True)
    serve(ctx, args.host, args.port, block=True, quiet=True)
    return 0
