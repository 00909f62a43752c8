"""Small presentation helpers shared by the tabs (no analysis here)."""

import html

import numpy as np

PREVIEW_ROWS = 500


def table_html(result, max_rows: int = PREVIEW_ROWS) -> str:
    """The 1-D columns of an :class:`~mien.AnalysisResult` as an HTML table (first ``max_rows`` rows; a results
    dataset's ``video`` column first), with a caption giving the full size; values are escaped by pandas."""
    import pandas as pd

    cols = {k: v for k, v in result.columns().items() if np.ndim(v) == 1}
    if "video" in cols:
        cols = {"video": cols.pop("video"), **cols}
    df = pd.DataFrame(cols).head(max_rows)
    shown = f"{len(df)} of {len(result)}" if len(result) > max_rows else f"{len(result)}"
    caption = f"<p id='table-caption'>{shown} rows × {len(result.columns())} columns (arrays: see the files)</p>"
    body = df.to_html(index=False, float_format=lambda x: f"{x:.4g}", classes="mien-table", border=0)
    return f"{caption}<div style='max-height:420px;overflow:auto'>{body}</div>"


def json_html(data: dict) -> str:
    """A dict as an escaped, preformatted JSON block."""
    import json

    return f"<pre>{html.escape(json.dumps(data, indent=2, default=str))}</pre>"


def exports(models, fmt: str, kinds: tuple[str, ...] | None = None) -> dict[str, str]:
    """Exported model folders of one family in ``models`` (``--models DIR``) or ``models`` itself, by display name:
    folders with ``model.safetensors`` whose ``config.json`` names ``format`` ``fmt`` (and a ``kind`` among
    ``kinds`` when given). Unreadable configs are skipped (the loader reports them when chosen)."""
    import json
    from pathlib import Path

    if models is None:
        return {}
    root = Path(models)
    found: dict[str, str] = {}
    for p in (root, *sorted(q for q in root.iterdir() if q.is_dir())):
        try:
            meta = json.loads((p / "config.json").read_text())
        except (OSError, ValueError):
            continue
        if (isinstance(meta, dict) and meta.get("format") == fmt and (p / "model.safetensors").is_file()
                and (kinds is None or meta.get("kind") in kinds)):
            found[p.name] = str(p)
    return found


def stop_button(ctx, button, event) -> None:
    """Wire a tab's Stop ``button`` (gr.Button) to its running ``event``: the click sets the session's cancel
    token (:meth:`mien.app.jobs.AppContext.cancel`; the job's ``on_frame`` callback then raises inside the
    pipeline, which writes no file) and cancels the queued event; it bypasses the queue."""
    import gradio as gr

    def on_stop(request: gr.Request):
        ctx.cancel(request.session_hash)

    button.click(on_stop, None, None, cancels=[event], queue=False)
