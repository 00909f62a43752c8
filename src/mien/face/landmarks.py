"""Index sets of the MediaPipe 478-point face mesh used across mien, and the padded boxes around groups of them
(:func:`region_box_masks`: the eye/brow and lip regions of the reenactment losses and refiner).

Sides are the subject's: the subject's right eye is on the image's left in an unmirrored frame.
"""

import numpy as np

# Eye Aspect Ratio points p1..p6 (Soukupová & Čech 2016): corners p1/p4, upper lid p2/p3, lower lid p6/p5.
EAR_RIGHT = np.array([33, 160, 158, 133, 153, 144])
EAR_LEFT = np.array([362, 385, 387, 263, 373, 380])
# Closed eye contours (16 points each).
EYE_RIGHT = np.array([33, 7, 163, 144, 145, 153, 154, 155, 133, 173, 157, 158, 159, 160, 161, 246])
EYE_LEFT = np.array([263, 249, 390, 373, 374, 380, 381, 382, 362, 398, 384, 385, 386, 387, 388, 466])
IRIS_RIGHT_CENTER = 468  # 469–472: right iris contour
IRIS_LEFT_CENTER = 473  # 474–477: left iris contour
# Lip contours (20 points each, as tuples) and the brows (10 points each: the subject's right brow first).
LIPS_OUTER = (61, 146, 91, 181, 84, 17, 314, 405, 321, 375, 291, 409, 270, 269, 267, 0, 37, 39, 40, 185)
LIPS_INNER = (78, 95, 88, 178, 87, 14, 317, 402, 318, 324, 308, 415, 310, 311, 312, 13, 82, 81, 80, 191)
BROWS = (70, 63, 105, 66, 107, 55, 65, 52, 53, 46, 300, 293, 334, 296, 336, 285, 295, 282, 283, 276)
# Inner lips (upper 13, lower 14) and inner mouth corners (78, 308).
MOUTH_INNER_UPPER, MOUTH_INNER_LOWER = 13, 14
MOUTH_CORNER_RIGHT, MOUTH_CORNER_LEFT = 78, 308

# The 68-point iBUG/Multi-PIE scheme (OpenFace, dlib) as the nearest MediaPipe mesh vertices:
# jaw 0–16, brows 17–26, nose 27–35, eyes 36–47, outer lips 48–59, inner lips 60–67.
IBUG68 = np.array([
    162, 234, 93, 58, 172, 136, 149, 148, 152, 377, 378, 365, 397, 288, 323, 454, 389,
    71, 63, 105, 66, 107, 336, 296, 334, 293, 301,
    168, 197, 5, 4, 75, 97, 2, 326, 305,
    33, 160, 158, 133, 153, 144, 362, 385, 387, 263, 373, 380,
    61, 39, 37, 0, 267, 269, 291, 405, 314, 17, 84, 181,
    78, 82, 13, 312, 308, 317, 14, 87,
])


def region_box_masks(points, groups, size: int, pad: float):
    """Pixels inside padded landmark boxes: per group of landmark indices, the axis-aligned box of those points grown
    by ``pad`` of its size on every side; a pixel is inside when its centre (x + 0.5, y + 0.5) is (edges included).

    Args:
        points: torch float tensor (B, K, ≥2) landmarks (x, y) in the pixels of a ``size`` × ``size`` image.
        groups: index sequences into K (e.g. ``EYE_LEFT``, ``LIPS_OUTER``).
        size: image side S in pixels. pad: growth per side, a fraction of the box's width / height.

    Returns:
        bool tensor (B, G, S, S) on the points' device, indexed [b, group, y, x].
    """
    import torch

    p = points[..., :2]
    coord = torch.arange(size, device=p.device, dtype=p.dtype) + 0.5
    masks = []
    for idx in groups:
        q = p[:, torch.as_tensor(idx, device=p.device)]
        lo, hi = q.amin(1), q.amax(1)
        ext = (hi - lo) * pad
        lo, hi = lo - ext, hi + ext
        inx = (coord[None] >= lo[:, :1]) & (coord[None] <= hi[:, :1])  # (B, S) over x
        iny = (coord[None] >= lo[:, 1:]) & (coord[None] <= hi[:, 1:])
        masks.append(iny[:, :, None] & inx[:, None, :])
    if not masks:
        return torch.zeros(p.shape[0], 0, size, size, dtype=torch.bool, device=p.device)
    return torch.stack(masks, 1)
