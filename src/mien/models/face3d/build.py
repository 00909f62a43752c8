"""Learn ``mien-face`` from analysed faces: :func:`build_face_model` and the command entry :func:`train_face_model`.

Recipe (statistics only, no gradient training):

1. MediaPipe meshes (478 points, px) of every analysed frame are similarity-aligned (Umeyama) to MediaPipe's
   canonical face (cm, OpenCV axes) — first on all 468 mesh points, then on the ``rigid`` 40 % of them that
   move least within a subject.
2. Gaze is removed: each iris keeps its subject's mean offset from its eye-contour centroid.
3. Subjects: each input × ``face_id`` is one identity unless ``subjects`` groups inputs.
   Identity basis = PCA (SVD) of the per-subject mean meshes about the template; it has at most
   ``n_subjects`` components. Infinitesimal similarity motions of the mean (translation, rotation, scale)
   are projected out of the identity and expression data first, so that pose and coefficients do not trade.
4. Within-subject deviations (frame − its subject's mean): eyelid directions = least-squares regression on
   the per-eye eye-aspect-ratio deviations (restricted to a 1.8 cm ball around each eye, scaled so that
   1 = EAR 0.05, closed); jaw = a rotation fitted to the mouth-opening regression (pivot, axis, skinning
   weights); both are regressed out, then expression basis = PCA of what remains.
"""

from __future__ import annotations

import glob
import os
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np

from mien.face import landmarks as L
from mien.face.align import umeyama_batch
from mien.face.geometry import canonical_face
from mien.models.face3d.mien_face import MienFaceModel, canonical_triangles

VIDEO_SUFFIXES = (".mp4", ".mov", ".avi", ".mkv", ".webm", ".jpg", ".jpeg", ".png")
RESULT_SUFFIXES = (".parquet",)
CLOSED_EAR = 0.05
EYE_RADIUS_CM = 1.8
RIGID_FRACTION = 0.4


def _expand(inputs: Sequence) -> list:
    out: list = []
    for item in inputs:
        if isinstance(item, (str, os.PathLike)) and Path(item).is_dir():
            files = sorted(p for p in glob.glob(str(Path(item) / "**" / "*"), recursive=True)
                           if p.lower().endswith(VIDEO_SUFFIXES + RESULT_SUFFIXES))
            out.extend(files)
        else:
            out.append(item)
    return out


def _load(item, analyze: Callable | None):
    """(name, AnalysisResult) of one input."""
    if not isinstance(item, (str, os.PathLike)):
        return Path(str(getattr(item, "meta", {}).get("source", "result"))).stem, item
    p = Path(item)
    if p.suffix.lower() in RESULT_SUFFIXES:
        from urllib.parse import unquote

        from mien.results import read_results
        # a partition of a `mien analyze` output folder (video=<key>/part-0.parquet) is named by its key
        name = unquote(p.parent.name[len("video="):]) if p.parent.name.startswith("video=") else p.stem
        return name, read_results(p)
    if analyze is None:
        raise ValueError(f"{p}: a video or image must be analysed first — pass analyze= (e.g. "
                         f"mien.analyze with identity=False) or give mien .parquet results")
    return p.stem, analyze(p)


def collect(inputs: Sequence, analyze: Callable | None = None, subjects: Sequence[str] | None = None,
            exclude: Sequence[str] = ()) -> dict[str, np.ndarray]:
    """Landmarks and per-frame measures of every face in ``inputs``.

    Args:
        inputs: analysis results (:class:`~mien.AnalysisResult`), mien results files (``.parquet``), videos or
            images (given to ``analyze``), or folders of those.
        analyze: ``path -> AnalysisResult`` for videos/images (the caller's ``mien.analyze``, e.g. with
            ``every=N, identity=False``; models sit below the pipelines, so it is passed in). None: only
            results are accepted.
        subjects: one subject label per input (after folder expansion); None: each input × face is a subject.
        exclude: input names (file stems) to leave out, e.g. held-out clips.

    Returns:
        dict: ``landmarks`` (N, 478, 3) float64 px, ``ear`` (N, 2) (subject's left, right), ``mouth_open`` (N,),
        ``subject`` (N,) int, ``subject_names`` list, ``sources`` {name: frames}, ``excluded`` names.

    Raises:
        ValueError: no usable face, or a video without ``analyze``.
    """
    items = _expand(inputs)
    if subjects is not None and len(subjects) != len(items):
        raise ValueError(f"subjects has {len(subjects)} labels for {len(items)} inputs")
    lms, ears, mouths, subj, names, sources = [], [], [], [], [], {}
    for i, item in enumerate(items):
        name, res = _load(item, analyze)
        if name in exclude or len(res) == 0:
            continue
        cols = res.columns()
        if cols["landmarks"].shape[1] != 478:
            raise ValueError(f"{name}: face model needs 478 MediaPipe landmarks, got {cols['landmarks'].shape[1]}")
        for fid in np.unique(cols["face_id"]):
            rows = cols["face_id"] == fid
            lm = cols["landmarks"][rows].astype(np.float64)
            ok = np.isfinite(lm).all((1, 2))
            if ok.sum() < 2:
                continue
            label = subjects[i] if subjects is not None else f"{name}#{fid}"
            if label not in names:
                names.append(label)
            lms.append(lm[ok])
            ears.append(np.stack([cols["ear_left"][rows], cols["ear_right"][rows]], 1)[ok])
            mouths.append(cols["mouth_open"][rows][ok])
            subj.append(np.full(ok.sum(), names.index(label)))
            sources[name] = sources.get(name, 0) + int(ok.sum())
    if not lms:
        raise ValueError("no analysed face with 478 landmarks in the inputs")
    return {"landmarks": np.concatenate(lms), "ear": np.concatenate(ears).astype(np.float64),
            "mouth_open": np.concatenate(mouths).astype(np.float64), "subject": np.concatenate(subj),
            "subject_names": names, "sources": sources, "excluded": sorted(set(exclude))}


def _subject_means(x: np.ndarray, subject: np.ndarray, n: int) -> np.ndarray:
    counts = np.bincount(subject, minlength=n).astype(np.float64)
    sums = np.zeros((n,) + x.shape[1:])
    np.add.at(sums, subject, x)
    return sums / np.maximum(counts, 1).reshape((n,) + (1,) * (x.ndim - 1))


def align_meshes(landmarks: np.ndarray, subject: np.ndarray, template: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Similarity-align meshes to ``template`` (468, 3) cm; returns (aligned (N, 478, 3) cm, rigid vertex ids)."""
    lm = landmarks
    s, R, t = umeyama_batch(lm[:, :468], template)
    x = s[:, None, None] * np.einsum("bij,bkj->bki", R, lm) + t[:, None]
    n = int(subject.max()) + 1
    dev = x - _subject_means(x, subject, n)[subject]
    spread = np.sqrt((dev[:, :468] ** 2).sum(-1).mean(0))
    rigid = np.sort(np.argsort(spread)[: int(RIGID_FRACTION * 468)])
    s, R, t = umeyama_batch(lm[:, rigid], template[rigid])
    x = s[:, None, None] * np.einsum("bij,bkj->bki", R, lm) + t[:, None]
    return x, rigid


def _degaze(x: np.ndarray, subject: np.ndarray) -> np.ndarray:
    n = int(subject.max()) + 1
    x = x.copy()
    for centre, contour in ((L.IRIS_RIGHT_CENTER, L.EYE_RIGHT), (L.IRIS_LEFT_CENTER, L.EYE_LEFT)):
        iris = np.arange(centre, centre + 5)
        c = x[:, contour].mean(1, keepdims=True)
        off = _subject_means(x[:, iris] - c, subject, n)
        x[:, iris] = c + off[subject]
    return x


def _similarity_modes(mean: np.ndarray) -> np.ndarray:
    """Orthonormal (7, 3V) infinitesimal similarity motions of ``mean`` (3 translations, 3 rotations, scale)."""
    c = mean - mean.mean(0)
    modes = [np.tile(e, (len(mean), 1)) for e in np.eye(3)]
    modes += [np.cross(e, c) for e in np.eye(3)]
    modes.append(c)
    q, _ = np.linalg.qr(np.stack([m.ravel() for m in modes], 1))
    return q.T


def _pca(x: np.ndarray, k: int, n_obs: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(basis (k, D) orthonormal rows, std (k,), explained fraction (k,)) of rows ``x`` (not re-centred).

    Signs are fixed (each row's largest-magnitude entry is positive), so the basis does not depend on the
    order of the inputs."""
    _, sv, vt = np.linalg.svd(x, full_matrices=False)
    var = sv ** 2
    k = min(k, int((sv > sv[0] * 1e-6).sum()))
    vt = vt[:k] * np.sign(vt[np.arange(k), np.abs(vt[:k]).argmax(1)])[:, None]  # sign: largest entry > 0
    return vt, np.sqrt(var[:k] / n_obs), var[:k] / var.sum()


def _jaw(mean: np.ndarray, d: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, float]:
    """Fit a rotation to the mouth-opening direction field d (V, 3): (pivot, axis, weights, rad per unit)."""
    mag = np.linalg.norm(d, axis=1)
    lower = mean[:, 1] > mean[L.MOUTH_CORNER_RIGHT, 1]  # below the mouth corners (y down)
    sel = lower & (mag > 0.5 * mag[lower].max())
    v = mean[sel]
    # d_v = ω × v − c  (c = ω × p): linear in (ω, c).
    A = np.zeros((len(v), 3, 6))
    A[:, 0, 1], A[:, 0, 2] = v[:, 2], -v[:, 1]
    A[:, 1, 0], A[:, 1, 2] = -v[:, 2], v[:, 0]
    A[:, 2, 0], A[:, 2, 1] = v[:, 1], -v[:, 0]
    A[:, :, 3:] = -np.eye(3)
    sol, *_ = np.linalg.lstsq(A.reshape(-1, 6), d[sel].reshape(-1), rcond=None)
    omega, c = sol[:3], sol[3:]
    speed = float(np.linalg.norm(omega))
    axis = omega / speed
    pivot = np.cross(c, omega) / speed ** 2
    if abs(axis[0]) > 1e-3:  # slide along the axis to the mid-sagittal plane x = 0
        pivot = pivot - pivot[0] / axis[0] * axis
    motion = np.cross(omega, mean - pivot)
    w = (d * motion).sum(1) / np.maximum((motion ** 2).sum(1), 1e-12)
    w = np.clip(w, 0.0, 1.0)
    w[(w < 0.05) | (np.arange(len(w)) >= 468)] = 0.0
    return pivot, axis, w, speed


def build_face_model(inputs, n_shape: int = 50, n_expression: int = 50, *, analyze: Callable | None = None,
                     subjects: Sequence[str] | None = None, exclude: Sequence[str] = (),
                     template: str = "canonical") -> MienFaceModel:
    """Learn a ``mien-face`` model (see the module docstring for the recipe).

    Args:
        inputs: analysis results, ``.parquet`` results files, videos/images or folders (see :func:`collect`),
            or the dict that :func:`collect` returns.
        n_shape: most identity components (capped at the number of subjects).
        n_expression: most expression components.
        analyze: ``path -> AnalysisResult`` for video/image inputs (see :func:`collect`).
        subjects: one identity label per input (None: each input × face_id is an identity).
        exclude: input names (file stems) to leave out (held-out clips).
        template: "canonical" (mean shape = MediaPipe's canonical face for vertices 0–467, the training mean
            for the irises; zero coefficients give the canonical face) or "data" (mean of the training faces).

    Returns:
        :class:`MienFaceModel`; ``meta`` records sources, counts and explained variances.

    Raises:
        ValueError: no usable faces, fewer than 2 subjects, or a bad ``template``.
    """
    if template not in ("canonical", "data"):
        raise ValueError(f"template must be 'canonical' or 'data', got {template!r}")
    data = inputs if isinstance(inputs, dict) else collect(inputs, analyze, subjects=subjects, exclude=exclude)
    subject = data["subject"]
    n_subj = int(subject.max()) + 1
    if n_subj < 2:
        raise ValueError(f"need faces of at least 2 subjects to learn an identity basis, got {n_subj}")
    canon = canonical_face().astype(np.float64)
    x, rigid = align_meshes(data["landmarks"], subject, canon)
    x = _degaze(x, subject)
    n, v = len(x), x.shape[1]
    mean = x.mean(0)
    if template == "canonical":
        mean[:468] = canon
    means = _subject_means(x, subject, n_subj)
    # Pose and coefficients must not trade off: remove similarity motions of the mean from the data.
    q = _similarity_modes(mean)
    offsets = (means - mean).reshape(n_subj, -1)
    offsets -= (offsets @ q.T) @ q
    ubasis, ustd, uexp = _pca(offsets, n_shape, n_subj)
    dev = (x - means[subject]).reshape(n, -1)
    dev -= (dev @ q.T) @ q
    total_within = float((dev ** 2).sum())
    # Eyelids: regress on per-eye EAR deviations, keep each eye's neighbourhood.
    ear = data["ear"] - _subject_means(data["ear"], subject, n_subj)[subject]
    b, *_ = np.linalg.lstsq(ear, dev, rcond=None)
    eyelid = np.zeros((2, v, 3))
    ear_open = data["ear"].mean(0)
    for k, contour in enumerate((L.EYE_LEFT, L.EYE_RIGHT)):  # EAR column 0 = subject's left eye
        near = np.linalg.norm(mean - mean[contour].mean(0), axis=1) < EYE_RADIUS_CM
        eyelid[k, near] = -b[k].reshape(v, 3)[near] * (ear_open[k] - CLOSED_EAR)
    dev = dev - ear @ b
    # Jaw: a rotation fitted to the mouth-opening direction field.
    mo = data["mouth_open"] - _subject_means(data["mouth_open"], subject, n_subj)[subject]
    dmo = (mo @ dev) / max(float(mo @ mo), 1e-12)
    pivot, axis, weights, speed = _jaw(mean, dmo.reshape(v, 3))
    dev = dev - np.outer(mo, dmo)
    ebasis, estd, eexp = _pca(dev, n_expression, n)
    explained_within = float((dev ** 2).sum()) / total_within  # share left to the expression PCA
    meta = {
        "format_note": "mien-face: cm, OpenCV axes (x image-right, y down, z away), MediaPipe 478-point topology",
        "template": template, "sources": data["sources"], "subjects": data["subject_names"],
        "excluded": data.get("excluded", list(exclude)), "n_frames": int(n), "n_subjects": n_subj,
        "shape_explained": uexp.round(5).tolist(), "expression_explained": eexp.round(5).tolist(),
        "expression_share_of_within_subject_variance": round(explained_within, 4),
        "jaw": {"axis": axis.round(4).tolist(), "pivot_cm": pivot.round(3).tolist(),
                "rad_per_mouth_open": round(speed, 4)},
        "eyelid": {"open_ear": ear_open.round(4).tolist(), "closed_ear": CLOSED_EAR},
    }
    arrays = {
        "mean": mean, "shape_basis": ubasis.reshape(-1, v, 3), "shape_std": ustd, "shape_explained": uexp,
        "expression_basis": ebasis.reshape(-1, v, 3), "expression_std": estd, "expression_explained": eexp,
        "eyelid_basis": eyelid, "jaw_pivot": pivot, "jaw_weights": weights,
        "triangles": canonical_triangles(), "rigid_vertices": rigid,
    }
    return MienFaceModel(arrays, meta)


def train_face_model(inputs: list[str], output: str, n_shape: int = 50, n_expression: int = 50, *,
                     analyze: Callable | None = None, exclude: Sequence[str] = (), template: str = "canonical",
                     dtype: str = "float32") -> MienFaceModel:
    """Entry point of ``mien train face-model DATASETS… -o model.npz``: build and save a ``mien-face`` model.

    Args:
        inputs: videos, images, mien ``.parquet`` results or folders of them.
        output: ``.npz`` path (written atomically).
        n_shape, n_expression, analyze, exclude, template: see :func:`build_face_model`; the command passes
            ``analyze=functools.partial(mien.pipelines.analyze.analyze, every=N, identity=False)``.
        dtype: "float32" or "float16" storage of the float arrays.

    Returns:
        The model (as built, float32).
    """
    if dtype not in ("float32", "float16"):
        raise ValueError(f"dtype must be float32 or float16, got {dtype!r}")
    model = build_face_model(inputs, n_shape, n_expression, analyze=analyze, exclude=exclude, template=template)
    model.save(output, dtype=np.dtype(dtype))
    return model
