"""Expression transfer of an expression tokenizer on the held-out segments of several videos (issue 9 targets).

For every source video (default: the expressive clips ``shared/data/videos/expressive``) whose subject the
tokenizer knows, the held-out last quarter (the start recorded by ``benchmarks/tokenizer_evidence.py --json``)
goes through :func:`mien.pipelines.token_eval.transfer_report` (the measures of ``mien evaluate tokens --source``:
face-api emotion agreement with the source, mien AU agreement, CSIM to the target, and the copy-source /
target-mean-frame baselines) against each target person (``--target``, one or more known subjects; a source video
of the target's own subject is skipped for that target); the rows are pooled over the videos of each target and
then over all targets (agreements weighted by pairs, CSIM averaged over videos).

Usage:
    python benchmarks/tokenizer_transfer.py --tokenizer runs/model --report runs/report.json \\
        --target ../shared/data/videos/talking/WDA_KatieHill_000.mp4 [MORE_TARGETS ...] [--every 2] \\
        [--max-frames 32] [--json OUT]
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np

DATA = Path(__file__).resolve().parents[2] / "shared/data"


def parse_args(argv=None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--tokenizer", required=True, type=Path, help="exported tokenizer folder")
    ap.add_argument("--report", required=True, type=Path,
                    help="tokenizer_evidence.py --json output (subject ids and held-out start per video)")
    ap.add_argument("--sources", type=Path, default=DATA / "videos/expressive", help="folder of source videos")
    ap.add_argument("--target", type=Path, nargs="+", required=True,
                    help="the identity-swap targets' videos (known subjects)")
    ap.add_argument("--anchor", choices=("neutral", "reference"), default="neutral",
                    help="identity-swap anchor of a banked warp tokenizer (reference: the swap before neutral meshes)")
    ap.add_argument("--every", type=int, default=2)
    ap.add_argument("--max-frames", type=int, default=32, help="source frames per video (evenly spread)")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--json", type=Path, default=None)
    return ap.parse_args(argv)


def pool(per_video: dict[str, dict]) -> dict[str, dict]:
    """Pairs-weighted agreements and video-mean CSIM of each row over the videos' transfer reports."""
    rows: dict[str, dict] = {}
    names = next(iter(per_video.values()))["rows"].keys()
    for name in names:
        rs = [v["rows"][name] for v in per_video.values()]
        out: dict = {}
        for key, weight in (("emotion_agreement", "pairs"), ("emotion_agreement_expressive", "pairs_expressive"),
                            ("au_agreement", "pairs_with_faces"),
                            ("au_abs_diff", "pairs_with_faces")):
            vals = [(r[key], r[weight]) for r in rs if key in r and r[key] == r[key] and r.get(weight)]
            if vals:
                out[key] = float(sum(v * w for v, w in vals) / sum(w for _, w in vals))
        if any("csim_target" in r for r in rs):
            out["csim_target"] = float(np.nanmean([r["csim_target"] for r in rs if "csim_target" in r]))
        for key in ("pairs", "pairs_with_faces", "pairs_expressive"):
            if any(key in r for r in rs):
                out[key] = int(sum(r.get(key, 0) for r in rs))
        rows[name] = out
    return rows


def main(argv=None) -> None:
    args = parse_args(argv)
    import torch

    torch.set_num_threads(args.threads)
    from mien.cli.evaluate_tokens import markdown
    from mien.heads.tokens import TokenExtractor
    from mien.pipelines import token_eval as te

    rep = json.loads(args.report.read_text())
    subjects, starts = rep["subjects"], rep["held_out_start_sec"]
    unknown = [t.name for t in args.target if t.name not in subjects]
    if unknown:
        raise SystemExit(f"targets not known to the tokenizer: {unknown}")
    ex = TokenExtractor(args.tokenizer)
    sources = {}  # held-out source crops, read once for all targets
    for video in sorted(args.sources.glob("*.mp4")):
        if video.name not in subjects or video.name not in starts:
            print(f"skipping {video.name}: not a known subject with a held-out segment")
            continue
        src, missing = te.collect_crops(video, ex, starts[video.name], None, args.every, args.max_frames)
        if len(src) < 2:
            print(f"skipping {video.name}: {len(src)} frames with a face in the held-out segment")
            continue
        sources[video.name] = (src, missing)
    measures = te.FaceMeasures(ex.device)
    per_target = {}
    try:
        for target_video in args.target:
            target_subject = subjects[target_video.name]
            target, _ = te.collect_crops(target_video, ex, every=args.every, max_frames=args.max_frames)
            per_video = {}
            for name, (src, missing) in sources.items():
                if subjects[name] == target_subject:
                    print(f"{target_video.name}: skipping {name}, the target's own subject (not an identity swap)")
                    continue
                frames = te.TransferFrames(src, subjects[name], target, target_subject, {"source": missing})
                per_video[name] = te.transfer_report(frames, ex, measures, anchor=args.anchor)
            if not per_video:
                print(f"skipping target {target_video.name}: no source video of another subject")
                continue
            pooled = {"rows": pool(per_video), "source_frames": sum(v["source_frames"] for v in per_video.values()),
                      "target_frames": len(target), "source_subject": "all", "target_subject": target_subject}
            print(markdown({"tokenizer": f"{ex.name}: {len(per_video)} held-out segments → {target_video.name}",
                            "transfer": pooled}), flush=True)
            per_target[target_video.name] = {"per_video": per_video, "pooled": pooled}
    finally:
        measures.close()
    if not per_target:
        raise SystemExit("no target had a source video of another subject")
    videos = {f"{t} <- {v}": r for t, pt in per_target.items() for v, r in pt["per_video"].items()}
    overall = {"rows": pool(videos), "source_frames": sum(v["source_frames"] for v in videos.values()),
               "target_frames": sum(pt["pooled"]["target_frames"] for pt in per_target.values()),
               "source_subject": "all", "target_subject": f"{len(per_target)} targets"}
    if len(per_target) > 1:
        print(markdown({"tokenizer": f"{ex.name}: pooled over {len(per_target)} targets", "transfer": overall}))
    if args.json:
        args.json.write_text(json.dumps({"per_target": per_target, "pooled": overall}, indent=1, default=float))


if __name__ == "__main__":
    main()
