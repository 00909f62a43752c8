"""What every tab's handler shares: the app context, the one-line error shown in the page, progress from mien's
callbacks, and cancellation."""

from __future__ import annotations

import functools
import html
import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from mien.app.files import AppFiles
from mien.app.safety import Limits

log = logging.getLogger("mien.app")


@dataclass
class AppContext:
    """What the tabs get from :func:`mien.app.main.build_app`.

    Attributes:
        files: the app's temporary folder. limits: upload limits.
        models: folder given by ``--models`` (exported tokenizer, reenact and reaction models are its
            sub-folders; :func:`mien.app.tabs.common.exports` lists one family), or None.
        datasets: prepared dataset roots given on the command line (``--datasets``), by display name.
        concurrency: heavy jobs (analysis, rendering) run at once (Gradio's queue holds the rest).
        on_unload: callbacks ``f(session_hash)`` run when a page closes (tabs free per-session state).
    """

    files: AppFiles
    limits: Limits = field(default_factory=Limits)
    models: Path | None = None
    datasets: dict[str, str] = field(default_factory=dict)
    concurrency: int = 1
    on_unload: list[Callable[[str], None]] = field(default_factory=list)
    _cancel: dict[str, threading.Event] = field(default_factory=dict)

    def cancel_token(self, session: str) -> threading.Event:
        """A fresh (cleared) cancel event for a browser session's new job."""
        ev = threading.Event()
        self._cancel[session] = ev
        return ev

    def cancel(self, session: str) -> None:
        """Ask the session's running job to stop at its next frame."""
        ev = self._cancel.get(session)
        if ev is not None:
            ev.set()


class Cancelled(Exception):
    """The user pressed Stop."""


def one_line(text: str) -> str:
    """The first line of a message, HTML-escaped (Gradio renders error text as HTML)."""
    return html.escape((str(text).strip().splitlines() or [""])[0])


def user_errors(fn: Callable) -> Callable:
    """Decorate a handler: a bad input (ValueError, incl. :class:`~mien.errors.InputError`) becomes a one-line
    ``gr.Error`` in the page; a cancelled job a short note; any other exception is logged with its traceback on
    the server and the page shows one line without it. The app keeps serving in every case."""
    import gradio as gr

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except gr.Error:
            raise
        except Cancelled:
            raise gr.Error("Stopped.", duration=5, title="Stopped", print_exception=False) from None
        except ValueError as e:
            raise gr.Error(one_line(e), duration=None, print_exception=False) from None
        except Exception as e:  # noqa: BLE001 (shown as one line; the traceback goes to the server log)
            log.exception("mien app: %s failed", getattr(fn, "__name__", "handler"))
            raise gr.Error(f"internal error ({type(e).__name__}); the server log has the details",
                           duration=None, print_exception=False) from None

    return wrapper


def frame_progress(progress, cancel: threading.Event | None, start: float, span: float | None,
                   lo: float = 0.0, hi: float = 1.0, desc: str = "analysing") -> Callable:
    """An ``on_frame(frame, state)`` callback for :func:`mien.analyze` and the pipelines taking one
    (:func:`~mien.pipelines.reenact_video.reenact_video`, :func:`~mien.pipelines.react.react_to_files`) that moves
    a ``gr.Progress`` bar from ``lo`` to ``hi`` by the frame's time over ``span`` seconds from ``start`` and stops
    the job when ``cancel`` is set (raises :class:`Cancelled` inside the pipeline, which then writes no file).

    When ``state`` is a step of a multi-step job (``name``, ``index``, ``count``: a
    :class:`~mien.pipelines.analyze.Step`), the bar moves through step ``index``'s share of the range and shows
    its name."""

    def on_frame(frame, state=None):
        if cancel is not None and cancel.is_set():
            raise Cancelled()
        if progress is not None:
            f = min(max((frame.t_sec - start) / span, 0.0), 1.0) if span else 0.0
            i, n = getattr(state, "index", None), getattr(state, "count", None)
            if isinstance(i, int) and isinstance(n, int) and n > 0:
                progress(lo + (hi - lo) * (i + f) / n, desc=f"{desc}: {state.name}")
            else:
                progress(lo + (hi - lo) * f, desc=desc)
        return False

    return on_frame


def progress_span(end: float | None, media) -> float | None:
    """Seconds a progress bar spans for one checked upload (:class:`~mien.app.safety.Media`, or None): the shorter
    of the user's End (seconds, None/0: to the end) and the video's duration; None for an image or no upload."""
    if media is None:
        return None
    return min([s for s in (end, media.duration_sec) if s], default=None)


class FilesProgress:
    """``on_frame`` for :func:`mien.pipelines.batch.analyze_files` over checked uploads: the bar moves from ``lo``
    to ``hi`` by file (file i of n, i the position ``analyze_files`` gives with each frame; a video's share by its
    frames' time), named by the user's file name; Stop raises :class:`Cancelled`.

    Args:
        media: the checked uploads (:class:`~mien.app.safety.Media`) in the order given to ``analyze_files``.
    """

    def __init__(self, progress, cancel: threading.Event | None, media: list, lo: float = 0.0, hi: float = 1.0):
        self.progress, self.cancel, self.media, self.lo, self.hi = progress, cancel, media, lo, hi

    def __call__(self, frame, step) -> bool:
        if self.cancel is not None and self.cancel.is_set():
            raise Cancelled()
        if self.progress is not None:
            i, n = step.index, len(self.media)
            m = self.media[i]
            f = min(max(frame.t_sec / m.duration_sec, 0.0), 1.0) if m.duration_sec else 1.0
            self.progress(self.lo + (self.hi - self.lo) * (i + f) / n, desc=f"analysing {m.name} ({i + 1} of {n})")
        return False


__all__ = ["AppContext", "Cancelled", "FilesProgress", "frame_progress", "one_line", "progress_span", "user_errors"]
