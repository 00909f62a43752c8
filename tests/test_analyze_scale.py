"""``mien analyze`` at scale: parallel workers and Ray give the sequential rows, killed runs resume to the same
dataset, bad inputs are reported, Ctrl-C stops cleanly, the output folder is one queryable dataset."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

import mien
from mien.pipelines.analyze import AnalyzeOptions
from mien.pipelines.batch import analyze_files, output_keys
from mien.results.dataset import partition_path

TALKING = ("videos/talking/Input__00002.mp4", "videos/talking/Input__00010.mp4")


def _same(a: mien.AnalysisResult, b: mien.AnalysisResult) -> bool:
    """Equal rows and metadata, except the wall time of the analysis."""
    a, b = a.select(np.arange(len(a))), b.select(np.arange(len(b)))
    a.meta, b.meta = ({k: v for k, v in r.meta.items() if k != "elapsed_sec"} for r in (a, b))
    return a.equals(b)


def _partitions(root: Path) -> dict[str, mien.AnalysisResult]:
    parts = sorted(root.glob("video=*/*"))
    assert all(p.name == "part-0.parquet" for p in parts), parts  # one file per partition, no leftovers
    return {p.parent.name.removeprefix("video="): mien.read_results(p) for p in parts}


def _default_sigint() -> None:
    """In the child before exec: Ctrl-C acts as in a terminal even when the test runner was started in the background
    by a non-interactive shell (which starts it with SIGINT ignored, an inherited setting: the CLI then never sees it)."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def _mien(*args) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "mien", *map(str, args)], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, start_new_session=True, preexec_fn=_default_sigint)


def _wait_for_partition(root: Path, proc: subprocess.Popen, timeout: float = 120) -> None:
    t0 = time.time()
    while not list(root.glob("video=*/part-0.parquet")):
        assert proc.poll() is None, proc.communicate()
        assert time.time() - t0 < timeout
        time.sleep(0.05)


def _group_gone(pgid: int, timeout: float = 10) -> bool:
    t0 = time.time()
    while time.time() - t0 < timeout:
        try:
            os.killpg(pgid, 0)
        except ProcessLookupError:
            return True
        time.sleep(0.1)
    return False


@pytest.fixture(scope="module")
def inputs(shared_data, tmp_path_factory) -> list[str]:
    """Two 1-s talking clips (``end=1``), the short sample video and a still image."""
    return [str(shared_data / r) for r in TALKING] + [str(shared_data / "samples/single_face.mp4"),
                                                      str(shared_data / "samples/single_face.jpg")]


@pytest.fixture(scope="module")
def sequential(inputs, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("seq")
    rep = analyze_files(inputs, out, AnalyzeOptions(end=1.0), overlay=False, plot=False)
    assert len(rep.ok) == len(inputs) and rep.workers == 1
    return out


def test_parallel_equals_sequential(inputs, sequential, tmp_path):
    rep = analyze_files(inputs, tmp_path, AnalyzeOptions(end=1.0), formats=("parquet", "csv"), overlay=False,
                        plot=False, workers=2)
    assert len(rep.ok) == len(inputs) and not rep.failed and rep.workers == 2
    seq, par = _partitions(sequential), _partitions(tmp_path)
    assert sorted(par) == sorted(output_keys(inputs)) == sorted(seq)
    for key in seq:
        assert _same(seq[key], par[key]), key
        assert (tmp_path / f"{key}.csv").is_file()
    manifest = json.loads((tmp_path / "_manifest.json").read_text())
    assert manifest["mien_version"] == mien.__version__ and manifest["options"]["end"] == 1.0
    assert {e["video"]: e["status"] for e in manifest["inputs"]} == dict.fromkeys(seq, "ok")
    assert manifest["models"]["face_landmarker"]["sha256"]
    report = json.loads((tmp_path / "report.json").read_text())
    assert report["workers"] == 2 and len(report["ok"]) == len(inputs)


def test_read_results_dataset_with_filter_and_other_tools(sequential):
    ds = mien.read_results_dataset(sequential)
    parts = _partitions(sequential)
    assert len(ds) == sum(len(r) for r in parts.values())
    assert ds.meta["manifest"]["options"]["end"] == 1.0
    one = mien.read_results_dataset(sequential, filters=[("video", "=", "Input__00010")])
    assert set(one.extra["video"]) == {"Input__00010"}
    np.testing.assert_array_equal(one.landmarks, parts["Input__00010"].landmarks)
    turned = mien.read_results_dataset(sequential, filters=[("yaw_deg", ">", 0.0)], output="pandas")
    assert len(turned) == sum(int((r.yaw_deg > 0).sum()) for r in parts.values()) and (turned.yaw_deg > 0).all()

    import pyarrow.dataset as pads

    t = pads.dataset(sequential, format="parquet", partitioning="hive", exclude_invalid_files=True).to_table(
        columns=["video", "frame"])
    assert t.num_rows == len(ds)
    duckdb = pytest.importorskip("duckdb")
    rows = duckdb.sql(f"SELECT video, count(*) FROM read_parquet('{sequential}/*/*.parquet', hive_partitioning=true) "
                      "GROUP BY video ORDER BY video").fetchall()
    assert rows == sorted((k, len(r)) for k, r in parts.items())


def test_kill9_mid_batch_then_rerun_gives_the_same_dataset(analyzed, shared_data, tmp_path):
    src = shared_data / "samples/single_face.mp4"
    clips = []
    for name in "abcdef":
        (tmp_path / "in").mkdir(exist_ok=True)
        clips.append(tmp_path / "in" / f"{name}.mp4")
        shutil.copy(src, clips[-1])
    out = tmp_path / "out"
    cmd = ("analyze", *clips, "-o", out, "--workers", "2", "--no-overlay", "--no-plot")
    proc = _mien(*cmd)
    _wait_for_partition(out, proc)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    assert _group_gone(proc.pid)  # the workers died with it
    # complete partitions only: the kill may have left a temporary file of a write in progress (the rerun
    # removes it; the leftovers check comes after the rerun)
    done_before = {p.parent.name.removeprefix("video=") for p in out.glob("video=*/part-0.parquet")}
    assert 1 <= len(done_before) < len(clips)
    status = {e["video"]: e["status"] for e in json.loads((out / "_manifest.json").read_text())["inputs"]}
    assert status == dict.fromkeys("abcdef", "pending")  # written before the run: options and what was to do
    proc = _mien(*cmd)
    stdout, stderr = proc.communicate(timeout=300)
    assert proc.returncode == 0, stderr
    assert f"{len(done_before)} already done" in stdout
    report = json.loads((out / "report.json").read_text())
    assert {Path(r["input"]).stem for r in report["ok"]} == {c.stem for c in clips} - done_before
    parts = _partitions(out)
    assert sorted(parts) == list("abcdef")
    status = {e["video"]: e["status"] for e in json.loads((out / "_manifest.json").read_text())["inputs"]}
    assert status == dict.fromkeys("abcdef", "ok")
    want = analyzed("samples/single_face.mp4")
    for key, res in parts.items():
        res.meta["source"] = want.meta["source"]
        assert _same(res, want), key
    assert not [p for p in out.rglob(".*")]  # no temporary files left


def test_corrupt_input_in_a_parallel_batch(inputs, tmp_path):
    bad = tmp_path / "broken.mp4"
    bad.write_bytes(b"\x00\x00\x00\x18ftypmp42" + b"\x00" * 500)
    out = tmp_path / "out"
    proc = _mien("analyze", inputs[0], bad, inputs[3], "-o", out, "--workers", "2", "--end", "1", "--no-plot")
    stdout, stderr = proc.communicate(timeout=300)
    assert proc.returncode == 1, stderr
    assert "Traceback" not in stderr and "broken.mp4" in stderr
    report = json.loads((out / "report.json").read_text())
    assert [f["input"] for f in report["failed"]] == [str(bad)] and len(report["ok"]) == 2
    assert sorted(_partitions(out)) == ["Input__00002", "single_face"]
    assert (out / "Input__00002.overlay.mp4").is_file() and (out / "single_face.overlay.png").is_file()
    status = {e["video"]: e["status"] for e in json.loads((out / "_manifest.json").read_text())["inputs"]}
    assert status == {"Input__00002": "ok", "broken": "failed", "single_face": "ok"}


def test_ctrl_c_stops_cleanly(shared_data, tmp_path):
    # two short clips first, then two 20 s clips: when the first partition appears the long ones are still being
    # analysed (with four short clips a loaded machine could finish them all before the signal: exit 0, a flake)
    clips = []
    (tmp_path / "in").mkdir()
    for name, src in zip("abcd", ["single_face.mp4"] * 2 + ["WolfgangLanger_Pexels.mp4"] * 2, strict=True):
        clips.append(tmp_path / "in" / f"{name}.mp4")
        shutil.copy(shared_data / "samples" / src, clips[-1])
    out = tmp_path / "out"
    proc = _mien("analyze", *clips, "-o", out, "--workers", "2", "--no-overlay", "--no-plot")
    _wait_for_partition(out, proc)
    os.killpg(proc.pid, signal.SIGINT)  # what a terminal sends the whole foreground group on Ctrl-C
    _, stderr = proc.communicate(timeout=60)
    assert proc.returncode == 130, stderr
    assert stderr.strip().splitlines()[-1] == "mien: interrupted" and "Traceback" not in stderr
    assert _group_gone(proc.pid)  # no stray worker processes
    # the manifest after the interrupt: inputs whose results arrived are "ok" (with their partition), the rest
    # still "pending" (best effort: a result in flight when the signal came stays pending; a rerun repairs it)
    status = {e["video"]: e["status"] for e in json.loads((out / "_manifest.json").read_text())["inputs"]}
    done = {p.parent.name.removeprefix("video=") for p in out.glob("video=*/part-0.parquet")}
    assert set(status.values()) <= {"ok", "pending"} and {k for k, v in status.items() if v == "ok"} <= done


def test_stopped_batch_manifest_says_what_finished(inputs, tmp_path):
    """A batch stopped from its callback (the app's Stop) leaves a manifest in which the inputs finished before the
    stop are "ok" and the rest "pending" (what a rerun of the folder would do), not everything "pending"."""

    class Stop(Exception):
        pass

    def on_frame(frame, step):
        if step.index == 2:
            raise Stop

    with pytest.raises(Stop):
        analyze_files(inputs[:3], tmp_path, AnalyzeOptions(end=0.3), overlay=False, plot=False, on_frame=on_frame)
    status = {e["video"]: e["status"] for e in json.loads((tmp_path / "_manifest.json").read_text())["inputs"]}
    keys = [Path(i).stem for i in inputs[:3]]
    assert status == {keys[0]: "ok", keys[1]: "ok", keys[2]: "pending"}
    assert sorted(p.parent.name.removeprefix("video=") for p in tmp_path.glob("video=*/part-0.parquet")) == \
        sorted(keys[:2])


def test_options_of_a_dataset_are_kept(inputs, tmp_path):
    analyze_files(inputs[:1], tmp_path, AnalyzeOptions(end=0.5), overlay=False, plot=False)
    with pytest.raises(ValueError, match="other options"):
        analyze_files(inputs[:1], tmp_path, AnalyzeOptions(end=1.0), overlay=False, plot=False)
    # threads and batch size change speed, not results: a resumed run may change them
    rep = analyze_files(inputs[:1], tmp_path, AnalyzeOptions(end=0.5, threads=1), overlay=False, plot=False)
    assert len(rep.skipped) == 1


def test_fsspec_output(inputs, sequential):
    url = "memory://mien-scale-test/out"
    rep = analyze_files(inputs[1:], url, AnalyzeOptions(end=1.0), formats=("parquet", "csv"), overlay=True,
                        plot=True, workers=2)
    assert len(rep.ok) == 3 and rep.workers == 1  # memory:// runs in this process
    import fsspec

    fs = fsspec.filesystem("memory")
    names = {p.rsplit("/", 1)[-1] for p in fs.ls("/mien-scale-test/out", detail=False)}
    assert {"_manifest.json", "report.json", "Input__00010.csv", "Input__00010.overlay.mp4",
            "samples_single_face_jpg.overlay.png", "samples_single_face_mp4.plot.png",
            "video=samples_single_face_mp4"} <= names
    ds = mien.read_results_dataset(url)
    parts = _partitions(sequential)
    assert len(ds) == sum(len(parts[k]) for k in output_keys(inputs[1:]))
    assert partition_path(url, "a b") == f"{url}/video=a%20b/part-0.parquet"
    rep = analyze_files(inputs[1:], url, AnalyzeOptions(end=1.0), formats=("parquet", "csv"), plot=True)
    assert len(rep.skipped) == 3  # resumes on a URL too


def test_ray_executor_gives_the_same_rows(inputs, sequential, tmp_path):
    pytest.importorskip("ray")
    rep = analyze_files(inputs[:2], tmp_path, AnalyzeOptions(end=1.0), overlay=False, plot=False, workers=2,
                        executor="ray")
    assert len(rep.ok) == 2 and rep.executor == "ray"
    seq, ray_parts = _partitions(sequential), _partitions(tmp_path)
    for key in ray_parts:
        assert _same(seq[key], ray_parts[key]), key
