"""Evidence for the expression tokenizer (issue: seed 1): train the tiny config on shards prepared from real
talking-head clips, then measure reconstruction PSNR/SSIM on held-out time segments — plain, with each frame's
token replaced by another frame's token of the same subject, and with the subject embedding swapped.

Usage:
    python benchmarks/tokenizer_evidence.py [--steps 600] [--videos DIR] [--out DIR]

Held-out frames: per video, the clips in the last quarter of the video (never trained on). All on CPU.
"""

from __future__ import annotations

import argparse
import json
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
    ap.add_argument("--out", type=Path, default=None,
                    help="dataset folder (default: a temporary folder); an existing prepared folder is reused")
    ap.add_argument("--lr", type=float, default=3e-3)
    ap.add_argument("--batch-size", type=int, default=8)
    ap.add_argument("--motion-gain", type=float, default=0.0, help="TokenizerTask.motion_gain (0: uniform MSE)")
    ap.add_argument("--temporal", type=float, default=0.05, help="peak/final temporal-loss weight")
    ap.add_argument("--diversity", type=float, default=0.05, help="peak/final diversity-loss weight")
    ap.add_argument("--variance", type=float, default=0.0, help="peak/final within-clip variance-loss weight")
    ap.add_argument("--variance-target", type=float, default=0.1)
    ap.add_argument("--diversity-scope", choices=["clip", "batch"], default="batch")
    ap.add_argument("--overrides", type=json.loads, default={},
                    help='JSON model_overrides, e.g. \'{"dim": 64, "decoder_channels": 64}\'')
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--save", type=Path, default=None, help="export the trained model here (config + safetensors)")
    args = ap.parse_args()

    import lightning.pytorch as pl
    import torch

    from mien.data import ClipDataset
    from mien.metrics import tokenizer_swap_report
    from mien.pipelines.prepare import PrepareOptions, prepare
    from mien.tasks.tokenizer import TokenizerTask

    torch.set_num_threads(args.threads)
    pl.seed_everything(args.seed, verbose=False)
    videos = sorted(str(p) for p in args.videos.glob("*.mp4"))
    out = args.out or Path(tempfile.mkdtemp(prefix="mien_tok_"))
    t0 = time.perf_counter()
    prepare(videos, str(out), PrepareOptions(mode="all", clip_seconds=0.8, fps=10.0, crop_size=64), workers=2)
    print(f"prepared {len(videos)} videos into {out} in {time.perf_counter() - t0:.0f} s (resumed when present)")

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
    loader = torch.utils.data.DataLoader(torch.utils.data.TensorDataset(frames, ids), batch_size=args.batch_size,
                                         shuffle=True)
    task = TokenizerTask(model=args.model, model_overrides={"max_subjects": max(16, len(last)), **args.overrides}, lr=args.lr,
                         min_lr=1e-4, warmup_steps=50, total_steps=args.steps, recon_weights=(1.0, 1.0, 1.0),
                         temporal_weights=(0.0, args.temporal, args.temporal),
                         diversity_weights=(0.0, args.diversity, args.diversity),
                         variance_weights=(0.0, args.variance, args.variance),
                         variance_target=args.variance_target,
                         diversity_scope=args.diversity_scope, motion_gain=args.motion_gain)
    trainer = pl.Trainer(accelerator="cpu", max_steps=args.steps, logger=False, enable_checkpointing=False,
                         enable_progress_bar=False, enable_model_summary=False, gradient_clip_val=1.0)
    t0 = time.perf_counter()
    trainer.fit(task, loader)
    print(f"trained {args.steps} steps in {time.perf_counter() - t0:.0f} s")

    hf = torch.cat([v for v, _ in held]).float() / 255.0  # (N·T, 3, S, S)
    hi = torch.cat([torch.full((v.shape[0],), s) for v, s in held])
    rep = tokenizer_swap_report(task.model, hf, hi)
    print(f"\nheld-out frames: {int(rep['n_frames']['value'])}")
    print(f"{'condition':22s} {'PSNR dB':>8s} {'SSIM':>6s} {'PSNR moving px':>15s}")
    for k in ("reconstruction", "token_swap", "subject_swap"):
        if k in rep:
            print(f"{k:22s} {rep[k]['psnr']:8.2f} {rep[k]['ssim']:6.3f} {rep[k]['psnr_moving']:15.2f}")
    from mien.metrics.reconstruction import image_quality, moving_mask, moving_region_psnr

    mask = moving_mask(hf, hi)
    subj_mean = torch.empty_like(hf)
    for s in torch.unique(hi):
        subj_mean[hi == s] = hf[hi == s].mean(0, keepdim=True)
    for name, img in (("mean image", hf.mean(0, keepdim=True).expand_as(hf)), ("subject's mean image", subj_mean)):
        q = image_quality(img, hf)
        print(f"{name:22s} {q['psnr']:8.2f} {q['ssim']:6.3f} {moving_region_psnr(img, hf, mask):15.2f}")
    sims = []
    with torch.inference_mode():
        for v, s in held:
            z = task.model.encode(v[None].float() / 255.0, torch.tensor([s]))[0]
            sims.append(float((z @ z.T).mean()))
    print(f"mean within-clip token cosine (held-out): {np.mean(sims):.4f}")
    if args.save:
        print(f"model written to {task.export(args.save)}")


if __name__ == "__main__":
    main()
