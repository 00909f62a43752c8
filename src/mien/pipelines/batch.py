"""``mien analyze`` over many inputs: parallel workers (processes or Ray), one results dataset, resumable.

:func:`analyze_files` runs :func:`mien.pipelines.analyze.analyze` once per input through the shared executor
(:mod:`mien.pipelines.executor`) and writes each input's outputs (:func:`write_outputs`) into one folder or
fsspec URL: the Hive-partitioned results dataset of :mod:`mien.results.dataset` plus per-file CSVs, overlays
and plots (paths from :func:`output_paths`).
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import numpy as np

from mien.io.video import open_source
from mien.pipelines.analyze import AnalyzeOptions, Step, StepCallback, analyze
from mien.results.result import AnalysisResult

__all__ = ["BatchReport", "analyze_files", "output_keys", "output_paths", "write_outputs"]

FORMAT_SUFFIX = {"parquet": ".parquet", "csv": ".csv", "openface": ".openface.csv"}
EXECUTORS = ("local", "ray")
# options that change how fast a run is, not what it outputs: a resumed run may change them
_SPEED_OPTIONS = ("progress", "threads", "batch_size")


@dataclass
class BatchReport:
    """Outcome of :func:`analyze_files` (written as ``report.json``).

    Attributes:
        ok: one dict per analysed input: input, video (dataset key), outputs (paths), rows, faces, frames,
            corrupt_frames, seconds (wall time of its worker).
        skipped: inputs whose outputs already existed (resumed run), with their outputs.
        failed: one dict per bad input: input, video, reason.
        frames, seconds: totals over analysed inputs (seconds summed over workers).
        wall_seconds: wall time of the whole run; workers, executor: how it ran.
    """

    ok: list[dict] = dataclasses.field(default_factory=list)
    skipped: list[dict] = dataclasses.field(default_factory=list)
    failed: list[dict] = dataclasses.field(default_factory=list)
    frames: int = 0
    seconds: float = 0.0
    wall_seconds: float = 0.0
    workers: int = 1
    executor: str = "local"

    def to_json(self) -> str:
        import json

        return json.dumps(dataclasses.asdict(self), indent=2)


def output_keys(inputs: list[str]) -> list[str]:
    """Dataset key (``video=<key>`` partition, file stem) of each input, unique within ``inputs``: its file
    stem; a stem shared by several inputs gets its parent folder's name prepended (``<parent>_<stem>``), then,
    if still shared, its suffix appended (``<parent>_<stem>_mp4``), then a counter."""
    from collections import Counter
    from pathlib import PurePosixPath

    paths = [PurePosixPath(s.split("://")[-1].replace(":", "").replace(os.sep, "/")) for s in inputs]
    keys = [p.stem for p in paths]
    for widen in (lambda k, p: f"{p.parent.name}_{k}", lambda k, p: f"{k}_{p.suffix.lstrip('.')}"):
        dup = Counter(keys)
        keys = [widen(k, p) if dup[k] > 1 else k for k, p in zip(keys, paths, strict=True)]
    seen: Counter = Counter()
    out = []
    for k in keys:
        seen[k] += 1
        out.append(k if seen[k] == 1 else f"{k}-{seen[k]}")
    return out


def output_paths(inputs: list[str], out_dir: str | os.PathLike, formats: tuple[str, ...], overlay: bool,
                 plot: bool) -> list[dict[str, str]]:
    """Output file paths per input (keys from :func:`output_keys`).

    ``parquet`` is the input's partition of the results dataset, ``<out>/video=<key>/part-0.parquet``
    (:func:`mien.results.dataset.partition_path`); the other outputs are files ``<out>/<key><suffix>``:
    ``.csv``, ``.openface.csv``, ``.overlay.mp4`` (``.overlay.png`` for an image), ``.plot.png``.
    ``out_dir`` may be an fsspec URL (``s3://bucket/out``, ``memory://out``).
    """
    from mien.results.dataset import partition_path

    out_dir = os.fspath(out_dir)
    out = []
    for s, key in zip(inputs, output_keys(inputs), strict=True):
        d = {f: partition_path(out_dir, key) if f == "parquet" else _join(out_dir, f"{key}{FORMAT_SUFFIX[f]}")
             for f in formats}
        if overlay:
            d["overlay"] = _join(out_dir, f"{key}.overlay.png" if _is_image(s) else f"{key}.overlay.mp4")
        if plot:
            d["plot"] = _join(out_dir, f"{key}.plot.png")
        out.append(d)
    return out


def write_outputs(result: AnalysisResult, source: str, outputs: dict[str, str]) -> None:
    """Write each requested output of one analysed source, each atomically, the Parquet partition last (its
    presence marks the input done). Paths may be fsspec URLs (written locally, then uploaded and renamed)."""
    from mien.viz import plot_timeseries, render_overlay

    for kind in sorted(outputs, key=lambda k: k == "parquet"):
        with _local_target(outputs[kind]) as path:
            if kind == "parquet":
                result.to_parquet(path)
            elif kind == "csv":
                result.to_csv(path)
            elif kind == "openface":
                result.to_openface(path)
            elif kind == "plot":
                plot_timeseries(result, path)
            elif kind == "overlay" and result.meta.get("source_kind") == "video":
                render_overlay(source, result, path)
            elif kind == "overlay":  # images: the annotated image as PNG next to the video overlays
                import PIL.Image

                from mien.io.atomic import atomic_output
                from mien.viz import draw_faces

                img = next(iter(open_source(source))).image
                with atomic_output(os.path.splitext(path)[0] + ".png") as tmp:
                    PIL.Image.fromarray(draw_faces(img, result, np.arange(len(result)))).save(tmp, format="PNG")


def analyze_files(inputs: list[str], out_dir: str | os.PathLike, options: AnalyzeOptions | None = None,
                  formats: tuple[str, ...] = ("parquet",), overlay: bool = True, plot: bool = True,
                  overwrite: bool = False, log: Callable[[str], None] | None = None, *, workers: int = 1,
                  executor: str = "local", ray_address: str | None = None,
                  on_frame: Callable | None = None) -> BatchReport:
    """Analyse many inputs into the results dataset ``out_dir``; bad inputs are skipped and reported.

    Layout (see :mod:`mien.results.dataset`): ``video=<key>/part-0.parquet`` per input (the
    :class:`AnalysisResult` Parquet file; ``<key>`` from :func:`output_keys`), ``_manifest.json`` (inputs and
    their status, options, model names and hashes, mien version), ``report.json`` (this run), and the per-file
    outputs ``<key>.csv``, ``.openface.csv``, ``.overlay.mp4``/``.png``, ``.plot.png``.

    One task per input runs through :func:`mien.pipelines.executor.run_tasks` (in this process, a spawn
    process pool or Ray); a worker holds one video's result at a time (frames are streamed) and writes its
    outputs itself, so only small summaries come back. Each output is written atomically, the partition last,
    so a killed batch restarted with the same arguments redoes only the inputs whose outputs are not all there
    (unless ``overwrite``); temporary files of killed writes are removed first. With ``options.progress`` one
    bar counts frames (estimated from each container) and videos over all inputs.

    Args:
        inputs: media files (already expanded, see :func:`mien.io.video.expand_inputs`), local or fsspec URLs.
        out_dir: output folder or fsspec URL (created). A memory:// URL runs in this process (workers = 1).
        formats: any of "parquet", "csv", "openface".
        overlay: write ``<key>.overlay.mp4`` (``.overlay.png`` for images).
        plot: write ``<key>.plot.png``.
        log: called with one line per failed input.
        workers: parallel workers (1: in this process).
        executor: "local" (processes) or "ray" (Ray tasks; ``ray_address`` joins a cluster, default a local
            Ray with ``workers`` CPUs; inputs and ``out_dir`` must then be reachable from every node).
        on_frame: ``on_frame(frame, step)`` per processed frame of every input (:func:`mien.analyze`'s contract;
            in-process runs only, ``workers`` = 1), ``step`` a :class:`~mien.pipelines.analyze.Step` naming the
            input (``name``: the input as given, ``index``: its position in ``inputs``, ``count``: the number of
            inputs; inputs done before are skipped, the others run in order); True ends that input's analysis at
            the frame; an exception it raises (a cancelled job) stops the batch.

    Returns:
        :class:`BatchReport`.

    Raises:
        ValueError: unknown format or executor; ``out_dir`` holds a dataset analysed with other options
            (without ``overwrite``).
        KeyboardInterrupt: Ctrl-C (workers are stopped; finished inputs stay done).
    """
    from mien.pipelines.executor import run_tasks
    from mien.results import dataset

    options = options or AnalyzeOptions()
    unknown = set(formats) - set(FORMAT_SUFFIX)
    if unknown:
        raise ValueError(f"unknown output format(s) {sorted(unknown)}; choose from {sorted(FORMAT_SUFFIX)}")
    if executor not in EXECUTORS:
        raise ValueError(f"executor must be one of {', '.join(EXECUTORS)}, got {executor!r}")
    if on_frame is not None and int(workers) > 1:
        raise ValueError("on_frame needs an in-process run (workers = 1)")
    out_dir = os.fspath(out_dir)
    if out_dir.startswith("memory://"):
        workers = 1  # an in-memory store is private to this process
    _prepare_folder(out_dir)
    settings = _settings(options)
    manifest = dataset.read_manifest(out_dir)
    if manifest.get("options") not in (None, settings) and not overwrite:
        raise ValueError(f"{out_dir}: already analysed with other options (use --overwrite or a new folder)")
    report = BatchReport(workers=max(1, int(workers)), executor=executor)
    keys = output_keys(inputs)
    todo = []
    for src, key, outs in zip(inputs, keys, output_paths(inputs, out_dir, formats, overlay, plot), strict=True):
        if not overwrite and all(_exists(p) for p in outs.values()):
            report.skipped.append({"input": src, "video": key, "outputs": outs})
        else:
            todo.append((src, key, outs))
    estimate = {src: _frame_estimate(src, options) for src, _, _ in todo} if options.progress or workers > 1 else {}
    if report.workers > 1:  # longest first: no long video left running alone at the end
        todo.sort(key=lambda t: -estimate[t[0]])
    bar = _progress_bar(estimate, len(inputs), len(report.skipped)) if options.progress else None
    worker_opts = dataclasses.replace(options, progress=False)
    seen = [0]  # frames counted by the per-frame hook (in-process runs)

    def hook(frame, step: Step) -> bool | None:
        if bar is not None:
            seen[0] += 1
            bar.update(1)
        return on_frame(frame, step) if on_frame is not None else None

    models: dict = {}

    def on_result(r: dict) -> None:
        if r["status"] == "ok":
            models.update(r.pop("models"))
            report.ok.append(r)
            report.frames += r["frames"]
            report.seconds += r["seconds"]
        else:
            report.failed.append(r)
            if log is not None:
                log(r["message"])
        if bar is not None:
            bar.set_postfix(videos=f"{len(report.ok) + len(report.failed) + len(report.skipped)}/{len(inputs)}",
                            failed=len(report.failed), refresh=False)
            bar.update(max(estimate.get(r["input"], 0) - seen[0], 0))
            bar.refresh()
            seen[0] = 0

    manifest = _write_manifest(out_dir, manifest, settings, {}, formats, report, pending=todo)
    use_hook = report.workers == 1 and (bar is not None or on_frame is not None)
    position = {key: i for i, key in enumerate(keys)}
    tasks = ((src, key, outs, worker_opts, StepCallback(hook, Step(src, position[key], len(inputs))) if use_hook
              else None) for src, key, outs in todo)
    t0 = time.perf_counter()
    try:
        run_tasks(_analyze_task, tasks, on_result, workers=min(report.workers, max(len(todo), 1)),
                  executor=executor, ray_address=ray_address)
    except BaseException:  # stopped or interrupted: best effort, the inputs whose results arrived say "ok"/"failed",
        # the rest (and any whose result was still in flight, or that crashed) stay "pending"; a failing write must
        # not replace the original exception
        with contextlib.suppress(Exception):
            _write_manifest(out_dir, manifest, settings, models, formats, report)
        raise
    finally:
        if bar is not None:
            bar.close()
    report.wall_seconds = round(time.perf_counter() - t0, 3)
    report.seconds = round(report.seconds, 3)
    _write_manifest(out_dir, manifest, settings, models, formats, report)
    with _local_target(_join(out_dir, "report.json")) as tmp:
        from mien.io.atomic import atomic_output

        with atomic_output(tmp) as t:
            t.write_text(report.to_json())
    return report


def _analyze_task(src: str, key: str, outs: dict[str, str], options: AnalyzeOptions,
                  on_frame: Callable | None = None) -> dict:
    """One input of :func:`analyze_files` (runs in a worker): analyse, write its outputs, return a summary.
    A bad input (:class:`~mien.errors.InputError`) gives status "failed" with its reason, never an exception."""
    from mien.errors import InputError

    t0 = time.perf_counter()
    try:
        with _local_source(src) as path:
            res = analyze(path, options, on_frame=on_frame)
            write_outputs(res, path, outs)
    except InputError as e:
        return {"input": src, "video": key, "status": "failed", "reason": e.reason, "message": str(e)}
    n = int(res.meta["frames_processed"])
    return {"input": src, "video": key, "status": "ok", "outputs": outs, "rows": len(res),
            "faces": int(len(np.unique(res.face_id))), "frames": n,
            "corrupt_frames": int(res.meta["corrupt_frames"]), "seconds": round(time.perf_counter() - t0, 3),
            "models": res.meta.get("models", {})}


def _settings(options: AnalyzeOptions) -> dict:
    """The options that define a results dataset (as they read back from JSON)."""
    import json

    d = {k: v for k, v in dataclasses.asdict(options).items() if k not in _SPEED_OPTIONS}
    return json.loads(json.dumps(d))


def _write_manifest(out_dir: str, old: dict, settings: dict, models: dict, formats: tuple[str, ...],
                    report: BatchReport, pending: list[tuple] = ()) -> dict:
    """``_manifest.json``: the previous run's entries updated by this run's (keyed by video); ``pending``
    (input, key, outputs) entries get status "pending" (written before the run, so that a killed run's folder
    names its options and what it was doing)."""
    from mien._version import __version__
    from mien.results import dataset

    entries = {e["video"]: e for e in old.get("inputs", []) if "video" in e}
    for src, key, _ in pending:
        entries[key] = {"video": key, "input": src, "status": "pending"}
    for r in report.skipped:  # done by an earlier run (perhaps one killed before it could say so)
        if entries.get(r["video"], {}).get("status") != "ok":
            entries[r["video"]] = {"video": r["video"], "input": r["input"], "status": "ok"}
    for r in report.ok:
        entries[r["video"]] = {"video": r["video"], "input": r["input"], "status": "ok", "rows": r["rows"],
                               "frames": r["frames"], "faces": r["faces"]}
    for r in report.failed:
        entries[r["video"]] = {"video": r["video"], "input": r["input"], "status": "failed", "reason": r["reason"]}
    manifest = {
        "layout": f"hive: {dataset.PARTITION_KEY}=<key>/{dataset.PART}",
        "mien_version": __version__,
        "options": settings,
        "models": models or old.get("models", {}),
        "formats": sorted(set(formats) | set(old.get("formats", []))),
        "inputs": [entries[k] for k in sorted(entries)],
    }
    dataset.write_manifest(out_dir, manifest)
    return manifest


def _progress_bar(estimate: dict[str, int], n_inputs: int, n_done: int):
    """One tqdm bar (stderr) over the estimated frames of every input still to do, with videos done/total."""
    import sys

    from tqdm import tqdm

    bar = tqdm(total=sum(estimate.values()), unit="frame", desc="analyze", file=sys.stderr, dynamic_ncols=True,
               unit_scale=True)
    bar.set_postfix(videos=f"{n_done}/{n_inputs}", failed=0)
    return bar


def _frame_estimate(src: str, options: AnalyzeOptions) -> int:
    """Frames :func:`analyze` will process, from the container's duration and rate (1 for an image, 0 when
    unknown or unreadable)."""
    if _is_image(src):
        return 1
    if "://" in src:
        return 0
    try:
        info = open_source(src).info
    except Exception:  # a bad input is reported by its task
        return 0
    if not (info.duration_sec and info.fps):
        return 0
    span = (options.end if options.end is not None else info.duration_sec) - (options.start or 0.0)
    return max(int(span * info.fps / options.every), 1)


def _join(root: str, name: str) -> str:
    return f"{root.rstrip('/')}/{name}" if "://" in root else os.path.join(root, name)


def _exists(path: str) -> bool:
    if "://" not in path:
        return os.path.exists(path)
    from mien.data import store

    fs, p = store.get_fs(path)
    return fs.exists(p)


def _prepare_folder(out_dir: str) -> None:
    """Create ``out_dir``; remove temporary files left by killed writes (and partition folders left empty)."""
    if "://" in out_dir:
        from mien.data import store

        fs, root = store.get_fs(out_dir)
        fs.makedirs(root, exist_ok=True)
        store.remove_temporaries(fs, root)
        for d in fs.glob(store.join(root, "video=*")):
            store.remove_temporaries(fs, d)
        return
    import glob
    import shutil

    os.makedirs(out_dir, exist_ok=True)
    root = glob.escape(out_dir)
    for p in glob.glob(os.path.join(root, ".*.tmp*")) + glob.glob(os.path.join(root, "video=*", ".*.tmp*")):
        if os.path.isfile(p):
            os.unlink(p)
    for d in glob.glob(os.path.join(root, "video=*")):
        if os.path.isdir(d) and not os.listdir(d):
            shutil.rmtree(d)


@contextlib.contextmanager
def _local_target(path: str) -> Iterator[str]:
    """A local path to write ``path`` to: itself when local (the writers are atomic), else a temporary file
    with the same name that is uploaded to the URL and renamed there when complete (needs fsspec)."""
    if "://" not in path:
        yield path
        return
    from mien.data import store

    fs, p = store.get_fs(path)
    with store.atomic_target(fs, p) as tmp:
        yield tmp


@contextlib.contextmanager
def _local_source(src: str) -> Iterator[str]:
    """A local path of ``src``: itself, or a temporary download of an fsspec URL."""
    if "://" not in src:
        yield src
        return
    from mien.data import store

    with store.local_copy(src) as path:
        yield path


def _is_image(path: str) -> bool:
    from mien.io.video import IMAGE_SUFFIXES

    return os.path.splitext(path)[1].lower() in IMAGE_SUFFIXES
