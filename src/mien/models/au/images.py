"""The AU image models' input preprocessing, shared by training datasets and inference (one definition)."""

from __future__ import annotations

import numpy as np


def prepare_image(rgb: np.ndarray, size: int, grayscale: bool = False) -> np.ndarray:
    """One face crop as an AU image model's input.

    Args:
        rgb: (H, W, 3) uint8 RGB crop (cut as the model's contract says).
        size: side S of the model's square input in pixels.
        grayscale: convert to gray and replicate it to 3 channels (models trained on gray images, e.g. CK+).

    Returns:
        (3, S, S) float32 in [0, 1]; resized with area averaging when shrinking, bilinear when enlarging.
    """
    import cv2

    if grayscale:
        g = cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY)
        rgb = np.repeat(g[:, :, None], 3, axis=2)
    if rgb.shape[0] != size or rgb.shape[1] != size:
        interp = cv2.INTER_AREA if rgb.shape[0] > size else cv2.INTER_LINEAR
        rgb = cv2.resize(rgb, (size, size), interpolation=interp)
    return np.ascontiguousarray(rgb).transpose(2, 0, 1).astype(np.float32) / np.float32(255.0)
