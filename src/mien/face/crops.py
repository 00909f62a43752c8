"""Square face crops (landmark boxes or similarity-aligned), for the networks that take a face image."""

from __future__ import annotations

import re

import cv2
import numpy as np


def square_box(bbox: np.ndarray, scale: float) -> np.ndarray:
    """Square boxes centred on ``bbox`` with side ``scale`` × its longer side.

    Args:
        bbox: (..., 4) x_min, y_min, x_max, y_max in pixels.
        scale: enlargement of the longer side.

    Returns:
        float32 (..., 4) square boxes in pixels (may extend past the frame).
    """
    bbox = np.asarray(bbox, np.float32)
    c = (bbox[..., :2] + bbox[..., 2:]) / 2
    half = np.max(bbox[..., 2:] - bbox[..., :2], axis=-1, keepdims=True) * scale / 2
    return np.concatenate([c - half, c + half], -1)


def crop_square(image: np.ndarray, box: np.ndarray, size: int) -> np.ndarray:
    """Cut a square box out of an RGB frame and resize it to ``size`` × ``size``.

    Parts of the box outside the frame are black (as face-api pads). Downscaling uses area averaging.

    Args:
        image: (H, W, 3) uint8 RGB.
        box: (4,) square box x_min, y_min, x_max, y_max in pixels (see :func:`square_box`).
        size: output side in pixels.

    Returns:
        (size, size, 3) uint8 RGB.
    """
    x0, y0, x1, y1 = (float(v) for v in box)
    s = size / max(x1 - x0, 1e-6)
    h, w = image.shape[:2]
    # integer window inside the frame, then one resize; pad what falls outside
    ix0, iy0 = int(np.floor(max(x0, 0))), int(np.floor(max(y0, 0)))
    ix1, iy1 = int(np.ceil(min(x1, w))), int(np.ceil(min(y1, h)))
    out = np.zeros((size, size, 3), np.uint8)
    if ix1 <= ix0 or iy1 <= iy0:
        return out
    M = np.array([[s, 0, (ix0 - x0) * s], [0, s, (iy0 - y0) * s]], np.float64)
    region = image[iy0:iy1, ix0:ix1]
    interp = cv2.INTER_AREA if s < 1 else cv2.INTER_LINEAR
    rw, rh = max(round((ix1 - ix0) * s), 1), max(round((iy1 - iy0) * s), 1)
    small = cv2.resize(region, (rw, rh), interpolation=interp)
    ox, oy = round(M[0, 2]), round(M[1, 2])
    sx0, sy0 = max(-ox, 0), max(-oy, 0)
    dx0, dy0 = max(ox, 0), max(oy, 0)
    cw, ch = min(rw - sx0, size - dx0), min(rh - sy0, size - dy0)
    if cw > 0 and ch > 0:
        out[dy0:dy0 + ch, dx0:dx0 + cw] = small[sy0:sy0 + ch, sx0:sx0 + cw]
    return out


_CONTRACTS = (
    (re.compile(r"^landmark-box-square-(\d+(?:\.\d+)?)$"), "box"),
    (re.compile(r"^aligned-ffhq-(-?\d+(?:\.\d+)?)$"), "aligned"),
)


def parse_crop_contract(contract: str) -> tuple[str, float]:
    """Parse a model's crop contract string.

    * ``"landmark-box-square-<scale>"`` → ("box", scale): :func:`square_box` of the landmark box + :func:`crop_square`.
    * ``"aligned-ffhq-<margin>"`` → ("aligned", margin): the similarity crop of :mod:`mien.face.align` (eye and
      mouth centres, FFHQ-style; what ``mien prepare`` writes into shards with ``--margin``).

    Raises:
        ValueError: any other string.
    """
    for rx, kind in _CONTRACTS:
        m = rx.match(contract or "")
        if m:
            return kind, float(m.group(1))
    raise ValueError(f"unsupported crop contract {contract!r} (expected 'landmark-box-square-<scale>' or "
                     "'aligned-ffhq-<margin>')")


def face_crop(image: np.ndarray, contract, size: int | None = None, bbox: np.ndarray | None = None,
              landmarks: np.ndarray | None = None) -> np.ndarray:
    """The crop a model's contract asks for, from one face of one frame.

    Args:
        image: (H, W, 3) uint8 RGB frame.
        contract: crop contract string (see :func:`parse_crop_contract`), or a model's input contract
            (:class:`mien.models.registry.InputContract`: its ``crop`` string and ``crop_size``).
        size: output side S in pixels (default: the contract's ``crop_size``).
        bbox: (4,) x_min, y_min, x_max, y_max px landmark box (needed by box contracts).
        landmarks: (478, 2|3) px MediaPipe landmarks (needed by aligned contracts).

    Returns:
        (S, S, 3) uint8 RGB; area outside the frame is black.

    Raises:
        ValueError: unknown contract, or the box/landmarks it needs are missing.
    """
    if not isinstance(contract, str):
        size = contract.crop_size if size is None else size
        contract = contract.crop
    if size is None:
        raise ValueError("face_crop: no crop size given")
    kind, value = parse_crop_contract(contract)
    if kind == "box":
        if bbox is None:
            raise ValueError(f"crop contract {contract!r} needs the face box")
        return crop_square(image, square_box(bbox, value), size)
    if landmarks is None:
        raise ValueError(f"crop contract {contract!r} needs the face landmarks")
    from mien.face.align import params_to_affine, similarity_params, warp_crop

    A = params_to_affine(similarity_params(np.asarray(landmarks)[None], value), size)[0]
    return warp_crop(image, A, size)
