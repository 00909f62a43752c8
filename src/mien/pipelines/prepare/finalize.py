"""The dataset-level files of a prepared dataset, rebuilt from the per-video done markers: ``manifest.json``,
``index.parquet`` (columns from :mod:`mien.data.schema`) and ``report.json``."""

from __future__ import annotations

import dataclasses

from mien.data import schema, store
from mien.pipelines.prepare.options import PrepareOptions, PrepareReport


def finalize(output: str, sources: list[str], options: PrepareOptions, report: PrepareReport) -> dict:
    """Rebuild ``manifest.json``, ``index.parquet`` and ``report.json`` from the done markers of ``sources``.

    Manifest fields: schema_version, mien_version, created_utc, settings (:meth:`PrepareOptions.settings`),
    feature_extractors, members (:func:`mien.data.schema.manifest_members`), num_samples, num_videos,
    num_subjects, subjects (name → id), shards (:data:`mien.data.schema.SHARD_FIELDS` entries, sorted by name),
    au_names, and with ``au_labels`` an ``au_labels`` block. Index columns: :data:`mien.data.schema.INDEX_COLUMNS`.

    Returns:
        The manifest dict.
    """
    import datetime

    import pyarrow as pa
    import pyarrow.parquet as pq

    from mien._version import __version__
    from mien.data.audio import feature_versions

    fs, root = store.get_fs(output)
    markers = []
    for s in sources:
        p = store.join(root, "done", f"{store.video_key(s)}.json")
        if fs.exists(p):
            markers.append(store.read_json(fs, p))
    rows, shards, rejected, models = [], [], {}, {}
    report.ok, report.failed, report.no_au_labels = [], [], []
    au_names: list[str] = []
    for m in markers:
        for k, v in m["rejected"].items():
            rejected[k] = rejected.get(k, 0) + v
        if m["status"] == "ok":
            rows.extend(m["samples"])
            shards.extend(m["shards"])
            models = models or m.get("models", {})
            report.ok.append({"input": m["input"], "video_key": m["video_key"], "samples": len(m["samples"]),
                              "shards": [s["name"] for s in m["shards"]], "rejected": m["rejected"],
                              "has_audio": m["has_audio"], "has_au": m.get("has_au", False),
                              "seconds": m["seconds"]})
            if m.get("has_au"):
                au_names = au_names or list(m["au_names"])
            elif options.au_labels:
                report.no_au_labels.append(m["input"])
        else:
            report.failed.append({"input": m["input"], "reason": m["reason"]})
    rows.sort(key=lambda r: r["key"])
    shards.sort(key=lambda s: s["name"])
    report.samples = len(rows)
    report.rejected = dict(sorted(rejected.items()))
    subjects = {}
    for m in markers:
        subjects[m["subject"]] = m["subject_id"]
    manifest = {
        "schema_version": schema.SCHEMA_VERSION,
        "mien_version": __version__,
        "created_utc": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "settings": options.settings(),
        "feature_extractors": {
            "landmarks": {"scheme": "mediapipe478", "models": models},
            "alignment": {"method": "similarity from eye and mouth centres (mien.face.align)",
                          "crop_size": options.crop_size, "margin": options.margin,
                          "smooth_frames": options.smooth_frames},
            **feature_versions(),
        },
        "members": schema.manifest_members(options.egemaps),
        "num_samples": len(rows),
        "num_videos": sum(m["status"] == "ok" for m in markers),
        "num_subjects": len({r["subject_id"] for r in rows}),
        "subjects": dict(sorted(subjects.items(), key=lambda kv: kv[1])),
        "shards": shards,
        "au_names": au_names,
    }
    if options.au_labels:
        spath = store.join(root, "settings.json")
        manifest["au_labels"] = {
            "source": options.au_labels, "names": au_names,
            "sha256": store.read_json(fs, spath).get("au_labels_sha256") if fs.exists(spath) else None,
            "values": "FACS intensity 0-5 or 0/1 occurrence as in the CSV; blank/NaN/9 -> NaN",
            "join": "frame: the source frame shown; time_sec: nearest label within half a source frame",
            "labelled_samples": sum(bool(r.get("has_au")) for r in rows),
            "videos_without_labels": report.no_au_labels}
    store.write_json(fs, store.join(root, "manifest.json"), manifest)
    for r in rows:  # markers written before AU labels existed
        r.setdefault("has_au", False)
    pa_schema = schema.index_schema()
    table = pa.table({f.name: pa.array([r[f.name] for r in rows], type=f.type) for f in pa_schema}, schema=pa_schema)
    with store.atomic_target(fs, store.join(root, "index.parquet")) as tmp:
        pq.write_table(table, tmp)
    store.write_json(fs, store.join(root, "report.json"), dataclasses.asdict(report))
    return manifest
