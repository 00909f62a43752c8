"""Datasets tab: a prepared dataset (``mien prepare``; roots given to ``mien app --datasets``, never typed in
the page) summarised as ``mien dataset info`` does, with a contact sheet of seeded sample clips
(``mien dataset show``)."""

import gradio as gr

from mien.app.jobs import AppContext, user_errors
from mien.app.tabs.common import json_html
from mien.data.summary import choose_samples, dataset_summary
from mien.errors import InputError
from mien.viz.contact_sheet import save_contact_sheet

TITLE = "Datasets"


def show_dataset(ctx: AppContext, name: str, n: int, seed: int) -> tuple[dict, str]:
    """(summary, contact-sheet PNG path in a new job folder) of the dataset called ``name``."""
    if name not in ctx.datasets:
        raise InputError(name or "dataset", "not one of the datasets given to `mien app --datasets`")
    root = ctx.datasets[name]
    summary = dataset_summary(root)
    sheet = save_contact_sheet(choose_samples(root, int(n), int(seed)), ctx.files.job("dataset") / "sheet.png")
    return summary, sheet


def build(ctx: AppContext) -> None:
    names = list(ctx.datasets)
    if not names:
        gr.Markdown("No dataset: start the app with `--datasets DIR [DIR …]` (folders made by `mien prepare`).")
    with gr.Row():
        with gr.Column(scale=1):
            ds = gr.Dropdown(names, value=names[0] if names else None, label="Dataset", elem_id="datasets-name")
            n = gr.Slider(1, 32, value=8, step=1, label="Samples")
            seed = gr.Number(0, label="Seed", precision=0)
            run = gr.Button("Show", variant="primary", elem_id="datasets-run")
        with gr.Column(scale=2):
            summary = gr.Markdown(elem_id="datasets-summary")
            sheet = gr.Image(label="Contact sheet", elem_id="datasets-sheet", interactive=False)
            details = gr.HTML(elem_id="datasets-details")

    @user_errors
    def on_run(name, n, seed):
        s, path = show_dataset(ctx, name, n, seed)
        st = s["settings"]
        text = (f"**{name}**: {s['samples']} samples ({s['with_audio']} with audio), {s['videos']} videos, "
                f"{s['subjects']} subjects, {s['duration_sec']:.1f} s; clips {st['clip_seconds']} s at "
                f"{st['fps']} fps, crop {st['crop_size']} px; {len(s['shards'])} shards")
        return text, path, json_html(s | {"root": name})  # the server's path stays on the server

    run.click(on_run, [ds, n, seed], [summary, sheet, details], concurrency_limit=ctx.concurrency,
              concurrency_id="heavy")
