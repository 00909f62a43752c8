"""Input/output: streamed video/image/webcam readers, video writer, atomic writes, results files."""

from mien.io.atomic import atomic_output
from mien.io.video import Frame, ImageSource, VideoSource, WebcamSource, open_source

__all__ = ["Frame", "ImageSource", "VideoSource", "WebcamSource", "atomic_output", "open_source"]
