"""The sample schema of mien shards (WebDataset tar files) and its encoder/decoder.

One sample = one clip of one face, key ``<video key>_<start grid frame, 6 digits>``. Members
(T = clip frames, S = crop size in pixels, K = 478 landmarks):

================  ===============================  =====================================================
member            type                             content
================  ===============================  =====================================================
``mp4``           H.264 yuv420p MP4, S×S, clip fps the aligned face crop track (T frames)
``affine.npy``    float32 (T, 2, 3)                source-frame pixels → crop pixels (a similarity)
``landmarks.npy`` float32 (T, K, 3)                478 MediaPipe landmarks in crop pixels (z scaled alike)
``pose.npy``      float32 (T, 6)                   yaw, pitch, roll (deg), tx, ty, tz (mm; camera frame)
``openness.npy``  float32 (T, 3)                   ear_left, ear_right, mouth_open (ratios)
``times.npy``     float64 (T, 2)                   clip frame time and the source frame's presentation time
                                                   (s, from the source video's first frame)
``flac``          FLAC 16 kHz mono PCM16           clip audio, round(T / fps · 16000) samples (if any)
``logmel.npy``    float32 (T, 80)                  log-mel (dB) per video frame (if audio)
``mfcc.npy``      float32 (T, 13)                  MFCC per video frame (if audio)
``egemaps.npy``   float32 (88,)                    eGeMAPSv02 functionals of the clip (opensmile, optional)
``json``          UTF-8 JSON                       metadata (:data:`META_FIELDS`)
================  ===============================  =====================================================
"""

from __future__ import annotations

import io
import json

import numpy as np

MEMBERS = ("mp4", "affine.npy", "landmarks.npy", "pose.npy", "openness.npy", "times.npy", "flac",
           "logmel.npy", "mfcc.npy", "egemaps.npy", "json")
META_FIELDS = ("schema_version", "key", "source", "video_key", "subject", "subject_id", "start_sec", "end_sec",
               "fps", "frames", "crop_size", "crop", "has_audio", "audio_sample_rate", "mode", "keyword",
               "score", "face_id")


def npy_bytes(a: np.ndarray) -> bytes:
    buf = io.BytesIO()
    np.save(buf, np.ascontiguousarray(a), allow_pickle=False)
    return buf.getvalue()


def encode_sample(sample: dict) -> dict:
    """Sample dict (arrays, bytes, a ``json`` dict) → member bytes for a tar writer (``__key__`` kept)."""
    out = {"__key__": sample["__key__"]}
    for k, v in sample.items():
        if k == "__key__" or v is None:
            continue
        if k.endswith(".npy"):
            out[k] = npy_bytes(v)
        elif k == "json":
            out[k] = json.dumps(v, sort_keys=True).encode()
        else:
            out[k] = bytes(v)
    return out


def decode_member(name: str, data: bytes, video: bool = True, audio: bool = True):
    """Decode one member to numpy: npy → array, json → dict, mp4 → uint8 (T, S, S, 3) RGB,
    flac → float32 (S,). With ``video``/``audio`` False those stay raw bytes."""
    if name.endswith(".npy"):
        return np.load(io.BytesIO(data), allow_pickle=False)
    if name == "json":
        return json.loads(data)
    if name == "mp4" and video:
        return decode_mp4(data)
    if name == "flac" and audio:
        from mien.data.audio import read_flac

        return read_flac(data)[0]
    return data


def decode_mp4(data: bytes) -> np.ndarray:
    """All frames of an in-memory MP4 as RGB uint8 (T, H, W, 3)."""
    import av

    with av.open(io.BytesIO(data)) as c:
        frames = [f.to_ndarray(format="rgb24") for f in c.decode(video=0)]
    return np.stack(frames) if frames else np.zeros((0, 0, 0, 3), np.uint8)


def decode_sample(raw: dict, video: bool = True, audio: bool = True) -> dict:
    """Raw WebDataset sample (``__key__``, member bytes) → decoded dict (see :func:`decode_member`)."""
    out = {}
    for k, v in raw.items():
        out[k] = v if k.startswith("__") else decode_member(k, v, video=video, audio=audio)
    return out
