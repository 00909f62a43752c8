"""Default AU-model features of face-crop image files, with an optional on-disk cache — for training the
feature-vector AU model (:class:`mien.tasks.au.AUFeaturesTask`) on labelled image datasets.

This runs face models (MediaPipe landmarks, the face-api expression net through
:func:`mien.models.au.tight_crop_features`), which is why it lives in ``pipelines`` and not in ``mien.data``:
:class:`mien.data.au.AUFeatureDataset` takes these features (or this function) as an argument.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch

from mien.data.au.images import read_rgb

__all__ = ["FEATURE_CACHE_VERSION", "au_image_features"]

log = logging.getLogger(__name__)

FEATURE_CACHE_VERSION = "mien-au-features-v1"
"""Version tag of :func:`au_image_features` caches (changes when the feature definition changes)."""


def _check_cache_location(path: Path) -> None:
    pkg = Path(__file__).resolve().parents[1]
    roots = [pkg] + ([pkg.parents[1]] if (pkg.parents[1] / "pyproject.toml").is_file() else [])
    p = path.resolve()
    for r in roots:
        if p == r or r in p.parents:
            raise ValueError(f"feature cache {path} is inside {r}: per-image features of licensed face data "
                             "must not be written into the mien package or repository; use a path outside it")


def au_image_features(paths: Sequence[str | os.PathLike], cache: str | os.PathLike | None = None,
                      mirror: bool = True, verbose: bool = False) -> tuple[np.ndarray, np.ndarray | None, np.ndarray]:
    """Default AU-model features (:func:`mien.models.au.tight_crop_features`) of face-crop image files.

    Each image is read as RGB; MediaPipe landmarks come from the upscaled, black-padded image (for tight crops
    such as CK+48), then the face-api embedding of the 1.1× landmark-box crop ‖ the canonical-aligned mesh
    (D = 1660), and with ``mirror`` the same for the horizontally flipped image.

    Args:
        paths: N image files.
        cache: optional ``.npz`` file (outside the mien repository — these are per-image derivatives of the
            images, which licences such as CK+'s forbid redistributing). Rows of files already in it are
            reused (keyed by the resolved path); missing ones are computed and the file is rewritten
            atomically with the union.
        mirror: also return the mirrored features.
        verbose: log the extraction time (INFO, logger ``mien.pipelines.au_features``).

    Returns:
        ``(features, mirrored, face_found)``: float32 (N, 1660), float32 (N, 1660) or None, bool (N,);
        rows without a face are zeros with ``face_found`` False.

    Raises:
        ValueError: ``cache`` lies inside the mien package or repository. FileNotFoundError: unreadable image.
    """
    import time

    keys = [str(Path(p).resolve()) for p in paths]
    have: dict[str, int] = {}
    store = None
    if cache is not None:
        cache = Path(cache)
        _check_cache_location(cache)
        if cache.is_file():
            z = np.load(cache, allow_pickle=False)
            if str(z["version"]) == FEATURE_CACHE_VERSION and (not mirror or "mirrored" in z.files):
                store = {k: z[k] for k in z.files}
                have = {str(k): i for i, k in enumerate(store["paths"])}
    todo = [i for i, k in enumerate(keys) if k not in have]
    from mien.models.au import FEATURE_DIM

    feats = np.zeros((len(keys), FEATURE_DIM), np.float32)
    flipped = np.zeros((len(keys), FEATURE_DIM), np.float32)
    ok = np.zeros(len(keys), bool)
    for i, k in enumerate(keys):
        if k in have:
            feats[i], ok[i] = store["features"][have[k]], store["face_found"][have[k]]
            if mirror:
                flipped[i] = store["mirrored"][have[k]]
    if todo:
        from mien.models.au import tight_crop_features

        t0 = time.time()
        # building the nets draws their random init from the global RNG: fork it, so that a run gives the same
        # result whether or not the features came from the cache
        with torch.random.fork_rng(devices=[]):
            f, fl, o = tight_crop_features([read_rgb(paths[i]) for i in todo], mirror=True)
        feats[todo], flipped[todo], ok[todo] = f, fl, o
        if verbose:
            log.info("AU features: %d/%d new frames with a face, %.1f s", int(o.sum()), len(o), time.time() - t0)
        if cache is not None:
            from mien.io.atomic import atomic_output

            if store is None:
                store = {"paths": np.array([], str), "features": np.zeros((0, FEATURE_DIM), np.float32),
                         "mirrored": np.zeros((0, FEATURE_DIM), np.float32), "face_found": np.zeros(0, bool)}
            new = {"paths": np.array([keys[i] for i in todo]), "features": f, "mirrored": fl, "face_found": o}
            out = {k: np.concatenate([store[k], new[k]]) for k in new}
            with atomic_output(cache) as tmp:
                with open(tmp, "wb") as fh:
                    np.savez(fh, version=np.array(FEATURE_CACHE_VERSION), **out)
    return feats, (flipped if mirror else None), ok

