"""Results datasets: Hive-partitioned Parquet of many analyses, read back with filters, in pyarrow and DuckDB."""

from __future__ import annotations

import numpy as np
import pytest

from mien.results.dataset import partition_path, read_results_dataset, write_manifest

CLIPS = {"single": "samples/single_face.mp4", "multi": "samples/multi_face.jpg", "none": "samples/no_face.mp4"}


@pytest.fixture(scope="module")
def dataset(analyzed, tmp_path_factory):
    root = tmp_path_factory.mktemp("ds")
    results = {}
    for key, rel in CLIPS.items():
        res = analyzed(rel, max_faces=5) if key == "multi" else analyzed(rel)
        res.to_parquet(partition_path(root, key if key != "single" else "single face #1"))
        results[key if key != "single" else "single face #1"] = res
    write_manifest(root, {"inputs": list(CLIPS.values())})
    (root / "single.overlay.mp4").write_bytes(b"not parquet")  # per-file outputs beside the partitions
    return root, results


def test_read_as_one_result(dataset):
    root, results = dataset
    res = read_results_dataset(root)
    assert len(res) == sum(len(r) for r in results.values())
    assert set(res.extra["video"]) == {k for k, r in results.items() if len(r)}
    assert res.meta["manifest"]["inputs"] == list(CLIPS.values())
    one = res.select(res.extra["video"] == "single face #1")
    np.testing.assert_array_equal(one.landmarks, results["single face #1"].landmarks)
    assert res.meta["sources"]["multi"]["frames_processed"] == 1


def test_filters_on_partition_and_columns(dataset):
    root, results = dataset
    multi = read_results_dataset(root, filters=[("video", "=", "multi")])
    assert len(multi) == len(results["multi"]) and set(multi.extra["video"]) == {"multi"}
    turned = read_results_dataset(root, filters=[("yaw_deg", ">", 10.0)])
    want = sum(int((r.yaw_deg > 10).sum()) for r in results.values())
    assert len(turned) == want and np.all(turned.yaw_deg > 10)
    df = read_results_dataset(root, columns=["video", "frame", "yaw_deg"], output="pandas")
    assert list(df.columns) == ["video", "frame", "yaw_deg"] and len(df) == sum(len(r) for r in results.values())


def test_other_tools_open_the_folder(dataset):
    import pyarrow.dataset as ds

    root, results = dataset
    t = ds.dataset(root, format="parquet", partitioning="hive", ignore_prefixes=[".", "_"],
                   exclude_invalid_files=True).to_table(columns=["video", "face_id"])
    assert t.num_rows == sum(len(r) for r in results.values())
    duckdb = pytest.importorskip("duckdb")
    rows = duckdb.sql(f"SELECT video, count(*) AS n FROM read_parquet('{root}/*/*.parquet', hive_partitioning=true) "
                      "GROUP BY video ORDER BY video").fetchall()
    assert rows == sorted((k, len(r)) for k, r in results.items() if len(r))


def test_missing_folder_is_an_input_error(tmp_path):
    from mien.errors import InputError

    with pytest.raises(InputError, match="no such results folder"):
        read_results_dataset(tmp_path / "nope")
    assert len(read_results_dataset(tmp_path)) == 0


def test_dataset_on_an_fsspec_url(analyzed):
    """Partitions and manifest on a URL (memory://) read back like a folder."""
    pytest.importorskip("fsspec")
    from mien.results.dataset import read_manifest

    url = "memory://mien-results-dataset-test"
    res = analyzed("samples/single_face.mp4")
    import fsspec

    fs = fsspec.filesystem("memory")
    with fs.open(partition_path(url, "a/b").split("://", 1)[1], "wb") as f:
        import pyarrow.parquet as pq

        pq.write_table(res.to_arrow(), f)
    write_manifest(url, {"inputs": ["x"]})
    assert read_manifest(url) == {"inputs": ["x"]}
    both = read_results_dataset(url, filters=[("video", "=", "a/b")])
    assert len(both) == len(res) and set(both.extra["video"]) == {"a/b"}
    np.testing.assert_array_equal(both.landmarks, res.landmarks)
    assert not [p for p in fs.ls("/mien-results-dataset-test", detail=False) if ".tmp-" in p]
