"""Exceptions raised by mien.

Every error about a user's input names the input and the reason in one line, so that the CLI can print
``mien: error: <path>: <reason>`` and exit with status 2 without a traceback.
"""

from __future__ import annotations

import os


class MienError(Exception):
    """Base class of mien's own errors."""


class InputError(MienError, ValueError):
    """An input (file, URL, webcam) is missing, empty, truncated or not a readable image/video.

    Attributes:
        path: the offending input as given by the user.
        reason: a short human-readable reason, without the path.
    """

    def __init__(self, path: str | os.PathLike, reason: str):
        self.path = str(path)
        self.reason = reason
        super().__init__(f"{self.path}: {reason}")
