"""A truncated shard is reported, never lost silently: the reader warns naming the shard and the samples lost,
`mien dataset verify` exits 1 naming it, `--repair` re-prepares only its video and restores the samples."""

from __future__ import annotations

import json
import shutil

import pytest

from mien.cli.main import main as mien_main
from mien.data.reader import iter_samples, open_dataset
from mien.data.shards import DamagedShardWarning
from mien.pipelines.prepare import PrepareOptions, prepare

D0 = "videos/expressive/driving_d0.mp4"  # no audio
TALK = "videos/talking/Input__00010.mp4"  # with audio
OPTS = dict(clip_seconds=1.0, fps=25.0, crop_size=64, clips_per_video=2, shard_samples=2)


def _raw(root) -> dict:
    """{key: {member: bytes}} of every readable sample."""
    return {s["__key__"]: {k: v for k, v in s.items() if not k.startswith("__")}
            for s in iter_samples(str(root), decode=False)}


@pytest.fixture(scope="module")
def dataset(shared_data, tmp_path_factory):
    tmp = tmp_path_factory.mktemp("verify")
    src = tmp / "src"
    src.mkdir()
    inputs = []
    for rel in (D0, TALK):  # copies, so that a test can make a source unreachable
        dst = src / rel.rsplit("/", 1)[-1]
        shutil.copyfile(shared_data / rel, dst)
        inputs.append(str(dst))
    labels = tmp / "au.csv"  # AU labels for driving_d0 only: its clips carry au.npy, repair must keep them
    labels.write_text("video,frame,AU1,AU12\n" + "".join(f"driving_d0,{i},{i % 6},{(i // 3) % 6}\n" for i in range(78)))
    out = tmp / "ds"
    rep = prepare(inputs, str(out), PrepareOptions(**OPTS, au_labels=str(labels)))
    assert rep.samples == 4 and not rep.failed
    return {"out": out, "inputs": inputs, "tmp": tmp, "samples": _raw(out)}


def _assert_same_samples(got: dict, want: dict) -> None:
    """Same keys and members; every member byte-identical except the H.264 video, whose encoder is not
    bit-reproducible from run to run (x264 threads): its decoded frames must agree closely."""
    import numpy as np

    from mien.data.shards import decode_mp4

    assert sorted(got) == sorted(want)
    for key, members in want.items():
        assert sorted(got[key]) == sorted(members)
        for m, v in members.items():
            if m == "mp4":
                a, b = decode_mp4(got[key][m]).astype(np.int16), decode_mp4(v).astype(np.int16)
                assert a.shape == b.shape and np.abs(a - b).mean() < 2.0, key
            else:
                assert got[key][m] == v, (key, m)


def _damaged(dataset, name: str):
    """A copy of the dataset with its first shard cut in half; returns (root, shard name)."""
    root = dataset["tmp"] / name
    shutil.copytree(dataset["out"], root)
    shard = open_dataset(str(root)).manifest["shards"][0]
    assert shard["samples"] == 2 and len(shard["sha256"]) == 64
    p = root / "shards" / shard["name"]
    p.write_bytes(p.read_bytes()[: p.stat().st_size // 2])
    return root, shard["name"]


def test_good_dataset_verifies_and_info_shows_au_names(dataset, capsys):
    assert mien_main(["dataset", "verify", str(dataset["out"])]) == 0
    assert "all 2 shard(s) match" in capsys.readouterr().out
    assert mien_main(["dataset", "info", str(dataset["out"])]) == 0
    out = capsys.readouterr().out
    assert "AU labels (2 samples): AU01, AU12" in out and "differ" not in out
    assert mien_main(["dataset", "info", str(dataset["out"]), "--json"]) == 0
    info = json.loads(capsys.readouterr().out)
    assert info["au_names"] == ["AU01", "AU12"] and info["au_samples"] == 2
    assert all(s["bytes_on_disk"] == s["bytes"] for s in info["shards"])


def test_truncated_shard_warns_with_name_and_count(dataset):
    root, name = _damaged(dataset, "warn")
    with pytest.warns(DamagedShardWarning, match=rf"{name}: 1 of 2 samples lost") as rec:
        keys = [s["__key__"] for s in iter_samples(str(root), video=False, audio=False)]
    assert len(keys) == 3 and set(keys) < set(dataset["samples"])
    assert sum(issubclass(w.category, DamagedShardWarning) for w in rec) == 1  # once per shard
    torch = pytest.importorskip("torch")  # noqa: F841
    from mien.data import ClipDataset

    with pytest.warns(DamagedShardWarning, match=name):
        assert len(list(ClipDataset(str(root), audio=False))) == 3


def test_verify_names_bad_shard_and_repair_restores(dataset, capsys):
    root, name = _damaged(dataset, "repair")
    assert mien_main(["dataset", "info", str(root)]) == 0
    assert "differ from the manifest" in capsys.readouterr().out
    assert mien_main(["dataset", "verify", str(root)]) == 1
    out = capsys.readouterr().out
    assert name in out and "1 of 2 samples readable" in out and "SHA-256" in out
    other = [p.name for p in (root / "done").iterdir() if not name.startswith(p.stem)]
    mtimes = {n: (root / "done" / n).stat().st_mtime_ns for n in other}
    assert mien_main(["dataset", "verify", str(root), "--repair"]) == 0
    assert "repaired" in capsys.readouterr().out
    assert {n: (root / "done" / n).stat().st_mtime_ns for n in other} == mtimes  # other videos untouched
    _assert_same_samples(_raw(root), dataset["samples"])
    assert mien_main(["dataset", "verify", str(root)]) == 0


def test_repair_without_sources_says_so(dataset, capsys):
    root, name = _damaged(dataset, "nosrc")
    src = next(s for s in dataset["inputs"] if name.startswith(s.rsplit("/", 1)[-1].removesuffix(".mp4")))
    moved = src + ".away"
    shutil.move(src, moved)
    try:
        assert mien_main(["dataset", "verify", str(root), "--repair"]) == 2
    finally:
        shutil.move(moved, src)
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "not reachable" in err[0] and src in err[0]
    assert (root / "done").exists() and len(list((root / "done").iterdir())) == 2  # nothing changed
