"""``mien evaluate tokens --tokenizer DIR``: does the tokenizer carry expression? Subject-disjoint linear probes
from its tokens to CK+ Action Units and CK+48 emotion (beside its pooled backbone features and mien's AU features),
and, with ``--source``/``--target``, expression-transfer measures of token swaps and identity swaps on held-out
frames (face-api emotion agreement, mien AU agreement, CSIM to the target next to the target's mean frame).
See :mod:`mien.pipelines.token_eval`. Output: a Markdown report (stdout or ``-o``) and ``--json``."""

from __future__ import annotations

import argparse
import json
import os
from pathlib import Path


def _default_data() -> str:
    return os.environ.get("MIEN_SHARED_DATA", str(Path.cwd().parent / "shared" / "data"))


def add_parser(kinds) -> None:
    p = kinds.add_parser("tokens", help="expression tokenizer: linear probes (AUs, emotion) and swap transfer",
                         description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--tokenizer", required=True, metavar="DIR", help="exported tokenizer folder")
    p.add_argument("--data", default=None, metavar="DIR",
                   help="shared data folder with expressions/ckplus48* (default $MIEN_SHARED_DATA or ../shared/data)")
    p.add_argument("--no-probes", action="store_true", help="skip the CK+ probes")
    p.add_argument("--max-subjects", type=int, default=None, metavar="N", help="probe on N CK+ subjects only")
    p.add_argument("--folds", type=int, default=5, help="subject-disjoint probe folds (default 5)")
    p.add_argument("--source", default=None, metavar="VIDEO", help="held-out source frames for the transfer measures")
    p.add_argument("--source-subject", type=int, default=0, metavar="ID", help="the source's subject id")
    p.add_argument("--start", type=float, default=None, metavar="SEC", help="source: first time (held-out part)")
    p.add_argument("--end", type=float, default=None, metavar="SEC", help="source: last time")
    p.add_argument("--every", type=int, default=1, metavar="N", help="source/target: every N-th frame")
    p.add_argument("--max-frames", type=int, default=64, metavar="N", help="at most N source frames (default 64)")
    p.add_argument("--target", default=None, metavar="VIDEO", help="target person's frames (CSIM reference)")
    p.add_argument("--target-subject", type=int, default=1, metavar="ID", help="the target's subject id")
    p.add_argument("--target-start", type=float, default=None, metavar="SEC")
    p.add_argument("--target-end", type=float, default=None, metavar="SEC")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--device", default="cpu")
    p.add_argument("-o", "--output", default=None, metavar="REPORT.md", help="write the Markdown report here")
    p.add_argument("--json", default=None, metavar="FILE.json", help="write all numbers here")
    p.set_defaults(func=run)


def _f(v, nd: int = 3) -> str:
    return "—" if v is None or v != v else f"{v:.{nd}f}"


def markdown(report: dict) -> str:
    """The Markdown tables of a ``mien evaluate tokens`` report."""
    lines = [f"# `mien evaluate tokens`: {report['tokenizer']}", ""]
    pr = report.get("probes")
    if pr:
        n, tot = pr["faces"]["au"]
        lines += [f"## Linear probes (subject-disjoint {pr['folds']}-fold; CK+ FACS frames with a face: {n}/{tot}; "
                  f"CK+48 emotion images: {pr['faces']['emotion'][0]}/{pr['faces']['emotion'][1]})", "",
                  f"| representation | dim | AU mean F1 (≥ {pr['min_positives']} positives) | AU mean AUC | AUs in mean "
                  "| emotion accuracy | emotion balanced acc. |", "|---|---|---|---|---|---|---|"]
        for rep, a in pr["au"].items():
            e = pr["emotion"][rep]
            lines.append(f"| {rep} | {pr['dims'][rep]} | {_f(a['mean_f1'])} | {_f(a['mean_auc'])} | {a['aus_in_mean']} "
                         f"| {_f(e['accuracy'])} | {_f(e['balanced_accuracy'])} |")
        reps = list(pr["au"])
        lines += ["", "| AU | positives | " + " | ".join(f"{r} F1 / AUC" for r in reps) + " |",
                  "|---|---|" + "---|" * len(reps)]
        for au, v in pr["au"][reps[0]]["per_au"].items():
            cells = " | ".join(f"{_f(pr['au'][r]['per_au'][au]['f1'])} / {_f(pr['au'][r]['per_au'][au]['auc'])}"
                               for r in reps)
            lines.append(f"| {au} | {v['positives']} | {cells} |")
        lines.append("")
    tr = report.get("transfer")
    if tr:
        anchor = f"; swap anchored at the {tr['anchor']}" if tr.get("anchor") else ""
        lines += [f"## Expression transfer ({tr['source_frames']} source frames, subject {tr['source_subject']} → "
                  f"target subject {tr['target_subject']}, {tr['target_frames']} target frames{anchor})", "",
                  "| condition | emotion agreement | emotion agr., source not neutral (pairs) | AU agreement "
                  "| AU mean abs. diff | CSIM to target | pairs (with faces) |",
                  "|---|---|---|---|---|---|---|"]
        for name, r in tr["rows"].items():
            expr = f"{_f(r.get('emotion_agreement_expressive'))} ({r['pairs_expressive']})" \
                if "pairs_expressive" in r else "—"
            lines.append(f"| {name} | {_f(r.get('emotion_agreement'))} | {expr} | {_f(r.get('au_agreement'))} | "
                         f"{_f(r.get('au_abs_diff'))} | {_f(r.get('csim_target'))} | {r.get('pairs', '')}"
                         f"{' (' + str(r['pairs_with_faces']) + ')' if 'pairs_with_faces' in r else ''} |")
        lines.append("")
    return "\n".join(lines)


def run(args: argparse.Namespace) -> int:
    from mien.errors import InputError
    from mien.heads.tokens import TokenExtractor
    from mien.pipelines import token_eval as te

    ex = TokenExtractor(args.tokenizer, args.device)
    report: dict = {"tokenizer": ex.name}
    if not args.no_probes:
        au, emo = te.load_ckplus(args.data or _default_data(), args.max_subjects, args.seed)
        pr = te.probe_report(au, emo, ex, folds=args.folds, seed=args.seed)
        report["probes"] = pr
    if args.source:
        if not args.target:
            raise InputError(args.source, "--source needs --target (the identity-swap target's video)")
        src, miss_s = te.collect_crops(args.source, ex, args.start, args.end, args.every, args.max_frames)
        tgt, miss_t = te.collect_crops(args.target, ex, args.target_start, args.target_end, args.every,
                                       args.max_frames)
        if len(src) < 2:
            raise InputError(args.source, f"only {len(src)} frames with a face in the chosen window")
        if len(tgt) == 0:
            raise InputError(args.target, "no frame with a face in the chosen window")
        frames = te.TransferFrames(src, args.source_subject, tgt, args.target_subject,
                                   {"source": miss_s, "target": miss_t})
        report["transfer"] = te.transfer_report(frames, ex, seed=args.seed)
        report["transfer"]["frames_without_face"] = frames.frames_without_face
    if "probes" not in report and "transfer" not in report:
        raise InputError(args.tokenizer, "nothing to evaluate: --no-probes without --source")
    md = markdown(report)
    if args.output:
        from mien.io.atomic import atomic_output

        with atomic_output(args.output) as tmp:
            Path(tmp).write_text(md)
    else:
        print(md)
    if args.json:
        from mien.io.atomic import atomic_output

        with atomic_output(args.json) as tmp:
            Path(tmp).write_text(json.dumps(report, indent=1, default=float))
    return 0

