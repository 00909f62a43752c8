"""The one on-disk format of mien's exported models: a folder with ``config.json`` (JSON metadata: ``format``,
``format_version``, ``kind``, the model's config, ``mien_version`` and whatever the family records) and
``model.safetensors`` (the ``state_dict``, CPU tensors). Each family names its ``format`` (``mien-tokenizer``,
``mien-reenact``, ``mien-reaction``, …) and builds its modules from the metadata; writing, atomic replacement,
and the checks and one-line errors of reading live here once.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

CONFIG_NAME = "config.json"
WEIGHTS_NAME = "model.safetensors"


def write_model_folder(directory: str | os.PathLike, meta: dict, state: dict, *, fmt: str,
                       version: int | None = 1) -> Path:
    """Write ``config.json`` and ``model.safetensors`` into ``directory`` (created; each file replaced atomically,
    weights first, so a folder with a config always has the matching weights).

    Args:
        meta: JSON-serialisable metadata; ``format``, ``format_version`` and ``mien_version`` are added.
        state: name → tensor (moved to the CPU and made contiguous here; dtypes kept).
        fmt, version: the family's format name and version (None: the version is part of ``fmt``, as in
            ``mien-face3d/1``; no ``format_version`` is written).

    Returns:
        The folder.
    """
    from safetensors.torch import save_file

    from mien._version import __version__
    from mien.io.atomic import atomic_output

    d = Path(directory)
    d.mkdir(parents=True, exist_ok=True)
    meta = {"format": fmt, **({} if version is None else {"format_version": version}), **meta,
            "mien_version": __version__}
    tensors = {k: v.detach().cpu().contiguous() for k, v in state.items()}
    with atomic_output(d / WEIGHTS_NAME) as tmp:
        save_file(tensors, str(tmp), metadata={"format": fmt, "kind": str(meta.get("kind", ""))})
    with atomic_output(d / CONFIG_NAME) as tmp:
        Path(tmp).write_text(json.dumps(meta, indent=2))
    return d


def read_model_meta(directory: str | os.PathLike, *, fmt: str, version: int | None = 1,
                    kind: str | tuple[str, ...] | None = None, what: str = "model", hint: str = "") -> dict:
    """The ``config.json`` of a folder written by :func:`write_model_folder`, checked (arguments as
    :func:`read_model_folder`), without loading the weights.

    Raises:
        mien.errors.InputError: config missing or not JSON, another format or version, another kind; the message
            names the file.
    """
    from mien.errors import InputError

    d = Path(directory)
    cfg = d / CONFIG_NAME
    if not cfg.is_file():
        raise InputError(str(d), f"not a {what} export ({cfg.name} missing{'; ' + hint if hint else ''})")
    try:
        meta = json.loads(cfg.read_text())
    except ValueError as e:
        raise InputError(str(cfg), f"not JSON ({e})") from None
    if meta.get("format") != fmt or (version is not None and meta.get("format_version") != version):
        want = fmt if version is None else f"{fmt} v{version}"
        raise InputError(str(cfg), f"not a {want} export (format {meta.get('format')!r} "
                                   f"v{meta.get('format_version')!r})")
    kinds = (kind,) if isinstance(kind, str) else kind
    if kinds is not None and meta.get("kind") not in kinds:
        raise InputError(str(d), f"holds a {meta.get('kind')!r} export, not a {what}")
    return meta


def read_model_folder(directory: str | os.PathLike, *, fmt: str, version: int | None = 1,
                      kind: str | tuple[str, ...] | None = None, what: str = "model",
                      hint: str = "") -> tuple[dict, dict]:
    """Read a folder written by :func:`write_model_folder`: ``(meta, state)`` (CPU tensors).

    Args:
        fmt, version: the expected format and version (``version=None``: any).
        kind: the expected ``meta["kind"]`` (one or several), or None for any.
        what: how the message names the export (e.g. ``"reaction model"``); hint: appended to "missing" errors
            (e.g. ``"written by `mien export reaction`"``).

    Raises:
        mien.errors.InputError: a file missing, config not JSON, another format or version, another kind; the
            message names the file.
    """
    from safetensors.torch import load_file

    from mien.errors import InputError

    d = Path(directory)
    weights = d / WEIGHTS_NAME
    if (d / CONFIG_NAME).is_file() and not weights.is_file():
        raise InputError(str(d), f"not a {what} export ({weights.name} missing{'; ' + hint if hint else ''})")
    meta = read_model_meta(d, fmt=fmt, version=version, kind=kind, what=what, hint=hint)
    try:
        state = load_file(str(weights))
    except Exception as e:  # SafetensorError and friends for a damaged file
        raise InputError(str(weights), f"not a loadable {what} export (unreadable weights: "
                                       f"{str(e).splitlines()[0][:160]})") from None
    return meta, state
