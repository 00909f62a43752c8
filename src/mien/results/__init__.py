"""Analysis results: :class:`AnalysisResult`, its column schema, Arrow conversion and ``df.mien``."""

from mien.results import accessor as _accessor  # noqa: F401  (registers df.mien)
from mien.results.result import COLUMNS, SCHEMA_VERSION, AnalysisResult, ColumnSpec

__all__ = ["COLUMNS", "SCHEMA_VERSION", "AnalysisResult", "ColumnSpec"]
