"""Helpers for the tasks' option groups (dataclasses): accept a dataclass or a dict (what checkpoints store)."""

from __future__ import annotations

from dataclasses import asdict, fields, replace
from typing import TypeVar

__all__ = ["as_config", "as_dict"]

C = TypeVar("C")


def as_config(cls: type[C], value) -> C:
    """``value`` (an instance of ``cls``, a dict of its fields, or None for the defaults) as a new ``cls`` (a copy:
    signature defaults are shared instances).

    Raises:
        TypeError: unknown fields.
    """
    if isinstance(value, cls):
        return replace(value)
    if value is None:
        return cls()
    if isinstance(value, dict):
        names = {f.name for f in fields(cls)}
        extra = set(value) - names
        if extra:
            raise TypeError(f"{cls.__name__}: unknown field(s) {sorted(extra)}")
        return cls(**value)
    raise TypeError(f"expected {cls.__name__} or dict, got {type(value).__name__}")


def as_dict(cfg) -> dict:
    """A config dataclass as a plain dict (what checkpoints store)."""
    return asdict(cfg)
