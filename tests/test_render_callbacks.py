"""The per-frame callback of the two-pass renders (``render_face3d``, ``expression_transfer``, ``render_video``):
``on_frame(frame, step)`` once per analysed frame and once per output frame; True ends that pass with a shorter
output; an exception leaves no output file."""

from __future__ import annotations

import av
import numpy as np
import pytest

pytestmark = pytest.mark.usefixtures("torch_one_thread")

CLIP = "samples/single_face.mp4"  # 640×360, 30 fps
WOLF = "samples/WolfgangLanger_Pexels.mp4"
IMAGE = "samples/single_face.jpg"


def _frames(path) -> int:
    with av.open(str(path)) as c:
        return sum(1 for _ in c.decode(video=0))


class Recorder:
    """Counts calls per pass; returns True at call ``stop_at`` of pass ``stop_in`` (1-based), or raises there."""

    def __init__(self, stop_in: str | None = None, stop_at: int = 0, raise_=False):
        self.calls: dict[str, list] = {}
        self.stop_in, self.stop_at, self.raise_ = stop_in, stop_at, raise_

    def __call__(self, frame, step):
        seen = self.calls.setdefault(step.name, [])
        seen.append((frame.index, step.index, step.count))
        if step.name == self.stop_in and len(seen) == self.stop_at:
            if self.raise_:
                raise KeyboardInterrupt("stopped")
            return True
        return None


def _left(folder) -> list[str]:
    return sorted(p.name for p in folder.iterdir())


def test_render_face3d_on_frame(shared_data, analyzed, tmp_path):
    from mien.pipelines.face3d import render_face3d

    rec = Recorder()
    rep = render_face3d(shared_data / CLIP, tmp_path / "a.mp4", end=0.3, on_frame=rec)
    assert rep.frames == 10 == _frames(rep.output)
    assert [c[1:] for c in rec.calls["analysis"]] == [(0, 2)] * 10 and [c[1:] for c in rec.calls["render"]] == [(1, 2)] * 10
    assert [c[0] for c in rec.calls["render"]] == list(range(10))  # once per output frame, in order
    # True in the analysis: only the frames it saw are rendered
    rep = render_face3d(shared_data / CLIP, tmp_path / "b.mp4", end=0.3, on_frame=Recorder("analysis", 4))
    assert rep.frames == 4 == _frames(rep.output)
    # with an earlier analysis there is only the render pass; True there: a shorter video and mesh sequence
    an = analyzed(CLIP)  # the analysis other test files share
    rec = Recorder("render", 6)
    rep = render_face3d(shared_data / CLIP, tmp_path / "c.mp4", analysis=an, end=0.5, on_frame=rec,
                        export_mesh=tmp_path / "mesh")
    assert set(rec.calls) == {"render"} and rec.calls["render"][0][1:] == (0, 1)
    assert rep.frames == 6 == _frames(rep.output) and np.load(rep.mesh_files[0])["vertices"].shape[0] == 6
    # an exception (a cancelled job): no video, no mesh, no temporary file
    out = tmp_path / "d"
    out.mkdir()
    with pytest.raises(KeyboardInterrupt):
        render_face3d(shared_data / CLIP, out / "d.mp4", analysis=an, end=0.5, export_mesh=out / "mesh",
                      on_frame=Recorder("render", 3, raise_=True))
    assert _left(out) == []


def test_expression_transfer_on_frame(shared_data, tmp_path):
    from mien.pipelines.face3d_transfer import expression_transfer

    rec = Recorder()
    rep = expression_transfer(shared_data / CLIP, shared_data / IMAGE, tmp_path / "a.mp4", end=0.3, height=64,
                              on_frame=rec)
    assert rep.frames == rep.transferred == 10 == _frames(rep.output)
    assert {k: len(v) for k, v in rec.calls.items()} == {"source": 10, "target": 1, "render": 10}
    assert [rec.calls[k][0][1:] for k in ("source", "target", "render")] == [(0, 3), (1, 3), (2, 3)]
    rep = expression_transfer(shared_data / CLIP, shared_data / IMAGE, tmp_path / "b.mp4", end=0.3, height=64,
                              on_frame=Recorder("render", 4))
    assert rep.frames == 4 == _frames(rep.output)
    with pytest.raises(KeyboardInterrupt):
        expression_transfer(shared_data / CLIP, shared_data / IMAGE, tmp_path / "c.mp4", end=0.3, height=64,
                            on_frame=Recorder("target", 1, raise_=True))
    assert _left(tmp_path) == ["a.mp4", "b.mp4"]


def test_render_video_on_frame(shared_data, analyzed, tiny_tokenizer_dir, tmp_path):
    pytest.importorskip("torch")
    from mien.pipelines.render import render_video

    rec = Recorder()
    rep = render_video(shared_data / CLIP, tiny_tokenizer_dir, tmp_path / "a.mp4", end=0.3, batch_size=4,
                       on_frame=rec)
    assert rep.frames == 10 == _frames(rep.output) and rep.faces == 10
    assert [c[1:] for c in rec.calls["analysis"]] == [(0, 2)] * 10
    assert [c[0] for c in rec.calls["render"]] == list(range(10)) and rec.calls["render"][0][1:] == (1, 2)
    an = analyzed(CLIP)  # the analysis other test files share
    rep = render_video(shared_data / CLIP, tiny_tokenizer_dir, tmp_path / "b.mp4", analysis=an, batch_size=4,
                       on_frame=Recorder("render", 6))  # mid-batch: the rest of the batch is not written
    assert rep.frames == rep.faces == 6 == _frames(rep.output)
    with pytest.raises(KeyboardInterrupt):
        render_video(shared_data / CLIP, tiny_tokenizer_dir, tmp_path / "c.mp4", analysis=an, batch_size=4,
                     on_frame=Recorder("render", 2, raise_=True))
    assert _left(tmp_path) == ["a.mp4", "b.mp4"]
