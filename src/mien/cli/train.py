"""``mien train <task> <fit|validate|…> --config …``: LightningCLI for mien's training tasks.

Everything after the task name goes to Lightning's CLI (``--trainer.devices``, ``--trainer.num_nodes``,
``--model.*``, ``--data.*``, ``--ckpt_path`` to resume). ``--config NAME`` also accepts the name of a config
shipped in ``mien/configs/<task>/`` (e.g. ``tiny``).
"""

from __future__ import annotations

import argparse
import os

TASKS = ("tokenizer", "predictor", "au")


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
    # sys.argv stays as it is: Lightning's DDP launcher re-runs it to start the other ranks
    if args.task == "au":
        from mien.tasks.au import cli_main as au_cli_main

        au_cli_main(args.args)  # resolves --config NAME against mien/configs/au itself
        return 0
    from mien.tasks.tokenizer import cli_main

    cli_main(resolve_configs(args.task, args.args), task=args.task)
    return 0
