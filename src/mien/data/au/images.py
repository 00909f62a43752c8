"""Face-image I/O for AU training: reading image files as RGB, resizing to the model's input, and a folder of
unlabelled face crops."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import torch

from mien.models.au.images import prepare_image as _prepare

__all__ = ["IMAGE_EXTS", "ImageFolderDataset", "prepare_image", "read_rgb"]

IMAGE_EXTS = (".png", ".jpg", ".jpeg", ".bmp", ".webp")
"""File suffixes read as images by :class:`ImageFolderDataset`."""


def read_rgb(path: str | os.PathLike) -> np.ndarray:
    """An image file as (H, W, 3) uint8 RGB (gray images replicated to RGB by OpenCV).

    Raises:
        FileNotFoundError: unreadable or missing file.
    """
    import cv2

    img = cv2.imread(str(path), cv2.IMREAD_COLOR)
    if img is None:
        raise FileNotFoundError(f"cannot read image {path}")
    return cv2.cvtColor(img, cv2.COLOR_BGR2RGB)


def prepare_image(rgb: np.ndarray, size: int, grayscale: bool = False) -> torch.Tensor:
    """(H, W, 3) uint8 RGB -> (3, size, size) float32 tensor in [0, 1]: :func:`mien.models.au.images.prepare_image`
    (the preprocessing analysis uses too) as a tensor."""
    return torch.from_numpy(_prepare(rgb, size, grayscale))


class ImageFolderDataset(torch.utils.data.Dataset):
    """Unlabelled face crops: every image under ``root`` (recursive, sorted), ``{"image": (3, S, S) [0, 1]}``.

    Raises:
        FileNotFoundError: no image found.
    """

    def __init__(self, root: str | os.PathLike, image_size: int = 64, grayscale: bool = False,
                 max_images: int | None = None):
        self.paths = sorted(p for p in Path(root).rglob("*") if p.suffix.lower() in IMAGE_EXTS)[:max_images]
        if not self.paths:
            raise FileNotFoundError(f"no images under {root}")
        self.image_size, self.grayscale = image_size, grayscale

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, i: int) -> dict:
        return {"image": prepare_image(read_rgb(self.paths[i]), self.image_size, self.grayscale)}

