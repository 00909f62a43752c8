"""Command-line options generated from the Options dataclasses, so that every option is written once.

A pipeline's options dataclass (``AnalyzeOptions``, ``PrepareOptions``, …) is the single definition of an
option: its name, type, default and (from the class docstring's ``Attributes:`` section) its help text. This
module turns the fields into ``argparse`` options with dashed flags (``clip_seconds`` → ``--clip-seconds``) and
turns the parsed namespace back into the dataclass.

Per-field exceptions live in the field's ``metadata`` (plain dict keys, so pipelines need not import the CLI):

- ``"flag"``: the flag to use instead of the dashed field name (``"--reid"`` for ``identity``);
- ``"choices"``, ``"metavar"``: as in argparse;
- ``"help"``: help text instead of the docstring entry;
- ``"cli": False``: not a command-line option (set by the command itself, e.g. ``progress``).

Types understood: ``bool`` (``--x/--no-x``), ``int``, ``float``, ``str``, ``X | None`` of those, and
``tuple[str, ...]`` (a comma-separated list on the command line). Anything else raises ``TypeError`` when the
parser is built, so an unsupported field is found by the CLI tests rather than by a user.

Why not jsonargparse (which builds parsers from dataclasses too): its flags are the field names with
underscores and it belongs to the ``train`` extra, while ``mien analyze`` and ``mien prepare`` must keep their
documented dashed flags and run on a core install.
"""

from __future__ import annotations

import argparse
import dataclasses
import inspect
import re
import types
import typing
from typing import Any

_ENTRY = re.compile(r"^(\s*)([A-Za-z_][\w, ]*):\s?(.*)$")


def docstring_attributes(cls: type) -> dict[str, str]:
    """Help text per field from the ``Attributes:`` section of ``cls``'s docstring.

    An entry ``name: text`` (continued on more-indented lines) documents ``name``; ``a, b: text`` documents both.

    Returns:
        {field name: one-line text}; fields without an entry are absent.
    """
    doc = inspect.getdoc(cls) or ""
    lines = doc.splitlines()
    try:
        start = next(i for i, line in enumerate(lines) if line.strip() == "Attributes:") + 1
    except StopIteration:
        return {}
    out: dict[str, str] = {}
    names: list[str] = []
    base_indent = None
    for line in lines[start:]:
        if not line.strip():
            continue
        indent = len(line) - len(line.lstrip())
        if base_indent is None:
            base_indent = indent
        if indent < base_indent:  # the section ended
            break
        m = _ENTRY.match(line)
        if indent == base_indent and m:
            names = [n.strip() for n in m.group(2).split(",") if n.strip()]
            for n in names:
                out[n] = m.group(3).strip()
        elif names:
            for n in names:
                out[n] = f"{out[n]} {line.strip()}".strip()
    return out


def _base_type(tp: Any) -> tuple[Any, bool]:
    """(type without ``None``, whether ``None`` is allowed)."""
    origin = typing.get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(tp) if a is not type(None)]
        if len(args) == 1:
            return args[0], True
    return tp, False


def _comma_list(text: str) -> tuple[str, ...]:
    return tuple(s.strip() for s in text.split(",") if s.strip())


def _fields(cls: type, exclude) -> list[dataclasses.Field]:
    return [f for f in dataclasses.fields(cls) if f.init and f.name not in exclude and f.metadata.get("cli", True)]


def add_options(parser: argparse.ArgumentParser, cls: type, exclude: tuple[str, ...] = ()) -> None:
    """Add one option per field of the dataclass ``cls`` to ``parser`` (dest = the field name).

    Args:
        parser: an ``argparse`` parser or argument group.
        cls: an options dataclass (fields with defaults).
        exclude: field names the command sets itself.

    Raises:
        TypeError: a field type the generator does not handle.
    """
    hints = typing.get_type_hints(cls)
    docs = docstring_attributes(cls)
    for f in _fields(cls, exclude):
        md = f.metadata
        flag = md.get("flag", "--" + f.name.replace("_", "-"))
        default = f.default if f.default is not dataclasses.MISSING else f.default_factory()  # type: ignore[misc]
        text = md.get("help", docs.get(f.name, ""))
        tp, optional = _base_type(hints[f.name])
        kw: dict[str, Any] = {"dest": f.name, "default": default}
        for key in ("choices", "metavar"):
            if key in md:
                kw[key] = md[key]
        if tp is bool:
            kw["action"] = argparse.BooleanOptionalAction
        elif tp in (int, float, str):
            kw["type"] = tp
        elif typing.get_origin(tp) is tuple and typing.get_args(tp)[:1] == (str,):
            kw["type"] = _comma_list
            kw.setdefault("metavar", "A,B,…")
            text = f"{text} (comma-separated)".strip()
        else:
            raise TypeError(f"{cls.__name__}.{f.name}: no command-line form for type {hints[f.name]!r}")
        if default not in (None, (), "") and tp is not bool:
            shown = ",".join(default) if isinstance(default, tuple) else default
            text = f"{text} (default {shown})".strip()
        elif tp is bool:
            text = f"{text} (default {'on' if default else 'off' if default is not None else 'auto'})".strip()
        kw["help"] = text.replace("``", "").replace("%", "%%")
        parser.add_argument(flag, **kw)


def options_from_args(cls: type, args: argparse.Namespace, **fixed):
    """The dataclass ``cls`` from parsed ``args`` (fields added by :func:`add_options`) plus ``fixed`` values.

    Raises:
        ValueError: from the dataclass's own validation (``__post_init__``).
    """
    values = {f.name: getattr(args, f.name) for f in dataclasses.fields(cls)
              if f.init and f.name not in fixed and hasattr(args, f.name)}
    return cls(**values, **fixed)
