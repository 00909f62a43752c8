"""The app's own temporary folder: uploads (Gradio's upload cache), one folder per job for results, removed
when the app stops. Nothing outside it is ever served or read on the browser's behalf."""

from __future__ import annotations

import atexit
import os
import shutil
import tempfile
import uuid
from pathlib import Path


class AppFiles:
    """A private temporary folder (mode 0700) with ``uploads/`` (set as Gradio's upload folder,
    ``GRADIO_TEMP_DIR``) and ``jobs/<id>/`` per job.

    Args:
        parent: where to create it (default the system temp folder).

    Attributes:
        root: the folder; uploads: the upload cache inside it.
    """

    def __init__(self, parent: str | os.PathLike | None = None):
        self.root = Path(tempfile.mkdtemp(prefix="mien-app-", dir=parent)).resolve()
        self.uploads = self.root / "uploads"
        self.uploads.mkdir()
        (self.root / "jobs").mkdir()
        atexit.register(self.cleanup)

    def job(self, name: str = "job") -> Path:
        """A new empty folder for one job's results."""
        d = self.root / "jobs" / f"{name}-{uuid.uuid4().hex[:12]}"
        d.mkdir(parents=True)
        return d

    def contains(self, path: str | os.PathLike) -> bool:
        """Whether ``path`` (resolved, symlinks followed) lies inside the app's folder."""
        try:
            p = Path(path).resolve()
        except (OSError, RuntimeError):
            return False
        return p == self.root or self.root in p.parents

    def cleanup(self) -> None:
        """Remove the folder and everything in it (idempotent)."""
        shutil.rmtree(self.root, ignore_errors=True)


__all__ = ["AppFiles"]
