"""``mien evaluate KIND …``: held-out evaluation reports of mien's models, with the field's standard metrics and
the simple baselines computed by the same command.

Each kind is one module of :mod:`mien.cli` with ``add_parser(kinds)`` (adding its sub-parser to the
``mien evaluate`` sub-parsers and setting ``func``); :data:`KINDS` lists them.
"""

from __future__ import annotations

import argparse
import importlib

KINDS: dict[str, str] = {
    # kind -> module of mien.cli that adds its sub-parser (one line per kind)
    "face3d": "mien.cli.evaluate_face3d",
    "reaction": "mien.cli.evaluate_reaction",
    "reenact": "mien.cli.evaluate_reenact",
    "tokens": "mien.cli.evaluate_tokens",
}
"""The evaluation kinds: ``mien evaluate <kind>`` -> the :mod:`mien.cli` module that defines it."""


def add_parser(sub) -> None:
    p = sub.add_parser("evaluate", help="evaluate a model on held-out data (metrics + baselines)",
                       description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    kinds = p.add_subparsers(dest="evaluate_kind", required=True, metavar="KIND")
    for module in KINDS.values():
        importlib.import_module(module).add_parser(kinds)
