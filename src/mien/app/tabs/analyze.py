"""Analyze tab: upload a video or image → :func:`mien.analyze` → overlay, time-series plot, table preview and
the Parquet / CSV / OpenFace CSV files (written by :func:`mien.pipelines.batch.write_outputs`, as
``mien analyze`` writes them)."""

from pathlib import Path

import gradio as gr

from mien.app.jobs import AppContext, frame_progress, user_errors
from mien.app.safety import check_upload
from mien.app.tabs.common import table_html
from mien.pipelines.analyze import AnalyzeOptions, analyze
from mien.pipelines.batch import output_paths, write_outputs

TITLE = "Analyze"
FORMATS = ("parquet", "csv", "openface")
OUTPUTS = {"overlay video": "overlay", "time-series plot": "plot", "CSV": "csv", "OpenFace CSV": "openface"}
"""Optional outputs (label → kind), all on by default; the Parquet file is always written."""


def run_analysis(ctx: AppContext, upload: str, options: AnalyzeOptions, progress=None, cancel=None,
                 formats: tuple[str, ...] = FORMATS, overlay: bool = True, plot: bool = True) -> dict:
    """Check ``upload``, analyse it and write the outputs into a new job folder (the Parquet file always; the
    other ``formats``, the overlay and the plot as asked, as ``mien analyze`` writes them).

    Returns:
        {"media": the checked upload, "result": the AnalysisResult, "outputs": {kind: path}}.

    Raises:
        InputError: a bad upload; ValueError: bad options.
    """
    job = ctx.files.job("analyze")
    media = check_upload(upload, ctx.files, job, ctx.limits)
    start = options.start or 0.0
    span = (options.end if options.end is not None else media.duration_sec) - start
    res = analyze(media.path, options, on_frame=frame_progress(progress, cancel, start, span, 0.0, 0.8))
    if progress is not None:
        progress(0.8, desc="writing overlay, plot and tables")
    formats = ("parquet", *(f for f in formats if f != "parquet"))
    outs = output_paths([media.path], str(job), formats, overlay=overlay, plot=plot)[0]
    outs["parquet"] = str(job / (Path(media.path).stem + ".parquet"))  # a file, not a dataset partition
    write_outputs(res, media.path, outs)
    return {"media": media, "result": res, "outputs": outs}


def build(ctx: AppContext) -> None:
    with gr.Row():
        with gr.Column(scale=1):
            upload = gr.File(label="Video or image", file_count="single", type="filepath",
                             elem_id="analyze-upload")
            with gr.Accordion("Options", open=False):
                every = gr.Number(1, label="Every N-th frame", precision=0, minimum=1)
                with gr.Row():
                    start = gr.Number(None, label="Start (s)", minimum=0)
                    end = gr.Number(None, label="End (s), 0: to the end", minimum=0)
                max_faces = gr.Slider(1, 10, value=1, step=1, label="Max faces")
                au = gr.Checkbox(False, label="Action Units (AU01…)")
                emotion = gr.Checkbox(False, label="Emotion")
                smooth = gr.Checkbox(False, label="Smoothing (One Euro)")
                wanted = gr.CheckboxGroup(list(OUTPUTS), value=list(OUTPUTS), label="Outputs (Parquet always)")
            with gr.Row():
                run = gr.Button("Analyze", variant="primary", elem_id="analyze-run")
                stop = gr.Button("Stop", elem_id="analyze-stop")
        with gr.Column(scale=2):
            summary = gr.Markdown(elem_id="analyze-summary")
            video = gr.Video(label="Overlay", elem_id="analyze-overlay", interactive=False)
            image = gr.Image(label="Overlay", visible=False, elem_id="analyze-overlay-image", interactive=False)
            plot = gr.Image(label="Time series", elem_id="analyze-plot", interactive=False)
            files = gr.File(label="Downloads", file_count="multiple", elem_id="analyze-files", interactive=False)
    table = gr.HTML(elem_id="analyze-table")

    @user_errors
    def on_run(upload, every, start, end, max_faces, au, emotion, smooth, wanted, request: gr.Request,
               progress=gr.Progress()):  # noqa: B008 (Gradio injects the tracker)
        opts = AnalyzeOptions(every=int(every or 1), start=start or None, end=end or None,
                              max_faces=int(max_faces), au=bool(au), emotion=bool(emotion), smooth=bool(smooth))
        kinds = {OUTPUTS[w] for w in wanted or ()}
        out = run_analysis(ctx, upload, opts, progress, ctx.cancel_token(request.session_hash),
                           formats=tuple(f for f in FORMATS if f == "parquet" or f in kinds),
                           overlay="overlay" in kinds, plot="plot" in kinds)
        res, outs, media = out["result"], out["outputs"], out["media"]
        is_video = media.kind == "video"
        text = f"**{media.name}**: {res.summary()}"
        return (text, gr.update(value=outs.get("overlay") if is_video else None, visible=is_video),
                gr.update(value=None if is_video else outs.get("overlay"), visible=not is_video), outs.get("plot"),
                table_html(res), [outs[k] for k in FORMATS if k in outs])

    def on_stop(request: gr.Request):
        ctx.cancel(request.session_hash)

    event = run.click(on_run, [upload, every, start, end, max_faces, au, emotion, smooth, wanted],
                      [summary, video, image, plot, table, files], concurrency_limit=ctx.concurrency,
                      concurrency_id="heavy")
    stop.click(on_stop, None, None, cancels=[event], queue=False)
