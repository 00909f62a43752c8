"""``mien evaluate reaction``: a reaction model vs the REACT sanity baselines on held-out dyadic windows."""

from __future__ import annotations

import argparse
import json


def add_parser(kinds) -> None:
    p = kinds.add_parser("reaction", help="listener-reaction model vs baselines (REACT metrics)",
                         description="Generate R reactions per held-out speaker window with the model (offline and "
                                     "online) and score it with the REACT metrics (official and corrected) next to "
                                     "the random-training-listener, mirror and nearest-neighbour baselines and the "
                                     "appropriate-listener oracle (mien.pipelines.react_eval).")
    p.add_argument("--model", required=True, metavar="DIR", help="reaction model folder (mien export reaction)")
    p.add_argument("--data", required=True, metavar="ROOT", help="dyadic dataset (mien prepare --mode dyadic)")
    p.add_argument("--val-root", metavar="ROOT", help="separate held-out dyadic dataset (else held-out sessions)")
    p.add_argument("--val-fraction", type=float, default=0.25,
                   help="fraction of sessions held out (the training data module's split; default 0.25)")
    p.add_argument("--val-sessions", default="", metavar="A,B", help="held-out session names (comma-separated)")
    p.add_argument("--exclude-sessions", default="", metavar="A,B",
                   help="sessions in neither set (as excluded in training; comma-separated)")
    p.add_argument("--split-seed", type=int, default=0, help="seed of the session split (default 0)")
    p.add_argument("--window", type=int, default=100, help="frames per evaluated window (default 100, >= 51)")
    p.add_argument("-n", "--n", type=int, default=10, help="reactions per speaker R (default 10)")
    p.add_argument("--mode", choices=("both", "offline", "online"), default="both", help="model decoding")
    p.add_argument("--seed", type=int, default=0, help="sampling seed (default 0)")
    p.add_argument("--temperature", type=float, default=1.0, help="sampling temperature (default 1)")
    p.add_argument("-o", "--output", metavar="REPORT", help="write REPORT.md and REPORT.json")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from mien.io.atomic import atomic_output
    from mien.pipelines.react_eval import evaluate_reactions, markdown_table

    online = {"both": (False, True), "offline": (False,), "online": (True,)}[args.mode]
    sessions = [s.strip() for s in args.val_sessions.split(",") if s.strip()] or None
    exclude = [s.strip() for s in args.exclude_sessions.split(",") if s.strip()] or None
    report = evaluate_reactions(args.model, args.data, val_root=args.val_root, val_fraction=args.val_fraction,
                                val_sessions=sessions, exclude_sessions=exclude, split_seed=args.split_seed, window=args.window, n=args.n,
                                online=online, seed=args.seed, temperature=args.temperature)
    table = markdown_table(report)
    print(table)
    if args.output:
        stem = args.output[:-3] if args.output.endswith(".md") else args.output
        with atomic_output(stem + ".md") as tmp:
            tmp.write_text(table)
        with atomic_output(stem + ".json") as tmp:
            tmp.write_text(json.dumps(report, indent=2))
        print(f"mien: wrote {stem}.md and {stem}.json")
    return 0
