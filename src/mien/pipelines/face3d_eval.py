"""``mien evaluate face3d``: held-out evaluation of 3-D face reconstruction (issue 11).

Per input (video or image; one face per frame):

1. **Landmark error against an independent detector** — dlib's 68-point model (:mod:`mien.face.dlib68`, HOG
   detection + iBUG shape predictor) on every ``landmark_every``-th analysed frame; each method's mesh is
   mapped to the 68 points (:func:`mien.models.face3d.landmark_error`) and the error normalised by the
   inter-ocular distance (outer eye corners, as in 300-W): NME over all 68 points and over the 51 inner
   points (dlib's jaw contour runs below MediaPipe's face oval on turned faces). Methods: the per-frame fit,
   the same One Euro-smoothed, the learned encoder (``encoder``), and the baselines *mean expression* (the
   fit's pose and identity with zero expression, jaw and eyelids) and *MediaPipe* (the raw landmarks the fit
   is fitted to — a reference, not a 3-D model).
2. **Jitter on still segments** (:func:`mien.pipelines.face3d.jitter_report`): mean frame-to-frame motion of
   the posed mesh (px) and of the unposed mesh (mm) on frames where the low-passed face hardly moves, without
   and with One Euro smoothing (``--face3d-smooth``), next to MediaPipe's raw landmark jitter; and a figure.
3. **Expression consistency** (:mod:`mien.metrics.expression`) needs a neural renderer (a face3d-learn export
   given as ``encoder``); without one it is reported as not measured — a grey mesh render is not a face image
   for the emotion network.

Writes ``face3d_eval.json``, ``landmarks.csv``, ``jitter.csv``, ``report.md`` and ``jitter.png`` into the
output folder (atomically).
"""

from __future__ import annotations

import json
import os
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from mien.errors import InputError
from mien.pipelines.face3d import Face3DFit, _meshes, fit_result, frame_motion, jitter_report, still_frames

METHOD_FIT = "per-frame fit"
METHOD_SMOOTH = "per-frame fit + One Euro"
METHOD_MEAN_EXPR = "baseline: mean expression"
METHOD_MEDIAPIPE = "reference: MediaPipe landmarks"
METHOD_ENCODER = "learned encoder"


@dataclass
class Face3DEvalReport:
    """What :func:`evaluate_face3d` measured.

    Attributes:
        landmarks: rows {input, method, n, nme, nme_inner, px} (NME = mean point error / inter-ocular
            distance; ``input`` "ALL" = pooled over frames of every input).
        jitter: rows {input, frames, still_pairs, landmarks_px, posed_px, posed_px_smoothed, shape_mm,
            shape_mm_smoothed; with an encoder encoder_posed_px, encoder_posed_px_smoothed}.
        consistency: rows {input, method, n, emotion_top1, emotion_tv, emotion_corr, n_au, au_mae, au_corr,
            psnr, ssim} (empty when not measured): emotion over all n pairs (face-api on the whole crop), AUs
            over the n_au pairs where MediaPipe finds both faces.
        transfer: rows {input "SOURCE → TARGET", method, n, emotion_* , au_*}: source vs transfer output.
        notes: what was skipped or not measured, and why.
        files: output files. seconds: wall time. meta: model, options, dlib model.
    """

    landmarks: list = field(default_factory=list)
    jitter: list = field(default_factory=list)
    consistency: list = field(default_factory=list)
    transfer: list = field(default_factory=list)
    notes: list = field(default_factory=list)
    files: list = field(default_factory=list)
    seconds: float = 0.0
    meta: dict = field(default_factory=dict)


def posed_landmarks(fit: Face3DFit) -> np.ndarray:
    """MediaPipe landmarks of the posed meshes: (N, 478, 3) px (NaN where the model embeds none)."""
    from mien.models.face3d.base import N_MEDIAPIPE

    m = fit.model
    out = np.full((len(fit.frame), N_MEDIAPIPE, 3), np.nan, np.float32)
    if len(fit.frame):
        c = fit.columns
        lm = np.asarray(m.landmarks(fit.vertices), np.float32)
        out[:, m.embedding.landmark_ids] = (c["face3d_scale"][:, None, None] * np.einsum(
            "nij,nvj->nvi", c["face3d_rotation"], lm) + c["face3d_translation"][:, None])
    return out


def smoothed(fit: Face3DFit) -> Face3DFit:
    """The fit with coefficients and pose One Euro-filtered per track (:func:`mien.heads.face3d.smooth_fit`)."""
    from mien.heads.face3d import smooth_fit

    cols = {k: v.copy() for k, v in fit.columns.items()}
    for fid in np.unique(fit.face_id):
        rows = np.nonzero(fit.face_id == fid)[0]
        if len(rows) > 1:
            smooth_fit(cols, rows, fit.t_sec[rows])
    return _meshes(cols, fit.frame, fit.face_id, fit.t_sec, fit.model, fit.meta)


def mean_expression(fit: Face3DFit) -> Face3DFit:
    """Baseline: the fit's pose and identity with zero expression, jaw and eyelids."""
    cols = {k: v.copy() for k, v in fit.columns.items()}
    for k in ("face3d_expression", "face3d_jaw", "face3d_eyelids"):
        cols[k][:] = 0
    return _meshes(cols, fit.frame, fit.face_id, fit.t_sec, fit.model, fit.meta)


def _held_out(model, path: str) -> bool | None:
    """False when the clip was used to build the face model (its stem in the model's ``meta['sources']``)."""
    src = getattr(model, "meta", {}).get("sources")
    if not src:
        return None
    return Path(path).stem not in str(src)


def _reference(dlib, source: str, fit: Face3DFit, bbox: np.ndarray, rows: np.ndarray, options: dict):
    """dlib's 68 points for ``rows`` of ``fit`` (frames decoded again): (rows kept, (n, 68, 2))."""
    from mien.io.video import open_source

    want = {int(fit.frame[r]): r for r in rows}
    kept, ref = [], []
    src = open_source(source, start=options.get("start"), end=options.get("end"), every=options.get("every", 1))
    for fr in src:
        r = want.get(fr.index)
        if r is None:
            continue
        pts = dlib(fr.image, bbox[r])
        if pts is not None:
            kept.append(r)
            ref.append(pts)
        if fr.index >= max(want):
            break
    return np.asarray(kept, np.int64), np.asarray(ref, np.float64).reshape(-1, 68, 2)


def _error_rows(name: str, methods: dict, ref: np.ndarray) -> list[dict]:
    from mien.models.face3d import landmark_error

    rows = []
    for method, pts in methods.items():
        full = landmark_error(pts, ref)
        inner = landmark_error(pts, ref, jaw_contour=False)
        rows.append({"input": name, "method": method, "n": len(ref), "nme": float(np.nanmean(full["nme"])),
                     "nme_inner": float(np.nanmean(inner["nme"])), "px": float(np.nanmean(full["px"])),
                     "_nme": full["nme"], "_inner": inner["nme"], "_px": full["px"]})
    return rows


def evaluate_face3d(inputs, output_dir: str | os.PathLike, *, model: str | None = None, every: int = 1,
                    start: float | None = None, end: float | None = None, landmark_every: int = 5,
                    dlib_model: str | os.PathLike | None = None, landmarks: bool = True,
                    encoder: str | os.PathLike | None = None, transfer: tuple | None = None,
                    figure: bool = True) -> Face3DEvalReport:
    """Evaluate the per-frame fit (and a learned encoder) on held-out inputs; write the report files.

    Args:
        inputs: video or image files (one face each; the first face per frame is used).
        output_dir: folder for ``face3d_eval.json``, ``landmarks.csv``, ``jitter.csv``, ``report.md``,
            ``jitter.png`` (created).
        model: face-model spec (:func:`mien.models.face3d.spec.open_face_model`; None = shipped mien-face).
        every, start, end: frame stride and time window (s) of the analysis (jitter is measured between
            consecutive analysed frames, so keep ``every`` 1 for it).
        landmark_every: dlib runs on every N-th analysed frame of a video (HOG detection costs ~0.1 s).
        dlib_model: a dlib 68-point ``.dat`` file (None: the one in ``face-recognition-models``).
        landmarks: measure the landmark error (needs the ``eval3d`` extra); False: jitter only.
        encoder: a face3d-learn export folder (encoder + neural renderer).
        transfer: (SOURCE, TARGET) files: also the expression consistency between the source and the neural
            expression-transfer output (needs ``encoder``), against the copy-the-target baseline.
        figure: write ``jitter.png``.

    Returns:
        :class:`Face3DEvalReport`.

    Raises:
        InputError: no input could be evaluated (every one missing, unreadable or without a face); a bad
            face-model, dlib model or encoder file. Inputs that fail are skipped and listed in ``notes``.
        ValueError: bad options.
    """
    from mien.heads.face3d import Face3DHead
    from mien.pipelines.analyze import analyze

    t0 = time.perf_counter()
    if every < 1 or landmark_every < 1:
        raise ValueError("every and landmark_every must be >= 1")
    inputs = [os.fspath(p) for p in inputs]
    if not inputs and transfer is None:
        raise ValueError("no inputs to evaluate")
    if transfer is not None and encoder is None:
        raise ValueError("--transfer needs --encoder DIR (the neural renderer draws the transfer)")
    head = Face3DHead(model)
    dlib = None
    if landmarks:
        from mien.face.dlib68 import Dlib68

        dlib = Dlib68(dlib_model)
    enc = None
    if encoder is not None:
        from mien.heads.face3d_learned import Face3DEncoderHead
        from mien.pipelines.face3d_encoder import open_encoder

        enc = open_encoder(encoder)
        enc_head = Face3DEncoderHead(encoder)
    rep = Face3DEvalReport(meta={
        "model": head.model.name, "face_model_files": [str(f) for f in head.files],
        "options": {"every": every, "start": start, "end": end, "landmark_every": landmark_every},
        "reference": f"dlib 68-point ({dlib.model.name})" if dlib else None,
        "encoder": os.fspath(encoder) if encoder else None})
    curves = {}
    lm_rows: list[dict] = []
    for path in inputs:
        name = Path(path).name
        held = _held_out(head.model, path)
        if held is False:
            rep.notes.append(f"{name}: used to build the face model (not held out)")
        try:
            analysis = analyze(path, every=every, start=start, end=end, max_faces=1, identity=False)
        except InputError as e:
            rep.notes.append(f"skipped {e}")
            continue
        if len(analysis) == 0:
            rep.notes.append(f"skipped {path}: no face found")
            continue
        fit = fit_result(analysis, head=head)
        cols = analysis.columns()
        order = np.lexsort((cols["face_id"], cols["frame"]))
        raw_lm = cols["landmarks"][order].astype(np.float64)
        bbox = cols["bbox"][order]
        fit_s = smoothed(fit)
        video = len(fit.frame) > 1
        opts = {"every": every, "start": start, "end": end}
        enc_fit = None
        if enc is not None:  # the encoder on every analysed face, as `mien analyze --face3d-encoder` does
            crops, _ = enc._crops(path, fit.frame, bbox, raw_lm, opts)
            cols_e = enc_head(np.stack(crops), raw_lm.astype(np.float32))
            enc_fit = _meshes(cols_e, fit.frame, fit.face_id, fit.t_sec, enc_head.model, {})
        if video:
            jr, js = jitter_report(fit, raw_lm), jitter_report(fit_s, raw_lm)
            row = {"input": name, "frames": len(fit.frame), "still_pairs": jr["still_pairs"],
                   "landmarks_px": jr["landmarks_px"], "posed_px": jr["posed_px"], "posed_px_smoothed": js["posed_px"],
                   "shape_mm": jr["shape_mm"], "shape_mm_smoothed": js["shape_mm"]}
            if enc_fit is not None:
                row["encoder_posed_px"] = jitter_report(enc_fit, raw_lm)["posed_px"]
                row["encoder_posed_px_smoothed"] = jitter_report(smoothed(enc_fit), raw_lm)["posed_px"]
            rep.jitter.append(row)
            curves[name] = {"t": fit.t_sec, "landmarks": frame_motion(raw_lm[:, :468, :2]),
                            "raw": frame_motion(fit.posed[..., :2]), "smooth": frame_motion(fit_s.posed[..., :2]),
                            "still": still_frames(raw_lm, fit.t_sec)}
        if dlib is not None:
            rows = np.arange(0, len(fit.frame), landmark_every if video else 1)
            kept, ref = _reference(dlib, path, fit, bbox, rows, {"every": every, "start": start, "end": end})
            if len(kept) < len(rows):
                rep.notes.append(f"{name}: dlib found no matching face in {len(rows) - len(kept)} of {len(rows)} "
                                 "frames (left out of the landmark error)")
            if len(kept):
                methods = {METHOD_FIT: posed_landmarks(fit)[kept], METHOD_SMOOTH: posed_landmarks(fit_s)[kept],
                           METHOD_MEAN_EXPR: posed_landmarks(mean_expression(fit))[kept],
                           METHOD_MEDIAPIPE: raw_lm[kept]}
                if enc_fit is not None:
                    methods[METHOD_ENCODER] = posed_landmarks(enc_fit)[kept]
                lm_rows += [{**r, "_video": video} for r in _error_rows(name, methods, ref)]
        if enc is not None:
            rep.consistency += enc.consistency(path, fit, bbox, raw_lm, opts)
    if transfer is not None:
        rep.transfer = enc.transfer_consistency(os.fspath(transfer[0]), os.fspath(transfer[1]),
                                                {"every": every, "start": start, "end": end})
    if inputs and not rep.jitter and not lm_rows and not rep.consistency:
        raise InputError(", ".join(inputs), "no input could be evaluated: " + "; ".join(rep.notes))
    rep.landmarks = _pooled(lm_rows)
    rep.consistency += _pooled_consistency(rep.consistency)
    if enc is None:
        rep.notes.append("expression consistency: not measured (needs a neural renderer: --encoder DIR of a "
                         "face3d-learn export)")
    if dlib is None:
        rep.notes.append("landmark error: not measured (--no-landmarks)")
    rep.seconds = time.perf_counter() - t0
    rep.files = write_report(rep, output_dir, curves if figure else None)
    return rep


def _pooled(rows: list[dict]) -> list[dict]:
    """Per-input rows plus, per method, rows pooled over every frame of the videos (``ALL videos``), of the
    images (``ALL images``), when both occur, and of both (``ALL``); private arrays dropped."""
    out = [{k: v for k, v in r.items() if not k.startswith("_")} for r in rows]
    groups = {"ALL videos": lambda r: r["_video"], "ALL images": lambda r: not r["_video"]}
    if len({r["_video"] for r in rows}) < 2:
        groups = {}
    groups["ALL"] = lambda r: True
    for group, keep in groups.items():
        for method in dict.fromkeys(r["method"] for r in rows):
            sel = [r for r in rows if r["method"] == method and keep(r)]
            cat = {k: np.concatenate([r[k] for r in sel]) for k in ("_nme", "_inner", "_px")}
            out.append({"input": group, "method": method, "n": int(len(cat["_nme"])),
                        "nme": float(np.nanmean(cat["_nme"])), "nme_inner": float(np.nanmean(cat["_inner"])),
                        "px": float(np.nanmean(cat["_px"]))})
    return out


def _pooled_consistency(rows: list[dict]) -> list[dict]:
    """One ``ALL`` row per method over every pair of every input (pair-weighted means; correlations are not
    poolable from per-input rows and are left out)."""
    if len({r["input"] for r in rows}) < 2:
        return []
    out = []
    for method in dict.fromkeys(r["method"] for r in rows):
        sel = [r for r in rows if r["method"] == method]
        row = {"input": "ALL", "method": method, "n": sum(r["n"] for r in sel), "n_au": sum(r["n_au"] for r in sel)}
        for k, w in (("emotion_top1", "n"), ("emotion_tv", "n"), ("psnr", "n"), ("ssim", "n"), ("au_mae", "n_au")):
            pairs = [(r[k], r[w]) for r in sel if r[w] and np.isfinite(r.get(k, np.nan))]
            tot = sum(n for _, n in pairs)
            row[k] = float(sum(v * n for v, n in pairs) / tot) if tot else float("nan")
        out.append(row)
    return out


def _md_table(rows: list[dict], cols: list[tuple[str, str, str]]) -> list[str]:
    lines = ["| " + " | ".join(h for _, h, _ in cols) + " |", "|" + "---|" * len(cols)]
    for r in rows:
        cells = []
        for k, _, fmt in cols:
            v = r.get(k)
            cells.append("—" if v is None or (isinstance(v, float) and not np.isfinite(v)) else format(v, fmt))
        lines.append("| " + " | ".join(cells) + " |")
    return lines


def report_markdown(rep: Face3DEvalReport) -> str:
    """The report as Markdown tables (landmark error, jitter, expression consistency, notes)."""
    md = [f"# mien evaluate face3d — {rep.meta.get('model')}", ""]
    if rep.landmarks:
        md += ["## Landmark error vs dlib 68 points (NME = mean error / inter-ocular distance, %)", ""]
        rows = [{**r, "nme": 100 * r["nme"], "nme_inner": 100 * r["nme_inner"]} for r in rep.landmarks]
        md += _md_table(rows, [("input", "input", "s"), ("method", "method", "s"), ("n", "frames", "d"),
                               ("nme", "NME-68 %", ".2f"), ("nme_inner", "NME-51 %", ".2f"),
                               ("px", "mean error px", ".2f")]) + [""]
    if rep.jitter:
        md += ["## Jitter on still segments (mean frame-to-frame motion)", ""]
        md += _md_table(rep.jitter, [("input", "input", "s"), ("frames", "frames", "d"),
                                     ("still_pairs", "still pairs", "d"), ("landmarks_px", "MediaPipe px", ".3f"),
                                     ("posed_px", "mesh px", ".3f"), ("posed_px_smoothed", "mesh px, One Euro", ".3f"),
                                     ("shape_mm", "shape mm", ".3f"),
                                     ("shape_mm_smoothed", "shape mm, One Euro", ".3f")]
                       + ([("encoder_posed_px", "encoder mesh px", ".3f"),
                           ("encoder_posed_px_smoothed", "encoder mesh px, One Euro", ".3f")]
                          if "encoder_posed_px" in rep.jitter[0] else [])) + [""]
    if rep.consistency:
        md += ["## Expression consistency (input vs neural render)", ""]
        md += _md_table(rep.consistency, [("input", "input", "s"), ("method", "method", "s"), ("n", "pairs", "d"),
                                          ("emotion_top1", "emotion top-1 agree", ".3f"),
                                          ("emotion_tv", "emotion TV ↓", ".3f"), ("emotion_corr", "emotion r", ".3f"),
                                          ("n_au", "AU pairs", "d"), ("au_mae", "AU MAE ↓", ".3f"), ("au_corr", "AU r", ".3f"),
                                          ("psnr", "PSNR dB", ".2f"), ("ssim", "SSIM", ".3f")]) + [""]
    if rep.transfer:
        md += ["## Expression consistency (source vs expression-transfer output)", ""]
        md += _md_table(rep.transfer, [("input", "source → target", "s"), ("method", "method", "s"),
                                       ("n", "pairs", "d"), ("emotion_top1", "emotion top-1 agree", ".3f"),
                                       ("emotion_tv", "emotion TV ↓", ".3f"), ("emotion_corr", "emotion r", ".3f"),
                                       ("n_au", "AU pairs", "d"), ("au_mae", "AU MAE ↓", ".3f"), ("au_corr", "AU r", ".3f")]) + [""]
    if rep.notes:
        md += ["## Notes", ""] + [f"- {n}" for n in rep.notes] + [""]
    md.append(f"{rep.seconds:.1f} s wall time.")
    return "\n".join(md) + "\n"


def write_report(rep: Face3DEvalReport, output_dir: str | os.PathLike, curves: dict | None) -> list[str]:
    """Write JSON, CSVs, Markdown and (with ``curves``) the jitter figure; returns the paths."""
    import pandas as pd

    from mien.io.atomic import atomic_output

    out = Path(output_dir)
    out.mkdir(parents=True, exist_ok=True)
    files = []

    def put(name: str, text: str) -> None:
        with atomic_output(out / name) as tmp:
            Path(tmp).write_text(text)
        files.append(str(out / name))

    d = asdict(rep)
    d.pop("files")
    put("face3d_eval.json", json.dumps(d, indent=1, default=float))
    for key in ("landmarks", "jitter", "consistency", "transfer"):
        if getattr(rep, key):
            put(f"{key}.csv", pd.DataFrame(getattr(rep, key)).to_csv(index=False))
    put("report.md", report_markdown(rep))
    if curves:
        from mien.viz.jitter import plot_jitter

        plot_jitter(curves, out / "jitter.png", title=f"{rep.meta.get('model')}: frame-to-frame mesh motion")
        files.append(str(out / "jitter.png"))
    return files


def load_report(path: str | os.PathLike) -> dict:
    """Read ``face3d_eval.json``."""
    return json.loads(Path(path).read_text())


__all__ = ["Face3DEvalReport", "evaluate_face3d", "load_report", "mean_expression", "posed_landmarks",
           "report_markdown", "smoothed"]
