"""``mien app``: build the Gradio Blocks from the tab modules and serve them locally, locked down.

Safety settings (see :func:`serve`): bound to 127.0.0.1 unless a host is given; no share tunnel, no API page,
no monitoring, no MCP server, no analytics; uploads go to the app's own temporary folder (Gradio's upload
folder), which is also where every result is written and served from, and which is removed on exit; nothing
else on disk is served (``allowed_paths`` empty, ``GRADIO_ALLOWED_PATHS`` ignored); upload size capped by
Gradio (``max_file_size``) and checked again by content, size and duration (:mod:`mien.app.safety`).
"""


import os
from pathlib import Path

from mien.app.files import AppFiles
from mien.app.jobs import AppContext
from mien.app.safety import BodyLimit, Limits

MAX_QUEUE = 32
"""Most jobs waiting in Gradio's queue; more are refused with "queue full"."""
CACHE_MAX_AGE = (300, 1200)
"""Gradio's served copies (results shown in the page) older than 20 min are deleted every 5 min; the jobs' own
folders stay until the app stops."""


def _gradio_environment(files: AppFiles) -> None:
    """Gradio reads these at import time: set them before the first ``import gradio``."""
    os.environ["GRADIO_TEMP_DIR"] = str(files.uploads)
    os.environ["GRADIO_ANALYTICS_ENABLED"] = "False"
    os.environ.pop("GRADIO_ALLOWED_PATHS", None)
    os.environ.pop("GRADIO_SHARE", None)


def make_context(models: str | os.PathLike | None = None, datasets: list[str] | tuple[str, ...] = (),
                 limits: Limits | None = None, concurrency: int = 1) -> AppContext:
    """The app's context with a fresh temporary folder (and Gradio's environment pointing at it).

    Raises:
        InputError: ``models`` or a dataset root is not a folder.
    """
    from mien.errors import InputError

    if models is not None and not Path(models).is_dir():
        raise InputError(str(models), "--models must be a folder")
    named: dict[str, str] = {}
    for root in datasets:
        if "://" not in str(root) and not Path(root).is_dir():
            raise InputError(str(root), "--datasets: not a folder")
        name = Path(str(root).rstrip("/")).name or str(root)
        named[name if name not in named else str(root)] = str(root)
    files = AppFiles()
    _gradio_environment(files)
    return AppContext(files, limits or Limits(), Path(models).resolve() if models else None, named, concurrency)


def build_app(ctx: AppContext):
    """The ``gr.Blocks`` of the app: one tab per module of :data:`mien.app.tabs.TABS`, queued."""
    import gradio as gr

    from mien.app.tabs import TABS

    with gr.Blocks(title="mien", analytics_enabled=False, delete_cache=CACHE_MAX_AGE) as demo:
        gr.Markdown("## mien: facial expression analysis and synthesis")
        with gr.Tabs():
            for tab in TABS:
                with gr.Tab(tab.TITLE, id=tab.__name__.rsplit(".", 1)[-1]):
                    tab.build(ctx)

        def on_unload(request: gr.Request):
            for f in ctx.on_unload:
                f(request.session_hash)

        demo.unload(on_unload)
    demo.queue(max_size=MAX_QUEUE, default_concurrency_limit=ctx.concurrency, api_open=False)
    return demo


def serve(ctx: AppContext, host: str = "127.0.0.1", port: int = 7860, block: bool = True, quiet: bool = False):
    """Launch the app on ``host:port``; with ``block`` until Ctrl-C, then remove the temporary folder.

    Returns:
        the launched ``gr.Blocks`` when ``block`` is False (call ``.close()`` and ``ctx.files.cleanup()``).
    """
    from starlette.middleware import Middleware

    demo = build_app(ctx)
    try:
        demo.launch(server_name=host, server_port=port, share=False, allowed_paths=[], blocked_paths=[],
                    max_file_size=int(ctx.limits.max_upload_mb * 1e6), footer_links=[], enable_monitoring=False,
                    mcp_server=False, ssr_mode=False, pwa=False, show_error=False, quiet=quiet,
                    prevent_thread_lock=not block, inbrowser=False,
                    app_kwargs={"middleware": [Middleware(BodyLimit)]})
    except BaseException:
        demo.close()
        ctx.files.cleanup()
        raise
    if block:
        demo.close()
        ctx.files.cleanup()
        return None
    return demo


__all__ = ["CACHE_MAX_AGE", "MAX_QUEUE", "build_app", "make_context", "serve"]
