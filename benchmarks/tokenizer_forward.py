"""Speed and size of the registered expression-tokenizer configurations (random init, no download).

For each config: parameters (total / trainable), frames/s of ``encode`` (eval, no grad), and seconds per
training step (forward + backward of reconstruction MSE) on B·T frames.

    PYTHONPATH=src python benchmarks/tokenizer_forward.py --frames 4 --configs tokenizer-tiny tokenizer-dinov2-s14
"""

from __future__ import annotations

import argparse
import json
import time

import torch


def bench(name: str, frames: int, repeats: int, device: str) -> dict:
    import mien

    torch.manual_seed(0)
    over = {"pretrained": False} if "dinov2" in name or name == "tokenizer-timm" else {}
    model = mien.create_model(name, **over).to(device)
    s = model.config.crop_size
    x = torch.rand(1, frames, 3, s, s, device=device)
    ids = torch.zeros(1, dtype=torch.long, device=device) if model.config.max_subjects else None
    n_all = sum(p.numel() for p in model.parameters())
    n_train = sum(p.numel() for p in model.parameters() if p.requires_grad)

    def sync():
        if device.startswith("cuda"):
            torch.cuda.synchronize()

    model.eval()
    with torch.no_grad():
        model.encode(x, ids)
        sync()
        t0 = time.perf_counter()
        for _ in range(repeats):
            model.encode(x, ids)
        sync()
        enc = (time.perf_counter() - t0) / repeats
    model.train()
    opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-5)
    times = []
    for _ in range(repeats + 1):
        t0 = time.perf_counter()
        out = model(x, ids)
        loss = torch.nn.functional.mse_loss(out.recon, x)
        opt.zero_grad()
        loss.backward()
        opt.step()
        sync()
        times.append(time.perf_counter() - t0)
    return {"config": name, "crop": s, "patches": model.tokenizer.num_patches, "dim": model.config.dim,
            "params_M": round(n_all / 1e6, 2), "trainable_M": round(n_train / 1e6, 2), "frames": frames,
            "encode_frames_per_s": round(frames / enc, 2), "train_step_s": round(min(times[1:]), 3)}


def main(argv=None) -> list[dict]:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--configs", nargs="+", default=["tokenizer-tiny", "tokenizer-vit-tiny", "tokenizer-dinov2-s14"])
    ap.add_argument("--frames", type=int, default=4)
    ap.add_argument("--repeats", type=int, default=2)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    rows = [bench(n, args.frames, args.repeats, args.device) for n in args.configs]
    for r in rows:
        print(json.dumps({**r, "device": args.device, "threads": args.threads}))
    return rows


if __name__ == "__main__":
    main()
