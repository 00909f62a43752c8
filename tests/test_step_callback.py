"""The one per-frame step callback of the jobs of several passes (renders, ``mien react``):
:class:`mien.pipelines.analyze.StepCallback` over a :class:`~mien.pipelines.analyze.Step`."""

from __future__ import annotations

import numpy as np

from mien.io.video import Frame


def _frames(n: int) -> list[Frame]:
    return [Frame(i, i / 10, np.zeros((2, 2, 3), np.uint8)) for i in range(n)]


def test_step_callback_counts_shifts_time_and_stops_only_on_true():
    from mien.pipelines.analyze import Step, StepCallback

    seen = []

    def on_frame(frame, step):
        seen.append((frame.index, frame.t_sec, step))
        return 1 if frame.index == 1 else frame.index == 2  # only True stops (1 is not True)

    step = Step("video0", 1, 3)
    cb = StepCallback(on_frame, step, t0=5.0)
    out = [cb(f, "ignored state") for f in _frames(3)]
    assert out == [False, False, True] and cb.stopped and cb.frames == 3
    assert [(i, round(t, 6)) for i, t, _ in seen] == [(0, 5.0), (1, 5.1), (2, 5.2)] and cb.t_sec == seen[-1][1]
    assert all(s is step for *_, s in seen)
    counter = StepCallback(None, Step("render"))  # no user callback: it only counts
    assert [counter(f) for f in _frames(2)] == [False, False] and counter.frames == 2 and not counter.stopped
    assert counter.t_sec == 0.1  # no shift


def test_every_multi_pass_job_uses_the_one_step_type():
    import mien.pipelines.analyze as analyze
    import mien.pipelines.face3d_transfer as transfer
    import mien.pipelines.react as react
    import mien.pipelines.render as render

    assert react.Step is render.Step is transfer.Step is analyze.Step
    assert react.StepCallback is render.StepCallback is transfer.StepCallback is analyze.StepCallback


def test_step_callback_limit_is_the_frames_of_a_stopped_step():
    """``limit``: what a render's later pass may take after its analysis pass (the frames seen when stopped)."""
    from mien.pipelines.analyze import Step, StepCallback

    run = StepCallback(lambda f, s: None, Step("analysis", 0, 2))
    for f in _frames(4):
        run(f)
    assert run.limit is None  # ran to the end: no limit
    stop = StepCallback(lambda f, s: f.index == 2, Step("analysis", 0, 2))
    for f in _frames(4):
        if stop(f):
            break
    assert stop.limit == 3
    assert StepCallback(None, Step("render")).limit is None
