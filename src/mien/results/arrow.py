"""Lossless conversion between :class:`AnalysisResult` and Apache Arrow tables."""

from __future__ import annotations

import json

import numpy as np
import pyarrow as pa

from mien._version import __version__
from mien.results.result import COLUMN_SPECS, COLUMNS, SCHEMA_VERSION, AnalysisResult

META_KEY = b"mien"


def _to_array(arr: np.ndarray) -> pa.Array:
    flat = pa.array(np.ascontiguousarray(arr).reshape(-1))
    for size in reversed(arr.shape[1:]):
        flat = pa.FixedSizeListArray.from_arrays(flat, size)
    return flat


def _from_array(col, dtype: np.dtype, shape: tuple) -> np.ndarray:
    arr = col.combine_chunks() if isinstance(col, pa.ChunkedArray) else col
    n = len(arr)
    for _ in shape[1:]:
        arr = arr.flatten()
    values = arr.to_numpy(zero_copy_only=False)
    return np.asarray(values, dtype=dtype).reshape((n,) + tuple(shape[1:]))


def result_to_arrow(res: AnalysisResult) -> pa.Table:
    """``res`` as a ``pyarrow.Table``: one non-nullable field per column (arrays as nested fixed-size lists),
    each field's unit and description in its metadata, and the schema version, mien version, column
    dtypes/shapes and ``res.meta`` as JSON under the schema metadata key ``mien``. Inverse of
    :func:`result_from_arrow` (exact)."""
    arrays, fields = [], []
    shapes = {}
    for name, arr in res.columns().items():
        spec = COLUMN_SPECS.get(name)
        extra_meta = res.meta.get("extra_columns", {}).get(name, {})
        unit = spec.unit if spec else extra_meta.get("unit", "")
        desc = spec.description if spec else extra_meta.get("description", "")
        a = _to_array(arr)
        arrays.append(a)
        fields.append(pa.field(name, a.type, nullable=False,
                               metadata={b"unit": unit.encode(), b"description": desc.encode()}))
        shapes[name] = {"dtype": arr.dtype.str, "shape": list(arr.shape[1:])}
    footer = {
        "schema_version": SCHEMA_VERSION,
        "mien_version": __version__,
        "meta": res.meta,
        "columns": shapes,
        "core_columns": [c.name for c in COLUMNS],
    }
    schema = pa.schema(fields, metadata={META_KEY: json.dumps(footer).encode()})
    return pa.Table.from_arrays(arrays, schema=schema)


def result_from_arrow(table: pa.Table) -> AnalysisResult:
    """The :class:`AnalysisResult` stored by :func:`result_to_arrow`.

    Raises:
        ValueError: no ``mien`` schema metadata, or a results schema of another major version.
        KeyError: a column listed in the metadata is missing from the table.
    """
    """Inverse of :func:`result_to_arrow` (exact). Core columns a file from an earlier schema minor version
    lacks are derived when they can be (:meth:`AnalysisResult.derived_columns`).

    Raises:
        ValueError: no mien footer, another schema major version, or a core column missing.
    """
    md = table.schema.metadata or {}
    if META_KEY not in md:
        raise ValueError("not a mien results table (no 'mien' schema metadata)")
    footer = json.loads(md[META_KEY])
    major = str(footer.get("schema_version", "0")).split(".")[0]
    if major != SCHEMA_VERSION.split(".")[0]:
        raise ValueError(f"results schema {footer.get('schema_version')} is not readable by this mien "
                         f"(schema {SCHEMA_VERSION})")
    cols = {}
    for name, info in footer["columns"].items():
        dtype = np.dtype(info["dtype"])
        cols[name] = _from_array(table.column(name), dtype, (None,) + tuple(info["shape"]))
    missing = [c.name for c in COLUMNS if c.name not in cols and c.name not in AnalysisResult.derived_columns()]
    if missing:
        raise ValueError(f"not a complete mien results table (missing core columns {', '.join(missing)})")
    core = {c.name: cols.pop(c.name) for c in COLUMNS if c.name in cols}
    return AnalysisResult(**core, meta=footer["meta"], extra=cols)
