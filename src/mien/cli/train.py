"""``mien train <task> <fit|validate|…> --config …``: LightningCLI for mien's training tasks.

Everything after the task name goes to Lightning's CLI (``--trainer.devices``, ``--trainer.num_nodes``,
``--model.*``, ``--data.*``, ``--ckpt_path`` to resume). ``--config NAME`` also accepts the name of a config
shipped in ``mien/configs/<task>/`` (e.g. ``tiny``).
"""

from __future__ import annotations

import argparse
import os

TASKS = ("tokenizer", "predictor")


def add_parser(sub) -> None:
    p = sub.add_parser("train", help="train a model (Lightning CLI)", add_help=True,
                       description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("task", choices=TASKS, help="what to train")
    p.add_argument("args", nargs=argparse.REMAINDER, help="Lightning CLI arguments, e.g. fit --config tiny")
    p.set_defaults(func=run)


def resolve_configs(task: str, args: list[str]) -> list[str]:
    """Replace ``--config NAME`` by the shipped YAML when NAME is not an existing file."""
    from mien.tasks.tokenizer import default_config

    out = list(args)
    for i, a in enumerate(out):
        value, prefix = None, None
        if a == "--config" and i + 1 < len(out):
            value, idx = out[i + 1], i + 1
        elif a.startswith("--config="):
            value, idx, prefix = a.split("=", 1)[1], i, "--config="
        if value is not None and not os.path.exists(value):
            name = value if task == "tokenizer" else f"predictor_{value}"
            path = default_config(name)
            if path.is_file():
                out[idx] = f"{prefix}{path}" if prefix else str(path)
    return out


def run(args: argparse.Namespace) -> int:
    import sys

    from mien.tasks.tokenizer import cli_main

    argv0 = sys.argv
    sys.argv = argv0[:1]  # the arguments go to LightningCLI explicitly; it warns when it sees them twice
    try:
        cli_main(resolve_configs(args.task, args.args), task=args.task)
    finally:
        sys.argv = argv0
    return 0
