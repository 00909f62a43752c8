"""Media input/output: streamed video/image/webcam readers, video writer, atomic writes, file hashing.

Media only: results files (Parquet/CSV/OpenFace) live in :mod:`mien.results`, and nothing here imports
:mod:`mien.results` (an import-linter contract in ``pyproject.toml`` checks it).
"""

from mien.io.atomic import atomic_output
from mien.io.video import Frame, ImageSource, VideoSource, WebcamSource, open_source

__all__ = ["Frame", "ImageSource", "VideoSource", "WebcamSource", "atomic_output", "open_source"]
