"""A generated listener reaction shown on a real face: a still listener portrait animated through its AU editing
directions (``mien react --listener-image``).

Per reaction frame t, the reaction's 15 AU values x_a(t) (:data:`~mien.metrics.react.REACT_AUS`, the REACT
attribute layout) become an edit {AU: w_a(t)} of the portrait for the reenactor's ``animate`` with no driving
motion (:class:`~mien.pipelines.reenact_video.Reenactment` with per-frame ``edits``), pasted back into the full
portrait and written with the speaker's audio (:func:`mien.io.writer.write_video`).

**Mapping** (AU value → edit strength): w_a(t) = gain · (x_a(t) − n_a), with n_a the reaction's own neutral level
of AU a, its 10th percentile over the reaction's frames (:data:`NEUTRAL_QUANTILE`). The portrait is taken to show
the listener at rest: frames at the reaction's resting level leave the face unchanged, an AU that rises by Δ
(occurrence probability from mien's models, or the official data's 0/1 occurrence) moves the face by gain · Δ
units of the direction. Both reenactors define their directions per unit of AU intensity / probability in [0, 1]
(``warp``: py-feat's linear AU → mesh model, :func:`mien.models.face3d.au.au_directions`; a trained model: its
expression-latent ``au_directions``), so gain 1 shows an AU going from absent to certain as the direction's unit
displacement. Subtracting the reaction's own low level (not 0) removes the base rate of a detector's
probabilities (e.g. AU25 ≈ 0.3 on closed lips) so a portrait that already shows that level does not get it twice.
AUs that are NaN in the reaction (attributes the model's training data never had) or that the reenactor has no
direction for are skipped, counted in :attr:`ListenerReport.skipped` and warned about.
"""

from __future__ import annotations

import os
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from mien.metrics.react import AU_SLICE, REACT_ATTRIBUTES, REACT_AUS

NEUTRAL_QUANTILE = 0.1
"""Quantile of an AU over a reaction's frames taken as its neutral (resting) level."""

__all__ = ["NEUTRAL_QUANTILE", "ListenerPortrait", "ListenerReport", "reaction_edits"]


def reaction_edits(reaction: np.ndarray, directions, gain: float = 1.0,
                   neutral_quantile: float = NEUTRAL_QUANTILE) -> tuple[list[dict[str, float]], list[str]]:
    """Per-frame AU edits of one reaction (module docstring: w_a(t) = gain · (x_a(t) − quantile_q(x_a))).

    Args:
        reaction: (T, 25) float REACT attributes (AUs in [0, 1]; NaN allowed).
        directions: AU names the reenactor can edit (``Reenactor.au_directions``).
        gain: edit strength per unit of AU value. neutral_quantile: q of the neutral level, in [0, 1].

    Returns:
        (T dicts {AU name: strength} over the used AUs, sorted names of the skipped REACT AUs).

    Raises:
        ValueError: ``reaction`` not (T, 25), T = 0, or q outside [0, 1].
    """
    x = np.asarray(reaction, np.float64)
    if x.ndim != 2 or x.shape[1] != len(REACT_ATTRIBUTES) or not len(x):
        raise ValueError(f"reaction must be (T >= 1, 25) REACT attributes, got {x.shape}")
    if not 0 <= neutral_quantile <= 1:
        raise ValueError(f"neutral_quantile must be in [0, 1], got {neutral_quantile}")
    au = x[:, AU_SLICE]
    names = set(directions)
    use = [i for i, a in enumerate(REACT_AUS) if a in names and np.isfinite(au[:, i]).all()]
    skipped = sorted(set(REACT_AUS) - {REACT_AUS[i] for i in use})
    if not use:
        return [{} for _ in range(len(x))], skipped
    v = au[:, use]
    w = gain * (v - np.quantile(v, neutral_quantile, axis=0))
    keys = [REACT_AUS[i] for i in use]
    return [dict(zip(keys, map(float, row), strict=True)) for row in w], skipped


@dataclass
class ListenerReport:
    """One rendered listener portrait video.

    Attributes:
        output: the ``.mp4``. frames: T; fps: frame rate. width, height: px. audio: the speaker's audio was added.
        used: AUs that moved the face; skipped: REACT AUs left out (NaN in the reaction or no direction).
    """

    output: str
    frames: int
    fps: float
    width: int
    height: int
    audio: bool
    used: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)


class ListenerPortrait:
    """A listener portrait ready to show reactions: the reenactor is loaded and the portrait's face found once.

    Args:
        image: portrait image file (or a video: its first frame).
        model: the reenactor: "warp" (default; py-feat's AU → mesh directions) or a folder from ``mien export
            reenact`` whose ``model.au_directions`` are used.
        gain: edit strength per unit of AU value (module docstring). device: torch device of a trained model.
        crf: x264 quality of the videos.

    Raises:
        InputError: unreadable portrait, no face in it, or a missing model folder.
        ValueError: a reenactor without AU directions ("copy", a model exported without them), gain < 0.
    """

    def __init__(self, image: str | os.PathLike, model: str | os.PathLike = "warp", gain: float = 1.0,
                 device: str = "cpu", crf: int = 18):
        from mien.pipelines.reenact import load_reenactor

        if gain < 0:
            raise ValueError(f"listener gain must be >= 0, got {gain}")
        self.image, self.gain, self.crf = os.fspath(image), float(gain), int(crf)
        self.reenactor = load_reenactor(model, device)
        self._run([], 25.0)  # the portrait's face is found now: no face → InputError before any other work

    def _run(self, edits, fps, on_frame=None):
        from mien.pipelines.reenact_video import Reenactment, ReenactOptions

        return Reenactment(self.image, None, ReenactOptions(crf=self.crf), self.reenactor, edits=edits, fps=fps,
                           on_frame=on_frame)

    def render(self, reaction: np.ndarray, fps: float, output: str | os.PathLike, *,
               audio_from: str | os.PathLike | None = None, audio_start: float | None = None,
               on_frame=None) -> ListenerReport:
        """Write the portrait animated by one reaction: T frames at ``fps`` (the full portrait, face pasted back),
        atomically, with the audio of ``audio_from`` from ``audio_start`` s (the speaker clip).

        Args:
            reaction: (T, 25) REACT attributes. fps: their frame rate. output: ``.mp4`` path.
            on_frame: per frame ``on_frame(frame, report)`` as :class:`~mien.pipelines.reenact_video.Reenactment`
                calls it (frame k at k / fps s); True ends the video after that frame; an exception leaves no file.

        Raises:
            ValueError: bad ``reaction`` shape or fps ≤ 0.
        """
        from mien.io.writer import write_video

        if not fps > 0:
            raise ValueError(f"fps must be > 0, got {fps}")
        edits, skipped = reaction_edits(reaction, self.reenactor.au_directions, self.gain)
        if skipped:
            warnings.warn(f"{output}: {len(skipped)} of {len(REACT_AUS)} AUs not rendered on the portrait "
                          f"(NaN in the reaction or no {self.reenactor.name} direction): {', '.join(skipped)}",
                          stacklevel=2)
        run = self._run(edits, fps, on_frame)
        n, audio = write_video(iter(run), output, fps, crf=self.crf, audio_from=audio_from, audio_start=audio_start)
        return ListenerReport(str(Path(output)), n, float(fps), run.report.width, run.report.height, audio,
                              sorted(edits[0]), skipped)
