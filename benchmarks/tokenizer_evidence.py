"""Evidence for the expression tokenizer (issue: seed 1): train the tiny config on shards prepared from real
talking-head clips, then measure reconstruction PSNR/SSIM on held-out time segments — plain, with each frame's
token replaced by another frame's token of the same subject, and with the subject embedding swapped.

Usage:
    python benchmarks/tokenizer_evidence.py [--steps 600] [--videos DIR] [--out DIR]

Held-out frames: per video, the clips in the last quarter of the video (never trained on). All on CPU.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np

DEFAULT = Path(__file__).resolve().parents[2] / "shared/data/videos/talking"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--videos", type=Path, default=DEFAULT)
    ap.add_argument("--steps", type=int, default=600)
    ap.add_argument("--model", default="tokenizer-tiny")
    ap.add_argument("--out", type=Path, default=None, help="dataset folder (default: a temporary folder)")
    args = ap.parse_args()

    import lightning.pytorch as pl
    import torch

    from mien.data import ClipDataset
    from mien.metrics import tokenizer_swap_report
    from mien.pipelines.prepare import PrepareOptions, prepare
    from mien.tasks.tokenizer import TokenizerTask

    torch.set_num_threads(2)
    videos = sorted(str(p) for p in args.videos.glob("*.mp4"))
    out = args.out or Path(tempfile.mkdtemp(prefix="mien_tok_"))
    t0 = time.perf_counter()
    prepare(videos, str(out), PrepareOptions(mode="all", clip_seconds=0.8, fps=10.0, crop_size=64), workers=2)
    print(f"prepared {len(videos)} videos into {out} in {time.perf_counter() - t0:.0f} s")

    clips = [(s["video"], int(s["meta"]["subject_id"]), float(s["meta"]["start_sec"]), s["meta"]["source"])
             for s in ClipDataset(str(out), split_nodes=False, split_workers=False, audio=False)]
    last = {}
    for _, _, start, src in clips:
        last[src] = max(last.get(src, 0.0), start)
    train = [(v, s) for v, s, start, src in clips if start < 0.75 * last[src]]
    held = [(v, s) for v, s, start, src in clips if start >= 0.75 * last[src]]
    print(f"{len(train)} training clips, {len(held)} held-out clips, {len(last)} subjects")

    frames = torch.stack([v for v, _ in train])
    ids = torch.tensor([s for _, s in train])
    loader = torch.utils.data.DataLoader(torch.utils.data.TensorDataset(frames, ids), batch_size=8, shuffle=True)
    task = TokenizerTask(model=args.model, model_overrides={"max_subjects": max(16, len(last))}, lr=3e-3,
                         min_lr=1e-4, warmup_steps=50, total_steps=args.steps, recon_weights=(1.0, 1.0, 1.0),
                         temporal_weights=(0.0, 0.05, 0.05), diversity_weights=(0.0, 0.05, 0.05),
                         diversity_scope="batch")
    trainer = pl.Trainer(accelerator="cpu", max_steps=args.steps, logger=False, enable_checkpointing=False,
                         enable_progress_bar=False, enable_model_summary=False, gradient_clip_val=1.0)
    t0 = time.perf_counter()
    trainer.fit(task, loader)
    print(f"trained {args.steps} steps in {time.perf_counter() - t0:.0f} s")

    hf = torch.cat([v for v, _ in held]).float() / 255.0  # (N·T, 3, S, S)
    hi = torch.cat([torch.full((v.shape[0],), s) for v, s in held])
    rep = tokenizer_swap_report(task.model, hf, hi)
    print(f"\nheld-out frames: {int(rep['n_frames']['value'])}")
    print(f"{'condition':16s} {'PSNR dB':>8s} {'SSIM':>6s}")
    for k in ("reconstruction", "token_swap", "subject_swap"):
        if k in rep:
            print(f"{k:16s} {rep[k]['psnr']:8.2f} {rep[k]['ssim']:6.3f}")
    mean_img = hf.mean(0, keepdim=True).expand_as(hf)
    from mien.metrics import image_quality

    print(f"{'mean image':16s} {image_quality(mean_img, hf)['psnr']:8.2f} {image_quality(mean_img, hf)['ssim']:6.3f}")
    sims = []
    with torch.inference_mode():
        for v, s in held:
            z = task.model.encode(v[None].float() / 255.0, torch.tensor([s]))[0]
            sims.append(float((z @ z.T).mean()))
    print(f"mean within-clip token cosine (held-out): {np.mean(sims):.4f}")


if __name__ == "__main__":
    main()
