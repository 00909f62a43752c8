"""Choose the warp decoder's exemplar-bank variant on VALIDATION frames (issue 9; no held-out frame is read).

The training split of ``benchmarks/tokenizer_evidence.py`` (all but the last quarter of every video) is cut again:
the clips in the last 10 % of each video's training segment are the validation frames, the rest build the bank.
A trained warp tokenizer (``--tokenizer``, e.g. a points-only ``tokenizer-warp-tiny`` export) predicts the meshes of
the validation frames once; every variant then only redraws them:

* stage 1 (k = 1): bank method {fps, kmeans} × M {4, 16, 64} × distance {points, aligned, aligned-expression};
* stage 2 (at the stage-1 winner): k {2, 3, 5} × temperature {0.25, 1, 4} px.

Rule: the highest validation reconstruction PSNR over the whole crop; a variant within 0.05 dB of the best is
preferred when it has a smaller M, then a smaller k. Reported for each: reconstruction, token swap (another validation
frame's token of the same subject), their gap on moving pixels, and the bank oracle (nearest entry by the true
landmarks, warped to them). The model saw the validation frames in training (its meshes there are train-level).

Usage:
    python benchmarks/tokenizer_bank.py --tokenizer runs/warp --out runs/data112 \\
        --videos ../shared/data/videos/talking ../shared/data/videos/expressive --json runs/bank_sweep.json
"""

from __future__ import annotations

import argparse
import itertools
import json
import time
from pathlib import Path

import numpy as np

from tokenizer_evidence import DEFAULT, prepare_clips, split_held_out

STAGE1 = {"method": ("fps", "kmeans"), "m": (4, 16, 64), "distance": ("points", "aligned", "aligned-expression")}
STAGE2 = {"k": (2, 3, 5), "temperature": (0.25, 1.0, 4.0)}


def split_validation(train: list[dict], fraction: float = 0.1) -> tuple[list[dict], list[dict]]:
    """(bank clips, validation clips): per video, the training clips starting at ≥ (1 − fraction) of its last
    training-clip start are validation."""
    last: dict[str, float] = {}
    for c in train:
        last[c["source"]] = max(last.get(c["source"], 0.0), c["start"])
    val = [c["start"] >= (1 - fraction) * last[c["source"]] for c in train]
    return [c for c, v in zip(train, val, strict=True) if not v], [c for c, v in zip(train, val, strict=True) if v]


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--tokenizer", type=Path, required=True)
    ap.add_argument("--videos", type=Path, nargs="+", default=[DEFAULT])
    ap.add_argument("--out", type=Path, required=True, help="prepared dataset folder (reused when present)")
    ap.add_argument("--crop-size", type=int, default=112)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--json", type=Path, default=None)
    args = ap.parse_args(argv)
    import torch

    from mien.metrics.reconstruction import (
        image_quality,
        moving_mask,
        moving_region_psnr,
        same_subject_permutation,
    )
    from mien.models.tokenizer import TokenizerConfig
    from mien.models.tokenizer.bank import build_bank
    from mien.models.tokenizer.condition import global_condition
    from mien.models.tokenizer.export import load_weights_into
    from mien.models.tokenizer.nets import ExpressionTokenizer

    torch.set_num_threads(args.threads)
    videos = [str(p) for d in args.videos for p in sorted(Path(d).glob("*.mp4"))]
    train, _ = split_held_out(prepare_clips(videos, args.out, args.crop_size))  # held-out clips are dropped here
    bank_clips, val = split_validation(train)
    cat = torch.cat
    bx = cat([c["video"] for c in bank_clips]).numpy()
    bp = cat([torch.as_tensor(c["landmarks"]) for c in bank_clips]).float().numpy()
    bs = np.concatenate([[c["subject_id"]] * len(c["video"]) for c in bank_clips])
    vx = cat([c["video"] for c in val])
    vf = vx.float() / 255.0
    vp = cat([torch.as_tensor(c["landmarks"]) for c in val]).float()[:, :468, :2]
    vs = torch.cat([torch.full((len(c["video"]),), c["subject_id"]) for c in val]).long()
    print(f"{len(bank_clips)} bank clips ({len(bx)} frames), {len(val)} validation clips ({len(vx)} frames)")

    cfg = json.loads((args.tokenizer / "config.json").read_text())["config"]
    model = ExpressionTokenizer(TokenizerConfig.from_dict({**cfg, "pretrained": False, "warp_bank": 64}))
    load_weights_into(model, args.tokenizer)
    model.eval()
    dec = model.reconstruction
    cond = torch.from_numpy(global_condition(vx.permute(0, 2, 3, 1).numpy(), cfg["global_condition"])[0]) \
        if cfg["global_condition"] != "none" else None
    perm = same_subject_permutation(vs.numpy())  # another validation frame of the same subject
    with torch.inference_mode():
        z = model.encode(vf, vs, cond)
        pts = dec.points(z, vs)
        swap_pts = dec.points(z[torch.from_numpy(perm)], vs)
    mask = moving_mask(vf, vs)

    def quality(img):
        q = image_quality(img.clamp(0, 1), vf)
        return {"psnr": q["psnr"], "ssim": q["ssim"], "psnr_moving": moving_region_psnr(img.clamp(0, 1), vf, mask)}

    def draw(p):
        with torch.inference_mode():
            return torch.cat([dec.draw(p[i:i + 64], vs[i:i + 64]) for i in range(0, len(vs), 64)])

    rows = []
    saved = dec.bank_size
    dec.bank_size = 0  # the reference decoder (no bank) on the same frames
    rows.append({"variant": "no bank (model's reference)", "recon": quality(draw(pts)),
                 "token_swap": quality(draw(swap_pts)), "oracle": quality(draw(vp))})
    dec.bank_size = saved

    def run(method, m, distance, k=1, temperature=1.0):
        t0 = time.perf_counter()
        dec.bank_count.zero_()
        dec.bank_size = m
        build_bank(dec, bx, bp, bs, method)
        dec.bank_k, dec.bank_temperature, dec.bank_distance = k, temperature, distance
        r = {"variant": f"{method} M={m} {distance} k={k} tau={temperature}", "method": method, "m": m,
             "distance": distance, "k": k, "temperature": temperature,
             "recon": quality(draw(pts)), "token_swap": quality(draw(swap_pts)), "oracle": quality(draw(vp))}
        r["gap_moving"] = r["recon"]["psnr_moving"] - r["token_swap"]["psnr_moving"]
        r["seconds"] = time.perf_counter() - t0
        print(f"{r['variant']:48s} recon {r['recon']['psnr']:.2f} ({r['recon']['psnr_moving']:.2f}) "
              f"swap {r['token_swap']['psnr']:.2f} ({r['token_swap']['psnr_moving']:.2f}) "
              f"oracle {r['oracle']['psnr']:.2f} ({r['oracle']['psnr_moving']:.2f}) {r['seconds']:.0f} s", flush=True)
        rows.append(r)
        return r

    def best(rs):
        top = max(r["recon"]["psnr"] for r in rs)
        near = [r for r in rs if r["recon"]["psnr"] >= top - 0.05]
        return min(near, key=lambda r: (r["m"], r["k"], -r["recon"]["psnr"]))

    r0 = rows[0]
    print(f"no bank: recon {r0['recon']['psnr']:.2f} ({r0['recon']['psnr_moving']:.2f}) swap "
          f"{r0['token_swap']['psnr']:.2f} oracle {r0['oracle']['psnr']:.2f}", flush=True)
    s1 = [run(*v) for v in itertools.product(*STAGE1.values())]
    w1 = best(s1)
    s2 = [run(w1["method"], w1["m"], w1["distance"], k, t) for k, t in itertools.product(*STAGE2.values())]
    w2 = best(s2)
    chosen = w2 if w2["recon"]["psnr"] > w1["recon"]["psnr"] + 0.05 else w1
    print(f"stage-1 winner: {w1['variant']}; chosen: {chosen['variant']}")
    if args.json:
        args.json.write_text(json.dumps({"rows": rows, "chosen": chosen["variant"], "stage1_winner": w1["variant"],
                                         "bank_frames": int(len(bx)), "validation_frames": int(len(vx))}, indent=1))


if __name__ == "__main__":
    main()
