"""Unit tests of mien.data / mien.face.align building blocks (no video decoding)."""

from __future__ import annotations

import numpy as np
import pytest

from mien.data import store
from mien.data.audio import clip_audio, frame_features
from mien.data.selection import (
    Window,
    keyword_windows,
    parse_transcript,
    tile_windows,
    top_k_non_overlapping,
)
from mien.face.align import params_to_affine, similarity_params, smooth_params, transform_landmarks

VTT = """WEBVTT

00:00:01.000 --> 00:00:03.000
<00:00:01.000><c>I</c><00:00:01.200><c> really</c><00:00:01.800><c> SMILE</c><00:00:02.400><c> now</c>

00:00:04.000 --> 00:00:06.000
and then we laugh out loud
"""

SRT = """1
00:00:00,500 --> 00:00:01,500
Big smile.

2
00:01:02,000 --> 00:01:04,000
so surprised
"""


def test_parse_vtt_word_level_and_segment_level():
    words = parse_transcript(VTT, "vtt")
    by = {w.text: w for w in words}
    assert by["smile"].start == pytest.approx(1.8)  # inline word timestamp
    assert 4.0 < by["laugh"].start < 6.0  # interpolated inside the cue
    assert [w.start for w in words] == sorted(w.start for w in words)


def test_parse_srt_and_json():
    words = parse_transcript(SRT, "srt")
    assert [w.text for w in words] == ["big", "smile", "so", "surprised"]
    assert words[2].start == pytest.approx(62.0)
    js = '{"segments": [{"start": 1, "end": 2, "text": "x", "words": [{"start": 1.5, "end": 1.9, "word": " Smile"}]}]}'
    (w,) = parse_transcript(js, "json")
    assert w.text == "smile" and w.start == pytest.approx(1.5)
    with pytest.raises(ValueError):
        parse_transcript("x", "docx")


def test_keyword_windows_offset_fallback_and_dedupe():
    words = parse_transcript(VTT, "vtt")
    fps, L, n = 25.0, 25, 100  # 4 s video
    ws = keyword_windows(words, ["smile", "laugh", "really smile"], L, fps, n, offset_sec=1.0)
    starts = {w.keyword: w.start for w in ws}
    assert starts["smile"] == 70  # 1.8 + 1.0 s = 2.8 s → frame 70, ends at 95 ≤ 100
    # laugh interpolated at 4 + 2·12/26 ≈ 4.92 s: 5.92 s is past the end of the 4 s video, so the window
    # ends 1 s before it: starts at 2.92 s = frame 73
    assert starts["laugh"] == 73
    clamp = keyword_windows(words, ["laugh"], L, fps, n, offset_sec=0.0)  # would end at 4.92 s > 4 s
    assert clamp[0].start == 75  # clamped to the last full window
    # "really smile" starts at 1.2 s → 2.2 s = frame 55
    assert starts["really smile"] == 55
    dup = keyword_windows(words + words, ["smile"], L, fps, n, 1.0)
    assert len(dup) == 1
    assert keyword_windows(words, ["smile"], L, fps, 10, 1.0) == []  # video shorter than a clip


def test_tiles_and_top_k():
    assert [w.start for w in tile_windows(100, 25, 25)] == [0, 25, 50, 75]
    assert [w.start for w in tile_windows(100, 25, 25, phase=10)] == [10, 35, 60]
    ws = [Window(0, 10, score=1.0), Window(5, 10, score=3.0), Window(12, 10, score=2.0), Window(30, 10, score=0.5)]
    assert [w.start for w in top_k_non_overlapping(ws, 1)] == [5]
    chosen = top_k_non_overlapping(ws, 3)
    assert [w.start for w in chosen] == [5, 30]  # 0 and 12 overlap the best window (5..15)


def _face(n=1, seed=0):
    from mien.face.geometry import canonical_face

    base = canonical_face()[:, :2] * 10 + 200  # (468, 2) px
    lm = np.concatenate([base, base[:10]], 0)  # 478 points (irises unused here)
    lm = np.concatenate([lm, np.zeros((478, 1))], 1)
    return np.repeat(lm[None], n, 0).astype(np.float64)


def test_alignment_invariant_to_similarity_and_never_stretches():
    lm = _face()
    A0 = params_to_affine(similarity_params(lm), 128)
    c0 = transform_landmarks(lm, A0)
    # rotate by 30°, scale by 1.7 and move the face: the crop landmarks stay the same
    th, s = np.radians(30), 1.7
    R = s * np.array([[np.cos(th), -np.sin(th)], [np.sin(th), np.cos(th)]])
    moved = lm.copy()
    moved[..., :2] = lm[..., :2] @ R.T + [40, -25]
    moved[..., 2] *= s
    A1 = params_to_affine(similarity_params(moved), 128)
    np.testing.assert_allclose(transform_landmarks(moved, A1), c0, atol=1e-3)
    lin = A1[0, :, :2]
    np.testing.assert_allclose(lin @ lin.T, np.eye(2) * np.linalg.det(lin), atol=1e-9)  # similarity
    # a stretched face keeps its stretch in the crop (the transform does not undo or add anisotropy)
    st = lm.copy()
    st[..., 0] *= 1.2
    cs = transform_landmarks(st, params_to_affine(similarity_params(st), 128))[0, :, :2]
    spread = np.ptp(cs @ np.linalg.svd(cs - cs.mean(0))[2].T, axis=0)
    spread0 = np.ptp(c0[0, :, :2] @ np.linalg.svd(c0[0, :, :2] - c0[0, :, :2].mean(0))[2].T, axis=0)
    assert abs(spread[0] / spread[1] - spread0[0] / spread0[1]) > 0.05


def test_smoothing_handles_angle_wrap_and_margin():
    p = np.array([[100, 100, 50, np.pi - 0.01], [100, 100, 50, -np.pi + 0.01]] * 5, np.float64)
    q = smooth_params(p, 2.0)
    assert np.all(np.abs(np.abs(q[:, 3]) - np.pi) < 0.05)  # no swing through 0
    lm = _face()
    assert similarity_params(lm, margin=0.5)[0, 2] == pytest.approx(1.5 * similarity_params(lm)[0, 2])


def test_video_key_stable_and_dot_free():
    k = store.video_key("s3://bucket/raw/My Video.v2.mp4")
    assert k == store.video_key("s3://bucket/raw/My Video.v2.mp4") and "." not in k
    assert k != store.video_key("s3://bucket/other/My Video.v2.mp4")


def test_atomic_target_memory_store_leaves_no_temporaries():
    import fsspec

    fs = fsspec.filesystem("memory")
    with store.atomic_target(fs, "/t/atomic/x.json") as tmp, open(tmp, "w") as f:
        f.write("{}")
    assert fs.cat("/t/atomic/x.json") == b"{}"
    with pytest.raises(RuntimeError), store.atomic_target(fs, "/t/atomic/y.json") as tmp:
        open(tmp, "w").write("partial")
        raise RuntimeError("killed")
    assert not fs.exists("/t/atomic/y.json")
    assert [p for p in fs.find("/t") if store.TMP_TAG in p] == []
    fs.rm("/t", recursive=True)


def test_clip_audio_and_frame_features():
    y = np.sin(np.arange(16000 * 2) / 16000 * 2 * np.pi * 440).astype(np.float32)
    a = clip_audio(y, 1.5, 25, 25.0)  # runs 0.5 s past the end: zero-padded
    assert a.shape == (16000,) and np.all(a[8000:] == 0) and np.abs(a[:8000]).max() > 0.5
    b = clip_audio(y, -0.25, 25, 25.0)
    assert np.all(b[:4000] == 0) and np.abs(b[4000:]).max() > 0.5
    mel, mfcc = frame_features(a, 25, 25.0)
    assert mel.shape == (25, 80) and mfcc.shape == (25, 13)
    assert mel[:10].max(1).mean() > mel[-10:].max(1).mean() + 20  # tone then silence, per video frame


def test_window_rejection_reasons():
    from types import SimpleNamespace

    from mien.pipelines.prepare import PrepareOptions
    from mien.pipelines.prepare.select import Track as _Track
    from mien.pipelines.prepare.select import window_reason as _window_reason

    n = 10
    # rows 0..9: one face per grid frame; row 10: a second face in grid frame 7
    face_id = np.array([0] * 5 + [1] * 5 + [2])
    bbox = np.tile(np.array([[0, 0, 100, 100]], np.float32), (11, 1))
    bbox[3] = [0, 0, 30, 30]  # small face in frame 3
    conf = np.full(11, 0.9, np.float32)
    conf[8] = 0.2
    res = SimpleNamespace(face_id=face_id, bbox=bbox, confidence=conf)
    row = np.arange(n)
    row[1] = -1  # no face in frame 1
    nfaces = np.ones(n, np.int64)
    nfaces[1] = 0
    nfaces[7] = 2
    tr = _Track(n, np.arange(n), np.arange(n) / 25, row, nfaces, res)
    opts = PrepareOptions(min_face=64, min_confidence=0.5)
    W = Window
    assert _window_reason(W(0, 3), tr, opts) == "no_face"
    assert _window_reason(W(2, 2), tr, opts) == "small_face"
    assert _window_reason(W(4, 2), tr, opts) == "track_break"
    assert _window_reason(W(6, 2), tr, opts) == "multiple_faces"
    assert _window_reason(W(6, 2), tr, PrepareOptions(track_policy="largest")) is None
    assert _window_reason(W(8, 2), tr, opts) == "low_confidence"
    assert _window_reason(W(5, 2), tr, opts) is None
    assert _window_reason(W(9, 2), tr, opts) == "past_end"


def test_scored_selection_uses_expression_tokens_when_present():
    """With a tokenizer, scored mode ranks windows by token variation, not landmark motion."""
    from mien.face.geometry import canonical_face
    from mien.pipelines.prepare import PrepareOptions
    from mien.pipelines.prepare.select import Track as _Track
    from mien.pipelines.prepare.select import select_windows as _select
    from mien.results import AnalysisResult

    n, fps = 30, 10.0
    rng = np.random.default_rng(0)
    base = np.zeros((478, 3), np.float32)
    base[:468] = canonical_face() * 10 + np.array([200, 200, 0], np.float32)
    lm = np.repeat(base[None], n, 0)
    lm[0:10, :468, :2] += rng.normal(0, 3, (10, 468, 2))  # landmarks move most in frames 0-9
    tok = np.tile(np.eye(8, dtype=np.float32)[0], (n, 1))
    tok[20:30] = np.eye(8, dtype=np.float32)[rng.integers(0, 8, 10)]  # tokens change most in frames 20-29
    cols = {"frame": np.arange(n), "t_sec": np.arange(n) / fps, "face_id": np.zeros(n, np.int32),
            "confidence": np.full(n, 0.9, np.float32), "landmarks": lm,
            "bbox": np.tile(np.array([100, 100, 300, 300], np.float32), (n, 1)),
            "yaw_deg": np.zeros(n), "pitch_deg": np.zeros(n), "roll_deg": np.zeros(n)}
    res = AnalysisResult.from_columns(cols)
    track = _Track(n, np.arange(n), np.arange(n) / fps, np.arange(n), np.ones(n, np.int64), res)
    opts = PrepareOptions(mode="scored", clip_seconds=1.0, fps=fps, top_k=1, stride_seconds=1.0)
    (by_landmarks,), _, _ = _select(track, opts, "v", None)
    assert by_landmarks.start == 0
    res_tok = AnalysisResult.from_columns({**cols, "expression_token": tok})
    track_tok = _Track(n, np.arange(n), np.arange(n) / fps, np.arange(n), np.ones(n, np.int64), res_tok)
    (by_tokens,), _, _ = _select(track_tok, opts, "v", None)
    assert by_tokens.start == 20


def test_to_tensors_skips_undecoded_audio():
    """ClipDataset(audio=False) leaves the FLAC member as bytes; it must not be converted to a tensor."""
    pytest.importorskip("torch")
    from mien.data.reader import _to_tensors

    out = _to_tensors({"__key__": "k", "flac": b"fLaC\x00\x00", "json": {"a": 1}})
    assert "audio" not in out and out["meta"] == {"a": 1}


def test_executor_runs_every_task_once_and_reraises():
    """run_tasks: in-process and in a spawn pool (bounded in flight), every result once; a task's error is raised."""
    import operator

    from mien.pipelines.executor import run_tasks

    tasks = [(i, i) for i in range(7)]
    for workers, in_flight in ((1, None), (2, 1), (2, None)):
        got: list[int] = []
        run_tasks(operator.mul, tasks, got.append, workers=workers, max_in_flight=in_flight)
        assert sorted(got) == [i * i for i in range(7)]
    with pytest.raises(ZeroDivisionError):
        run_tasks(operator.truediv, [(1, 1), (1, 0), (2, 1)], lambda r: None, workers=2)
    with pytest.raises(ValueError, match="executor"):
        run_tasks(operator.mul, tasks, print, executor="dask")


def test_prepare_cli_options_generated_from_the_dataclass():
    """Every PrepareOptions field is a `mien prepare` flag with the dataclass default (incl. the face-mesh ones)."""
    from mien.cli.main import build_parser
    from mien.cli.options import options_from_args
    from mien.pipelines.prepare import PrepareOptions

    parse = build_parser().parse_args
    assert options_from_args(PrepareOptions, parse(["prepare", "x.mp4", "-o", "out"])) == PrepareOptions()
    args = parse(["prepare", "x.mp4", "-o", "out", "--max-faces", "3", "--max-side", "640", "--detector", "full",
                  "--stride", "0.5", "--mode", "scored", "--keywords", "smile, big laugh", "--no-audio",
                  "--clip-seconds", "1.5", "--shard-samples", "8", "--au-labels", "labels.csv"])
    opts = options_from_args(PrepareOptions, args)
    assert (opts.max_faces, opts.max_side, opts.detector, opts.stride_seconds) == (3, 640, "full", 0.5)
    assert opts.keywords == ("smile", "big laugh") and not opts.audio and opts.mode == "scored"
    assert (opts.clip_seconds, opts.shard_samples, opts.au_labels) == (1.5, 8, "labels.csv")
    assert args.workers == 1 and args.executor == "local" and not args.overwrite
