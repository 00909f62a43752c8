"""Small presentation helpers shared by the tabs (no analysis here)."""

import html

import numpy as np

PREVIEW_ROWS = 500


def table_html(result, max_rows: int = PREVIEW_ROWS) -> str:
    """The 1-D columns of an :class:`~mien.AnalysisResult` as an HTML table (first ``max_rows`` rows), with a
    caption giving the full size; values are escaped by pandas."""
    import pandas as pd

    cols = {k: v for k, v in result.columns().items() if np.ndim(v) == 1}
    df = pd.DataFrame(cols).head(max_rows)
    shown = f"{len(df)} of {len(result)}" if len(result) > max_rows else f"{len(result)}"
    caption = f"<p id='table-caption'>{shown} rows × {len(result.columns())} columns (arrays: see the files)</p>"
    body = df.to_html(index=False, float_format=lambda x: f"{x:.4g}", classes="mien-table", border=0)
    return f"{caption}<div style='max-height:420px;overflow:auto'>{body}</div>"


def json_html(data: dict) -> str:
    """A dict as an escaped, preformatted JSON block."""
    import json

    return f"<pre>{html.escape(json.dumps(data, indent=2, default=str))}</pre>"
