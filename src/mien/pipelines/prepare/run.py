"""Dataset preparation: videos → selected clips → aligned face crops + features → WebDataset shards.

Per source video (one unit of work, run in a worker process):

1. pass 1 decodes the video and runs the face mesh (:class:`~mien.pipelines.analyze.FrameAnalyzer`) on the
   source frames shown at the clip grid times ``t_k = k / fps`` (nearest previous presentation time, so
   clips are resampled to ``fps`` by presentation time);
2. candidate windows (see :mod:`mien.data.selection`) are checked — one tracked face (or the largest) in
   every frame, face size ≥ ``min_face`` px, detection confidence ≥ ``min_confidence`` — and every rejected
   window's reason is counted;
3. pass 2 decodes again and warps the frames of the chosen windows into square crops (similarity from eye
   and mouth centres, temporally smoothed: :mod:`mien.face.align`); audio is cut, encoded and featurised;
   with ``au_labels`` every clip frame gets the FACS Action Unit labels of the source frame it shows
   (:func:`mien.data.labels.au_csv.read_au_labels`) as ``au.npy``;
4. samples go to ``shards/<video key>-NNNN.tar`` (temporary name, renamed when complete), then the marker
   ``done/<video key>.json``. A restarted run skips videos with a marker and redoes the others from scratch,
   so a killed run ends with exactly the samples of an uninterrupted one.

``manifest.json``, ``index.parquet`` and ``report.json`` are rebuilt from the markers at the end
(:mod:`mien.pipelines.prepare.finalize`). Videos run in parallel through :mod:`mien.pipelines.executor`.
"""

from __future__ import annotations

import csv
import dataclasses
import os
import sys
import time
from pathlib import Path

from mien.data import schema, store
from mien.data.labels.au_csv import AULabels, match_au_labels, read_au_labels
from mien.data.selection import parse_transcript
from mien.data.shards import ShardWriter
from mien.errors import InputError
from mien.pipelines.executor import EXECUTORS, run_tasks
from mien.pipelines.prepare.encode import write_clips
from mien.pipelines.prepare.finalize import finalize
from mien.pipelines.prepare.options import PrepareOptions, PrepareReport, VideoJob
from mien.pipelines.prepare.select import analyse_grid, find_transcript, select_windows


def process_video(job: VideoJob) -> dict:
    """Prepare one source video into ``job.output`` (shards + done marker). Never raises for a bad input.

    Args:
        job: the video, its subject, the options and its AU labels (every clip then gets ``au.npy``) or None.

    Returns:
        The done-marker dict: status "ok" or "failed" (with reason), samples (index rows), shards,
        rejected (reason → count), source_seconds, seconds, has_au, au_names.
    """
    uri, vkey, opts = job.uri, job.vkey, job.options
    fs, root = store.get_fs(job.output)
    t0 = time.perf_counter()
    marker = schema.new_marker(uri, vkey, job.subject, job.subject_id, list(job.au.names) if job.au else None)
    group = ShardWriter(fs, root, vkey, opts.shard_samples)
    try:
        words = None
        if opts.mode == "keywords":
            tx = find_transcript(opts, uri)
            if tx is None:
                raise InputError(uri, f"no transcript <stem>.json/.vtt/.srt in {opts.transcripts}")
            try:
                words = parse_transcript(*tx)
            except (ValueError, KeyError, TypeError) as e:
                raise InputError(uri, f"unreadable transcript ({e})") from None
        with store.local_copy(uri) as path:
            track, extra = analyse_grid(path, opts)
            marker["models"] = extra["models"]
            marker["source_seconds"] = round(track.n / opts.fps, 3)
            if track.n == 0 or len(track.result) == 0:
                raise InputError(uri, "no face found")
            chosen, rejected, ncand = select_windows(track, opts, vkey, words)
            marker["rejected"], marker["candidates"] = rejected, ncand
            if not chosen:
                why = ", ".join(f"{k}: {v}" for k, v in sorted(rejected.items())) or "no candidate window"
                if opts.mode == "keywords" and ncand == 0:
                    why = "no keyword in the transcript"
                raise InputError(uri, f"no usable clip ({why})")
            y = None
            if opts.audio:
                from mien.data.audio import load_audio

                y = load_audio(path)
            marker["has_audio"] = y is not None
            au_tol = 0.5 / (getattr(extra["info"], "fps", None) or opts.fps)
            write_clips(path, job, track, chosen, y, group, marker, au_tol, extra.pop("frames"))
        marker["shards"] = group.close()
    except InputError as e:
        group.abort()
        marker.update(status="failed", reason=e.reason, samples=[], shards=[])
    except Exception as e:  # never fatal for the batch: report it
        group.abort()
        marker.update(status="failed", reason=f"{type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}"[:300],
                      samples=[], shards=[])
    marker["seconds"] = round(time.perf_counter() - t0, 3)
    store.write_json(fs, store.join(root, "done", f"{vkey}.json"), marker)
    return marker


def read_subjects(path: str) -> dict[str, str]:
    """``video,subject`` CSV → {video: subject}; video may be a URI, file name or stem."""
    fs, p = store.get_fs(path)
    with fs.open(p, "r", encoding="utf-8") as f:
        rows = list(csv.DictReader(f))
    if not rows or "video" not in rows[0] or "subject" not in rows[0]:
        raise InputError(path, "subjects CSV needs a header with columns video,subject")
    return {r["video"].strip(): r["subject"].strip() for r in rows}


def assign_subjects(sources: list[str], mapping: dict[str, str] | None) -> dict[str, tuple[str, int]]:
    """{source: (subject name, subject id)}; ids enumerate the sorted subject names (stable, no hash())."""
    names = {}
    for s in sources:
        name = None
        if mapping:
            base = s.split("://")[-1]
            for cand in (s, base, os.path.basename(base), Path(base).stem):
                if cand in mapping:
                    name = mapping[cand]
                    break
        names[s] = name if name is not None else Path(s.split("://")[-1]).stem
    ids = {n: i for i, n in enumerate(sorted(set(names.values())))}
    return {s: (n, ids[n]) for s, n in names.items()}


def prepare(inputs: list[str], output: str, options: PrepareOptions | None = None, workers: int = 1,
            overwrite: bool = False, progress: bool = False, log=None, executor: str = "local",
            ray_address: str | None = None, **kwargs) -> PrepareReport:
    """Prepare a clip dataset from videos (see the module docstring for the steps and the layout).

    Args:
        inputs: local files, folders, globs or fsspec URLs (globs allowed).
        output: dataset root, a local folder or an fsspec URL.
        options: :class:`PrepareOptions`; keyword arguments override its fields.
        workers: processes working on videos in parallel (1: in this process; memory:// stores always 1).
        overwrite: discard an existing dataset at ``output`` instead of resuming it.
        progress: show a progress bar (videos, clips, rejected windows, throughput) on stderr.
        log: called with one line per failed video.
        executor: "local" (processes on this machine) or "ray" (Ray tasks; ``ray_address`` names a cluster,
            default a local Ray with ``workers`` CPUs; inputs and output must then be reachable from every node).

    Returns:
        :class:`PrepareReport` (also written as ``report.json``).

    Raises:
        ValueError: bad options, no inputs, or ``output`` prepared with different settings (without overwrite;
            changed ``au_labels`` contents count as different settings).
        InputError: unreadable subjects file; unreadable or invalid AU labels (checked before anything is written).
    """
    options = dataclasses.replace(options or PrepareOptions(), **kwargs)
    if options.mode == "dyadic":
        from mien.pipelines.prepare.dyadic import prepare_dyadic

        return prepare_dyadic(list(inputs), output, options, overwrite=overwrite, log=log, progress=progress)
    if executor not in EXECUTORS:
        raise ValueError(f"executor must be local or ray, got {executor!r}")
    if options.egemaps:
        import importlib.util

        if importlib.util.find_spec("opensmile") is None:
            raise ValueError("--egemaps needs the optional opensmile package (pip install 'mien[audio]')")
    sources = store.expand_sources(list(inputs))
    if not sources:
        raise ValueError("no input videos")
    au_of: dict[str, AULabels | None] = {s: None for s in sources}
    settings = options.settings()
    if options.au_labels:
        labels, digest = read_au_labels(options.au_labels)
        au_of = match_au_labels(sources, labels, options.au_labels)
        settings["au_labels_sha256"] = digest
    fs, root = store.get_fs(output)
    settings_path = store.join(root, "settings.json")
    if overwrite and fs.exists(root):
        for sub in ("done", "shards"):
            if fs.exists(store.join(root, sub)):
                fs.rm(store.join(root, sub), recursive=True)
    if fs.exists(settings_path) and not overwrite:
        old = store.read_json(fs, settings_path)
        if old != store.json_roundtrip(settings):
            raise ValueError(f"{output}: already prepared with different settings (use --overwrite or a new folder)")
    fs.makedirs(store.join(root, "shards"), exist_ok=True)
    fs.makedirs(store.join(root, "done"), exist_ok=True)
    store.write_json(fs, settings_path, settings)
    store.remove_temporaries(fs, store.join(root, "shards"))
    store.remove_temporaries(fs, store.join(root, "done"))
    store.remove_temporaries(fs, root)

    subj = assign_subjects(sources, read_subjects(options.subjects) if options.subjects else None)
    keys = {s: store.video_key(s) for s in sources}
    done_names = {p.rsplit("/", 1)[-1] for p in fs.ls(store.join(root, "done"), detail=False)}
    todo = []
    for s in sources:
        if f"{keys[s]}.json" in done_names:
            continue
        for p in fs.glob(store.join(root, "shards", f"{keys[s]}-*.tar")):  # from a run killed mid-video
            fs.rm(p)
        todo.append((VideoJob(s, keys[s], subj[s][0], subj[s][1], options, output, au_of[s]),))
    report = PrepareReport(resumed=len(sources) - len(todo))
    t0 = time.perf_counter()
    bar = None
    if progress:
        from tqdm import tqdm

        bar = tqdm(total=len(sources), initial=report.resumed, unit="video", desc="prepare", file=sys.stderr,
                   dynamic_ncols=True)
    counts = {"clips": 0, "rejected": 0, "src": 0.0}

    def on_result(m: dict) -> None:
        counts["clips"] += len(m["samples"])
        counts["rejected"] += sum(m["rejected"].values())
        counts["src"] += m["source_seconds"]
        if m["status"] != "ok" and log is not None:
            log(f"{m['input']}: {m['reason']}")
        if bar is not None:
            el = time.perf_counter() - t0
            bar.set_postfix(clips=counts["clips"], rejected=counts["rejected"],
                            speed=f"{counts['src'] / el:.2f}x" if el > 0 else "-")
            bar.update(1)

    workers = max(1, int(workers))
    if fs.protocol in ("memory",) or (isinstance(fs.protocol, tuple) and "memory" in fs.protocol):
        workers = 1  # an in-memory store is private to this process
    try:
        run_tasks(process_video, todo, on_result, workers=workers, executor=executor, ray_address=ray_address)
    finally:
        if bar is not None:
            bar.close()
    report.wall_seconds = round(time.perf_counter() - t0, 3)
    report.source_seconds = round(counts["src"], 3)
    finalize(output, sources, options, report)
    return report




def repair(root: str, shard_names: list[str], workers: int = 1, progress: bool = False, log=None) -> PrepareReport:
    """Re-prepare the videos whose shards are damaged, with the dataset's own settings; the other videos are
    kept as they are, and the manifest and index are rebuilt.

    The manifest's shard entries name each shard's video, its done marker names the source (``input``) and
    the manifest's ``settings`` the options.

    Args:
        root: dataset root.
        shard_names: damaged shard file names (e.g. from :func:`mien.data.verify.verify_dataset`).
        workers, progress, log: as for :func:`prepare`.

    Returns:
        The :class:`PrepareReport` of the re-run.

    Raises:
        InputError: a damaged shard's source video (or its done marker) is not reachable any more; nothing has
            been changed then.
    """
    from mien.data.verify import shard_video

    fs, path = store.get_fs(root)
    manifest = store.read_json(fs, store.join(path, "manifest.json"))
    wanted = set(shard_names)
    videos = sorted({shard_video(s) for s in manifest["shards"] if s["name"] in wanted})
    markers = {}
    for p in fs.glob(store.join(path, "done", "*.json")):
        m = store.read_json(fs, p)
        markers[m["video_key"]] = (p, m)
    for v in videos:
        if v not in markers:
            raise InputError(root, f"no done marker for video {v}: cannot tell which source to re-prepare")
        src = markers[v][1]["input"]
        sfs, spath = store.get_fs(src)
        if not sfs.exists(spath):
            raise InputError(src, f"source video of {v} is not reachable; cannot repair its shards")
    fields = {f.name for f in dataclasses.fields(PrepareOptions)}
    options = PrepareOptions(**{k: v for k, v in manifest["settings"].items() if k in fields})
    for v in videos:
        fs.rm(markers[v][0])  # prepare() then redoes this video from scratch (its old shards are removed)
    sources = sorted(m["input"] for _, m in markers.values())
    return prepare(sources, root, options, workers=workers, progress=progress, log=log)
