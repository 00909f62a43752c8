"""Adding another file's audio to a rendered (silent) MP4 with PyAV: the video packets are copied, the audio is
decoded, cut to a time window and encoded as AAC."""

from __future__ import annotations

import os

import av


def has_audio(path: str | os.PathLike) -> bool:
    """Whether the media file has an audio stream (False for unreadable files and images)."""
    try:
        with av.open(os.fspath(path)) as c:
            return bool(c.streams.audio)
    except (av.FFmpegError, OSError):
        return False


def mux_audio(video: str | os.PathLike, audio_from: str | os.PathLike, output: str | os.PathLike,
              start: float | None = None, duration: float | None = None, bitrate: int = 128_000) -> bool:
    """Write ``output`` = the video stream of ``video`` (copied) + the first audio stream of ``audio_from``.

    Args:
        video: an MP4 with one video stream (e.g. from :class:`mien.io.writer.VideoWriter`).
        audio_from: media file whose audio is added.
        output: output .mp4 path (not ``video``).
        start: audio time (s, from the audio stream's start) that lines up with the video's first frame.
        duration: seconds of audio kept (None: to its end); normally the video's duration.
        bitrate: AAC bit rate in bit/s.

    Returns:
        True when audio was added; False when ``audio_from`` has no audio stream (nothing is written).
    """
    if not has_audio(audio_from):
        return False
    t0 = float(start or 0.0)
    t1 = None if duration is None else t0 + float(duration)
    with av.open(os.fspath(video)) as vin, av.open(os.fspath(audio_from)) as ain, \
            av.open(os.fspath(output), mode="w", format="mp4") as out:
        vs = vin.streams.video[0]
        vout = out.add_stream_from_template(vs)
        a = ain.streams.audio[0]
        rate = a.codec_context.sample_rate or 44100
        aout = out.add_stream("aac", rate=rate)
        aout.bit_rate = bitrate
        layout = a.codec_context.layout.name if a.codec_context.layout else "stereo"
        layout = layout if layout in ("mono", "stereo") else "stereo"
        aout.layout = layout
        resampler = av.AudioResampler(format="fltp", layout=layout, rate=rate)
        fifo = av.AudioFifo()
        a_start = float(a.start_time * a.time_base) if a.start_time is not None and a.time_base else 0.0
        for frame in ain.decode(a):
            t = (frame.time - a_start) if frame.time is not None else None
            if t is not None and t + frame.samples / frame.sample_rate <= t0:
                continue
            if t is not None and t1 is not None and t >= t1:
                break
            for f in resampler.resample(frame):
                if t is not None and t < t0:  # drop the samples before the window
                    skip = int(round((t0 - t) * rate))
                    if skip >= f.samples:
                        continue
                    arr = f.to_ndarray()[:, skip:]
                    f = av.AudioFrame.from_ndarray(arr.copy(), format="fltp", layout=layout)
                    f.sample_rate = rate
                f.pts = None
                fifo.write(f)
        total = fifo.samples if t1 is None else min(fifo.samples, int(round((t1 - t0) * rate)))
        n = 0
        frame_size = aout.codec_context.frame_size or 1024
        while n < total:
            f = fifo.read(min(frame_size, total - n))
            if f is None:
                break
            f.pts = n
            n += f.samples
            for p in aout.encode(f):
                out.mux(p)
        for p in aout.encode(None):
            out.mux(p)
        for packet in vin.demux(vs):
            if packet.dts is None:
                continue
            packet.stream = vout
            out.mux(packet)
    return True


__all__ = ["has_audio", "mux_audio"]
