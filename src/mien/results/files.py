"""Results files of :class:`AnalysisResult`: Parquet with the schema in the footer (lossless), and flat CSV.

NaN (gaze on closed eyes, columns an input format lacks) is kept as NaN in Parquet and written as an empty
field in CSV.
"""

from __future__ import annotations

import os

import numpy as np
import pyarrow.parquet as pq

from mien.errors import InputError
from mien.io.atomic import atomic_output
from mien.results.result import AnalysisResult


def write_parquet(result: AnalysisResult, path: str | os.PathLike) -> None:
    """Write ``result`` to a Parquet file atomically (zstd).

    Scalar columns are typed Parquet columns; arrays (bbox, landmarks) are nested fixed-size lists. The
    footer (schema metadata key ``mien``) holds the schema version, mien version, per-column dtype/shape and
    ``result.meta`` (source, fps, frame size, model names and file hashes, options); every field carries its
    unit and description. :func:`read_results` restores exactly the same :class:`AnalysisResult`.
    """
    table = result.to_arrow()
    with atomic_output(path) as tmp:
        pq.write_table(table, tmp, compression="zstd")


def read_parquet_table(path: str | os.PathLike):
    """The ``pyarrow.Table`` of a Parquet file (with its schema metadata), for the readers of mien's result files.

    Raises:
        InputError: missing file, or not a Parquet file (the message names the file and pyarrow's first line).
    """
    if not os.path.exists(path):
        raise InputError(str(path), "no such file")
    try:
        return pq.read_table(path)
    except Exception as e:  # pyarrow raises several types for non-Parquet input
        raise InputError(str(path), f"not a Parquet file ({str(e).splitlines()[0][:120]})") from None


def read_results(path: str | os.PathLike) -> AnalysisResult:
    """Read a Parquet file written by :func:`write_parquet` (``mien analyze``); the exact same result.

    Raises:
        InputError: missing file, not Parquet, or not a mien results file.
    """
    table = read_parquet_table(path)
    try:
        return AnalysisResult.from_arrow(table)
    except (ValueError, KeyError) as e:
        raise InputError(path, str(e)) from None


def flat_columns(result: AnalysisResult) -> dict[str, np.ndarray]:
    """Columns flattened to 1-D for tabular text formats.

    ``bbox`` → bbox_x_min, bbox_y_min, bbox_x_max, bbox_y_max; ``landmarks`` → lm_x_0…, lm_y_0…, lm_z_0…;
    other array columns → name_0, name_1, ….
    """
    out: dict[str, np.ndarray] = {}
    for name, arr in result.columns().items():
        if arr.ndim == 1:
            out[name] = arr
        elif name == "bbox":
            for i, k in enumerate(("x_min", "y_min", "x_max", "y_max")):
                out[f"bbox_{k}"] = arr[:, i]
        elif name == "landmarks":
            for c, axis in enumerate("xyz"):
                for k in range(arr.shape[1]):
                    out[f"lm_{axis}_{k}"] = arr[:, k, c]
        else:
            flat = arr.reshape(len(arr), -1)
            for k in range(flat.shape[1]):
                out[f"{name}_{k}"] = flat[:, k]
    return out


def write_csv(result: AnalysisResult, path: str | os.PathLike) -> None:
    """Write the flat columns of :func:`flat_columns` as CSV with a header row, atomically.

    NaN values (e.g. gaze while the eyes are closed) are written as empty fields, which pandas reads back
    as NaN; booleans as ``True``/``False``.
    """
    import pandas as pd

    df = pd.DataFrame(flat_columns(result))
    with atomic_output(path) as tmp:
        df.to_csv(tmp, index=False)
