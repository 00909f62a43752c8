"""Analyze tab: upload a video or image(s), or record a clip with the webcam → :func:`mien.analyze` → overlay,
time-series plot, table preview and the Parquet / CSV / OpenFace CSV files (written by
:func:`mien.pipelines.batch.write_outputs`, as ``mien analyze`` writes them). Several inputs are one batch through
:func:`mien.pipelines.batch.analyze_files` (as ``mien analyze a.jpg b.jpg -o DIR``): a bad file is skipped and
reported, the others are analysed."""

import html
from pathlib import Path

import gradio as gr

from mien.app.jobs import AppContext, FilesProgress, frame_progress, user_errors
from mien.app.safety import check_upload
from mien.app.tabs.common import stop_button, table_html
from mien.errors import InputError
from mien.pipelines.analyze import AnalyzeOptions, analyze
from mien.pipelines.batch import analyze_files, output_paths, write_outputs

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


def run_batch(ctx: AppContext, uploads: list[str], options: AnalyzeOptions, progress=None, cancel=None,
              formats: tuple[str, ...] = FORMATS, overlay: bool = True, plot: bool = True) -> dict:
    """Check every upload and analyse the good ones as one batch (:func:`~mien.pipelines.batch.analyze_files`
    into ``<job>/results``, a results dataset as ``mien analyze … -o DIR`` writes); an upload that fails its check
    or its analysis is skipped and reported by the user's file name.

    Returns:
        {"media": the checked uploads, "inputs": uploads given, "analysed": inputs analysed, "per_file": [{"name",
        "rows", "faces", "frames"} of each analysed input], "result": all rows
        (an AnalysisResult with a ``video`` column, the input's key), "skipped": ["name: reason", …], "files":
        downloads (``analysis.parquet`` with every row, then each input's CSV / OpenFace CSV / overlay / plot),
        "overlays": [path, …]}.

    Raises:
        InputError: no upload, or none could be analysed (the first reason). ValueError: bad options.
    """
    from mien.results.dataset import read_results_dataset

    if not uploads:
        raise InputError("input", "no file was uploaded")
    job = ctx.files.job("analyze")
    media, skipped = [], []
    for up in uploads:
        try:
            media.append(check_upload(up, ctx.files, job, ctx.limits))
        except InputError as e:
            skipped.append(str(e))
    if not media:
        raise InputError(f"{len(uploads)} file(s)", f"none can be analysed ({skipped[0]})")
    names = {m.path: m.name for m in media}
    track = FilesProgress(progress, cancel, media, 0.0, 0.9)
    rep = analyze_files([m.path for m in media], str(job / "results"), options,
                        ("parquet", *(f for f in formats if f != "parquet")), overlay, plot, on_frame=track)
    skipped += [f"{names[r['input']]}: {r['reason']}" for r in rep.failed]
    if not rep.ok:
        raise InputError(f"{len(uploads)} file(s)", f"none can be analysed ({skipped[0]})")
    if progress is not None:
        progress(0.9, desc="collecting the tables")
    res = read_results_dataset(job / "results")
    res.to_parquet(job / "analysis.parquet")
    per_file = [r["outputs"] for r in rep.ok]
    return {"media": media, "result": res, "skipped": skipped, "inputs": len(uploads), "analysed": len(rep.ok),
            "per_file": [{"name": names[r["input"]], "rows": r["rows"], "faces": r["faces"], "frames": r["frames"]}
                         for r in rep.ok],
            "files": [str(job / "analysis.parquet"),
                      *(o[k] for o in per_file for k in ("csv", "openface", "overlay", "plot") if k in o)],
            "overlays": [o["overlay"] for o in per_file if "overlay" in o]}


def build(ctx: AppContext) -> None:
    with gr.Row():
        with gr.Column(scale=1):
            upload = gr.File(label="Video or image(s) (several files: one batch)", file_count="multiple",
                             type="filepath", elem_id="analyze-upload")
            webcam = gr.Video(label="…or record a clip with the webcam", sources=["webcam"], include_audio=True,
                              webcam_options=gr.WebcamOptions(mirror=False), elem_id="analyze-webcam")
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
            gallery = gr.Gallery(label="Overlays", visible=False, elem_id="analyze-gallery", interactive=False,
                                 columns=3)
            plot = gr.Image(label="Time series", elem_id="analyze-plot", interactive=False)
            files = gr.File(label="Downloads", file_count="multiple", elem_id="analyze-files", interactive=False)
    table = gr.HTML(elem_id="analyze-table")

    @user_errors
    def on_run(upload, recording, every, start, end, max_faces, au, emotion, smooth, wanted, request: gr.Request,
               progress=gr.Progress()):  # noqa: B008 (Gradio injects the tracker)
        opts = AnalyzeOptions(every=int(every or 1), start=start or None, end=end or None,
                              max_faces=int(max_faces), au=bool(au), emotion=bool(emotion), smooth=bool(smooth))
        kinds = {OUTPUTS[w] for w in wanted or ()}
        inputs = [*(upload or []), *([recording] if recording else [])]
        kw = {"formats": tuple(f for f in FORMATS if f == "parquet" or f in kinds),
              "overlay": "overlay" in kinds, "plot": "plot" in kinds}
        cancel = ctx.cancel_token(request.session_hash)
        if len(inputs) > 1:
            return _batch_view(run_batch(ctx, inputs, opts, progress, cancel, **kw))
        out = run_analysis(ctx, inputs[0] if inputs else None, opts, progress, cancel, **kw)
        res, outs, media = out["result"], out["outputs"], out["media"]
        is_video = media.kind == "video"
        text = f"**{html.escape(media.name)}**: {res.summary()}"
        return (text, gr.update(value=outs.get("overlay") if is_video else None, visible=is_video),
                gr.update(value=None if is_video else outs.get("overlay"), visible=not is_video),
                gr.update(value=None, visible=False), gr.update(value=outs.get("plot"), visible=True), table_html(res),
                [outs[k] for k in FORMATS if k in outs])

    def _batch_view(out: dict):
        res, skipped = out["result"], out["skipped"]
        text = (f"**{out['analysed']} of {out['inputs']} file(s) analysed**, {len(res)} rows: "
                + "; ".join(f"{html.escape(f['name'])}: {f['faces']} face(s) in {f['frames']} frame(s)"
                            for f in out["per_file"])
                + "".join(f"<br>skipped {html.escape(s)}" for s in skipped))
        return (text, gr.update(value=None, visible=False), gr.update(value=None, visible=False),
                gr.update(value=out["overlays"], visible=True), gr.update(value=None, visible=False),
                table_html(res), out["files"])

    event = run.click(on_run, [upload, webcam, every, start, end, max_faces, au, emotion, smooth, wanted],
                      [summary, video, image, gallery, plot, table, files], concurrency_limit=ctx.concurrency,
                      concurrency_id="heavy")
    stop_button(ctx, stop, event)
