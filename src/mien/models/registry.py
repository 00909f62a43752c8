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


@dataclass(frozen=True)
class InputContract:
    """What a model's input must look like.

    Attributes:
        crop_size: square input side in pixels (None: any size).
        value_range: "0-1" (float in [0, 1]) or "0-255" (float pixel values).
        mean, std: per-channel normalisation the model applies itself (documented; callers do not apply it),
            in the units of ``value_range``; empty when none.
        color: channel order, "RGB".
        crop: how the face crop is made (e.g. "landmark-box-square-1.1", "aligned-similarity").
        landmark_scheme: landmark set the model consumes or produces ("mediapipe478", "ibug68"), if any.
    """

    crop_size: int | None
    value_range: str = "0-1"
    mean: tuple[float, ...] = ()
    std: tuple[float, ...] = ()
    color: str = "RGB"
    crop: str = ""
    landmark_scheme: str | None = None


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
_FAMILY_MODULES = ("mien.models.faceapi", "mien.models.au", "mien.models.tokenizer")


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


def register_family_module(module: str) -> None:
    """Add a module whose import registers models (called by families living outside this list)."""
    global _FAMILY_MODULES
    if module not in _FAMILY_MODULES:
        _FAMILY_MODULES = (*_FAMILY_MODULES, module)


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
