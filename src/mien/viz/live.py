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
        RGB uint8 (H, W, 3) with landmarks/boxes drawn; with a tokenizer head (``analyzer.head("tokenizer")``),
        (H, W + H, 3):
        the reconstruction of the first face of the frame, encoded and decoded by the tokenizer, as a square
        panel on the right (black when the frame has no face).
    """
    import cv2

    from mien.results.result import AnalysisResult
    from mien.viz.overlay import draw_faces

    rows = analyzer.rows
    k = 0
    for f in reversed(rows["frame"]):
        if f != frame_index:
            break
        k += 1
    out = image
    if k:
        part = AnalysisResult.from_columns({"frame": rows["frame"][-k:], "face_id": rows["face_id"][-k:],
                                            "bbox": rows["bbox"][-k:], "landmarks": rows["landmarks"][-k:]})
        out = draw_faces(image, part, list(range(k)))
    head = analyzer.head("tokenizer")
    if head is None:
        return out
    tok = head.extractor
    h = image.shape[0]
    panel = np.zeros((h, h, 3), np.uint8)
    if k:
        crop = tok.crop(image, rows["bbox"][-k], rows["landmarks"][-k])
        _, faces = tok.reconstruct(crop[None])
        panel = cv2.resize(faces[0], (h, h), interpolation=cv2.INTER_LINEAR)
    return np.concatenate([out, panel], axis=1)
