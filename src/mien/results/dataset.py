"""A folder of analysis results as one queryable, Hive-partitioned Parquet dataset.

Layout written by ``mien analyze INPUTS -o OUT`` (one partition per input; OUT a folder or an fsspec URL)::

    OUT/video=<key>/part-0.parquet    # the per-video AnalysisResult file (mien footer, units, models)
    OUT/_manifest.json                # inputs with their status, options, model names and hashes, mien version
    OUT/report.json                   # the last run: analysed, already done, failed (with reasons)
    OUT/<key>.csv, <key>.openface.csv, <key>.overlay.mp4, <key>.plot.png   # optional per-file outputs

Each partition file is exactly the Parquet file :meth:`AnalysisResult.to_parquet` writes (readable on its own
with :func:`mien.read_results`); the ``video`` column comes from the folder name (Hive partitioning). Read it
with :func:`read_results_dataset` (``mien.read_results_dataset``), or open the folder directly in other tools::

    pyarrow.dataset.dataset("OUT", format="parquet", partitioning="hive", exclude_invalid_files=True)
    duckdb.sql("SELECT video, avg(yaw_deg) FROM read_parquet('OUT/*/*.parquet', hive_partitioning=true) GROUP BY video")
    polars.scan_parquet("OUT/*/*.parquet", hive_partitioning=True).group_by("video").agg(polars.col("yaw_deg").mean())

(``exclude_invalid_files`` makes pyarrow skip ``report.json`` and the per-file outputs beside the partitions; the
``*/*.parquet`` glob only matches partitions.)
Keys are percent-encoded in folder names (``quote``), as pyarrow's Hive partitioning decodes them. URLs
(``s3://``, ``memory://``) need fsspec (the ``data`` extra).
"""

from __future__ import annotations

import json
import os
from typing import Any
from urllib.parse import quote

import numpy as np

from mien.errors import InputError
from mien.results.result import AnalysisResult

MANIFEST = "_manifest.json"
PART = "part-0.parquet"
PARTITION_KEY = "video"


def partition_path(root: str | os.PathLike, key: str) -> str:
    """Path of one video's partition file: ``<root>/video=<quoted key>/part-0.parquet`` (root: a folder or
    an fsspec URL)."""
    return _join(os.fspath(root), f"{PARTITION_KEY}={quote(key, safe='')}", PART)


def write_manifest(root: str | os.PathLike, manifest: dict) -> None:
    """Write ``<root>/_manifest.json`` atomically (JSON; numpy scalars converted; root may be a URL)."""
    text = json.dumps(manifest, indent=2, default=lambda o: o.item() if isinstance(o, np.generic) else str(o))
    fs, root = _fs(root)
    if fs is None:
        from mien.io.atomic import atomic_output

        with atomic_output(os.path.join(root, MANIFEST)) as tmp:
            tmp.write_text(text)
        return
    import uuid

    tmp = _join(root, f".{MANIFEST}.tmp-{uuid.uuid4().hex[:8]}")
    fs.makedirs(root, exist_ok=True)
    fs.pipe_file(tmp, text.encode())
    fs.mv(tmp, _join(root, MANIFEST))


def read_manifest(root: str | os.PathLike) -> dict:
    """The dataset's ``_manifest.json`` ({} when absent)."""
    fs, root = _fs(root)
    path = _join(root, MANIFEST)
    if fs is None:
        if not os.path.exists(path):
            return {}
        with open(path) as f:
            return json.load(f)
    if not fs.exists(path):
        return {}
    return json.loads(fs.cat_file(path))


def _fs(root: str | os.PathLike):
    """(fsspec filesystem, path) of a URL; (None, root) for a local folder (no fsspec needed)."""
    root = os.fspath(root)
    if "://" not in root:
        return None, root
    import fsspec

    fs, path = fsspec.core.url_to_fs(root)
    return fs, path.rstrip("/") or path


def _join(root: str, *parts: str) -> str:
    return "/".join([root.rstrip("/"), *parts]) if "://" in root else os.path.join(root, *parts)


def _dataset(root: str | os.PathLike):
    """The pyarrow dataset of the partition files under ``root`` (None when there are none)."""
    import glob

    import pyarrow.dataset as ds

    name = os.fspath(root)
    fs, root = _fs(root)
    # only the partition files: per-file outputs (overlays, plots, CSVs) beside them are not part of it
    if fs is None:
        if not os.path.isdir(root):
            raise InputError(name, "no such results folder")
        files = sorted(glob.glob(os.path.join(glob.escape(root), f"{PARTITION_KEY}=*", PART)))
    else:
        if not fs.isdir(root):
            raise InputError(name, "no such results folder")
        files = sorted(fs.glob(_join(root, f"{PARTITION_KEY}=*", PART)))
    if not files:
        return None
    return ds.dataset(files, format="parquet", partitioning=ds.partitioning(flavor="hive"),
                      partition_base_dir=root, filesystem=fs)


def _expression(filters: Any):
    if filters is None:
        return None
    import pyarrow.compute as pc
    import pyarrow.parquet as pq

    return filters if isinstance(filters, pc.Expression) else pq.filters_to_expression(filters)


def read_results_dataset(root: str | os.PathLike, filters: Any = None, columns: list[str] | None = None,
                         output: str = "result"):
    """Read a results dataset written by ``mien analyze`` (see the module docstring for the layout).

    Args:
        root: the output folder (or an fsspec URL, needs fsspec).
        filters: rows to keep — a ``pyarrow.compute`` expression or pyarrow's list form
            (``[("video", "=", "clip1"), ("yaw_deg", ">", 20)]``, a list of such lists = OR).
        columns: with ``output="pandas"``/``"arrow"``, the columns to read (default all; ``video`` included).
        output: ``"result"`` → one :class:`AnalysisResult` with an extra ``video`` column (str) and
            ``meta = {"manifest": …, "sources": {video: per-video meta}}``, rows ordered by video, frame,
            face_id; ``"arrow"`` → ``pyarrow.Table``; ``"pandas"`` → ``pandas.DataFrame``.

    Returns:
        as ``output`` says; an empty folder gives zero rows.

    Raises:
        InputError: the folder does not exist. ValueError: unknown ``output``.
    """
    if output not in ("result", "arrow", "pandas"):
        raise ValueError(f"output must be 'result', 'arrow' or 'pandas', got {output!r}")
    dset = _dataset(root)
    expr = _expression(filters)
    if output != "result":
        import pyarrow as pa

        if dset is None:
            table = pa.table({})
        else:
            table = dset.to_table(columns=columns, filter=expr)
        return table if output == "arrow" else table.to_pandas()
    results, sources = [], {}
    for frag in sorted(dset.get_fragments() if dset is not None else [], key=lambda f: f.path):
        import pyarrow.dataset as ds

        key = ds.get_partition_keys(frag.partition_expression)[PARTITION_KEY]
        table = frag.to_table(filter=expr, schema=frag.physical_schema) if expr is None else \
            dset.to_table(filter=expr & (ds.field(PARTITION_KEY) == key))
        if expr is not None:  # the dataset's table lost the per-file footer: put it back, drop the key
            table = table.drop_columns([PARTITION_KEY]).replace_schema_metadata(frag.physical_schema.metadata)
        res = AnalysisResult.from_arrow(table)
        sources[str(key)] = res.meta
        res.extra[PARTITION_KEY] = np.full(len(res), str(key), dtype=object)
        results.append(res)
    meta = {"manifest": read_manifest(root), "sources": sources}
    if not results:
        return AnalysisResult.empty(meta)
    names = set(results[0].extra)
    odd = [k for k, r in zip(sources, results, strict=True) if set(r.extra) != names]
    if odd:
        raise ValueError(f"{root}: videos {odd[:3]} have other columns than {next(iter(sources))}; "
                         "read them with output='pandas'")
    return AnalysisResult.concat(results, meta=meta)
