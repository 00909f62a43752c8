"""Per-frame features of one person in a dyad, from mien's analysis and audio: the speaker features a reaction
model is conditioned on (:func:`speaker_features`) and the 25 REACT attributes (:func:`attributes_25`).

Both sample one face track of an :class:`~mien.results.result.AnalysisResult` on a frame grid ``times``
(seconds on the source's clock, T frames): frame k takes the row of the latest source frame shown at
``times[k]`` (presentation time ≤ ``times[k]`` + 1 ms), if it is at most 1.5 grid steps earlier; otherwise the
face is missing at k. The same functions are used when writing dyadic shards and at inference
(``mien react``), so a model sees the same features in both.

Which of the 25 REACT attributes mien's own models fill (:func:`attributes_25`):

- AUs [0:15]: the default AU model's occurrence probabilities in [0, 1] (CK+-trained, ``mien/assets/au``) for
  AU01, AU02, AU04, AU06, AU07, AU09, AU12, AU14, AU15, AU17, AU23, AU24, AU25, AU26. **AU10 is NaN**: the
  default model has no AU10. (The official CSVs hold 0/1 occurrences; threshold at 0.5 to compare.)
- valence, arousal [15:17]: **NaN**. mien ships no trained valence/arousal model and none is invented here.
- expressions [17:25]: face-api FaceExpressionNet probabilities mapped by name (neutral, happy, sad,
  surprised → surprise, fearful → fear, disgusted → disgust, angry → anger); **contempt is NaN** (face-api
  has 7 classes, so the 7 filled ones sum to 1).
- frames without the face: all 25 NaN.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from mien.metrics.react import REACT_ATTRIBUTES, REACT_AUS

EMOTION_MAP = {"neutral": "neutral", "happy": "happy", "sad": "sad", "surprise": "surprised", "fear": "fearful",
               "disgust": "disgusted", "anger": "angry"}
"""REACT expression name → face-api ``emotion_<label>`` column (contempt has none)."""
ATTRIBUTES_FROM_MIEN = tuple(a for a in REACT_ATTRIBUTES
                             if a in REACT_AUS and a != "AU10" or a in EMOTION_MAP)
"""The 21 of the 25 REACT attributes mien's default models fill (all but AU10, valence, arousal, contempt)."""

FEATURE_GROUPS: dict[str, str] = {
    "presence": "(1) 1 where the face is found at the frame, else 0 (every other face group is 0 there)",
    "attrs": "(25) the REACT attributes (:func:`attributes_25`, or the official CSV), NaN → 0",
    "au": "(A) AU occurrence probabilities of the analysis' AU model (AU01, AU02, … as analysed)",
    "emotion": "(7) face-api expression probabilities (neutral, happy, sad, angry, fearful, disgusted, surprised)",
    "embedding": "(256) face-api FaceExpressionNet expression embedding",
    "pose": "(3) head yaw, pitch, roll in degrees / 90",
    "gaze": "(2) gaze yaw, pitch in degrees / 90 (0 where not measured)",
    "openness": "(3) eye aspect ratio left, right, mouth openness",
    "tokens": "(D) expression-tokenizer embedding (analysis with a tokenizer)",
    "logmel": "(80) log-mel energies in dB / 100 (mien.data.audio.frame_features)",
    "mfcc": "(13) MFCC / 100",
    "egemaps": "(88) eGeMAPSv02 functionals of the whole clip, the same on every frame (needs opensmile)",
}
"""Speaker feature groups, selectable by name; widths, meaning and the fixed scaling applied."""
DEFAULT_FEATURES = ("presence", "attrs", "au", "emotion", "embedding", "pose", "gaze", "openness", "logmel", "mfcc")
AUDIO_GROUPS = ("logmel", "mfcc", "egemaps")


def frame_grid(result, fps: float | None = None) -> np.ndarray:
    """The default frame grid of an analysis: ``start + k / fps`` over its analysed window.

    Args:
        result: an AnalysisResult (``meta`` fps, duration_sec, options start/end). fps: grid rate (default the
            source's).

    Returns:
        float64 (T,) seconds.
    """
    meta = result.meta
    fps = float(fps or meta.get("fps") or 25.0)
    opts = meta.get("options") or {}
    start = float(opts.get("start") or 0.0)
    end = float(meta.get("duration_sec") or (result.t_sec.max() + 1 / fps if len(result) else 0.0))
    if opts.get("end") is not None:
        end = min(end, float(opts["end"]))
    n = max(int(np.floor((end - start) * fps + 1e-6)), 0)
    return start + np.arange(n) / fps


def sample_rows(t_sec: np.ndarray, times: np.ndarray) -> np.ndarray:
    """Row index per grid frame (−1 where missing): the latest row at or before ``times[k]`` (1 ms slack), if
    within 1.5 grid steps. ``t_sec`` sorted ascending (one face track)."""
    times = np.asarray(times, np.float64)
    if not len(t_sec) or not len(times):
        return np.full(len(times), -1, np.int64)
    step = float(np.median(np.diff(times))) if len(times) > 1 else 1.0
    idx = np.searchsorted(t_sec, times + 1e-3, side="right") - 1
    ok = (idx >= 0) & (times - t_sec[np.clip(idx, 0, None)] <= 1.5 * step + 1e-3)
    return np.where(ok, idx, -1)


def _track(result):
    ids = np.unique(result.face_id)
    if len(ids) > 1:
        raise ValueError(f"need one face track, got {len(ids)} (select one with result.for_face(id))")
    return result


def _gather(values: np.ndarray, rows: np.ndarray, fill=np.nan) -> np.ndarray:
    v = np.asarray(values, np.float32).reshape(len(values), -1)
    out = np.full((len(rows), v.shape[1]), fill, np.float32)
    ok = rows >= 0
    out[ok] = v[rows[ok]]
    return out


def attributes_25(result, times: np.ndarray | None = None) -> np.ndarray:
    """The 25 REACT attributes of one face track from mien's models, NaN where mien cannot fill them.

    Args:
        result: AnalysisResult of one face track, analysed with ``au=True`` and ``emotion=True`` (the
            default AU model's names; missing columns are NaN). times: frame grid (s), default
            :func:`frame_grid`.

    Returns:
        float32 (T, 25), columns :data:`~mien.metrics.react.REACT_ATTRIBUTES`; NaN for AU10, valence, arousal,
        contempt, any attribute whose column the analysis lacks, and every attribute of frames without the face
        (see the module docstring).
    """
    result = _track(result)
    times = frame_grid(result) if times is None else np.asarray(times, np.float64)
    rows = sample_rows(result.t_sec, times)
    out = np.full((len(times), len(REACT_ATTRIBUTES)), np.nan, np.float32)
    for c, name in enumerate(REACT_ATTRIBUTES):
        col = name if name in REACT_AUS and name != "AU10" else (
            f"emotion_{EMOTION_MAP[name]}" if name in EMOTION_MAP else None)
        if col is not None and col in result.extra:
            out[:, c] = _gather(result.extra[col], rows)[:, 0]
    return out


def _au_names(result) -> list[str]:
    names = (result.meta.get("au") or {}).get("names")
    return [n for n in (names or sorted(k for k in result.extra if k[:2] == "AU" and k[2:].isdigit()))
            if n in result.extra]


def speaker_features(result, audio: dict | None, names: Sequence[str] = DEFAULT_FEATURES, *,
                     times: np.ndarray | None = None) -> np.ndarray:
    """Per-frame speaker features: the named groups of :data:`FEATURE_GROUPS`, concatenated in ``names`` order.

    Args:
        result: AnalysisResult of one face track (analysed with ``au``/``emotion``/``tokenizer`` as the groups
            need).
        audio: per-frame audio features on the same grid, ``{"logmel": (T, 80), "mfcc": (T, 13)[, "egemaps":
            (88,)]}`` (:func:`audio_features`), or None (then no audio group may be named).
        names: feature groups. times: frame grid (s), default :func:`frame_grid`.

    Returns:
        float32 (T, D), finite: face groups are 0 where the face is missing (see ``presence``); column names
        from :func:`feature_columns`.

    Raises:
        ValueError: an unknown group, or a group whose source the analysis/audio lacks.
    """
    result = _track(result)
    times = frame_grid(result) if times is None else np.asarray(times, np.float64)
    rows = sample_rows(result.t_sec, times)
    blocks = []
    for g in names:
        if g not in FEATURE_GROUPS:
            raise ValueError(f"unknown speaker feature {g!r}; known: {', '.join(FEATURE_GROUPS)}")
        if g in AUDIO_GROUPS:
            if audio is None or audio.get(g) is None:
                raise ValueError(f"speaker feature {g!r} needs audio features (the source has no audio or "
                                 f"{g} was not computed)")
            a = np.asarray(audio[g], np.float32)
            a = np.broadcast_to(a.reshape(1, -1), (len(times), a.size)) if g == "egemaps" else a
            if len(a) != len(times):
                raise ValueError(f"audio {g} has {len(a)} frames, the grid {len(times)}")
            blocks.append(a if g == "egemaps" else a / 100.0)
            continue
        if g == "presence":
            blocks.append((rows >= 0).astype(np.float32)[:, None])
        elif g == "attrs":
            blocks.append(attributes_25(result, times))
        elif g == "au":
            au = _au_names(result)
            if not au:
                raise ValueError("speaker feature 'au' needs an analysis with AUs (au=True)")
            blocks.append(np.concatenate([_gather(result.extra[n], rows) for n in au], 1))
        elif g == "emotion":
            cols = [k for k in result.extra if k.startswith("emotion_")]
            if not cols:
                raise ValueError("speaker feature 'emotion' needs an analysis with emotion=True")
            blocks.append(np.concatenate([_gather(result.extra[k], rows) for k in cols], 1))
        elif g in ("embedding", "tokens"):
            col = "expression_embedding" if g == "embedding" else "expression_token"
            if col not in result.extra:
                raise ValueError(f"speaker feature {g!r} needs the {col} column "
                                 f"({'emotion=True' if g == 'embedding' else 'an analysis with a tokenizer'})")
            blocks.append(_gather(result.extra[col], rows))
        elif g in ("pose", "gaze"):
            cols = ("yaw_deg", "pitch_deg", "roll_deg") if g == "pose" else ("gaze_yaw_deg", "gaze_pitch_deg")
            blocks.append(np.concatenate([_gather(getattr(result, c), rows) for c in cols], 1) / 90.0)
        elif g == "openness":
            blocks.append(np.concatenate([_gather(getattr(result, c), rows)
                                          for c in ("ear_left", "ear_right", "mouth_open")], 1))
    out = np.concatenate(blocks, 1) if blocks else np.zeros((len(times), 0), np.float32)
    return np.nan_to_num(out, nan=0.0, posinf=0.0, neginf=0.0).astype(np.float32)


def feature_columns(result, audio: dict | None, names: Sequence[str] = DEFAULT_FEATURES) -> list[str]:
    """Column names of :func:`speaker_features` (``group:name``), e.g. ``attrs:AU01``, ``logmel:0``."""
    out: list[str] = []
    for g in names:
        if g == "presence":
            out.append("presence")
        elif g == "attrs":
            out += [f"attrs:{a}" for a in REACT_ATTRIBUTES]
        elif g == "au":
            out += [f"au:{n}" for n in _au_names(result)]
        elif g == "emotion":
            out += [f"emotion:{k[8:]}" for k in result.extra if k.startswith("emotion_")]
        elif g in ("embedding", "tokens"):
            col = "expression_embedding" if g == "embedding" else "expression_token"
            width = np.asarray(result.extra[col]).reshape(len(result), -1).shape[1] if col in result.extra else 0
            out += [f"{g}:{i}" for i in range(width)]
        elif g == "pose":
            out += ["pose:yaw", "pose:pitch", "pose:roll"]
        elif g == "gaze":
            out += ["gaze:yaw", "gaze:pitch"]
        elif g == "openness":
            out += ["openness:ear_left", "openness:ear_right", "openness:mouth_open"]
        elif g in AUDIO_GROUPS and audio is not None and audio.get(g) is not None:
            out += [f"{g}:{i}" for i in range(np.asarray(audio[g]).shape[-1])]
    return out


def audio_features(path: str, times: np.ndarray, egemaps: bool = False) -> dict | None:
    """Log-mel and MFCC per grid frame (and optionally eGeMAPS functionals) of a media file's audio.

    Args:
        path: local video or audio file. times: frame grid (s), evenly spaced. egemaps: add ``egemaps`` (88,)
            (None when opensmile is not installed).

    Returns:
        ``{"logmel": float32 (T, 80), "mfcc": float32 (T, 13), "egemaps": (88,) | None}`` or None when the file
        has no audio stream.
    """
    from mien.data import audio as au

    y = au.load_audio(path)
    if y is None or not len(times):
        return None
    fps = 1.0 / float(np.median(np.diff(times))) if len(times) > 1 else 25.0
    clip = au.clip_audio(y, float(times[0]), len(times), fps)
    logmel, mfcc = au.frame_features(clip, len(times), fps)
    return {"logmel": logmel, "mfcc": mfcc, "egemaps": au.egemaps(clip) if egemaps else None}
