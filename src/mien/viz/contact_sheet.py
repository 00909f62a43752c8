"""Contact sheets of prepared clips: a few frames per sample with the crop-space landmarks drawn on."""

from __future__ import annotations

import os

import cv2
import numpy as np


def contact_sheet(samples: list[dict], frames_per_sample: int = 4, tile: int = 160,
                  landmarks: bool = True) -> np.ndarray:
    """Compose a grid image: one row per sample, ``frames_per_sample`` evenly spaced frames.

    Args:
        samples: decoded samples (:func:`mien.data.iter_samples`) with ``mp4`` (T, S, S, 3) uint8 and
            ``landmarks.npy`` (T, 478, 3) in crop pixels.
        frames_per_sample: columns.
        tile: side of one tile in pixels (frames are resized from S×S).
        landmarks: draw the landmarks (green dots).

    Returns:
        RGB uint8 (rows · (tile + 18), frames_per_sample · tile, 3); each row has a caption with the key,
        start time and keyword.

    Raises:
        ValueError: no samples.
    """
    if not samples:
        raise ValueError("no samples to draw")
    label_h = 18
    rows = []
    for s in samples:
        video = s["mp4"]
        lm = s.get("landmarks.npy")
        T = len(video)
        idx = np.linspace(0, T - 1, frames_per_sample).round().astype(int) if T else []
        tiles = []
        for i in idx:
            im = np.ascontiguousarray(video[i])
            S = im.shape[0]
            im = cv2.resize(im, (tile, tile), interpolation=cv2.INTER_AREA)
            if landmarks and lm is not None:
                for x, y in (lm[i, :, :2] * (tile / S)).astype(int):
                    if 0 <= x < tile and 0 <= y < tile:
                        im[y, x] = (0, 255, 0)
            tiles.append(im)
        while len(tiles) < frames_per_sample:
            tiles.append(np.zeros((tile, tile, 3), np.uint8))
        row = np.concatenate(tiles, 1)
        cap = np.full((label_h, row.shape[1], 3), 255, np.uint8)
        meta = s.get("json", {})
        text = f"{s['__key__']}  t={meta.get('start_sec', 0):.2f}s"
        if meta.get("keyword"):
            text += f"  '{meta['keyword']}'"
        if not meta.get("has_audio", True):
            text += "  (no audio)"
        cv2.putText(cap, text[:120], (3, 13), cv2.FONT_HERSHEY_SIMPLEX, 0.4, (0, 0, 0), 1, cv2.LINE_AA)
        rows.append(np.concatenate([cap, row], 0))
    return np.concatenate(rows, 0)


def save_contact_sheet(samples: list[dict], path: str | os.PathLike, **kwargs) -> str:
    """Write :func:`contact_sheet` as a PNG (atomically); returns the path."""
    import PIL.Image

    from mien.io.atomic import atomic_output

    img = contact_sheet(samples, **kwargs)
    with atomic_output(path) as tmp:
        PIL.Image.fromarray(img).save(tmp, format="PNG")
    return str(path)
