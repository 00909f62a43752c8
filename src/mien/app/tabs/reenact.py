"""Reenact tab: a source portrait animated by a driving video (uploaded, or recorded with the webcam in the
browser), or a still portrait edited along AU directions (:func:`mien.pipelines.reenact_video.reenact_video`, as
``mien reenact``), with the default ``warp`` reenactor or an exported reenact model (``mien export reenact``)
found in ``--models DIR``; a progress bar by driving frame and a Stop button."""

import gradio as gr

from mien.app.jobs import AppContext, frame_progress, progress_span, user_errors
from mien.app.safety import check_upload
from mien.app.tabs.common import exports, stop_button
from mien.errors import InputError
from mien.pipelines.reenact_video import ReenactOptions, reenact_video

TITLE = "Reenact"
BUILTIN = ("warp", "copy")
"""Reenactors that need no weights (see :class:`~mien.pipelines.reenact_video.ReenactOptions`)."""
EDIT_AUS = ("AU01", "AU02", "AU04", "AU06", "AU09", "AU12", "AU15", "AU20", "AU25", "AU26")
"""AU sliders shown (all among ``warp``'s 20 directions; a trained model accepts its own ``au_directions``)."""


def reenactors(models) -> dict[str, str]:
    """The built-in reenactors and the exported reenact models (format ``mien-reenact``) in ``models``, by name."""
    found = {name: name for name in BUILTIN}
    for name, path in exports(models, "mien-reenact").items():
        found[name if name not in found else path] = path
    return found


def run_reenact(ctx: AppContext, source: str, driving: str | None, model: str, edit: dict[str, float],
                side_by_side: bool = False, absolute: bool = False, end=None, progress=None, cancel=None):
    """Check the uploads and reenact (with ``driving``) or edit the still portrait (without); returns the
    :class:`~mien.pipelines.reenact_video.ReenactReport` (``output``: an MP4, or a PNG for a still edit).
    ``progress`` moves by driving frame; a set ``cancel`` event stops at the next frame (:class:`Cancelled`, no
    output file).

    Raises:
        InputError: a bad upload, an unknown model name, no face in the portrait, or neither a driving video nor
            an edit. ValueError: an AU the model has no direction for.
    """
    found = reenactors(ctx.models)
    if model not in found:
        raise InputError(model or "model", "not one of the reenactors of this app (warp, copy, --models exports)")
    edit = {au: float(v) for au, v in (edit or {}).items() if v}
    job = ctx.files.job("reenact")
    src = check_upload(source, ctx.files, job, ctx.limits, kinds=("image", "video"))
    drv = check_upload(driving, ctx.files, job, ctx.limits, kinds=("video",)) if driving else None
    if drv is None and not edit:
        raise InputError(src.name, "upload a driving video, or move an AU slider to edit the still portrait")
    if progress is not None:
        progress(0.1, desc="reenacting" if drv is not None else "editing the portrait")
    opts = ReenactOptions(model=found[model], side_by_side=bool(side_by_side), absolute=bool(absolute),
                          edit=",".join(f"{au}={v:+g}" for au, v in edit.items()) or None,
                          end=end or None)
    out = job / ("reenact.mp4" if drv is not None else "edit.png")
    span = progress_span(end, drv)
    desc = "reenacting" if drv is not None else "editing the portrait"
    return reenact_video(src.path, drv.path if drv is not None else None, out, opts,
                         on_frame=frame_progress(progress, cancel, 0.0, span, 0.1, 1.0, desc))


def build(ctx: AppContext) -> None:
    found = reenactors(ctx.models)
    with gr.Row():
        with gr.Column(scale=1):
            source = gr.File(label="Source portrait (image, or a video's first frame)", file_count="single",
                             type="filepath", elem_id="reenact-source")
            driving = gr.File(label="Driving video (empty: edit the still portrait)", file_count="single",
                              type="filepath", elem_id="reenact-driving")
            webcam = gr.Video(label="…or record the driving video with the webcam", sources=["webcam"],
                              include_audio=True, webcam_options=gr.WebcamOptions(mirror=False),
                              elem_id="reenact-webcam")
            model = gr.Dropdown(list(found), value="warp", label="Reenactor", elem_id="reenact-model")
            side = gr.Checkbox(False, label="Side by side (source | driving | output)", elem_id="reenact-side")
            absolute = gr.Checkbox(False, label="Absolute motion (else relative to the driver's first face)")
            end = gr.Number(None, label="End (s), 0: to the end", minimum=0)
            with gr.Accordion("Edit: AU intensity change", open=False):
                sliders = [gr.Slider(-1, 1, value=0, step=0.1, label=au, elem_id=f"reenact-{au}")
                           for au in EDIT_AUS]
            with gr.Row():
                run = gr.Button("Reenact", variant="primary", elem_id="reenact-run")
                stop = gr.Button("Stop", elem_id="reenact-stop")
        with gr.Column(scale=2):
            summary = gr.Markdown(elem_id="reenact-summary")
            video = gr.Video(label="Reenacted", elem_id="reenact-video", interactive=False)
            image = gr.Image(label="Edited portrait", visible=False, elem_id="reenact-image", interactive=False)
            files = gr.File(label="Download", file_count="multiple", elem_id="reenact-files", interactive=False)

    @user_errors
    def on_run(request: gr.Request, source, driving, recording, model, side, absolute, end, *aus,
               progress=gr.Progress()):  # noqa: B008 (Gradio inserts the request first: *aus takes the rest)
        if driving and recording:
            raise InputError("driving video", "upload a driving video or record one with the webcam, not both")
        rep = run_reenact(ctx, source, driving or recording, model, dict(zip(EDIT_AUS, aus, strict=True)), side,
                          absolute, end, progress, ctx.cancel_token(request.session_hash))
        is_video = rep.output.endswith(".mp4")
        text = (f"{rep.model}: {rep.frames} frame(s), {rep.width}x{rep.height}"
                + (f" at {rep.fps:.2f} fps, {rep.face_gaps} driving frame(s) without a face" if is_video else "")
                + f", {rep.seconds:.1f} s")
        return (text, gr.update(value=rep.output if is_video else None, visible=is_video),
                gr.update(value=None if is_video else rep.output, visible=not is_video), [rep.output])

    event = run.click(on_run, [source, driving, webcam, model, side, absolute, end, *sliders],
                      [summary, video, image, files], concurrency_limit=ctx.concurrency, concurrency_id="heavy")
    stop_button(ctx, stop, event)
