"""3-D tab: a parametric 3-D face fitted to every frame's landmarks, shown as ``[input | shaded mesh | mesh
overlay]`` (:func:`mien.pipelines.face3d.render_face3d`, as ``mien render face3d``), with the mesh sequence
(``mesh.npz``) to download."""

import gradio as gr

from mien.app.jobs import AppContext, user_errors
from mien.app.safety import check_upload
from mien.pipelines.face3d import render_face3d

TITLE = "3-D"


def run_face3d(ctx: AppContext, upload: str, smooth: bool, end, max_faces: int, progress=None):
    """Check the upload, fit and render; returns the Face3DRenderReport (its mesh files in the job folder)."""
    job = ctx.files.job("face3d")
    media = check_upload(upload, ctx.files, job, ctx.limits, kinds=("video",))
    if progress is not None:
        progress(0.1, desc="fitting the 3-D face")
    return render_face3d(media.path, job / "face3d.mp4", smooth=bool(smooth), end=end or None,
                         max_faces=int(max_faces), export_mesh=job / "mesh")


def build(ctx: AppContext) -> None:
    with gr.Row():
        with gr.Column(scale=1):
            upload = gr.File(label="Video", file_count="single", type="filepath", elem_id="face3d-upload")
            smooth = gr.Checkbox(True, label="Smooth coefficients and pose (One Euro)")
            end = gr.Number(None, label="End (s), 0: to the end", minimum=0)
            max_faces = gr.Slider(1, 5, value=1, step=1, label="Max faces")
            run = gr.Button("Fit 3-D face", variant="primary", elem_id="face3d-run")
        with gr.Column(scale=2):
            summary = gr.Markdown(elem_id="face3d-summary")
            video = gr.Video(label="Input | shaded mesh | overlay", elem_id="face3d-video", interactive=False)
            files = gr.File(label="Mesh sequence", file_count="multiple", elem_id="face3d-files", interactive=False)

    @user_errors
    def on_run(upload, smooth, end, max_faces, progress=gr.Progress()):  # noqa: B008 (Gradio injects the tracker)
        rep = run_face3d(ctx, upload, smooth, end, max_faces, progress)
        return (f"{rep.frames} frames ({rep.faces} faces), {rep.width}x{rep.height} at {rep.fps:.2f} fps, "
                f"{rep.seconds:.1f} s", rep.output, rep.mesh_files[:1])

    run.click(on_run, [upload, smooth, end, max_faces], [summary, video, files],
              concurrency_limit=ctx.concurrency, concurrency_id="heavy")
