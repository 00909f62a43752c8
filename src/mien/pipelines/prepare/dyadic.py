"""``mien prepare --mode dyadic``: conversations of two people → a dyadic dataset (:mod:`mien.data.react.shards`).

Sources (``inputs``):

- a CSV of pairs with a header ``session,speaker_video,listener_video`` (relative paths are relative to the
  CSV): each video is analysed on its own (the largest face track) and the two are aligned on their
  presentation timestamps (both start at their first frame; the grid covers the shorter one);
- a video with two faces (e.g. a video-call recording): the two largest face tracks are the two people, person
  ``a`` the one further left; both get the recording's audio features (one microphone cannot be split);
- ``options.react_root``: an official REACT ``data`` folder (split ``options.react_split``); the attributes are
  the official ``Emotion`` CSVs, speaker features the groups ``presence``, ``attrs`` and audio from
  ``Audio_files`` (face groups would need mien's analysis of ``Video_files``, not done by this converter).

Per person and frame: speaker features (:func:`mien.data.react.features.speaker_features`, groups
``options.dyadic_features``) and the 25 REACT attributes (:func:`~mien.data.react.features.attributes_25`, NaN
where mien's models cannot fill them). One dyad is one shard, written atomically with a ``done`` marker: a
re-run resumes, a bad pair is skipped and reported (``report.json``, the ``log`` callback), nothing silently.
Dyads run one after another in this process (``workers`` is not used by this mode).
"""

from __future__ import annotations

import csv
import dataclasses
import os
import time
from pathlib import Path

import numpy as np

from mien.data import store
from mien.data.react import features as F
from mien.data.react import layout
from mien.data.react import shards as dy
from mien.errors import InputError
from mien.pipelines.prepare.options import PrepareOptions, PrepareReport


def read_pairs(path: str) -> list[tuple[str, str, str]]:
    """(session, speaker video, listener video) rows of a pairs CSV (header ``session,speaker_video,
    listener_video``; relative video paths resolved against the CSV's folder).

    Raises:
        InputError: missing file, missing columns, an empty cell or a repeated session.
    """
    p = Path(path)
    if not p.is_file():
        raise InputError(path, "missing pairs CSV")
    with open(p, newline="") as f:
        rows = list(csv.DictReader(f))
    need = ("session", "speaker_video", "listener_video")
    if not rows or any(c not in rows[0] for c in need):
        raise InputError(path, f"pairs CSV needs a header {','.join(need)} and at least one row")
    out, seen = [], set()
    for n, r in enumerate(rows, start=2):
        vals = [(r.get(c) or "").strip() for c in need]
        if not all(vals):
            raise InputError(path, f"line {n}: empty {need[[not v for v in vals].index(True)]}")
        if vals[0] in seen:
            raise InputError(path, f"line {n}: session {vals[0]!r} repeated")
        seen.add(vals[0])
        out.append((vals[0], *(v if os.path.isabs(v) or "://" in v else str(p.parent / v) for v in vals[1:])))
    return out


def _analyze(path: str, opts: PrepareOptions, faces: int, cache: dict | None = None):
    """mien's analysis (AUs, emotion) of a video; memoised in ``cache`` (a video in several pairs of one run)."""
    from mien.pipelines.analyze import analyze

    key = (path, faces)
    if cache is not None and key in cache:
        return cache[key]
    r = analyze(path, au=True, emotion=True, end=opts.end, max_faces=faces, detector=opts.detector,
                min_detection_confidence=opts.min_confidence, max_side=opts.max_side)
    if cache is not None:
        cache[key] = r
    return r


def _largest_tracks(result, k: int, source: str) -> list[int]:
    ids = np.unique(result.face_id)
    area = {int(i): float(np.sum(np.prod(np.diff(result.bbox[result.face_id == i].reshape(-1, 2, 2), axis=1), -1)))
            for i in ids}
    best = sorted(area, key=lambda i: -area[i])[:k]
    if len(best) < k:
        raise InputError(source, f"found {len(best)} face track(s), need {k}")
    return best


def _person(result, src: str, audio: dict | None, times: np.ndarray, opts: PrepareOptions) -> dict:
    attrs = F.attributes_25(result, times)
    if np.isnan(attrs).all():
        raise InputError(src, "no face in the aligned frames")
    return {"features": F.speaker_features(result, audio, opts.dyadic_features, times=times), "attrs": attrs,
            "source": src, "names": F.feature_columns(result, audio, opts.dyadic_features)}


def _grid(duration: float, opts: PrepareOptions) -> np.ndarray:
    if opts.end is not None:
        duration = min(duration, opts.end)
    return np.arange(max(int(np.floor(duration * opts.fps + 1e-6)), 0)) / opts.fps


def _audio(path: str, times: np.ndarray, opts: PrepareOptions) -> dict | None:
    want = opts.egemaps or "egemaps" in opts.dyadic_features
    return F.audio_features(path, times, egemaps=want) if opts.audio else None


def pair_arrays(speaker: str, listener: str, opts: PrepareOptions,
                cache: dict | None = None) -> tuple[dict, dict, np.ndarray]:
    """Persons a (speaker video) and b (listener video) of one pair on their common frame grid."""
    ra, rb = (_analyze(v, opts, opts.max_faces, cache) for v in (speaker, listener))
    res = []
    for r, v in ((ra, speaker), (rb, listener)):
        if not len(r):
            raise InputError(v, "no face found")
        res.append(r.for_face(_largest_tracks(r, 1, v)[0]))
    times = _grid(min(float(ra.meta.get("duration_sec") or 0), float(rb.meta.get("duration_sec") or 0)), opts)
    if len(times) < 2:
        raise InputError(speaker, "the pair overlaps for less than two frames")
    return (_person(res[0], speaker, _audio(speaker, times, opts), times, opts),
            _person(res[1], listener, _audio(listener, times, opts), times, opts), times)


def two_face_arrays(video: str, opts: PrepareOptions) -> tuple[dict, dict, np.ndarray]:
    """The two largest face tracks of one video (a = further left) on the video's frame grid."""
    r = _analyze(video, opts, max(2, opts.max_faces))
    ids = _largest_tracks(r, 2, video)
    ids.sort(key=lambda i: float(np.median(r.bbox[r.face_id == i][:, [0, 2]].mean(1))))
    times = _grid(float(r.meta.get("duration_sec") or 0), opts)
    audio = _audio(video, times, opts)
    return (*(_person(r.for_face(i), f"{video}#face{i}", audio, times, opts) for i in ids), times)


def react_arrays(dyad: layout.ReactDyad, opts: PrepareOptions) -> tuple[dict, dict, np.ndarray]:
    """Persons a/b of an official REACT dyad: attributes from the Emotion CSVs, speaker features ``presence``,
    ``attrs`` and audio groups from ``Audio_files``."""
    allowed = {"presence", "attrs", *F.AUDIO_GROUPS}
    bad = [g for g in opts.dyadic_features if g not in allowed]
    if bad:
        raise ValueError(f"REACT conversion computes speaker features {sorted(allowed)} only, not {bad} "
                         "(pass --dyadic-features presence,attrs,logmel,mfcc)")
    attrs = [layout.read_emotion_csv(c.emotion) for c in (dyad.a, dyad.b)]
    t = min(len(x) for x in attrs)
    if opts.end is not None:
        t = min(t, int(np.floor(opts.end * layout.FPS + 1e-6)))
    times = np.arange(t) / layout.FPS
    people = []
    for clip, x in zip((dyad.a, dyad.b), attrs, strict=True):
        audio = None
        if any(g in F.AUDIO_GROUPS for g in opts.dyadic_features):
            if not clip.audio.is_file():
                raise InputError(clip.audio, "missing audio file")
            audio = F.audio_features(str(clip.audio), times,
                                     egemaps=opts.egemaps or "egemaps" in opts.dyadic_features)
        blocks, names = [], []
        for g in opts.dyadic_features:
            if g == "presence":
                blocks.append(np.ones((t, 1), np.float32))
                names.append("presence")
            elif g == "attrs":
                blocks.append(np.nan_to_num(x[:t]))
                names += [f"attrs:{a}" for a in layout.REACT_ATTRIBUTES]
            else:
                if audio is None or audio.get(g) is None:
                    raise InputError(clip.audio, f"no {g} features (no audio stream or extractor missing)")
                a = np.broadcast_to(audio[g], (t, audio[g].size)) if g == "egemaps" else audio[g] / 100.0
                blocks.append(a)
                names += [f"{g}:{i}" for i in range(a.shape[1])]
        people.append({"features": np.concatenate(blocks, 1).astype(np.float32), "attrs": x[:t],
                       "source": clip.path, "names": names})
    return people[0], people[1], times


def _jobs(inputs: list[str], opts: PrepareOptions):
    """[(session, kind, payload)] in dyad order."""
    jobs = []
    if opts.react_root:
        split = layout.read_split(opts.react_root, opts.react_split)
        jobs += [(d.session, "react", d) for d in split.dyads]
    for spec in inputs:
        if spec.lower().endswith(".csv"):
            jobs += [(s, "pair", (a, b)) for s, a, b in read_pairs(spec)]
        else:
            jobs.append((Path(spec).stem, "video", spec))
    return jobs


def prepare_dyadic(inputs: list[str], output: str, opts: PrepareOptions, *, overwrite: bool = False,
                   log=None, progress: bool = False) -> PrepareReport:
    """Write a dyadic dataset (module docstring); resumable, atomic per dyad.

    Returns:
        :class:`PrepareReport` (``ok``/``failed`` per dyad, ``samples`` = dyads in the dataset).

    Raises:
        ValueError: no input, settings differ from an existing dataset, or no dyad could be prepared.
        InputError: unreadable pairs CSV or REACT listing (before anything is written).
    """
    jobs = _jobs(list(inputs), opts)
    if not jobs:
        raise ValueError("dyadic mode needs a pairs CSV, a two-face video or --react-root")
    fs, root = store.get_fs(output)
    settings = opts.settings()
    settings_path = store.join(root, "settings.json")
    if overwrite and fs.exists(root):
        for sub in ("done", "shards"):
            if fs.exists(store.join(root, sub)):
                fs.rm(store.join(root, sub), recursive=True)
    if fs.exists(settings_path) and not overwrite and store.read_json(fs, settings_path) != store.json_roundtrip(settings):
        raise ValueError(f"{output}: already prepared with different settings (use --overwrite or a new folder)")
    for sub in ("shards", "done"):
        fs.makedirs(store.join(root, sub), exist_ok=True)
        store.remove_temporaries(fs, store.join(root, sub))
    store.write_json(fs, settings_path, settings)
    report = PrepareReport()
    cache: dict = {}
    t0 = time.perf_counter()
    bar = None
    if progress:
        from tqdm import tqdm

        bar = tqdm(total=len(jobs), unit="dyad", desc="prepare dyadic")
    for session, kind, payload in jobs:
        key = dy.dyad_key(session)
        marker_path = store.join(root, "done", f"{key}.json")
        if fs.exists(marker_path) and store.read_json(fs, marker_path).get("status") == "ok":
            report.resumed += 1
        else:
            marker = {"session": session, "key": key, "status": "ok", "reason": "", "kind": kind}
            try:
                a, b, times = (react_arrays(payload, opts) if kind == "react" else
                               pair_arrays(*payload, opts, cache) if kind == "pair" else two_face_arrays(payload, opts))
                if a["names"] != b["names"]:
                    raise InputError(session, f"the two people have different feature columns ({len(a['names'])} "
                                              f"vs {len(b['names'])}): one video lacks audio?")
                fps = opts.fps if kind != "react" else layout.FPS
                parts = dy.write_dyad(fs, root, session, a, b, times, fps, "react-csv" if kind == "react" else "mien",
                                      a["names"])
                mean = [_nanmean(a["attrs"]), _nanmean(b["attrs"])]
                marker |= {"shards": parts, "frames": len(times), "fps": fps, "source_a": a["source"],
                           "source_b": b["source"], "feature_names": a["names"], "attrs_source":
                           "react-csv" if kind == "react" else "mien", "mean_attrs_a": mean[0], "mean_attrs_b": mean[1],
                           "seconds": round(len(times) / fps, 3)}
                report.ok.append({"input": session, "video_key": key, "samples": 1, "shards": len(parts)})
                report.source_seconds += len(times) / fps
            except (InputError, ValueError, OSError) as e:
                marker |= {"status": "failed", "reason": str(e)}
                report.failed.append({"input": session, "reason": str(e)})
                if log is not None:
                    log(f"{session}: {e}")
            store.write_json(fs, marker_path, marker)
        if bar is not None:
            bar.update(1)
    if bar is not None:
        bar.close()
    report.wall_seconds = round(time.perf_counter() - t0, 3)
    approp = None
    if opts.react_root and not inputs:
        split = layout.read_split(opts.react_root, opts.react_split)
        f = Path(opts.react_root) / f"neighbour_emotion_{opts.react_split}.npy"
        if f.exists():
            full = split.appropriateness()
            ok = _done_sessions(fs, root, [d.session for d in split.dyads])
            keep = np.array([d.session in ok for d in split.dyads])
            approp = full[np.ix_(np.tile(keep, 2), np.tile(keep, 2))]
    report.samples = len(_done_sessions(fs, root, [s for s, _, _ in jobs]))
    manifest = dy.finalize(output, [s for s, _, _ in jobs], approp, settings,
                           {**dataclasses.asdict(report), "kind": "dyadic"})
    report.samples = len(manifest["dyads"])
    return report


def _done_sessions(fs, root: str, sessions: list[str]) -> set[str]:
    out = set()
    for s in sessions:
        p = store.join(root, "done", f"{dy.dyad_key(s)}.json")
        if fs.exists(p) and store.read_json(fs, p).get("status") == "ok":
            out.add(s)
    return out


def _nanmean(x: np.ndarray) -> list:
    with np.errstate(all="ignore"):
        fin = np.isfinite(x)
        m = np.where(fin, x, 0).sum(0) / np.maximum(fin.sum(0), 1)
    return [float(v) if f else None for v, f in zip(m, fin.any(0), strict=True)]
