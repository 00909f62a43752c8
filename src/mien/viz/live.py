"""The live (webcam) preview: overlay of the current frame's faces (with AU / emotion bars when those heads run),
and the reconstruction beside it."""

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
        id, head-pose axes, gaze rays; blinks are found after the fact, so no blink marker), and beside each
        box the bars of :func:`draw_scores` when the analyzer runs the ``emotion`` or ``au`` heads (from the
        most recent frame the heads have finished, :meth:`~mien.pipelines.frame_analyzer.FrameAnalyzer.latest_heads`,
        matched by ``face_id``: they lag the landmarks by about the heads' time); with a tokenizer
        head (``analyzer.head("tokenizer")``), (H, W + H, 3): the reconstruction of the first face of the frame, encoded and decoded by the tokenizer, as a square
        panel on the right (black when the frame has no face).
    """
    import cv2

    from mien.viz.overlay import draw_faces

    part = analyzer.latest(frame_index)
    k = len(part)
    out = draw_faces(image, part, list(range(k))) if k else image
    if k and (analyzer.head("expression") is not None or analyzer.head("au") is not None):
        ids, cols = analyzer.latest_heads(finish=("expression", "au"))
        names = [c for c in cols if c.startswith("emotion_") or _is_au(c)]
        for i in range(k):
            j = np.flatnonzero(ids == part.face_id[i])
            if len(j) and names:
                out = draw_scores(out, part.bbox[i], [(n.removeprefix("emotion_"), float(cols[n][j[0]]))
                                                      for n in names], copy=False)
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


def _is_au(name: str) -> bool:
    return len(name) == 4 and name.startswith("AU") and name[2:].isdigit()


def draw_scores(image: np.ndarray, bbox: np.ndarray, scores: list[tuple[str, float]], copy: bool = True) -> np.ndarray:
    """Horizontal bars, one per ``(label, value)``, beside a face box (right of it, or left where the frame
    ends).

    Args:
        image: RGB uint8 (H, W, 3) frame.
        bbox: the face box ``[x0, y0, x1, y1]`` in pixels.
        scores: labels and values in [0, 1] (probabilities: ``emotion_<label>``, ``AU01``…); NaN draws no bar.
        copy: draw on a copy (False: in place).

    Returns:
        RGB uint8 (H, W, 3): a label and a bar of length ∝ value per row (emotions blue, AUs orange), on a dark
        panel; rows that do not fit below the frame's top are cut.
    """
    import cv2

    out = image.copy() if copy else image
    h, w = out.shape[:2]
    row, bar_w, label_w = 12, 60, 62
    panel_w = label_w + bar_w + 6
    x0, y0, x1, _ = (int(round(float(v))) for v in bbox)
    px = x1 + 6 if x1 + 6 + panel_w <= w else max(x0 - 6 - panel_w, 0)
    py = min(max(y0, 0), max(h - row * len(scores) - 4, 0))
    n = min(len(scores), (h - py - 4) // row)
    if n <= 0:
        return out
    sub = out[py:py + row * n + 4, px:px + panel_w]
    sub[:] = sub // 3  # darken the panel for contrast
    for i, (label, value) in enumerate(scores[:n]):
        y = py + 2 + i * row
        color = (255, 170, 40) if _is_au(label) else (80, 170, 255)
        cv2.putText(out, label[:9], (px + 3, y + row - 3), cv2.FONT_HERSHEY_SIMPLEX, 0.35, (255, 255, 255), 1,
                    cv2.LINE_AA)
        if np.isfinite(value):
            length = int(round(min(max(value, 0.0), 1.0) * bar_w))
            cv2.rectangle(out, (px + label_w, y + 2), (px + label_w + length, y + row - 2), color, -1)
        cv2.rectangle(out, (px + label_w, y + 2), (px + label_w + bar_w, y + row - 2), (160, 160, 160), 1)
    return out
