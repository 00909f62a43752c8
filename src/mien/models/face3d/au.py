"""AU-named expression directions on the MediaPipe topology, from py-feat's AU+pose → mesh PLS model (MIT).

``mien/assets/face3d/au_to_mesh_pls_v4.npz`` (py-feat 2.1.5 ``feat/resources``, MIT) is a linear model
(partial least squares, 23 components, so exactly linear) from py-feat's Detector v2 outputs to an absolute
478-point mesh::

    mesh (3·478,) = intercept (1434,) + [AU01 … AU43 (20), Pitch, Yaw, Roll] (23,) @ coef (23, 1434)

Keys: ``coef`` (23, 1434) float32, ``intercept`` (1434,), ``au_columns`` (20,) FACS names AU01, AU02, AU04,
AU05, AU06, AU07, AU09, AU10, AU11, AU12, AU14, AU15, AU17, AU20, AU23, AU24, AU25, AU26, AU28, AU43;
``pose_columns`` (Pitch, Yaw, Roll); ``input_columns`` (23,); ``mean_aligned_mesh`` (478, 3);
``n_components`` 23; ``model_card``. The 1434 outputs are coordinate-major (x of the 478 points, then y, then
z), in a "frontalised, aspect-corrected" 2-D-pixel-like frame (face about 175 units wide, y up, z toward the
viewer). AU inputs are py-feat AU intensities (0–1); a unit of pose moves the mesh by ~6 cm (radians).

:func:`au_directions` expresses each input's direction in ``mien-face``'s frame (cm, OpenCV axes) by the
similarity that aligns the PLS mean mesh to MediaPipe's canonical face (scale ≈ 0.082 cm per unit, RMS
residual ≈ 0.44 cm — the PLS mesh's depth is scaled differently, so z directions are approximate).
"""

from __future__ import annotations

from functools import lru_cache
from importlib import resources

import numpy as np

from mien.face.align import umeyama
from mien.face.geometry import canonical_face


@lru_cache(maxsize=1)
def _pls() -> dict[str, np.ndarray]:
    with resources.files("mien.assets").joinpath("face3d/au_to_mesh_pls_v4.npz").open("rb") as f:
        with np.load(f) as z:
            return {k: z[k] for k in z.files}


def au_directions(include_pose: bool = False) -> dict[str, np.ndarray]:
    """Mesh displacement per unit of each AU (and optionally head-pose) input of the PLS model.

    Args:
        include_pose: also return the "Pitch", "Yaw", "Roll" directions (per radian, approximately).

    Returns:
        {name: float32 (478, 3)} in cm, mien-face frame (x image-right, y down, z away), per unit of the
        input (AU intensity 0–1); add ``a · d`` to a ``mien-face`` mesh to show AU ``a`` at intensity ``a``.
    """
    d = _pls()
    s, R, _ = umeyama(d["mean_aligned_mesh"][:468].astype(np.float64), canonical_face().astype(np.float64))
    coef = d["coef"].astype(np.float64).reshape(-1, 3, 478).transpose(0, 2, 1)  # (23, 478, 3)
    dirs = s * coef @ R.T
    names = [str(n) for n in d["input_columns"]]
    n_au = len(d["au_columns"])
    keep = range(len(names)) if include_pose else range(n_au)
    return {names[i]: dirs[i].astype(np.float32) for i in keep}


def pls_mesh(inputs: np.ndarray) -> np.ndarray:
    """Absolute 478-point meshes from the PLS model's inputs (module docstring).

    Args:
        inputs: (T, 23) float — AU intensities 0–1 in ``input_columns`` order (AU01 … AU43) then Pitch, Yaw,
            Roll (radians, approximately).

    Returns:
        float32 (T, 478, 3) in the PLS frame (face ~175 units wide, y up, z toward the viewer).

    Raises:
        ValueError: ``inputs`` is not (T, 23).
    """
    d = _pls()
    x = np.asarray(inputs, np.float64)
    if x.ndim != 2 or x.shape[1] != d["coef"].shape[0]:
        raise ValueError(f"inputs must be (T, {d['coef'].shape[0]}), got {x.shape}")
    flat = d["intercept"].astype(np.float64) + x @ d["coef"].astype(np.float64)
    return flat.reshape(len(x), 3, -1).transpose(0, 2, 1).astype(np.float32)


def pls_input_columns() -> list[str]:
    """The 23 input names of the PLS model: 20 FACS AUs (AU01 … AU43), then Pitch, Yaw, Roll."""
    return [str(n) for n in _pls()["input_columns"]]
