"""Tokens tab: an exported expression tokenizer (a sub-folder of ``--models DIR``, from ``mien export
tokenizer``) renders a video as ``[input crop | reconstruction]`` or, with another subject's embedding,
``[input crop | identity swap]`` (:func:`mien.pipelines.render.render_video`, as ``mien render``); a progress
bar by frame through the analysis and the rendering, and a Stop button."""

from pathlib import Path

import gradio as gr

from mien.app.jobs import AppContext, frame_progress, progress_span, user_errors
from mien.app.safety import check_upload
from mien.app.tabs.common import exports, stop_button
from mien.errors import InputError
from mien.pipelines.render import KINDS, render_video

TITLE = "Tokens"


def tokenizers(models: Path | None) -> dict[str, str]:
    """Exported tokenizers (``mien export tokenizer``: format ``mien-tokenizer``, kind ``tokenizer``) in
    ``models`` or ``models`` itself, by display name (other families' exports are not listed)."""
    return exports(models, "mien-tokenizer", ("tokenizer",))


def run_render(ctx: AppContext, upload: str, tokenizer: str, kind: str, target_subject, end, progress=None,
               cancel=None):
    """Check the upload and render it with the tokenizer chosen by name; returns the RenderReport. ``progress``
    moves by frame through the analysis and the rendering; a set ``cancel`` event stops at the next frame
    (:class:`~mien.app.jobs.Cancelled`; no output file)."""
    found = tokenizers(ctx.models)
    if tokenizer not in found:
        raise InputError(tokenizer or "tokenizer", "not one of the tokenizers in the app's --models folder")
    job = ctx.files.job("tokens")
    media = check_upload(upload, ctx.files, job, ctx.limits, kinds=("video",))
    if progress is not None:
        progress(0.05, desc=f"rendering {kind}")
    tgt = int(target_subject) if kind == "swap" else None
    span = progress_span(end, media)
    return render_video(media.path, found[tokenizer], job / f"{kind}.mp4", kind, target_subject=tgt,
                        end=end or None, on_frame=frame_progress(progress, cancel, 0.0, span, 0.05, 1.0, kind))


def build(ctx: AppContext) -> None:
    found = tokenizers(ctx.models)
    if not found:
        gr.Markdown("No exported tokenizer: start the app with `--models DIR` holding folders made by "
                    "`mien export tokenizer`.")
    with gr.Row():
        with gr.Column(scale=1):
            tok = gr.Dropdown(list(found), value=next(iter(found), None), label="Tokenizer", elem_id="tokens-model")
            upload = gr.File(label="Video", file_count="single", type="filepath", elem_id="tokens-upload")
            kind = gr.Radio(list(KINDS), value=KINDS[0], label="Render")
            target = gr.Number(1, label="Target subject (swap)", precision=0, minimum=0)
            end = gr.Number(None, label="End (s), 0: to the end", minimum=0)
            with gr.Row():
                run = gr.Button("Render", variant="primary", elem_id="tokens-run")
                stop = gr.Button("Stop", elem_id="tokens-stop")
        with gr.Column(scale=2):
            summary = gr.Markdown(elem_id="tokens-summary")
            video = gr.Video(label="Input crop | rendered face", elem_id="tokens-video", interactive=False)

    @user_errors
    def on_run(upload, tok, kind, target, end, request: gr.Request, progress=gr.Progress()):  # noqa: B008
        rep = run_render(ctx, upload, tok, kind, target, end, progress, ctx.cancel_token(request.session_hash))
        return (f"{rep.kind}: {rep.frames} frames ({rep.faces} with a face), {rep.width}x{rep.height} at "
                f"{rep.fps:.2f} fps, {rep.seconds:.1f} s", rep.output)

    event = run.click(on_run, [upload, tok, kind, target, end], [summary, video], concurrency_limit=ctx.concurrency,
                      concurrency_id="heavy")
    stop_button(ctx, stop, event)
