"""Build the small REAL dyadic smoke set for listener-reaction models from ../shared/data/videos.

SMOKE SET, NOT A BENCHMARK: the clips are monologues (talking heads, expressive clips) recorded separately;
pairing two of them as "speaker" and "listener" runs every step of the pipeline on real faces and real audio,
but the "listener" never saw the "speaker", so metrics on it say nothing about reaction quality.

Steps: every clip with an audio track → identity of its face (face-api FaceRecognitionNet descriptor over the
first second, :func:`mien.analyze`); clips closer than 0.5 (the re-identification threshold) are one subject
→ subjects split into train / held-out (subject-disjoint, seeded) → within each split consecutive clips of
different subjects form dyads (each clip is speaker in one dyad and listener in another) → ``mien prepare
--mode dyadic`` (first ``--end`` s of each pair) into ``OUT/train`` and ``OUT/heldout``, each with its
appropriateness matrix (speaker similarity, :func:`mien.data.react.shards.appropriateness_from_speakers`).

Usage: python scripts/build_dyadic_smoke.py [--out /work/scratch-react-data/dyadic] [--end 10] [--seed 0]
"""

from __future__ import annotations

import argparse
import json
import random
import sys
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared" / "data"


def clips_with_audio(videos: Path) -> list[Path]:
    import av

    out = []
    for p in sorted(videos.glob("*/*.mp4")):
        with av.open(str(p)) as c:
            if c.streams.audio:
                out.append(p)
    return out


def subjects(clips: list[Path], threshold: float = 0.5) -> dict[str, str]:
    """clip name → subject name (the first clip of its identity group), by face-api descriptors."""
    import mien

    desc = {}
    for p in clips:
        r = mien.analyze(p, end=1.0, identity=True)
        d = (r.meta.get("identity") or {}).get("descriptors") or {}
        if d:
            desc[p.name] = np.asarray(next(iter(d.values())), np.float64)
    names = list(desc)
    parent = {n: n for n in names}

    def find(n):
        while parent[n] != n:
            n = parent[n]
        return n

    for i, a in enumerate(names):
        for b in names[i + 1:]:
            if np.linalg.norm(desc[a] - desc[b]) < threshold:
                parent[find(b)] = find(a)
    return {n: find(n) for n in names}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", default="/work/scratch-react-data/dyadic")
    ap.add_argument("--end", type=float, default=10.0, help="seconds of each pair used")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--heldout-share", type=float, default=0.3)
    args = ap.parse_args(argv)
    from mien.pipelines.prepare import PrepareOptions, prepare

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    clips = clips_with_audio(SHARED / "videos")
    subj = subjects(clips)
    by_name = {p.name: p for p in clips}
    groups = sorted(set(subj.values()))
    random.Random(args.seed).shuffle(groups)
    n_held = max(2, round(args.heldout_share * len(groups)))
    held = set(groups[:n_held])
    splits = {"train": [n for n in subj if subj[n] not in held], "heldout": [n for n in subj if subj[n] in held]}
    info = {"note": "SMOKE SET, NOT A BENCHMARK: separately recorded monologues paired as speaker/listener",
            "end_seconds": args.end, "seed": args.seed, "subjects": subj, "splits": {}}
    for split, names in splits.items():
        pairs = []
        for i, a in enumerate(names):
            b = names[(i + 1) % len(names)]
            if subj[a] != subj[b] and a != b:
                pairs.append((f"{Path(a).stem}--{Path(b).stem}", str(by_name[a]), str(by_name[b])))
        csv_path = out / f"{split}_pairs.csv"
        csv_path.write_text("session,speaker_video,listener_video\n" + "".join(",".join(p) + "\n" for p in pairs))
        rep = prepare([str(csv_path)], str(out / split), PrepareOptions(mode="dyadic", end=args.end),
                      log=lambda line: print(f"skipped {line}", file=sys.stderr))
        info["splits"][split] = {"clips": names, "subjects": sorted({subj[n] for n in names}), "dyads": rep.samples,
                                 "items": 2 * rep.samples, "failed": rep.failed,
                                 "seconds": round(rep.source_seconds, 1)}
        print(f"{split}: {rep.samples} dyads ({len(rep.failed)} failed), {rep.source_seconds:.0f} s, "
              f"{len(info['splits'][split]['subjects'])} subjects")
    assert not set(info["splits"]["train"]["subjects"]) & set(info["splits"]["heldout"]["subjects"])
    (out / "smoke_set.json").write_text(json.dumps(info, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
