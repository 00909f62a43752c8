"""Clip writing for ``mien prepare`` (pass 2): aligned face crops, H.264 encoding, per-clip arrays, audio
features and AU labels → shard samples."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import numpy as np

from mien.data import schema
from mien.data.selection import Window
from mien.data.shards import ShardWriter, encode_sample
from mien.pipelines.prepare.options import VideoJob
from mien.pipelines.prepare.select import Track


def encode_mp4(frames: np.ndarray, fps: float, crf: int) -> bytes:
    """H.264 (x264, yuv420p) MP4 bytes of RGB uint8 frames (T, H, W, 3) at ``fps`` with quality ``crf``."""
    from mien.io.writer import VideoWriter

    with tempfile.TemporaryDirectory(prefix="mien-clip-") as d:
        p = os.path.join(d, "clip.mp4")
        with VideoWriter(p, fps, crf=crf) as w:
            for im in frames:
                w.write(im)
        return Path(p).read_bytes()


def write_clips(path: str, job: VideoJob, tr: Track, chosen: list[Window], y: np.ndarray | None,
                writer: ShardWriter, marker: dict, au_tol: float = 0.02,
                frames: dict[int, np.ndarray] | None = None) -> None:
    """Pass 2: decode the local video ``path`` again, warp the frames of the chosen windows into crops and write
    one sample per window (members: :data:`mien.data.schema.MEMBERS`) to ``writer``; its index rows are
    appended to ``marker["samples"]``.

    Args:
        job: the video's :class:`~mien.pipelines.prepare.options.VideoJob` (keys, subject, options, AU labels).
        tr: pass 1's :class:`~mien.pipelines.prepare.select.Track`.
        chosen: windows in grid frames.
        y: the source's audio, float32 (N,) 16 kHz mono, or None.
        au_tol: ``time_sec`` AU labels: largest |label time − frame time| accepted (s).
        frames: pass 1's decoded frames {source frame index: RGB uint8 (H, W, 3)}; used instead of decoding
            again when it holds every frame needed.

    Raises:
        RuntimeError: the second decoding pass ends before every chosen frame was seen.
    """
    from mien.data import audio as A
    from mien.face.align import (
        params_to_affine,
        similarity_params,
        smooth_params,
        transform_landmarks,
        warp_crop,
    )
    from mien.io.video import VideoSource

    opts, au, vkey, uri = job.options, job.au, job.vkey, job.uri
    res = tr.result
    S = opts.crop_size
    clips = []
    need: dict[int, list[tuple[int, int]]] = {}
    for ci, w in enumerate(chosen):
        rows = tr.row[w.start:w.start + w.length]
        params = smooth_params(similarity_params(res.landmarks[rows], opts.margin), opts.smooth_frames)
        aff = params_to_affine(params, S)
        clips.append({"w": w, "rows": rows, "aff": aff, "frames": np.zeros((w.length, S, S, 3), np.uint8),
                      "left": w.length, "last": int(tr.src_index[w.start + w.length - 1])})
        for j in range(w.length):
            need.setdefault(int(tr.src_index[w.start + j]), []).append((ci, j))
    last_needed = max(need)
    done = [False] * len(clips)

    def finish(ci: int) -> None:
        c = clips[ci]
        w, rows, aff = c["w"], c["rows"], c["aff"]
        T = w.length
        start_sec = w.start / opts.fps
        key = f"{vkey}_{w.start:06d}"
        meta = {
            "schema_version": schema.SCHEMA_VERSION, "key": key, "source": uri, "video_key": vkey,
            "subject": job.subject, "subject_id": job.subject_id, "start_sec": round(start_sec, 6),
            "end_sec": round((w.start + T) / opts.fps, 6), "fps": opts.fps, "frames": T, "crop_size": S,
            "crop": {"method": "similarity(eye centres, mouth centre), FFHQ-style", "margin": opts.margin,
                     "smooth_frames": opts.smooth_frames, "affine": "affine.npy: source px -> crop px"},
            "has_audio": y is not None, "audio_sample_rate": A.SAMPLE_RATE if y is not None else None,
            "mode": opts.mode, "keyword": w.keyword, "score": None if np.isnan(w.score) else float(w.score),
            "face_id": int(res.face_id[rows[0]]),
            "has_au": au is not None,
        }
        sample = {
            "__key__": key,
            "mp4": encode_mp4(c["frames"], opts.fps, opts.crf),
            "affine.npy": aff.astype(np.float32),
            "landmarks.npy": transform_landmarks(res.landmarks[rows], aff),
            "pose.npy": np.stack([res.yaw_deg[rows], res.pitch_deg[rows], res.roll_deg[rows],
                                  res.tx_mm[rows], res.ty_mm[rows], res.tz_mm[rows]], -1).astype(np.float32),
            "openness.npy": np.stack([res.ear_left[rows], res.ear_right[rows], res.mouth_open[rows]],
                                     -1).astype(np.float32),
            "times.npy": np.stack([(w.start + np.arange(T)) / opts.fps, tr.src_t[w.start:w.start + T]], -1),
            "json": meta,
        }
        if y is not None:
            ya = A.clip_audio(y, start_sec, T, opts.fps)
            sample["flac"] = A.flac_bytes(ya)
            sample["logmel.npy"], sample["mfcc.npy"] = A.frame_features(ya, T, opts.fps)
            if opts.egemaps:
                sample["egemaps.npy"] = A.egemaps(ya)
        if au is not None:
            sl = slice(w.start, w.start + T)
            sample["au.npy"] = au.lookup(tr.src_index[sl], tr.src_t[sl], au_tol)
            meta["au_names"] = list(au.names)
            meta["au_coded_frames"] = int(np.isfinite(sample["au.npy"]).any(1).sum())
        shard = writer.write(encode_sample(sample | {"json": schema.check_meta(meta)}))
        marker["samples"].append(schema.index_row(meta, shard))
        c["frames"] = None
        done[ci] = True

    if frames is not None and all(i in frames for i in need):
        source = ((i, frames[i]) for i in sorted(need))
    else:
        source = ((fr.index, fr.image) for fr in VideoSource(path))
    for index, image in source:
        for ci, j in need.get(index, ()):
            c = clips[ci]
            c["frames"][j] = warp_crop(image, c["aff"][j], S)
            c["left"] -= 1
        for ci, c in enumerate(clips):
            if not done[ci] and c["last"] <= index:
                if c["left"] != 0:
                    raise RuntimeError(f"clip {ci}: {c['left']} frames missing in the second decoding pass")
                finish(ci)
        if index >= last_needed:
            break
    if not all(done):
        raise RuntimeError("second decoding pass ended early")
