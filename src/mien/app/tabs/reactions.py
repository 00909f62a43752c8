"""Reactions tab: a speaker video → N generated listener reactions (REACT 25-d attributes) by a reaction model
found in ``--models DIR`` (``mien export reaction``, format ``mien-reaction``), shown as the AU/expression plot
and the first reactions rendered as face-mesh videos beside the speaker, with the Parquet table to download
(:func:`mien.pipelines.react.react_to_files`, as ``mien react``); a progress bar by frame through its steps
(analysing the speaker, rendering each video) and a Stop button."""

import gradio as gr

from mien.app.jobs import AppContext, frame_progress, progress_span, user_errors
from mien.app.safety import check_upload
from mien.app.tabs.common import exports, stop_button
from mien.errors import InputError
from mien.pipelines.react import ReactOptions, react_to_files
from mien.results.reaction import read_reactions

TITLE = "Reactions"
MAX_REACTIONS = 20
MAX_VIDEOS = 3


def reaction_models(models) -> dict[str, str]:
    """Exported reaction models (format ``mien-reaction``, kind ``reaction``) in ``models``, by display name."""
    return exports(models, "mien-reaction", ("reaction",))


def run_react(ctx: AppContext, upload: str, model: str, n: int, videos: int = 1, seed: int = 0,
              temperature: float = 1.0, online: bool = False, end=None, progress=None, cancel=None) -> dict:
    """Check the upload and generate ``n`` reactions with the model chosen by name; returns
    {kind: path} of :func:`~mien.pipelines.react.react_to_files` (``parquet``, ``plot``, ``video<i>``).
    ``progress`` moves by frame through the steps; a set ``cancel`` event stops at the next frame
    (:class:`Cancelled`; no half-written file).

    Raises:
        InputError: a bad upload, an unknown model, no face in the speaker video. ValueError: bad options.
    """
    found = reaction_models(ctx.models)
    if model not in found:
        raise InputError(model or "model", "not one of the reaction models in the app's --models folder")
    opts = ReactOptions(n=int(n), videos=min(int(videos), int(n)), seed=int(seed or 0),
                        temperature=float(temperature), online=bool(online), end=end or None)
    job = ctx.files.job("react")
    media = check_upload(upload, ctx.files, job, ctx.limits, kinds=("video",))
    if progress is not None:
        progress(0.05, desc="loading the model")
    span = progress_span(opts.end, media)
    return react_to_files(media.path, job, found[model], opts,
                          on_frame=frame_progress(progress, cancel, 0.0, span, 0.05, 1.0, "reactions"))


def build(ctx: AppContext) -> None:
    found = reaction_models(ctx.models)
    if not found:
        gr.Markdown("No reaction model: start the app with `--models DIR` holding a folder made by "
                    "`mien export reaction`.")
    with gr.Row():
        with gr.Column(scale=1):
            model = gr.Dropdown(list(found), value=next(iter(found), None), label="Reaction model",
                                elem_id="react-model")
            upload = gr.File(label="Speaker video", file_count="single", type="filepath", elem_id="react-upload")
            n = gr.Slider(1, MAX_REACTIONS, value=3, step=1, label="Reactions (N)", elem_id="react-n")
            videos = gr.Slider(0, MAX_VIDEOS, value=1, step=1, label="Reactions rendered as videos")
            with gr.Accordion("Sampling", open=False):
                temperature = gr.Number(1.0, label="Temperature", minimum=0.01)
                seed = gr.Number(0, label="Seed", precision=0)
                online = gr.Checkbox(False, label="Online (causal) decoding")
                end = gr.Number(None, label="End (s), 0: to the end", minimum=0)
            with gr.Row():
                run = gr.Button("Generate reactions", variant="primary", elem_id="react-run")
                stop = gr.Button("Stop", elem_id="react-stop")
        with gr.Column(scale=2):
            summary = gr.Markdown(elem_id="react-summary")
            plot = gr.Image(label="Speaker and reactions: AUs and expressions", elem_id="react-plot",
                            interactive=False)
            video = gr.Video(label="Reaction 1: face mesh beside the speaker", elem_id="react-video",
                             interactive=False)
            files = gr.File(label="Downloads", file_count="multiple", elem_id="react-files", interactive=False)

    @user_errors
    def on_run(model, upload, n, videos, temperature, seed, online, end, request: gr.Request,
               progress=gr.Progress()):  # noqa: B008
        out = run_react(ctx, upload, model, n, videos, seed, temperature, online, end, progress,
                        ctx.cancel_token(request.session_hash))
        rx = read_reactions(out["parquet"])
        text = (f"{rx.n} reaction(s) × {rx.reactions.shape[1]} frames at {rx.fps:g} fps "
                f"({rx.reactions.shape[1] / rx.fps:.1f} s)")
        vids = [str(p) for k, p in out.items() if k.startswith("video")]
        return (text, str(out["plot"]) if "plot" in out else None, vids[0] if vids else None,
                [str(out["parquet"]), *vids])

    event = run.click(on_run, [model, upload, n, videos, temperature, seed, online, end],
                      [summary, plot, video, files], concurrency_limit=ctx.concurrency, concurrency_id="heavy")
    stop_button(ctx, stop, event)
