"""``mien demo``: run the main job on the bundled sample video."""

from __future__ import annotations

import argparse
from importlib import resources

SAMPLE = "sample_wolfgang_langer_pexels.mp4"


def add_parser(sub) -> None:
    p = sub.add_parser("demo", help="analyse the bundled sample video and print where the outputs are")
    p.add_argument("-o", "--output", default="mien_demo", help="output folder (default: mien_demo)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    import os

    from mien.pipelines.analyze import AnalyzeOptions
    from mien.pipelines.batch import analyze_files

    with resources.as_file(resources.files("mien.assets").joinpath(SAMPLE)) as sample:
        print(f"mien demo: analysing the bundled sample {SAMPLE} (Pexels licence, see mien/assets/NOTICE.md)")
        report = analyze_files([str(sample)], args.output, AnalyzeOptions(), formats=("parquet", "openface"),
                               overwrite=True)
    entry = report.ok[0]
    print(f"mien demo: {entry['frames']} frames, {entry['faces']} face track(s), {entry['seconds']:.1f} s")
    for kind, path in entry["outputs"].items():
        print(f"  {kind:9s} {os.path.abspath(path)}")
    return 0
