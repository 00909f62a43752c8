"""``mien evaluate reenact``: held-out evaluation of a face reenactor against the copy and warp baselines.

Protocol (every reenactor on the same pairs and frames; crops cut as ``mien prepare`` cuts shard crops, at the
model's crop size, :class:`~mien.pipelines.reenact.FaceCropper`):

* The input videos are the **held-out set**: one subject per video, none of them in the training shards (for a
  model from ``mien train reenact``, pass the videos of its held-out subjects). Per video, the **source** is its
  first frame with a face, and the **driving frames** are ``frames`` frames evenly spaced over its held-out time
  segment, from ``segment`` × duration to the end.
* **Self-reenactment** (same video): source → its own driving frames, relative motion with the source frame as
  the driver's reference (as LivePortrait's self-reenactment protocol: the source is the driving video's first
  frame), compared with the real driving frames: L1, PSNR, SSIM, LPIPS (:mod:`mien.metrics.reenact`).
* **Cross-reenactment** (held-out subjects): video *i*'s source driven by video *i+1*'s driving frames
  (cyclic; or every other video with ``cross_pairs="all"``), relative to that driver's own first face frame: CSIM (face-api FaceRecognitionNet descriptors,
  output vs source), AKD (MediaPipe landmarks output vs driver, / inter-ocular distance), AED (mien's AU
  probabilities, mean |Δ|; face-api expression embeddings, L2), emotion agreement (face-api 7-class argmax) and
  APD (PnP head pose, degrees). With relative motion the output keeps the source's face shape and its own
  starting pose, so AKD and APD against the driver are not 0 even for a perfect transfer; the baselines share
  that offset. **AKD-target** measures the motion alone: the output's landmarks against the *transfer target*,
  the source's landmarks moved by the driver's motion (:func:`mien.face.warp.relative_targets`: source +
  (driver − driver's reference) × √(hull-area ratio), all three found by the same analysis); with
  ``absolute`` the target is the driver's landmarks, so AKD-target = AKD. Copying the source scores the
  driver's motion; a perfect identity-preserving transfer scores the detector's noise.

Outputs, landmarks, poses, AU and expression vectors come from mien's own analysis (the
:class:`~mien.pipelines.frame_analyzer.FrameAnalyzer` with the AU and expression heads, and the face-api
identity head); an output in which no face is found counts in ``face_rate`` and is left out of the
landmark-based means.
"""

from __future__ import annotations

import json
import os
import time
from dataclasses import asdict, dataclass, field

import numpy as np

from mien.errors import InputError
from mien.face.warp import shape_distance
from mien.metrics import reenact as M
from mien.pipelines.reenact import BASELINES, FaceCrop, FaceCropper, load_reenactor

SELF_METRICS = ("l1", "psnr", "ssim", "lpips")
CROSS_METRICS = ("csim", "akd", "akd_target", "aed_au", "aed_expr", "emotion_agreement", "apd", "face_rate")


@dataclass
class ReenactEvalOptions:
    """Options of :func:`evaluate_reenact` (the flags of ``mien evaluate reenact``).

    Attributes:
        model: the reenactor evaluated besides the baselines: a folder from ``mien export reenact``, or "warp" /
            "copy" (then only the baselines run).
        frames: driving frames per video (evenly spaced over the held-out segment).
        segment: start of each video's held-out driving segment as a fraction of its duration.
        cross_pairs: "next" (video i's source driven by video i+1, cyclic: N pairs) or "all" (every ordered
            pair of different videos: N·(N−1) pairs).
        absolute: absolute instead of relative motion.
        reference: the driver's reference frame of relative cross-reenactment: "first" (the driver video's first
            face frame) or "best" (of the driver's sampled frames, the one nearest the source in shape and
            expression, :func:`mien.face.warp.shape_distance`, as ``mien reenact --reference best``).
            Self-reenactment always uses the source frame.
        size: crop side in px when only baselines run (a trained model sets its own).
        lpips_net: LPIPS backbone: "alex", "vgg" or "squeeze".
        device: torch device of a trained model.
    """

    model: str = field(default="warp", metadata={"metavar": "PATH|warp|copy"})
    frames: int = field(default=16, metadata={"metavar": "N"})
    segment: float = 0.5
    cross_pairs: str = field(default="next", metadata={"choices": ("next", "all")})
    absolute: bool = False
    reference: str = field(default="first", metadata={"choices": ("first", "best")})
    size: int = field(default=256, metadata={"metavar": "PX"})
    lpips_net: str = field(default="alex", metadata={"choices": ("alex", "vgg", "squeeze")})
    device: str = "cpu"

    def __post_init__(self) -> None:
        if self.frames < 1:
            raise ValueError(f"frames must be >= 1, got {self.frames}")
        if not 0.0 <= self.segment < 1.0:
            raise ValueError(f"segment must be in [0, 1), got {self.segment}")
        if self.reference not in ("first", "best"):
            raise ValueError(f"reference must be 'first' or 'best', got {self.reference!r}")
        if self.absolute and self.reference != "first":
            raise ValueError("--reference best is for relative motion; drop --absolute")


@dataclass
class HeldOutVideo:
    """A held-out video's crops: ``source`` (first face frame) and the driving crops of its held-out segment."""

    path: str
    source: FaceCrop
    drivers: list[FaceCrop]


def sample_video(path: str, size: int, margin: float, frames: int, segment: float) -> HeldOutVideo:
    """Cut the source crop and ``frames`` driving crops of one held-out video (only the sampled frames are
    analysed; frames without a face are skipped to the next one).

    Raises:
        InputError: unreadable video, no face, or no face in the held-out segment.
    """
    from mien.io.video import VideoSource

    src = VideoSource(path)
    info = src.info
    dur = info.duration_sec or 0.0
    t_seg = segment * dur
    targets = [t_seg + (k + 0.5) / frames * (dur - t_seg) for k in range(frames)] if dur else []
    cropper = FaceCropper(info.width, info.height, size, margin, static=True)
    source, drivers, k = None, [], 0
    try:
        for fr in src:
            if source is None and fr.t_sec < t_seg:
                source = cropper(fr.image, fr.index)
                continue
            if k >= len(targets):
                break
            if fr.t_sec + 1e-6 >= targets[k]:
                c = cropper(fr.image, fr.index)
                if c is not None:
                    drivers.append(c)
                    k += 1
                    while k < len(targets) and targets[k] <= fr.t_sec:
                        k += 1
    finally:
        cropper.close()
    if source is None:
        raise InputError(path, f"no face before the held-out segment ({t_seg:.2f} s)")
    if not drivers:
        raise InputError(path, "no face in the held-out segment")
    return HeldOutVideo(path, source, drivers)


class CropAnalysis:
    """mien's analysis of face crops (S × S images): landmarks, head pose, AU probabilities, emotion and
    expression embedding (FrameAnalyzer with the AU and expression heads) and face-api identity descriptors."""

    def __init__(self, size: int, device: str = "cpu"):
        from mien.heads.faceapi import EMOTIONS, IdentityHead
        from mien.pipelines.analyze import AnalyzeOptions
        from mien.pipelines.frame_analyzer import FrameAnalyzer

        self.fa = FrameAnalyzer(size, size, AnalyzeOptions(emotion=True, au=True, identity=False, device=device),
                                static=True)
        self.identity = IdentityHead(device)
        self.emotions = [f"emotion_{e}" for e in EMOTIONS]
        self.images: list[np.ndarray] = []

    def add(self, crops: np.ndarray) -> np.ndarray:
        """Queue crops uint8 (B, S, S, 3); returns their row ids."""
        from mien.io.video import Frame

        ids = np.arange(len(self.images), len(self.images) + len(crops))
        for i, im in zip(ids, crops, strict=True):
            self.images.append(im)
            self.fa.process(Frame(int(i), 0.0, im))
        return ids

    def finish(self) -> dict[str, np.ndarray]:
        """Per queued crop (N rows, NaN without a face): landmarks (N, 478, 3), pose (N, 3) yaw/pitch/roll deg,
        au (N, A), emotion (N, 7), expression (N, 256), identity (N, 128)."""
        res = self.fa.result({})
        self.fa.close()
        n = len(self.images)
        au_names = [c for c in res.extra if c.startswith("AU")]
        out = {"landmarks": np.full((n, 478, 3), np.nan), "pose": np.full((n, 3), np.nan),
               "au": np.full((n, len(au_names)), np.nan), "emotion": np.full((n, 7), np.nan),
               "expression": np.full((n, 256), np.nan), "identity": np.full((n, 128), np.nan)}
        rows = res.frame
        out["landmarks"][rows] = res.landmarks
        out["pose"][rows] = np.stack([res.yaw_deg, res.pitch_deg, res.roll_deg], -1)
        if au_names:
            out["au"][rows] = np.stack([res.extra[c] for c in au_names], -1)
        out["emotion"][rows] = np.stack([res.extra[c] for c in self.emotions], -1)
        out["expression"][rows] = res.extra["expression_embedding"]
        cut = self.identity.contract.cut
        crops = np.stack([cut(self.images[r], res.bbox[j], res.landmarks[j]) for j, r in enumerate(rows)]) \
            if len(rows) else np.zeros((0, 150, 150, 3), np.uint8)
        out["identity"][rows] = self.identity.descriptors(crops)
        out["au_names"] = np.array(au_names)
        return out


def _images(x: np.ndarray):
    import torch

    return torch.from_numpy(np.ascontiguousarray(x)).permute(0, 3, 1, 2).float() / 255.0


def _mean(v) -> float:
    v = np.asarray(v, np.float64)
    v = v[np.isfinite(v)]
    return float(v.mean()) if len(v) else float("nan")


def transfer_targets(source: np.ndarray, drivers: np.ndarray, reference: np.ndarray) -> np.ndarray:
    """Where relative motion should put the source's landmarks: per driver frame,
    :func:`mien.face.warp.relative_targets` (source + (driver − reference) × √(source / reference hull area)).

    Args:
        source: float (K, ≥2) the source's landmarks, px; drivers: float (T, K, ≥2) the driver's landmarks;
            reference: float (K, ≥2) the driver's reference frame's landmarks (the same K points, px).

    Returns:
        float64 (T, K, 2) target points in the source's pixel frame; all NaN where a face is missing (NaN input).
    """
    from mien.face.warp import hull_area, relative_targets

    drivers = np.asarray(drivers, np.float64)
    out = np.full(drivers.shape[:2] + (2,), np.nan)
    if not (np.isfinite(source[:, :2]).all() and np.isfinite(reference[:, :2]).all()):
        return out
    area = hull_area(np.asarray(source, np.float64)[:, :2])
    ref_area = hull_area(np.asarray(reference, np.float64)[:, :2])
    for t, d in enumerate(drivers):
        if np.isfinite(d[:, :2]).all():
            out[t] = relative_targets(source, d, reference, area, ref_area)
    return out


def evaluate_reenact(videos: list[str], options: ReenactEvalOptions | None = None, log=print) -> dict:
    """Run the held-out self- and cross-reenactment protocol (module docstring) for the model and both baselines.

    Args:
        videos: held-out videos, one subject each (≥ 2 for cross-reenactment).
        log: callable for progress lines (None: quiet).

    Returns:
        {"models": {name: {metric: mean}}, "pairs": per-pair rows, "options", "videos", "skipped", "lpips",
        "seconds"}.

    Raises:
        ValueError: no usable video.
    """
    o = options or ReenactEvalOptions()
    log = log or (lambda *_: None)
    t0 = time.perf_counter()
    model = load_reenactor(o.model, o.device, o.size) if o.model not in BASELINES else None
    size, margin = (model.size, model.margin) if model is not None else (o.size, 0.0)
    reenactors = {}
    for n in BASELINES:  # the baselines use the model's crop size and margin
        reenactors[n] = load_reenactor(n, o.device, size)
        reenactors[n].margin = margin
    if model is not None:
        reenactors[model.name] = model
    held, skipped = [], []
    for v in videos:
        try:
            held.append(sample_video(v, size, margin, o.frames, o.segment))
            log(f"{v}: source + {len(held[-1].drivers)} driving frames")
        except InputError as e:
            skipped.append({"input": v, "reason": e.reason})
            log(f"skipped {e}")
    if not held:
        raise ValueError("mien evaluate reenact: no usable held-out video")
    net = M.lpips_network(o.lpips_net)
    ana = CropAnalysis(size, o.device)
    ref_ids = {}
    for i, h in enumerate(held):
        ref_ids[i] = (ana.add(h.source.image[None])[0], ana.add(np.stack([d.image for d in h.drivers])))
    pairs = []
    best: dict[tuple[int, int], int | None] = {}

    def best_frame(i: int, j: int) -> int | None:
        """Index of driver j's frame nearest source i in shape (None: no finite distance: the first frame stays)."""
        if (i, j) not in best:
            d = shape_distance(held[i].source.landmarks[:468], np.stack([x.landmarks[:468] for x in held[j].drivers]))
            best[i, j] = int(np.nanargmin(d)) if np.isfinite(d).any() else None
        return best[i, j]

    for name, r in reenactors.items():
        for i, h in enumerate(held):
            others = [(i + 1) % len(held)] if o.cross_pairs == "next" else range(len(held))
            for kind, j in [("self", i)] + [("cross", j) for j in others if j != i]:
                drv = held[j]
                ref_id = ref_ids[j][0]
                reference = None if o.absolute else drv.source
                if reference is not None and kind == "cross" and o.reference == "best":
                    k = best_frame(i, j)
                    if k is not None:
                        reference, ref_id = drv.drivers[k], ref_ids[j][1][k]
                st = r.encode_source(h.source)
                out = np.concatenate([r.animate(st, drv.drivers[b:b + 8], reference)
                                      for b in range(0, len(drv.drivers), 8)])
                row = {"model": name, "kind": kind, "source": h.path, "driving": drv.path, "frames": len(out)}
                if kind == "self":
                    p, t = _images(out), _images(np.stack([d.image for d in drv.drivers]))
                    row.update(l1=_mean(M.l1(p, t)), psnr=_mean(M.psnr(p, t)), ssim=_mean(M.ssim(p, t)),
                               lpips=_mean(M.lpips(p, t, net)) if net is not None else float("nan"))
                row["_ids"] = ana.add(out)
                row["_src"], row["_drv"], row["_ref"] = ref_ids[i][0], ref_ids[j][1], ref_id
                pairs.append(row)
        log(f"{name}: {sum(p['model'] == name and p['kind'] == 'cross' for p in pairs)} cross + {len(held)} self "
            "pairs reenacted")
    a = ana.finish()
    for row in pairs:
        ids, src, drv, ref = row.pop("_ids"), row.pop("_src"), row.pop("_drv"), row.pop("_ref")
        lm_o, lm_d = a["landmarks"][ids], a["landmarks"][drv]
        target = lm_d if o.absolute else transfer_targets(a["landmarks"][src], lm_d, a["landmarks"][ref])
        row.update(csim=_mean(M.csim(a["identity"][ids], np.repeat(a["identity"][src][None], len(ids), 0))),
                   akd=_mean(M.akd(lm_o, lm_d)), akd_target=_mean(M.akd(lm_o, target)),
                   apd=_mean(M.apd(a["pose"][ids], a["pose"][drv])),
                   aed_au=_mean(M.aed(a["au"][ids], a["au"][drv], "mae")) if a["au"].shape[1] else float("nan"),
                   aed_expr=_mean(M.aed(a["expression"][ids], a["expression"][drv])),
                   emotion_agreement=_mean(M.emotion_agreement(a["emotion"][ids], a["emotion"][drv])),
                   face_rate=float(np.isfinite(lm_o[:, 0, 0]).mean()))
    table = {}
    for name in reenactors:
        rows = [p for p in pairs if p["model"] == name]
        t = {f"self_{m}": _mean([p[m] for p in rows if p["kind"] == "self"]) for m in SELF_METRICS}
        t.update({f"self_{m}": _mean([p[m] for p in rows if p["kind"] == "self"]) for m in ("akd", "face_rate")})
        t.update({f"cross_{m}": _mean([p[m] for p in rows if p["kind"] == "cross"]) for m in CROSS_METRICS})
        table[name] = t
    return {"models": table, "pairs": pairs, "options": asdict(o), "videos": [h.path for h in held],
            "skipped": skipped, "lpips": "ok" if net is not None else "weights unavailable",
            "crop_size": size, "seconds": time.perf_counter() - t0}


COLUMNS = (("self_l1", "L1 ↓"), ("self_psnr", "PSNR ↑"), ("self_ssim", "SSIM ↑"), ("self_lpips", "LPIPS ↓"),
           ("self_akd", "AKD ↓"), ("self_face_rate", "face found"), ("cross_csim", "CSIM ↑"), ("cross_akd", "AKD ↓"),
           ("cross_akd_target", "AKD-target ↓"), ("cross_aed_au", "AED-AU ↓"),
           ("cross_aed_expr", "AED-expr ↓"), ("cross_emotion_agreement", "Emotion agr. ↑"),
           ("cross_apd", "APD (°) ↓"), ("cross_face_rate", "face found"))


def markdown_table(report: dict) -> str:
    """The report's table in Markdown: one row per reenactor, self-reenactment then cross-reenactment columns."""
    head = "| reenactor | " + " | ".join(f"{'self' if k.startswith('self') else 'cross'} {t}"
                                          for k, t in COLUMNS) + " |"
    lines = [head, "|" + "---|" * (len(COLUMNS) + 1)]
    for name, t in report["models"].items():
        lines.append(f"| {name} | " + " | ".join(f"{t[k]:.4g}" if np.isfinite(t[k]) else "–" for k, _ in COLUMNS)
                     + " |")
    n = len(report["videos"])
    n_cross = sum(p["kind"] == "cross" for p in report["pairs"]) // max(len(report["models"]), 1)
    lines += ["", f"{n} held-out videos ({n} self pairs, {n_cross} cross pairs), "
              f"{report['options']['frames']} driving frames each, crop {report['crop_size']} px, "
              + ("absolute motion. " if report['options']['absolute'] else
                 f"relative motion (cross reference: {report['options'].get('reference', 'first')} driving frame). ")
              + ("" if report["lpips"] == "ok" else "LPIPS: weights unavailable. ")
              + (f"Skipped: {len(report['skipped'])}." if report["skipped"] else "")]
    return "\n".join(lines) + "\n"


def write_report(report: dict, out_dir: str | os.PathLike) -> dict[str, str]:
    """Write ``report.md``, ``metrics.csv`` (one row per reenactor), ``pairs.csv`` and ``report.json``
    atomically into ``out_dir``; returns {kind: path}."""
    import csv
    import io

    from mien.io.atomic import atomic_output

    os.makedirs(out_dir, exist_ok=True)
    files = {}

    def put(name, text):
        p = os.path.join(out_dir, name)
        with atomic_output(p) as tmp:
            tmp.write_text(text)
        files[name] = p

    put("report.md", markdown_table(report))
    buf = io.StringIO()
    w = csv.writer(buf)
    keys = [k for k, _ in COLUMNS]
    w.writerow(["reenactor", *keys])
    for name, t in report["models"].items():
        w.writerow([name, *(t[k] for k in keys)])
    put("metrics.csv", buf.getvalue())
    buf = io.StringIO()
    cols = ["model", "kind", "source", "driving", "frames", *SELF_METRICS, *CROSS_METRICS]
    w = csv.DictWriter(buf, cols, extrasaction="ignore")
    w.writeheader()
    w.writerows(report["pairs"])
    put("pairs.csv", buf.getvalue())
    put("report.json", json.dumps(report, indent=1, default=float, allow_nan=True))
    return files


__all__ = ["CropAnalysis", "HeldOutVideo", "ReenactEvalOptions", "evaluate_reenact", "markdown_table",
           "sample_video", "transfer_targets", "write_report"]
