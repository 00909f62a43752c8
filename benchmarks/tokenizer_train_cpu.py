"""Train a small expression tokenizer on real face crops on the CPU and report what it learned.

Reads talking-head videos from ../shared/data (never copied), crops the first face of every frame
(``mien.analyze`` boxes, square ×1.1), cuts clips, trains ``TokenizerTask`` for ``--steps`` steps and reports:
steps/s, loss components at the start and end (fixed weights, eval mode, same batch), within-clip token
cosine statistics (does the token vary with the expression or collapse?), and a contact sheet
(input row / reconstruction row) PNG.

    PYTHONPATH=src python benchmarks/tokenizer_train_cpu.py --steps 300 --out /tmp/tok_bench
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import torch

REPO = Path(__file__).resolve().parents[1]
DATA = REPO.parent / "shared" / "data"
VIDEOS = ["videos/talking/face_1.mp4", "videos/talking/face_2.mp4", "videos/talking/WDA_KatieHill_000.mp4"]


def main(argv=None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="tokenizer-tiny")
    ap.add_argument("--steps", type=int, default=300)
    ap.add_argument("--seconds", type=float, default=4.0, help="seconds of each video used")
    ap.add_argument("--clip-len", type=int, default=8)
    ap.add_argument("--batch-size", type=int, default=4)
    ap.add_argument("--lr", type=float, default=2e-3)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--weights", choices=["recon", "seed"], default="recon",
                    help="recon: reconstruction-led (temporal/diversity 0.02); seed: the seed README's schedule")
    ap.add_argument("--diversity-scope", choices=["clip", "batch"], default="clip")
    ap.add_argument("--out", type=Path, default=Path("/tmp/mien_tokenizer_bench"))
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)

    import lightning.pytorch as pl

    from mien.models import get_model_spec
    from mien.tasks.tokenizer import ClipTensorDataset, TokenizerTask, clips_from_crops, load_face_crops
    from mien.tasks.tokenizer.config import ScheduleConfig, TokenizerLoss, TokenizerWeights

    size = get_model_spec(args.model).contract.crop_size
    clips, ids = [], []
    t0 = time.perf_counter()
    for i, rel in enumerate(VIDEOS):
        c = clips_from_crops(load_face_crops(DATA / rel, size, end=args.seconds), args.clip_len)
        clips.append(c)
        ids.append(torch.full((len(c),), i, dtype=torch.long))
    clips, ids = torch.cat(clips), torch.cat(ids)
    t_data = time.perf_counter() - t0
    loader = torch.utils.data.DataLoader(ClipTensorDataset(clips, ids), batch_size=args.batch_size,
                                         shuffle=True, drop_last=True)
    if args.weights == "recon":
        weights = TokenizerWeights(recon=(1.0, 1.0, 1.0), temporal=(0.0, 0.02, 0.02), diversity=(0.0, 0.02, 0.02))
    else:
        weights = TokenizerWeights(recon=(0.01, 0.2, 0.5), temporal=(0.4, 0.3, 0.2), diversity=(0.3, 0.2, 0.2))
    task = TokenizerTask(args.model, schedule=ScheduleConfig(lr=args.lr, min_lr=args.lr / 20,
                                                             warmup_steps=args.steps // 10, total_steps=args.steps),
                         weights=weights, loss=TokenizerLoss(recon="mse+l1", diversity_scope=args.diversity_scope))
    probe = clips[:: max(len(clips) // 4, 1)][:4]
    probe_ids = ids[:: max(len(clips) // 4, 1)][:4]
    fixed = {"recon": 1.0, "temporal": 0.02, "diversity": 0.02, "perceptual": 0.0}

    def evaluate():
        task.eval()
        with torch.no_grad():
            logs = task.compute_losses(probe.float() / 255, probe_ids, fixed)
            out = task.model(clips.float() / 255, ids)
        task.train()
        z = out.tokens.flatten(0, 1)
        res = {k: round(float(v), 5) for k, v in logs.items() if not k.startswith("w_")}
        # across all clips and subjects; and how much the reconstruction moves within a clip vs the input
        res["all_pairs_cos_mean"] = round(float((z @ z.T).mean()), 5)
        res["recon_var_over_T"] = float(out.recon.var(1).mean())
        res["input_var_over_T"] = float((clips.float() / 255).var(1).mean())
        return res

    start = evaluate()
    trainer = pl.Trainer(max_steps=args.steps, accelerator="cpu", logger=False, enable_checkpointing=False,
                         enable_progress_bar=False, enable_model_summary=False, gradient_clip_val=1.0,
                         default_root_dir=args.out)
    t0 = time.perf_counter()
    trainer.fit(task, loader)
    t_fit = time.perf_counter() - t0
    end = evaluate()

    args.out.mkdir(parents=True, exist_ok=True)
    task.eval()
    with torch.no_grad():
        rec = task.model(probe[:2].float() / 255, probe_ids[:2]).recon
    top = np.concatenate(list(probe[:2].flatten(0, 1).permute(0, 2, 3, 1).numpy()), 1)
    bot = np.concatenate(list((rec.flatten(0, 1).permute(0, 2, 3, 1).numpy() * 255).round().astype(np.uint8)), 1)
    import cv2

    cv2.imwrite(str(args.out / "recon.png"), cv2.cvtColor(np.concatenate([top, bot], 0), cv2.COLOR_RGB2BGR))
    report = {"model": args.model, "clips": int(len(clips)), "frames_per_step": args.batch_size * args.clip_len,
              "data_prep_s": round(t_data, 2), "steps": args.steps, "fit_s": round(t_fit, 2),
              "steps_per_s": round(args.steps / t_fit, 2), "threads": args.threads,
              "weights": args.weights, "diversity_scope": args.diversity_scope, "start": start, "end": end,
              "sheet": str(args.out / "recon.png")}
    (args.out / "report.json").write_text(json.dumps(report, indent=2))
    print(json.dumps(report, indent=2))
    return report


if __name__ == "__main__":
    main()
