"""``mien react`` / :func:`react`: a speaker video → N generated listener reactions (REACT 25-d attributes),
written as Parquet, a plot and rendered reaction videos.

Steps: :func:`mien.pipelines.analyze.analyze` of the speaker (AUs and emotion on, as ``mien prepare --mode
dyadic`` does), the largest face track, the frame grid at the model's fps (:func:`mien.data.react.frame_grid`),
the speaker features the model was trained on (:func:`mien.data.react.speaker_features` of the groups named in
``model.speaker_feature_names``, columns checked by name), :meth:`ReactionModel.generate`, then
:class:`~mien.results.reaction.ReactionResult` files, :func:`mien.viz.reaction.plot_reactions` and
:func:`mien.viz.reaction.render_reaction_video` (the AU-driven PLS face mesh beside the speaker) and, with a
listener portrait, :class:`mien.pipelines.react_portrait.ListenerPortrait` (the portrait edited per frame along its
AU directions).
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from mien.errors import InputError
from mien.pipelines.analyze import Step, StepCallback, analyze
from mien.results.reaction import ReactionResult

__all__ = ["ReactOptions", "react", "react_to_files", "speaker_inputs"]


@dataclass
class ReactOptions:
    """Options of :func:`react` (and the flags of ``mien react``).

    Attributes:
        n: reactions to generate per speaker clip.
        online: online (chunk-causal, KV-cached) decoding instead of offline MaskGIT.
        temperature: sampling temperature (> 0).
        top_k: keep the k most likely tokens (0: all).
        top_p: nucleus sampling mass in (0, 1] (1: off).
        temperature_step, top_p_step: per-reaction schedule (seed 4's ``schedule_step``): reaction i samples with
            temperature + i·temperature_step and top_p + i·top_p_step (clipped to (0, 1]).
        steps: MaskGIT decoding steps (0: the model's default).
        seed: random seed of the sampling (reproducible reactions).
        start: speaker video start in seconds.
        end: speaker video end in seconds (default: the whole video).
        videos: reactions rendered as videos (the first K; 0: none): the mesh video, and the portrait video when
            ``listener_image`` is given.
        plot: write the AU/expression plot.
        listener_image: a listener portrait (image file) animated by each rendered reaction through its AU
            editing directions (edit = gain × (AU value − the reaction's 10th percentile of it)), written as
            <stem>.reaction<i>.portrait.mp4; checked for a face before any generation.
        listener_model: reenactor of the portrait: "warp" (py-feat's AU → mesh directions) or a folder from
            ``mien export reenact`` with AU directions.
        listener_gain: portrait edit strength per unit of AU value above the reaction's own neutral level.
    """

    n: int = 10
    online: bool = False
    temperature: float = 1.0
    top_k: int = 0
    top_p: float = 1.0
    temperature_step: float = 0.0
    top_p_step: float = 0.0
    steps: int = 0
    seed: int = 0
    start: float | None = None
    end: float | None = None
    videos: int = field(default=1, metadata={"metavar": "K"})
    plot: bool = True
    listener_image: str | None = field(default=None, metadata={"metavar": "PORTRAIT"})
    listener_model: str = field(default="warp", metadata={"metavar": "DIR|warp"})
    listener_gain: float = field(default=1.0, metadata={"metavar": "X"})

    def __post_init__(self):
        if self.n < 1:
            raise ValueError(f"n must be >= 1, got {self.n}")
        if self.temperature <= 0 or not 0 < self.top_p <= 1 or self.top_k < 0 or self.steps < 0 or self.videos < 0:
            raise ValueError("need temperature > 0, 0 < top_p <= 1, top_k >= 0, steps >= 0 and videos >= 0")
        if self.temperature + (self.n - 1) * self.temperature_step <= 0:
            raise ValueError(f"temperature_step {self.temperature_step} makes the last reaction's temperature <= 0")
        if self.listener_gain < 0:
            raise ValueError(f"listener_gain must be >= 0, got {self.listener_gain}")

    def schedule(self) -> tuple[list[float], list[float] | None]:
        """Per-reaction temperatures and top-p values (None: nucleus sampling off)."""
        i = np.arange(self.n)
        temps = (self.temperature + i * self.temperature_step).tolist()
        if self.top_p >= 1 and self.top_p_step == 0:
            return temps, None
        return temps, np.clip(self.top_p + i * self.top_p_step, 1e-3, 1.0).tolist()


def _groups(names: list[str]) -> list[str]:
    out: list[str] = []
    for n in names:
        g = n.split(":", 1)[0]
        if g not in out:
            out.append(g)
    return out


def speaker_inputs(video: str | os.PathLike, feature_names: list[str], fps: float = 25.0,
                   start: float | None = None, end: float | None = None, on_frame: Callable | None = None):
    """Analyse a speaker video and compute the named speaker features on the model's frame grid.

    ``on_frame`` is :func:`mien.analyze`'s (per speaker frame; True ends the analysis at that frame).

    Returns:
        (features float32 (T, D_s) in ``feature_names`` order, speaker attributes float32 (T, 25), the frame
        grid (T,) s, the AnalysisResult of the speaker's track).

    Raises:
        InputError: unreadable video, no face, or features the model needs that the video cannot give (e.g.
            audio features of a video without sound).
    """
    from mien.data.react import attributes_25, audio_features, feature_columns, frame_grid, speaker_features

    path = str(video)
    res = analyze(path, au=True, emotion=True, start=start, end=end, on_frame=on_frame)
    if not len(res):
        raise InputError(path, "no face found in the speaker video")
    ids, counts = np.unique(res.face_id, return_counts=True)
    res = res.for_face(int(ids[np.argmax(counts)]))
    times = frame_grid(res, fps)
    if len(times) < 2:
        raise InputError(path, "the speaker video is shorter than two frames")
    groups = _groups(feature_names)
    audio = audio_features(path, times) if any(g in ("logmel", "mfcc", "egemaps") for g in groups) else None
    try:
        feats = speaker_features(res, audio, groups, times=times)
    except ValueError as e:
        raise InputError(path, str(e)) from None
    cols = feature_columns(res, audio, groups)
    pos = {c: i for i, c in enumerate(cols)}
    missing = [c for c in feature_names if c not in pos]
    if missing:
        raise InputError(path, f"cannot compute the model's speaker features {missing[:5]} "
                               f"({len(missing)} missing) from this video")
    return feats[:, [pos[c] for c in feature_names]], attributes_25(res, times), times, res


def react(speaker: str | os.PathLike, model=None, n: int | None = None, options: ReactOptions | None = None, *,
          on_frame: Callable | None = None, **kwargs) -> ReactionResult:
    """Generate listener reactions to a speaker video.

    Args:
        speaker: speaker video file.
        model: a :class:`~mien.models.reaction.ReactionModel` or the folder of one (``mien export reaction``).
        n: reactions (overrides ``options.n``). options: :class:`ReactOptions`; ``kwargs`` override its fields.
        on_frame: ``on_frame(frame, step)`` per analysed speaker frame (``step``: :class:`~mien.pipelines.analyze.Step` "speaker");
            True ends the speaker analysis at that frame (the reactions cover the speaker up to it); an exception it
            raises (a cancelled job) propagates.

    Returns:
        :class:`~mien.results.reaction.ReactionResult`: reactions (n, T, 25) float32 at the model's fps (NaN in
        attributes the model's training data never had), the speaker's own attributes (T, 25).

    With ``listener_image`` the portrait is checked first (a face, a reenactor with AU directions) and recorded in
    ``meta["listener"]``; :func:`react_to_files` renders it (:class:`~mien.pipelines.react_portrait.ListenerPortrait`
    does for a result in Python).

    Raises:
        InputError: unreadable video, no face (speaker or listener portrait), missing model files.
        ValueError: bad options.
    """
    import dataclasses

    opts = dataclasses.replace(options or ReactOptions(), **kwargs, **({"n": n} if n is not None else {}))
    return _react(speaker, model, opts, StepCallback(on_frame, Step("speaker")))[0]


def _listener(opts: ReactOptions):
    """The listener portrait of ``opts`` (None without one), loaded and checked."""
    if opts.listener_image is None:
        return None
    from mien.pipelines.react_portrait import ListenerPortrait

    return ListenerPortrait(opts.listener_image, opts.listener_model, opts.listener_gain)


def _react(speaker, model, opts: ReactOptions, on_frame: Callable | None = None):
    import dataclasses

    import torch

    from mien.models.reaction.model import load_reaction_model

    if model is None:
        raise ValueError("react needs model= (a ReactionModel or the folder of an exported one)")
    portrait = _listener(opts)
    m = load_reaction_model(model) if isinstance(model, (str, os.PathLike)) else model
    feats, attrs, times, _ = speaker_inputs(speaker, m.speaker_feature_names, m.fps, opts.start, opts.end, on_frame)
    temps, top_p = opts.schedule()
    out = m.generate(torch.from_numpy(feats)[None], opts.n, online=opts.online, temperature=temps,
                     top_k=opts.top_k or None, top_p=top_p, seed=opts.seed, steps=opts.steps or None)
    meta = {"source": str(speaker), "model": str(model) if isinstance(model, (str, os.PathLike)) else "in-memory",
            "start_sec": float(times[0]), "options": dataclasses.asdict(opts),
            "speaker_feature_names": m.speaker_feature_names}
    if portrait is not None:
        from mien.pipelines.react_portrait import NEUTRAL_QUANTILE

        meta["listener"] = {"image": opts.listener_image, "model": portrait.reenactor.name,
                            "gain": opts.listener_gain, "neutral_quantile": NEUTRAL_QUANTILE}
    return ReactionResult(out[0].numpy(), m.fps, attrs, meta), portrait


def react_to_files(speaker: str | os.PathLike, output: str | os.PathLike, model,
                   options: ReactOptions | None = None, *, on_frame: Callable | None = None) -> dict[str, Path]:
    """:func:`react` and its files in ``output``: ``<stem>.reactions.parquet``, ``<stem>.reactions.png`` (plot),
    ``<stem>.reaction<i>.mp4`` for the first ``options.videos`` reactions and, with ``options.listener_image``,
    ``<stem>.reaction<i>.portrait.mp4`` (the portrait animated by reaction i, with the speaker's audio).
    Returns {kind: path} (kinds ``parquet``, ``plot``, ``video<i>``, ``portrait<i>``).

    ``on_frame(frame, step)`` is called per analysed speaker frame and per rendered video frame, ``step`` the
    :class:`~mien.pipelines.analyze.Step` it belongs to; True ends that step at that frame (the analysis, or that video); an exception
    it raises (a cancelled job) propagates: every file is written atomically, so none is left half-written (the
    files finished before it stay)."""
    from mien.viz.reaction import plot_reactions, render_reaction_video

    opts = options or ReactOptions()
    k = min(opts.videos, opts.n)
    count = 1 + k * (2 if opts.listener_image is not None else 1)
    res, portrait = _react(speaker, model, opts, StepCallback(on_frame, Step("speaker", 0, count)))
    out = Path(output)
    out.mkdir(parents=True, exist_ok=True)
    stem = Path(str(speaker)).stem
    files = {"parquet": out / f"{stem}.reactions.parquet"}
    res.to_parquet(files["parquet"])
    if opts.plot:
        files["plot"] = plot_reactions(res.speaker, res.reactions, out / f"{stem}.reactions.png", fps=res.fps,
                                       title=f"{stem}: speaker and {res.n} generated reaction(s)")
    # the renderer shows the speaker from the video's start: only when the reactions start there too
    spk = str(speaker) if not opts.start else None
    t0, step = res.meta["start_sec"], 1
    for i in range(k):
        files[f"video{i}"] = render_reaction_video(res.reactions[i], res.fps, out / f"{stem}.reaction{i}.mp4",
                                                   speaker_video=spk,
                                                   on_frame=StepCallback(on_frame, Step(f"video{i}", step, count), t0))
        step += 1
        if portrait is not None:
            cb = StepCallback(on_frame, Step(f"portrait{i}", step, count), t0)
            files[f"portrait{i}"] = Path(portrait.render(res.reactions[i], res.fps,
                                                         out / f"{stem}.reaction{i}.portrait.mp4", audio_from=speaker,
                                                         audio_start=t0, on_frame=cb).output)
            step += 1
    return files
