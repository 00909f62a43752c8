"""``mien`` entry point: one subcommand per module in :mod:`mien.cli`."""

from __future__ import annotations

import argparse
import sys

from mien._version import __version__


def build_parser() -> argparse.ArgumentParser:
    from mien.cli import (
        analyze,
        app,
        dataset,
        demo,
        evaluate,
        export,
        models,
        prepare,
        react,
        reenact,
        render,
        tokens,
        train,
    )

    parser = argparse.ArgumentParser(prog="mien", description="Facial expression analysis and synthesis.")
    parser.add_argument("--version", action="version", version=f"mien {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for module in (analyze, demo, models, prepare, dataset, train, evaluate, export, render, reenact, tokens, react,
                   app):
        module.add_parser(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Run the CLI; returns the exit status (0 ok, 1 some inputs failed, 2 bad input or usage)."""
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except ValueError as e:  # InputError is a ValueError: a bad input or option value, one line, status 2
        print(f"mien: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("mien: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
