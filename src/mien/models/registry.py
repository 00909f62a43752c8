"""Model registry: every model family registers its named configurations with their input contract.

The contract says what the model expects, so preprocessing is derived from it and never re-typed by callers::

    from mien.models import create_model, get_model_spec, list_models

    list_models("faceapi")                      # ['faceapi-expression', 'faceapi-recognition']
    spec = get_model_spec("faceapi-expression")
    spec.contract.crop_size                     # 112
    net = create_model("faceapi-expression")    # nn.Module, weights loaded if the spec has them
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

FACE_BOX_CROP = "landmark-box-square-1.1"
"""The crop of the face-api nets and of mien's default AU model: a square of 1.1 × the longer side of the
MediaPipe landmark box, centred on it, black outside the frame (as face-api pads its detections). The only
place this number is written; contracts name it, :func:`mien.face.crops.face_crop` cuts it."""
FACE_BOX_SCALE = float(FACE_BOX_CROP.rsplit("-", 1)[1])
"""The scale of :data:`FACE_BOX_CROP` as a number (for code that takes a scale, e.g. AU training options)."""


@dataclass(frozen=True)
class InputContract:
    """What a model's input must look like; :meth:`cut` makes that crop from a frame.

    Attributes:
        crop_size: square input side S in pixels (None: any size).
        value_range: "0-1" (float in [0, 1]) or "0-255" (float pixel values).
        mean, std: per-channel normalisation the model applies itself (documented; callers do not apply it),
            in the units of ``value_range``; empty when none.
        color: channel order, "RGB".
        crop: how the face crop is made, a crop contract string of :func:`mien.face.crops.parse_crop_contract`
            ("landmark-box-square-<scale>", "aligned-ffhq-<margin>"; see :data:`FACE_BOX_CROP`), or a free
            description for models that take no face crop.
        landmark_scheme: landmark set the model consumes or produces ("mediapipe478", "ibug68"), if any.
        grayscale: the model was trained on gray images replicated to 3 channels (conversion is the caller's).
    """

    crop_size: int | None
    value_range: str = "0-1"
    mean: tuple[float, ...] = ()
    std: tuple[float, ...] = ()
    color: str = "RGB"
    crop: str = ""
    landmark_scheme: str | None = None
    grayscale: bool = False

    @property
    def key(self) -> tuple:
        """Hashable identity of the crop (crop string, size): heads with equal keys share their crops."""
        return (self.crop, self.crop_size)

    def cut(self, image, bbox=None, landmarks=None):
        """The (S, S, 3) uint8 RGB crop of one face of an (H, W, 3) uint8 RGB frame, as :attr:`crop` says.

        Args:
            bbox: (4,) x_min, y_min, x_max, y_max landmark box in pixels (box crops).
            landmarks: (478, 2|3) MediaPipe landmarks in pixels (aligned crops).

        Raises:
            ValueError: not a crop contract, no ``crop_size``, or the box/landmarks it needs are missing.
        """
        from mien.face.crops import face_crop

        if self.crop_size is None:
            raise ValueError("this contract has no crop size")
        return face_crop(image, self.crop, self.crop_size, bbox, landmarks)

    def to_dict(self) -> dict:
        """JSON-serialisable dict (for metadata); :meth:`from_dict` reads it back."""
        return {"crop_size": self.crop_size, "value_range": self.value_range, "mean": list(self.mean),
                "std": list(self.std), "color": self.color, "crop": self.crop,
                "landmark_scheme": self.landmark_scheme, "grayscale": self.grayscale}

    @classmethod
    def from_dict(cls, d: dict) -> InputContract:
        """Contract from :meth:`to_dict`'s output, or from the AU trainer's contract dict (ONNX metadata
        ``"mien_au"``: ``image_size``, ``grayscale``, ``crop = {"kind": "landmark-box-square", "scale"}``).

        Raises:
            ValueError: a dict of neither form.
        """
        if "crop_size" in d:
            return cls(d["crop_size"], d.get("value_range", "0-1"), tuple(d.get("mean", ())),
                       tuple(d.get("std", ())), d.get("color", "RGB"), d.get("crop", ""),
                       d.get("landmark_scheme"), bool(d.get("grayscale", False)))
        if "image_size" in d and isinstance(d.get("crop"), dict):
            c = d["crop"]
            return cls(int(d["image_size"]), d.get("value_range", "0-1"), color=d.get("color", "RGB"),
                       crop=f"{c['kind']}-{float(c['scale'])!r}", landmark_scheme=c.get("landmark_scheme"),
                       grayscale=bool(d.get("grayscale", False)))
        raise ValueError(f"not an input contract: keys {sorted(d)}")


@dataclass(frozen=True)
class ModelSpec:
    """A registered model configuration.

    Attributes:
        name: unique name, e.g. "faceapi-expression", "tokenizer-tiny".
        family: model family ("faceapi", "tokenizer", "au", …).
        factory: callable returning the ``nn.Module`` (keyword overrides are passed through).
        contract: :class:`InputContract`.
        description: one line.
        defaults: keyword arguments given to the factory unless overridden.
    """

    name: str
    family: str
    factory: Callable[..., Any]
    contract: InputContract
    description: str = ""
    defaults: dict = field(default_factory=dict)


_REGISTRY: dict[str, ModelSpec] = {}
# modules whose import registers their family; imported on first lookup so that `import mien` stays light
_FAMILY_MODULES = ("mien.models.faceapi", "mien.models.au", "mien.models.tokenizer", "mien.models.reenact")


def register_model(name: str, family: str, contract: InputContract, description: str = "",
                   **defaults) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """Decorator registering ``factory`` under ``name``.

    Raises:
        ValueError: the name is already registered by another factory.
    """

    def deco(factory: Callable[..., Any]) -> Callable[..., Any]:
        old = _REGISTRY.get(name)
        if old is not None and old.factory is not factory:
            raise ValueError(f"model name {name!r} is already registered")
        _REGISTRY[name] = ModelSpec(name, family, factory, contract, description, dict(defaults))
        return factory

    return deco


def _load_families() -> None:
    import importlib

    for mod in _FAMILY_MODULES:
        importlib.import_module(mod)


def list_models(family: str | None = None) -> list[str]:
    """Sorted names of registered models, optionally of one family."""
    _load_families()
    return sorted(n for n, s in _REGISTRY.items() if family is None or s.family == family)


def get_model_spec(name: str) -> ModelSpec:
    """The :class:`ModelSpec` of ``name``.

    Raises:
        KeyError: unknown name (the message lists the known ones).
    """
    _load_families()
    if name not in _REGISTRY:
        raise KeyError(f"unknown model {name!r}; known: {', '.join(sorted(_REGISTRY))}")
    return _REGISTRY[name]


def create_model(name: str, **overrides):
    """Build the registered model ``name`` (``nn.Module``), with keyword overrides of its defaults."""
    spec = get_model_spec(name)
    return spec.factory(**{**spec.defaults, **overrides})
