"""The live (webcam) preview: overlay of the current frame's faces, and the reconstruction beside it."""

from __future__ import annotations

import numpy as np


def live_preview(image: np.ndarray, frame_index: int, analyzer) -> np.ndarray:
    """Preview image of one processed frame.

    Args:
        image: RGB uint8 (H, W, 3) frame.
        frame_index: its index (the analyzer's rows of this frame are drawn).
        analyzer: the :class:`~mien.pipelines.frame_analyzer.FrameAnalyzer` that processed it.

    Returns:
        RGB uint8 (H, W, 3) with the frame's faces drawn by :func:`mien.viz.overlay.draw_faces` (landmarks, box,
        id, head-pose axes, gaze rays; blinks are found after the fact, so no blink marker); with a tokenizer
        head (``analyzer.head("tokenizer")``), (H, W + H, 3): the reconstruction of the first face of the frame, encoded and decoded by the tokenizer, as a square
        panel on the right (black when the frame has no face).
    """
    import cv2

    from mien.viz.overlay import draw_faces

    part = analyzer.latest(frame_index)
    k = len(part)
    out = draw_faces(image, part, list(range(k))) if k else image
    head = analyzer.head("tokenizer")
    if head is None:
        return out
    tok = head.extractor
    h = image.shape[0]
    panel = np.zeros((h, h, 3), np.uint8)
    if k:
        crop = tok.crop(image, part.bbox[0], part.landmarks[0])
        _, faces = tok.reconstruct(crop[None])
        panel = cv2.resize(faces[0], (h, h), interpolation=cv2.INTER_LINEAR)
    return np.concatenate([out, panel], axis=1)
