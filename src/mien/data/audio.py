"""Audio of a source video: 16 kHz mono track (PyAV), FLAC bytes (soundfile), frame-aligned log-mel and MFCC
(librosa), optional eGeMAPS functionals (opensmile).

Times are seconds on the video's clock: ``t = 0`` is the first video frame's presentation time.
"""

from __future__ import annotations

import functools
import io

import av
import numpy as np

SAMPLE_RATE = 16000
N_MELS = 80
N_MFCC = 13
_HOP = 160  # 10 ms
_N_FFT = 400  # 25 ms


def load_audio(path: str, sample_rate: int = SAMPLE_RATE) -> np.ndarray | None:
    """The first audio stream of a media file, resampled to mono float32 at ``sample_rate``.

    Sample 0 is at the first video frame's presentation time (the audio is shifted or zero-padded so that
    video and audio clocks agree).

    Args:
        path: local media file.
        sample_rate: output rate in Hz.

    Returns:
        float32 (S,) in [-1, 1], or None when the file has no audio stream or none of it decodes.
    """
    try:
        container = av.open(path)
    except av.FFmpegError:
        return None
    with container:
        if not container.streams.audio:
            return None
        v0 = 0.0
        if container.streams.video:
            vs = container.streams.video[0]
            if vs.start_time is not None and vs.time_base is not None:
                v0 = float(vs.start_time * vs.time_base)
        astream = container.streams.audio[0]
        resampler = av.AudioResampler(format="flt", layout="mono", rate=sample_rate)
        chunks: list[np.ndarray] = []
        first_t: float | None = None
        try:
            for packet in container.demux(astream):
                try:
                    frames = packet.decode()
                except av.FFmpegError:
                    continue
                for fr in frames:
                    if first_t is None and fr.time is not None:
                        first_t = float(fr.time)
                    for out in resampler.resample(fr):
                        chunks.append(out.to_ndarray().reshape(-1))
            for out in resampler.resample(None):
                chunks.append(out.to_ndarray().reshape(-1))
        except av.FFmpegError:
            pass
    if not chunks:
        return None
    y = np.concatenate(chunks).astype(np.float32)
    shift = int(round(((first_t if first_t is not None else v0) - v0) * sample_rate))
    if shift > 0:
        y = np.concatenate([np.zeros(shift, np.float32), y])
    elif shift < 0:
        y = y[-shift:]
    return y


def clip_audio(y: np.ndarray, start_sec: float, n_frames: int, fps: float,
               sample_rate: int = SAMPLE_RATE) -> np.ndarray:
    """Samples of ``[start_sec, start_sec + n_frames / fps)``, zero-padded past the end of the track.

    Returns:
        float32 (round(n_frames / fps · sample_rate),).
    """
    n = int(round(n_frames / fps * sample_rate))
    s = int(round(start_sec * sample_rate))
    out = np.zeros(n, np.float32)
    seg = y[max(s, 0):max(s + n, 0)]
    out[max(-s, 0):max(-s, 0) + len(seg)] = seg[: n - max(-s, 0)]
    return out


def flac_bytes(y: np.ndarray, sample_rate: int = SAMPLE_RATE) -> bytes:
    """16-bit FLAC of a mono float32 signal."""
    import soundfile as sf

    buf = io.BytesIO()
    sf.write(buf, np.clip(y, -1.0, 1.0), sample_rate, format="FLAC", subtype="PCM_16")
    return buf.getvalue()


def read_flac(data: bytes) -> tuple[np.ndarray, int]:
    """Decode FLAC bytes → (float32 (S,), sample rate)."""
    import soundfile as sf

    y, sr = sf.read(io.BytesIO(data), dtype="float32", always_2d=False)
    return y, sr


def frame_features(y: np.ndarray, n_frames: int, fps: float,
                   sample_rate: int = SAMPLE_RATE) -> tuple[np.ndarray, np.ndarray]:
    """Log-mel and MFCC per video frame.

    Computed with librosa at a 10 ms hop (25 ms window, 80 mel bands, 13 MFCC); the 10 ms columns whose
    centre falls in ``[k / fps, (k + 1) / fps)`` are averaged into video frame k, so row k describes the
    sound while frame k is shown.

    Args:
        y: clip audio (S,) float32 at ``sample_rate``.
        n_frames: number of video frames T of the clip.
        fps: clip frame rate.

    Returns:
        (log_mel float32 (T, 80) in dB re max 1.0, mfcc float32 (T, 13)).
    """
    import librosa

    mel = librosa.feature.melspectrogram(y=y, sr=sample_rate, n_fft=_N_FFT, hop_length=_HOP, n_mels=N_MELS,
                                         center=True, power=2.0)
    logmel = librosa.power_to_db(mel, ref=1.0, amin=1e-10, top_db=None)
    mfcc = librosa.feature.mfcc(S=logmel, n_mfcc=N_MFCC)
    t_col = np.arange(logmel.shape[1]) * _HOP / sample_rate
    k = np.minimum((t_col * fps).astype(np.int64), n_frames - 1)
    counts = np.bincount(k, minlength=n_frames).astype(np.float64)
    counts[counts == 0] = 1.0
    lm = np.stack([np.bincount(k, weights=row, minlength=n_frames) for row in logmel], 1) / counts[:, None]
    mf = np.stack([np.bincount(k, weights=row, minlength=n_frames) for row in mfcc], 1) / counts[:, None]
    return lm.astype(np.float32), mf.astype(np.float32)


def egemaps(y: np.ndarray, sample_rate: int = SAMPLE_RATE) -> np.ndarray | None:
    """eGeMAPSv02 functionals (88,) float32 of a clip with opensmile, or None when opensmile is unavailable."""
    smile = _smile()
    if smile is None:
        return None
    return smile.process_signal(y, sample_rate).to_numpy().reshape(-1).astype(np.float32)


@functools.lru_cache(maxsize=1)
def _smile():
    try:
        import opensmile
    except ImportError:
        return None
    return opensmile.Smile(feature_set=opensmile.FeatureSet.eGeMAPSv02,
                           feature_level=opensmile.FeatureLevel.Functionals)


def feature_versions() -> dict:
    """Versions of the audio feature extractors available here."""
    import importlib.metadata as md

    out = {"audio": {"sample_rate": SAMPLE_RATE, "format": "flac/pcm16/mono"},
           "log_mel": {"n_mels": N_MELS, "n_fft": _N_FFT, "hop": _HOP, "per": "video frame (mean of 10 ms)"},
           "mfcc": {"n_mfcc": N_MFCC}}
    for pkg in ("librosa", "soundfile", "opensmile"):
        try:
            out[pkg] = md.version(pkg)
        except md.PackageNotFoundError:
            out[pkg] = None
    return out
