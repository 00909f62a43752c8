"""Analysis results: :class:`AnalysisResult`, its column schema, Arrow conversion, ``df.mien`` and files.

Files: Parquet and flat CSV in :mod:`mien.results.files`, OpenFace 2.x CSV in :mod:`mien.results.openface`.
"""

from mien.results import accessor as _accessor  # noqa: F401  (registers df.mien)
from mien.results.files import read_results
from mien.results.openface import read_openface
from mien.results.result import COLUMNS, SCHEMA_VERSION, AnalysisResult, ColumnSpec

__all__ = ["COLUMNS", "SCHEMA_VERSION", "AnalysisResult", "ColumnSpec", "read_openface", "read_results"]
