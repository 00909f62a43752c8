"""Evidence for the expression tokenizer (issue: seed 1): train on ``mien prepare`` shards of real talking-head
clips, then measure reconstruction PSNR/SSIM on held-out time segments — plain, with each frame's token replaced
by another frame's token of the same subject, and with the subject embedding swapped.

Usage:
    python benchmarks/tokenizer_evidence.py [--steps 3000] [--videos DIR] [--out DIR] [--save DIR]
    python benchmarks/tokenizer_evidence.py --docs-videos docs/media   # redistributable footage only
    # issue 9: face-api expression backbone, talking + expressive clips, expression terms ramped in over the
    # warm-up, resumable, bounded wall time (docs/benchmarks.md: on 2 shared cores this reached 200 steps and the
    # decoder drew one texture for every input — the terms need a decoder that already draws faces)
    python benchmarks/tokenizer_evidence.py --model tokenizer-faceapi-expression --crop-size 112 \
        --videos ../shared/data/videos/talking ../shared/data/videos/expressive --batch-size 4 --warmup 100 \
        --expression 0.005 --emotion 0.01 --swap-emotion 0.02 --ckpt-dir runs/ckpt --max-minutes 44 \
        --save runs/model --json runs/report.json
    # issue 9: warp-guided decoder (token -> mesh displacements -> warp of each subject's mean training face); adds
    # the classical warp of the reference to the frames' true landmarks as a baseline row
    python benchmarks/tokenizer_evidence.py --model tokenizer-warp-tiny --crop-size 112 --warp-reference mean \
        --overrides '{"warp_refiner_width": 0}' --videos ../shared/data/videos/talking ../shared/data/videos/expressive \
        --batch-size 4 --lr 1e-3 --warmup 30 --steps 2000 --max-minutes 20 --save runs/warp --json runs/warp.json
    # issue 9: the same points-only model drawing from a per-subject exemplar bank (training frames only; the
    # variant chosen on validation frames by benchmarks/tokenizer_bank.py); adds the bank's true-landmark baselines
    python benchmarks/tokenizer_evidence.py --model tokenizer-warp-tiny --crop-size 112 --load runs/warp \
        --overrides '{"warp_refiner_width": 0, "warp_bank": 16, "warp_bank_k": 3, "warp_bank_temperature": 0.25,
        "warp_bank_distance": "aligned"}' --bank-method kmeans \
        --videos ../shared/data/videos/talking ../shared/data/videos/expressive --json runs/warp_bank.json
    # second stage: the same model with its refinement on, initialised from that points-only export (the refiner
    # starts at zero: the output starts as the warp) and trained with the pixel + landmark losses
    python benchmarks/tokenizer_evidence.py --model tokenizer-warp-tiny --crop-size 112 --warp-reference mean \
        --overrides '{"warp_refiner_width": 8}' --init runs/warp --videos ../shared/data/videos/talking \
        ../shared/data/videos/expressive --batch-size 4 --lr 1e-3 --warmup 30 --steps 800 --max-minutes 25 \
        --save runs/warp_refined --json runs/warp_refined.json

Held-out frames: per video, the clips in the last quarter of the video (never trained on); reported per folder
of ``--videos`` and over all. Baselines by the same command: the mean held-out image, each subject's mean
*training* frame (what a decoder that ignores the token can draw) and each subject's mean *held-out* frame (an
oracle). All on CPU.

``--docs-videos DIR`` trains on the two redistributable sample videos of ``shared/data/samples`` only (the
Pexels clip and ``single_face.mp4``, two people) and writes, for the held-out last quarter of the Pexels clip,
``tokenizer_reconstruction.mp4`` (crop | reconstruction) and ``tokenizer_swap.mp4`` (crop | its expressions
rendered with the other person's subject embedding) with ``mien.pipelines.render``. The research-only
talking-head clips are never used for it, so the videos may be published.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import numpy as np

DATA = Path(__file__).resolve().parents[2] / "shared/data"
DEFAULT = DATA / "videos/talking"
DOCS_VIDEOS = [DATA / "samples/WolfgangLanger_Pexels.mp4", DATA / "samples/single_face.mp4"]


def parse_args(argv=None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--videos", type=Path, nargs="+", default=[DEFAULT], help="folders of .mp4 clips")
    ap.add_argument("--steps", type=int, default=3000)
    ap.add_argument("--model", default="tokenizer-tiny")
    ap.add_argument("--out", type=Path, default=None,
                    help="dataset folder (default: a temporary folder); an existing prepared folder is reused")
    ap.add_argument("--lr", type=float, default=3e-3)
    ap.add_argument("--warmup", type=int, default=50,
                    help="LR warm-up steps; the expression terms also ramp up from 0 over them")
    ap.add_argument("--batch-size", type=int, default=8)
    ap.add_argument("--motion-gain", type=float, default=0.0, help="TokenizerTask.motion_gain (0: uniform MSE)")
    ap.add_argument("--temporal", type=float, default=0.0, help="peak/final temporal-loss weight")
    ap.add_argument("--diversity", type=float, default=0.0, help="peak/final diversity-loss weight")
    ap.add_argument("--variance", type=float, default=0.0, help="peak/final within-clip variance-loss weight")
    ap.add_argument("--variance-target", type=float, default=0.1)
    ap.add_argument("--diversity-scope", choices=["clip", "batch"], default="clip")
    ap.add_argument("--expression", type=float, default=0.0,
                    help="weight of the FaceExpressionNet feature term (TokenizerWeights.expression)")
    ap.add_argument("--emotion", type=float, default=0.0, help="weight of the emotion KL of the reconstruction")
    ap.add_argument("--swap-emotion", type=float, default=0.0,
                    help="weight of the emotion KL of identity-swapped decodes (TokenizerWeights.swap_emotion)")
    ap.add_argument("--ckpt-dir", type=Path, default=None,
                    help="write a Lightning checkpoint here every 50 steps and resume from its last.ckpt")
    ap.add_argument("--max-minutes", type=float, default=None, help="stop training after this wall time")
    ap.add_argument("--overrides", type=json.loads, default={},
                    help='JSON model_overrides, e.g. \'{"dim": 64, "decoder_channels": 64}\'')
    ap.add_argument("--init", type=Path, default=None,
                    help="initialise from this exported tokenizer (TokenizerTask.init_from), e.g. a points-only "
                         "warp model before training its refiner")
    ap.add_argument("--load", type=Path, default=None,
                    help="evaluate this exported tokenizer instead of training one (its weights, with --overrides; a "
                         "warp_bank override gets a bank built from the training split)")
    ap.add_argument("--bank-method", choices=["fps", "kmeans"], default="fps",
                    help="warp decoder with warp_bank > 0: how each subject's exemplars are chosen from its training "
                         "frames (mien.models.tokenizer.bank.bank_frames)")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--save", type=Path, default=None, help="export the trained model here (config + safetensors)")
    ap.add_argument("--docs-videos", type=Path, default=None,
                    help="train on the redistributable samples and write the docs videos into this folder")
    ap.add_argument("--panel", type=int, default=128, help="--docs-videos: panel side in px")
    ap.add_argument("--crop-size", type=int, default=64,
                    help="crop side written by mien prepare (64; 112 for the face-api expression backbone)")
    ap.add_argument("--json", type=Path, default=None, help="write the held-out report here")
    ap.add_argument("--warp-reference", choices=["medoid", "mean", "first"], default="medoid",
                    help="warp decoder (tokenizer-warp-tiny): each subject's reference face from its training frames "
                         "(mien.models.tokenizer.warp.reference_frames)")
    return ap.parse_args(argv)


def prepare_clips(videos: list[str], out: Path, crop_size: int = 64) -> list[dict]:
    """``mien prepare`` (all 0.8 s windows at 10 fps, aligned crops of ``crop_size``²) → clips with subject, start,
    source and shard key."""
    from mien.data import ClipDataset
    from mien.pipelines.prepare import PrepareOptions, prepare

    t0 = time.perf_counter()
    prepare(videos, str(out), PrepareOptions(mode="all", clip_seconds=0.8, fps=10.0, crop_size=crop_size), workers=2)
    print(f"prepared {len(videos)} videos into {out} in {time.perf_counter() - t0:.0f} s (resumed when present)")
    return [{"video": s["video"], "subject_id": int(s["meta"]["subject_id"]), "start": float(s["meta"]["start_sec"]),
             "source": s["meta"]["source"], "key": s["__key__"], "landmarks": s["landmarks"][..., :2]}
            for s in ClipDataset(str(out), split_nodes=False, split_workers=False, audio=False)]


def split_held_out(clips: list[dict], keep: set[str] | None = None) -> tuple[list[dict], list[dict]]:
    """Training clips and held-out clips (the last quarter of every video; videos in ``keep``: all training)."""
    last: dict[str, float] = {}
    for c in clips:
        last[c["source"]] = max(last.get(c["source"], 0.0), c["start"])
    is_held = [c["start"] >= 0.75 * last[c["source"]] and c["source"] not in (keep or set()) for c in clips]
    return ([c for c, h in zip(clips, is_held, strict=True) if not h],
            [c for c, h in zip(clips, is_held, strict=True) if h])


def train_tokenizer(train: list[dict], n_subjects: int, args: argparse.Namespace):
    """Fit a :class:`~mien.tasks.tokenizer.TokenizerTask` on in-memory clips for ``args.steps`` steps (CPU)."""
    import lightning.pytorch as pl
    import torch

    from mien.tasks.tokenizer import TokenizerTask
    from mien.tasks.tokenizer.config import ScheduleConfig, TokenizerLoss, TokenizerWeights

    items = [{"frames": c["video"], "subject_id": c["subject_id"], "__key__": c["key"], "landmarks": c["landmarks"]}
             for c in train]
    loader = torch.utils.data.DataLoader(items, batch_size=args.batch_size, shuffle=True)
    import mien

    frozen = mien.create_model(args.model, **args.overrides).tokenizer
    cache = hasattr(frozen, "backbone_tokens") and getattr(frozen, "freeze", False)  # frozen backbone: cache it
    task = TokenizerTask(model=args.model, cache_backbone_tokens=cache,
                         model_overrides={"max_subjects": max(16, n_subjects), **args.overrides},
                         schedule=ScheduleConfig(lr=args.lr, min_lr=1e-4, warmup_steps=min(args.warmup, args.steps),
                                                 total_steps=args.steps),
                         weights=TokenizerWeights(recon=(1.0, 1.0, 1.0), temporal=(0.0, args.temporal, args.temporal),
                                                  diversity=(0.0, args.diversity, args.diversity),
                                                  variance=(0.0, args.variance, args.variance),
                                                  expression=(0.0, args.expression, args.expression),
                                                  emotion=(0.0, args.emotion, args.emotion),
                                                  swap_emotion=(0.0, args.swap_emotion, args.swap_emotion)),
                         loss=TokenizerLoss(variance_target=args.variance_target,
                                            diversity_scope=args.diversity_scope, motion_gain=args.motion_gain),
                         init_from=str(args.init or args.load) if (args.init or args.load) else None)
    if task.model.config.decoder == "warp":
        if args.load is None:  # an exported model keeps the references it was trained with
            set_references(task.model, train, args.warp_reference)
        if task.model.config.warp_bank > 0:
            set_bank(task.model, train, args.bank_method)
    if args.load is not None:
        task.train_seconds = 0.0
        return task

    class Progress(pl.Callback):
        """Print the step, wall time and loss terms every 25 steps (no logger in these runs)."""

        def on_train_batch_end(self, trainer, module, outputs, batch, batch_idx):
            if trainer.global_step % 25 == 0:
                m = {k.split("/")[-1]: float(v) for k, v in trainer.callback_metrics.items()
                     if k.startswith("train/loss")}
                print(f"step {trainer.global_step} {time.perf_counter() - t0:.0f} s "
                      + " ".join(f"{k[5:]}={v:.4g}" for k, v in sorted(m.items()) if v), flush=True)

    callbacks, ckpt = [Progress()], None
    if args.ckpt_dir:
        from lightning.pytorch.callbacks import ModelCheckpoint

        callbacks.append(ModelCheckpoint(dirpath=args.ckpt_dir, every_n_train_steps=50, save_last=True,
                                         save_top_k=1))
        ckpt = args.ckpt_dir / "last.ckpt" if (args.ckpt_dir / "last.ckpt").is_file() else None
    max_time = None if args.max_minutes is None else {"minutes": args.max_minutes}
    trainer = pl.Trainer(accelerator="cpu", max_steps=args.steps, logger=False, enable_checkpointing=bool(args.ckpt_dir),
                         callbacks=callbacks, max_time=max_time, enable_progress_bar=False,
                         enable_model_summary=False, gradient_clip_val=1.0)
    t0 = time.perf_counter()
    trainer.fit(task, loader, ckpt_path=str(ckpt) if ckpt else None)
    task.train_seconds = time.perf_counter() - t0
    print(f"trained to step {trainer.global_step} on {len(train)} clips in {task.train_seconds:.0f} s"
          f"{' (resumed from ' + str(ckpt) + ')' if ckpt else ''}")
    return task


def set_references(model, train: list[dict], kind: str) -> None:
    """Warp decoder: each subject's reference face (crop + landmarks) chosen from its training frames."""
    import torch

    from mien.models.tokenizer.warp import reference_frames

    refs = reference_frames(torch.cat([c["video"] for c in train]).numpy(),
                            torch.cat([torch.as_tensor(c["landmarks"]) for c in train]).numpy(),
                            np.concatenate([[c["subject_id"]] * len(c["video"]) for c in train]), kind)
    ids = sorted(refs)
    model.reconstruction.set_references(ids, np.stack([refs[i][0] for i in ids]), np.stack([refs[i][1] for i in ids]))
    print(f"warp decoder: {kind} reference faces of {len(ids)} subjects")


def set_bank(model, train: list[dict], method: str) -> None:
    """Warp decoder with ``warp_bank`` > 0: each subject's exemplar bank and neutral mesh from its training frames
    only."""
    import torch

    from mien.tasks.tokenizer.banks import fill_from_frames

    dec = model.reconstruction
    chosen, neutral = fill_from_frames(dec, torch.cat([c["video"] for c in train]).numpy(),
                                       torch.cat([torch.as_tensor(c["landmarks"]) for c in train]).numpy(),
                                       np.concatenate([[c["subject_id"]] * len(c["video"]) for c in train]), method)
    mib = (dec.bank_images.numel() + 4 * dec.bank_points.numel()) / 2 ** 20
    print(f"warp decoder: exemplar banks ({method}, ≤ {dec.bank_size} frames) of {len(chosen)} subjects, "
          f"{sum(len(v) for v in chosen.values())} frames; stored {mib:.1f} MiB (uint8 crops, float32 points); "
          f"neutral meshes of {len(neutral)} subjects")


def report(task, held: list[dict], train: list[dict] | None = None, label: str = "") -> dict:
    """Print and return the held-out swap report (+ mean-image baselines, within-clip token cosine).

    ``train``: the training clips, for the "subject's mean training frame" baseline (subjects of ``held``)."""
    import torch

    from mien.metrics import tokenizer_swap_report
    from mien.metrics.reconstruction import image_quality, moving_mask, moving_region_psnr

    hf = torch.cat([c["video"] for c in held]).float() / 255.0  # (N·T, 3, S, S)
    hi = torch.cat([torch.full((c["video"].shape[0],), c["subject_id"]) for c in held])
    cond = None
    if task.model.config.global_dim > 0:  # global_condition (e.g. "au-features"): MediaPipe + face-api per crop
        cond = task.condition_for(None, hf[None])[0]
    rep = tokenizer_swap_report(task.model, hf, hi, condition=cond)
    print(f"\nheld-out frames{' (' + label + ')' if label else ''}: {int(rep['n_frames']['value'])}")
    print(f"{'condition':28s} {'PSNR dB':>8s} {'SSIM':>6s} {'PSNR moving px':>15s}")
    for k in ("reconstruction", "token_swap", "subject_swap"):
        if k in rep:
            print(f"{k:28s} {rep[k]['psnr']:8.2f} {rep[k]['ssim']:6.3f} {rep[k]['psnr_moving']:15.2f}")
    mask = moving_mask(hf, hi)
    subj_mean = torch.empty_like(hf)
    for s in torch.unique(hi):
        subj_mean[hi == s] = hf[hi == s].mean(0, keepdim=True)
    baselines = [("mean image", hf.mean(0, keepdim=True).expand_as(hf))]
    if train:
        train_mean = torch.empty_like(hf)
        for s in torch.unique(hi):
            frames = [c["video"] for c in train if c["subject_id"] == int(s)]
            train_mean[hi == s] = (torch.cat(frames).float() / 255.0).mean(0, keepdim=True) if frames else 0.5
        baselines.append(("subject's mean training frame", train_mean))
    if task.model.config.decoder == "warp" and all("landmarks" in c for c in held):
        # the classical warp: each subject's reference moved to the frame's *true* landmarks (no token involved)
        dec = task.model.reconstruction
        lm = torch.cat([torch.as_tensor(c["landmarks"]) for c in held]).float()[:, :dec.ref_points.shape[1], :2]
        baselines.append(("classical warp of the reference to the true landmarks",
                          dec.warp_references(hi, lm).clamp(0, 1)))
        baselines.append(("subject's reference face", dec.ref_images[hi]))
        if dec.bank_size > 0:  # the bank's own baselines: its nearest entry by the TRUE landmarks, unwarped / warped
            from mien.models.tokenizer.bank import bank_baselines

            near, oracle = bank_baselines(dec, lm, hi)
            baselines.append(("nearest bank frame by the true landmarks, unwarped", near))
            baselines.append(("bank frame(s) by the true landmarks, warped to them (bank oracle)", oracle))
    baselines.append(("subject's mean image", subj_mean))
    for name, img in baselines:
        q = image_quality(img, hf)
        rep[name] = {**q, "psnr_moving": moving_region_psnr(img, hf, mask)}
        print(f"{name:28s} {q['psnr']:8.2f} {q['ssim']:6.3f} {rep[name]['psnr_moving']:15.2f}")
    sims = []
    with torch.inference_mode():
        for i, c in enumerate(held):
            t = c["video"].shape[0]
            z = task.model.encode(c["video"][None].float() / 255.0, torch.tensor([c["subject_id"]]),
                                  None if cond is None else cond[i * t:(i + 1) * t][None])[0]
            sims.append(float((z @ z.T).mean()))
    rep["within_clip_cosine"] = float(np.mean(sims))
    print(f"mean within-clip token cosine (held-out): {rep['within_clip_cosine']:.4f}")
    return rep


def docs_videos(args: argparse.Namespace) -> None:
    """Train on the redistributable samples only and render the held-out segment of the Pexels clip."""
    from mien.pipelines.render import render_reconstruction, render_swap

    out = args.out or Path(tempfile.mkdtemp(prefix="mien_tok_docs_"))
    clips = prepare_clips([str(v) for v in DOCS_VIDEOS], out, args.crop_size)
    pexels, other = (Path(v).stem for v in DOCS_VIDEOS)
    src_of = {c["source"]: c["subject_id"] for c in clips}
    sid = {Path(s).stem: i for s, i in src_of.items()}
    train, held = split_held_out(clips, keep={s for s in src_of if Path(s).stem == other})
    print(f"{len(train)} training clips, {len(held)} held-out clips (last quarter of {pexels})")
    task = train_tokenizer(train, len(src_of), args)
    report(task, held, train)
    model_dir = args.save or out / "model"
    task.export(model_dir)
    start = min(c["start"] for c in held)
    args.docs_videos.mkdir(parents=True, exist_ok=True)
    video = str(DOCS_VIDEOS[0])
    kw = dict(subject=sid[pexels], start=start, size=args.panel, crf=23)
    r1 = render_reconstruction(video, str(model_dir), args.docs_videos / "tokenizer_reconstruction.mp4", **kw)
    r2 = render_swap(video, str(model_dir), args.docs_videos / "tokenizer_swap.mp4", sid[other], **kw)
    print(f"held-out segment from {start:.2f} s: {r1.frames} frames ({r1.faces} with a face) → {r1.output}, "
          f"{r2.output}")


def main(argv=None) -> None:
    args = parse_args(argv)
    import lightning.pytorch as pl
    import torch

    torch.set_num_threads(args.threads)
    pl.seed_everything(args.seed, verbose=False)
    if args.docs_videos:
        docs_videos(args)
        return
    out = args.out or Path(tempfile.mkdtemp(prefix="mien_tok_"))
    videos = [str(p) for d in args.videos for p in sorted(Path(d).glob("*.mp4"))]
    clips = prepare_clips(videos, out, args.crop_size)
    train, held = split_held_out(clips)
    n_subjects = len({c["subject_id"] for c in clips})
    print(f"{len(train)} training clips, {len(held)} held-out clips, {n_subjects} subjects")
    task = train_tokenizer(train, n_subjects, args)
    task.eval()
    rep = {}
    groups = {str(d): [c for c in held if Path(c["source"]).resolve().parent == Path(d).resolve()] for d in args.videos}
    if len(groups) > 1:
        rep.update({Path(d).name: report(task, h, train, Path(d).name) for d, h in groups.items() if h})
    rep["all"] = report(task, held, train, "all")
    if args.json:
        subjects = {Path(c["source"]).name: c["subject_id"] for c in clips}
        held_start = {Path(c["source"]).name: min(h["start"] for h in held if h["source"] == c["source"])
                      for c in held}
        args.json.write_text(json.dumps({"report": rep, "subjects": subjects, "held_out_start_sec": held_start,
                                         "steps": int(task.global_step), "train_seconds": task.train_seconds,
                                         "model": args.model, "overrides": args.overrides,
                                         "weights": {k: list(v) for k, v in task.hparams["weights"].items()}},
                                        indent=1))
    if args.save:
        print(f"model written to {task.export(args.save)}")


if __name__ == "__main__":
    main()
