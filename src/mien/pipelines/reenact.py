"""Reenactors: what animates a source face crop with a driving face's motion.

One protocol (:class:`Reenactor`), used by ``mien reenact`` (:mod:`mien.pipelines.reenact_video`) and by
``mien evaluate reenact`` (:mod:`mien.pipelines.reenact_eval`), and three implementations:

* :class:`CopySourceReenactor` — baseline (a): the unchanged source crop;
* :class:`WarpReenactor` — baseline (b): a classical landmark-driven piecewise-affine warp of the source crop
  (OpenCV; MediaPipe's 468-point face tessellation, extended to the crop border by a Delaunay triangulation,
  :mod:`mien.face.warp`);
* :class:`NeuralReenactor` — a trained one-shot model (MegaPortraits-style, :mod:`mien.models.reenact`);
* :class:`WarpGuidedReenactor` — the hybrid: baseline (b)'s warp refined by a trained network
  (:mod:`mien.models.reenact.warpguided`).

All work on face crops made exactly as ``mien prepare`` cuts shard crops (:class:`FaceCropper`: the
FFHQ-style similarity crop of :mod:`mien.face.align`), with MediaPipe landmarks and mien's PnP head pose.

**Relative motion** (default, as FOMM, Siarohin et al. NeurIPS 2019, and LivePortrait, Guo et al. 2024): the
driver's change since its reference frame (its first frame with a face) is applied to the source's own
landmarks / pose / expression; **absolute** motion (``reference=None``) gives the source the driver's.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol, runtime_checkable

import numpy as np

from mien.errors import InputError

DEFAULT_SIZE = 256
"""Crop side S (px) of the warp and copy reenactors: ``mien prepare``'s default ``--crop-size``."""


@dataclass
class FaceCrop:
    """One face, cut as ``mien prepare`` cuts shard crops.

    Attributes:
        image: uint8 (S, S, 3) RGB crop.
        landmarks: float32 (478, 3) MediaPipe landmarks in crop pixels (z scaled like x, y).
        pose: float32 (6,) yaw, pitch, roll (degrees), tx, ty, tz (mm) — mien's PnP head pose in the full frame,
            the layout of a shard's ``pose.npy``.
        affine: float64 (2, 3) frame pixels → crop pixels (for paste-back).
    """

    image: np.ndarray
    landmarks: np.ndarray
    pose: np.ndarray
    affine: np.ndarray


class FaceCropper:
    """Find the face of frames (MediaPipe through :class:`~mien.pipelines.frame_analyzer.FrameAnalyzer`, no
    heads) and cut its crop.

    Args:
        width, height: frame size in px. size: crop side S. margin: crop margin (``mien prepare --margin``).
        static: frames are unrelated images (full-range detector, padded retry for tight crops).
    """

    def __init__(self, width: int, height: int, size: int, margin: float = 0.0, static: bool = False):
        from mien.pipelines.analyze import AnalyzeOptions
        from mien.pipelines.frame_analyzer import FrameAnalyzer

        self.size, self.margin = int(size), float(margin)
        self.analyzer = FrameAnalyzer(width, height, AnalyzeOptions(identity=False), static=static)

    def __call__(self, image: np.ndarray, index: int = 0) -> FaceCrop | None:
        """The crop of the (most prominent) face in ``image`` (H, W, 3) uint8 RGB, or None without a face."""
        from mien.face.align import params_to_affine, similarity_params, transform_landmarks, warp_crop
        from mien.io.video import Frame

        fa = self.analyzer
        if fa.process(Frame(index, 0.0, image)) == 0:
            return None
        lm = np.asarray(fa.rows["landmarks"][-1], np.float64)
        pitch, yaw, roll = np.degrees(fa.rows["euler"][-1])
        t = fa.rows["t_mm"][-1]
        for rows in fa.rows.values():  # keep no history: frames are streamed
            rows.clear()
        A = params_to_affine(similarity_params(lm[None], self.margin), self.size)[0]
        return FaceCrop(warp_crop(image, A, self.size), transform_landmarks(lm[None], A[None])[0],
                        np.array([yaw, pitch, roll, *t], np.float32), A)

    def close(self) -> None:
        self.analyzer.close()


@runtime_checkable
class Reenactor(Protocol):
    """Animates a source face with driving faces.

    Attributes:
        name: short name for reports ("copy", "warp", or the model folder).
        size: crop side S in px the reenactor works at (crops from :class:`FaceCropper` with this size).
        margin: crop margin of those crops.
        au_directions: names of the AUs :meth:`animate`'s ``edit`` accepts (empty: no editing).
    """

    name: str
    size: int
    margin: float
    au_directions: tuple[str, ...]

    def encode_source(self, source: FaceCrop) -> Any:
        """Per-source state (computed once per source)."""

    def animate(self, state: Any, drivers: Sequence[FaceCrop], reference: FaceCrop | None,
                edit: Mapping[str, float] | None = None) -> np.ndarray:
        """Output crops uint8 (B, S, S, 3) RGB for B driving crops.

        Args:
            state: from :meth:`encode_source`.
            drivers: B driving face crops.
            reference: the driver's reference crop (relative motion), or None (absolute motion).
            edit: {AU name: strength} moves along the model's AU directions (see :func:`parse_edit`).

        Raises:
            ValueError: ``edit`` given to a reenactor without AU directions, or an unknown AU.
        """


def _check_edit(r, edit) -> None:
    if not edit:
        return
    if not r.au_directions:
        raise ValueError(f"--edit needs a model with AU directions (model.au_directions); reenactor "
                         f"{r.name!r} has none")
    unknown = sorted(set(edit) - set(r.au_directions))
    if unknown:
        raise ValueError(f"--edit: {', '.join(unknown)} not among the model's AU directions "
                         f"({', '.join(r.au_directions)})")


class CopySourceReenactor:
    """Baseline (a): every output is the unchanged source crop."""

    name = "copy"
    au_directions: tuple[str, ...] = ()

    def __init__(self, size: int = DEFAULT_SIZE, margin: float = 0.0):
        self.size, self.margin = int(size), float(margin)

    def encode_source(self, source: FaceCrop) -> np.ndarray:
        return source.image

    def animate(self, state, drivers, reference, edit=None) -> np.ndarray:
        _check_edit(self, edit)
        return np.repeat(state[None], len(drivers), 0)


class WarpReenactor:
    """Baseline (b): piecewise-affine warp of the source crop that moves its 468 mesh points to target points.

    ``edit`` ({AU: intensity change}) adds the mesh displacement of those AUs from py-feat's linear AU → mesh
    model (:func:`mien.models.face3d.au.au_directions`, 20 AUs), mapped into the source crop by the similarity
    from MediaPipe's canonical face to the source's landmarks.

    Target points: relative (``reference`` given) ``src + (drv − ref) · s`` with ``s`` = √(source face area /
    reference face area) (FOMM's movement-scale adaptation); absolute: the driver's points. Triangles: MediaPipe's
    canonical tessellation (898 triangles, :func:`mien.models.face3d.mien_face.canonical_triangles`) plus a
    Delaunay ring from the face outline to the crop border (fixed border points), computed on the source.
    Iris points (468–477) are not used.
    """

    name = "warp"

    def __init__(self, size: int = DEFAULT_SIZE, margin: float = 0.0):
        from mien.models.face3d.au import au_directions

        self.size, self.margin = int(size), float(margin)
        self._au = au_directions()
        self.au_directions = tuple(self._au)

    def encode_source(self, source: FaceCrop) -> dict:
        from mien.face.align import umeyama
        from mien.face.geometry import canonical_face
        from mien.face.warp import extend_to_border, hull_area
        from mien.models.face3d.mien_face import canonical_triangles

        pts = np.asarray(source.landmarks[:468, :2], np.float64)
        border, tri = extend_to_border(pts, canonical_triangles(), self.size, self.size)
        # the AU directions (cm, canonical face frame) in this face's crop pixels: similarity canonical → face
        s, R, _ = umeyama(canonical_face().astype(np.float64), source.landmarks[:468].astype(np.float64))
        au = {k: (s * d[:468].astype(np.float64) @ R.T)[:, :2] for k, d in self._au.items()}
        return {"image": source.image, "points": pts, "border": border, "triangles": tri,
                "area": hull_area(pts), "au": au}

    @staticmethod
    def reference_area(reference: FaceCrop | None) -> float | None:
        """The hull area (px²) of the reference's 468 mesh points (:func:`mien.face.warp.hull_area`), computed once
        per :meth:`animate` for :meth:`targets`; None without a reference."""
        from mien.face.warp import hull_area

        return None if reference is None else hull_area(np.asarray(reference.landmarks[:468, :2], np.float64))

    def targets(self, state: dict, driver: FaceCrop, reference: FaceCrop | None,
                reference_area: float | None = None) -> np.ndarray:
        """Target positions (468, 2) crop px of the source mesh points for one driver (``reference_area``:
        :meth:`reference_area` of ``reference`` when already known)."""
        from mien.face.warp import relative_targets

        drv = np.asarray(driver.landmarks[:468, :2], np.float64)
        if reference is None:
            return drv
        return relative_targets(state["points"], drv, reference.landmarks[:468], state["area"], reference_area)

    def warp(self, state: dict, driver: FaceCrop, reference: FaceCrop | None,
             edit: Mapping[str, float] | None = None, reference_area: float | None = None
             ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """One driver's warp: (warped uint8 (S, S, 3), map_x, map_y float32 (S, S) backward maps, target points
        float64 (468, 2) crop px)."""
        from mien.face.warp import mesh_warp

        shift = sum((w * state["au"][k] for k, w in (edit or {}).items()), np.zeros_like(state["points"]))
        tgt = self.targets(state, driver, reference, reference_area) + shift
        img, mx, my = mesh_warp(state["image"], state["points"], tgt, ring=(state["border"], state["triangles"]))
        return img, mx, my, tgt

    def animate(self, state, drivers, reference, edit=None) -> np.ndarray:
        _check_edit(self, edit)
        ref_area = self.reference_area(reference)
        out = [self.warp(state, d, reference, edit, ref_area)[0] for d in drivers]
        return np.stack(out) if out else np.zeros((0, self.size, self.size, 3), np.uint8)


class WarpGuidedReenactor:
    """The hybrid reenactor: baseline (b)'s mesh warp (:class:`WarpReenactor`, same targets, relative motion and
    ``edit``) refined by a trained :class:`~mien.models.reenact.warpguided.WarpGuidedRefiner`. With an untrained
    (zero-initialised) refiner its outputs equal :class:`WarpReenactor`'s byte for byte.

    Args:
        model: an export folder of kind "warpguided", or the loaded refiner.
        device: torch device.
    """

    def __init__(self, model, device: str = "cpu"):
        import torch

        self.torch = torch
        model, self.name = _loaded(model, "load_warpguided_model")
        self.model, self.device = model.to(device).eval(), device
        self.size, self.margin = int(model.size), 0.0
        self.warper = WarpReenactor(self.size, self.margin)
        self.au_directions = self.warper.au_directions

    def encode_source(self, source: FaceCrop) -> dict:
        return self.warper.encode_source(source)

    def animate(self, state, drivers, reference, edit=None) -> np.ndarray:
        from mien.models.reenact.warpguided import flow_field

        _check_edit(self, edit)
        if not len(drivers):
            return np.zeros((0, self.size, self.size, 3), np.uint8)
        t = self.torch
        ref_area = self.warper.reference_area(reference)
        warps = [self.warper.warp(state, d, reference, edit, ref_area) for d in drivers]
        n = len(warps)

        def img(x):
            return t.from_numpy(np.ascontiguousarray(x)).permute(0, 3, 1, 2).float().div(255.0).to(self.device)

        with t.inference_mode():
            out = self.model(img(np.stack([w[0] for w in warps])), img(np.repeat(state["image"][None], n, 0)),
                             t.from_numpy(np.stack([flow_field(w[1], w[2]) for w in warps])).to(self.device),
                             t.from_numpy(np.stack([w[3] for w in warps]).astype(np.float32)).to(self.device))
        return (out.clamp(0, 1).permute(0, 2, 3, 1).cpu().numpy() * 255.0 + 0.5).astype(np.uint8)


def _loaded(model, loader: str):
    """``(module, name)``: an export folder loaded by ``mien.models.reenact.<loader>`` and named by the folder, or a
    loaded module named by its class."""
    if isinstance(model, str | os.PathLike):
        from mien.models import reenact

        return getattr(reenact, loader)(os.fspath(model)), os.path.basename(os.path.normpath(os.fspath(model)))
    return model, type(model).__name__


def _expand(x, n: int):
    """Repeat batch-1 model state (a tensor, or a dataclass / tuple / dict of tensors) to batch n."""
    if hasattr(x, "expand") and hasattr(x, "shape"):
        return x.expand(n, *x.shape[1:]) if x.shape[0] == 1 else x
    if dataclasses.is_dataclass(x) and not isinstance(x, type):
        return dataclasses.replace(x, **{f.name: _expand(getattr(x, f.name), n) for f in dataclasses.fields(x)
                                         if f.init})
    if isinstance(x, tuple | list):
        return type(x)(_expand(v, n) for v in x)
    if isinstance(x, dict):
        return {k: _expand(v, n) for k, v in x.items()}
    return x


class NeuralReenactor:
    """A trained one-shot reenactment model behind the :class:`Reenactor` protocol.

    The model (an ``nn.Module`` in eval mode, from :func:`mien.models.reenact.load_reenact_model`) provides
    ``size``, ``encode_appearance(src)``, ``encode_motion(img, pose)``, ``decode(app, m_src, m_drv)``, the
    motion type's ``relative(m_src, m_ref, m_drv)`` and, optionally, ``au_directions`` / ``edit(m, {AU: x})``.
    Images are float32 (B, 3, S, S) RGB in [0, 1]; poses (B, 6) as :attr:`FaceCrop.pose`.

    Args:
        model: an exported model folder, or the loaded module.
        device: torch device.
    """

    def __init__(self, model, device: str = "cpu"):
        import torch

        self.torch = torch
        model, self.name = _loaded(model, "load_reenact_model")
        self.model = model.to(device).eval()
        self.device = device
        self.size = int(model.size)
        contract = getattr(model, "contract", None)
        crop = getattr(contract, "crop", "") or ""
        self.margin = float(crop.rsplit("-", 1)[1]) if crop.startswith("aligned-ffhq-") else 0.0
        dirs = getattr(model, "au_directions", None)
        self.au_directions = tuple(dirs) if dirs else ()

    def _images(self, crops: Sequence[FaceCrop]):
        x = np.stack([c.image for c in crops]).astype(np.float32) / 255.0
        return self.torch.from_numpy(x).permute(0, 3, 1, 2).contiguous().to(self.device)

    def _poses(self, crops: Sequence[FaceCrop]):
        return self.torch.from_numpy(np.stack([c.pose for c in crops]).astype(np.float32)).to(self.device)

    def _motion(self, crops):
        return self.model.encode_motion(self._images(crops), self._poses(crops))

    def encode_source(self, source: FaceCrop) -> tuple:
        with self.torch.inference_mode():
            return self.model.encode_appearance(self._images([source])), self._motion([source])

    def animate(self, state, drivers, reference, edit=None) -> np.ndarray:
        _check_edit(self, edit)
        n = len(drivers)
        if n == 0:
            return np.zeros((0, self.size, self.size, 3), np.uint8)
        app, m_src = state
        with self.torch.inference_mode():
            m_drv = self._motion(drivers)
            app_n, m_src_n = _expand(app, n), _expand(m_src, n)
            if reference is not None:
                m_ref = _expand(self._motion([reference]), n)
                m_drv = type(m_drv).relative(m_src_n, m_ref, m_drv)
            if edit:
                m_drv = self.model.edit(m_drv, dict(edit))
            out = self.model.decode(app_n, m_src_n, m_drv)
        return (out.clamp(0, 1).permute(0, 2, 3, 1).cpu().numpy() * 255.0 + 0.5).astype(np.uint8)


BASELINES = ("copy", "warp")


def load_reenactor(model: str | os.PathLike | Any = "warp", device: str = "cpu", size: int | None = None) -> Reenactor:
    """A reenactor from a name: "copy", "warp", an exported model folder, or a loaded model / reenactor.

    Args:
        size: crop side of the copy/warp baselines (default :data:`DEFAULT_SIZE`); a model has its own.

    Raises:
        InputError: a model path that does not exist.
    """
    if isinstance(model, Reenactor):
        return model
    if not isinstance(model, str | os.PathLike):
        from mien.models.reenact.warpguided import WarpGuidedRefiner

        return WarpGuidedReenactor(model, device) if isinstance(model, WarpGuidedRefiner) else \
            NeuralReenactor(model, device)
    spec = os.fspath(model)
    if spec == "copy":
        return CopySourceReenactor(size or DEFAULT_SIZE)
    if spec == "warp":
        return WarpReenactor(size or DEFAULT_SIZE)
    if not os.path.exists(spec):
        raise InputError(spec, "no such reenactment model (expected a folder from `mien export reenact`, "
                               "'warp' or 'copy')")
    from mien.models.reenact.io import export_kind

    if export_kind(spec) == "warpguided":
        return WarpGuidedReenactor(spec, device)
    return NeuralReenactor(spec, device)


def parse_edit(text: str | None) -> dict[str, float]:
    """``"AU12=+0.8,AU04=-0.5"`` → {"AU12": 0.8, "AU04": -0.5}.

    Raises:
        ValueError: an item that is not ``NAME=NUMBER``.
    """
    out: dict[str, float] = {}
    for item in (text or "").split(","):
        if not item.strip():
            continue
        name, sep, value = item.partition("=")
        try:
            if not sep or not name.strip():
                raise ValueError
            out[name.strip().upper()] = float(value)
        except ValueError:
            raise ValueError(f"--edit: {item.strip()!r} is not AU=VALUE (e.g. AU12=+0.8,AU04=-0.5)") from None
    return out


__all__ = ["BASELINES", "DEFAULT_SIZE", "CopySourceReenactor", "FaceCrop", "FaceCropper", "NeuralReenactor", "WarpGuidedReenactor",
           "Reenactor", "WarpReenactor", "load_reenactor", "parse_edit"]
