"""3-D tab, two modes: **Mesh**, a parametric 3-D face fitted to every frame's landmarks, shown as ``[input |
shaded mesh | mesh overlay]`` (:func:`mien.pipelines.face3d.render_face3d`, as ``mien render face3d``), with the
mesh sequence (``mesh.npz``) to download; **Expression transfer**, the target's identity, pose and appearance with
the source's expression, frame by frame (:func:`mien.pipelines.face3d_transfer.expression_transfer`, as ``mien
render expression-transfer``), with a face3d-learn export of ``--models DIR`` (``mien export face3d``) as the
optional neural renderer (and its token swap). Both show a progress bar by frame through their passes (analysis,
then rendering) and have a Stop button."""

import gradio as gr

from mien.app.jobs import AppContext, frame_progress, progress_span, user_errors
from mien.app.safety import check_upload
from mien.app.tabs.common import exports, stop_button
from mien.errors import InputError
from mien.pipelines.face3d import render_face3d
from mien.pipelines.face3d_transfer import expression_transfer

TITLE = "3-D"
NO_ENCODER = "none (mesh only)"


def encoders(models) -> dict[str, str]:
    """face3d-learn exports (``mien export face3d``: encoder + neural renderer) in ``models``, by display name."""
    if models is None:
        return {}
    from mien.models.face3d.learned import FORMAT

    return exports(models, FORMAT)


def run_face3d(ctx: AppContext, upload: str, smooth: bool, end, max_faces: int, progress=None, cancel=None):
    """Check the upload, fit and render; returns the Face3DRenderReport (its mesh files in the job folder).
    ``progress`` moves by frame through the analysis and the rendering; a set ``cancel`` event stops at the next
    frame (:class:`~mien.app.jobs.Cancelled`; no video, no mesh file)."""
    job = ctx.files.job("face3d")
    media = check_upload(upload, ctx.files, job, ctx.limits, kinds=("video",))
    if progress is not None:
        progress(0.05, desc="fitting the 3-D face")
    return render_face3d(media.path, job / "face3d.mp4", smooth=bool(smooth), end=end or None,
                         max_faces=int(max_faces), export_mesh=job / "mesh",
                         on_frame=frame_progress(progress, cancel, 0.0, progress_span(end, media), 0.05, 1.0, "3-D face"))


def run_transfer(ctx: AppContext, source: str, target: str, relative: bool = False, smooth: bool = False, end=None,
                 encoder: str | None = None, swap: bool = False, progress=None, cancel=None):
    """Check both uploads (videos or images) and transfer the source's expression onto the target; ``encoder``:
    the name of a face3d-learn export in ``ctx.models`` (None or :data:`NO_ENCODER`: mesh panels only);
    ``swap``: its token swap. Returns the :class:`~mien.pipelines.face3d_transfer.TransferReport` (an MP4 in the
    job folder). ``progress`` moves by frame through the source's and the target's analysis and the rendering;
    a set ``cancel`` event stops at the next frame (no output file).

    Raises:
        InputError: a bad upload, an unknown encoder name, token swap without an encoder (or with one that has no
            token encoder), no face in the source or the target.
    """
    found = encoders(ctx.models)
    encoder = None if encoder in (None, "", NO_ENCODER) else encoder
    if encoder is not None and encoder not in found:
        raise InputError(encoder, "not one of the face3d exports in the app's --models folder")
    if swap and encoder is None:
        raise InputError("token swap", "needs a neural renderer: choose a face3d export")
    job = ctx.files.job("transfer")
    src = check_upload(source, ctx.files, job, ctx.limits, kinds=("video", "image"))
    tgt = check_upload(target, ctx.files, job, ctx.limits, kinds=("video", "image"))
    if progress is not None:
        progress(0.05, desc="expression transfer")
    return expression_transfer(src.path, tgt.path, job / "transfer.mp4", relative=bool(relative),
                               smooth=bool(smooth), end=end or None,
                               encoder=found[encoder] if encoder is not None else None,
                               swap="tokens" if swap else None,
                               on_frame=frame_progress(progress, cancel, 0.0, progress_span(end, src), 0.05, 1.0,
                                                       "expression transfer"))


def build(ctx: AppContext) -> None:
    found = encoders(ctx.models)
    with gr.Row():
        with gr.Column(scale=1), gr.Tabs():
            with gr.Tab("Mesh", elem_id="face3d-mesh-tab"):
                upload = gr.File(label="Video", file_count="single", type="filepath", elem_id="face3d-upload")
                smooth = gr.Checkbox(True, label="Smooth coefficients and pose (One Euro)")
                end = gr.Number(None, label="End (s), 0: to the end", minimum=0)
                max_faces = gr.Slider(1, 5, value=1, step=1, label="Max faces")
                with gr.Row():
                    run = gr.Button("Fit 3-D face", variant="primary", elem_id="face3d-run")
                    stop = gr.Button("Stop", elem_id="face3d-stop")
            with gr.Tab("Expression transfer", elem_id="transfer-tab"):
                source = gr.File(label="Source: its expressions (video or image)", file_count="single",
                                 type="filepath", elem_id="transfer-source")
                target = gr.File(label="Target: its identity, pose and appearance (video or image; a shorter "
                                       "video starts again)", file_count="single", type="filepath",
                                 elem_id="transfer-target")
                relative = gr.Checkbox(False, label="Relative: the source's expression change from its median "
                                                    "(removes person-specific offsets)", elem_id="transfer-relative")
                t_smooth = gr.Checkbox(False, label="Smooth coefficients and pose (One Euro)")
                t_end = gr.Number(None, label="End of the source (s), 0: to the end", minimum=0,
                                  elem_id="transfer-end")
                encoder = gr.Dropdown([NO_ENCODER, *found], value=NO_ENCODER, label="Neural renderer (face3d "
                                      "export in --models)", visible=bool(found), elem_id="transfer-encoder")
                swap = gr.Checkbox(False, label="Token swap (TEASER: the source's geometry with the target's "
                                                "appearance tokens)", visible=bool(found), elem_id="transfer-swap")
                with gr.Row():
                    t_run = gr.Button("Transfer expression", variant="primary", elem_id="transfer-run")
                    t_stop = gr.Button("Stop", elem_id="transfer-stop")
        with gr.Column(scale=2):
            summary = gr.Markdown(elem_id="face3d-summary")
            video = gr.Video(label="Input | shaded mesh | overlay", elem_id="face3d-video", interactive=False)
            files = gr.File(label="Downloads", file_count="multiple", elem_id="face3d-files", interactive=False)

    @user_errors
    def on_run(upload, smooth, end, max_faces, request: gr.Request, progress=gr.Progress()):  # noqa: B008
        rep = run_face3d(ctx, upload, smooth, end, max_faces, progress, ctx.cancel_token(request.session_hash))
        return (f"{rep.frames} frames ({rep.faces} faces), {rep.width}x{rep.height} at {rep.fps:.2f} fps, "
                f"{rep.seconds:.1f} s", gr.update(value=rep.output, label="Input | shaded mesh | overlay"),
                rep.mesh_files[:1])

    @user_errors
    def on_transfer(source, target, relative, smooth, end, encoder, swap, request: gr.Request,
                    progress=gr.Progress()):  # noqa: B008
        rep = run_transfer(ctx, source, target, relative, smooth, end, encoder, swap, progress,
                           ctx.cancel_token(request.session_hash))
        return (f"expression transfer: {rep.frames} frames ({rep.transferred} transferred), {rep.width}x{rep.height}"
                f" at {rep.fps:.2f} fps, {rep.seconds:.1f} s", gr.update(value=rep.output,
                                                                      label=" | ".join(rep.panels)), [rep.output])

    heavy = {"concurrency_limit": ctx.concurrency, "concurrency_id": "heavy"}
    event = run.click(on_run, [upload, smooth, end, max_faces], [summary, video, files], **heavy)
    t_event = t_run.click(on_transfer, [source, target, relative, t_smooth, t_end, encoder, swap],
                          [summary, video, files], **heavy)
    stop_button(ctx, stop, event)
    stop_button(ctx, t_stop, t_event)
