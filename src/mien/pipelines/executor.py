"""One executor for independent tasks: in this process, a local process pool, or Ray tasks.

``run_tasks(fn, tasks, on_result, workers=…, executor=…)`` calls ``fn(*task)`` for every task and hands each
result to ``on_result`` in this process as soon as it is ready (completion order). At most ``max_in_flight``
tasks are submitted at a time (so millions of tasks, or tasks carrying data, do not pile up). Ctrl-C stops
cleanly: workers ignore SIGINT, the parent terminates the pool (or cancels the Ray tasks) and re-raises
``KeyboardInterrupt``. ``fn`` must be a module-level function and tasks/results picklable (spawned workers).
Shared by ``mien prepare`` and ``mien analyze --workers`` (one task per video).
"""

from __future__ import annotations

import os
import queue
import signal
from collections.abc import Callable, Iterable
from typing import Any

EXECUTORS = ("local", "ray")


class _Failed:
    def __init__(self, exc: BaseException):
        self.exc = exc


def worker_init(initializer: Callable[[], None] | None = None) -> None:
    """Start-up of every worker process: ignore SIGINT (the parent handles Ctrl-C), one OpenCV thread per
    process (no oversubscription), quiet native (glog/TFLite) logs, then ``initializer``."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    os.environ.setdefault("GLOG_minloglevel", "2")
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    try:
        import cv2

        cv2.setNumThreads(1)
    except ImportError:
        pass
    if initializer is not None:
        initializer()


def run_tasks(fn: Callable[..., Any], tasks: Iterable[tuple], on_result: Callable[[Any], None], *,
              workers: int = 1, executor: str = "local", ray_address: str | None = None,
              max_in_flight: int | None = None, initializer: Callable[[], None] | None = None) -> None:
    """Run ``fn(*task)`` for every task; ``on_result(result)`` is called in this process as results arrive.

    Args:
        fn: module-level function (picklable); an exception it raises stops the run and is re-raised here.
        tasks: argument tuples, consumed lazily.
        on_result: called with each result, in completion order.
        workers: parallel workers; 1 runs every task in this process, in order.
        executor: "local" (a spawn process pool on this machine) or "ray" (Ray tasks with one CPU each;
            ``ray_address`` names a cluster, default a local Ray with ``workers`` CPUs).
        max_in_flight: most tasks submitted and not yet returned (default 2 × workers).
        initializer: called once in every worker process (after :func:`worker_init`'s defaults).

    Raises:
        ValueError: unknown executor, or "ray" without the ray package.
        KeyboardInterrupt: Ctrl-C (workers are stopped first).
    """
    if executor not in EXECUTORS:
        raise ValueError(f"executor must be one of {', '.join(EXECUTORS)}, got {executor!r}")
    workers = max(1, int(workers))
    limit = max(1, max_in_flight or 2 * workers)
    if workers == 1:
        for t in tasks:
            on_result(fn(*t))
    elif executor == "ray":
        _run_ray(fn, tasks, on_result, workers, limit, ray_address, initializer)
    else:
        _run_pool(fn, tasks, on_result, workers, limit, initializer)


def _run_pool(fn, tasks, on_result, workers, limit, initializer) -> None:
    import multiprocessing as mp

    it = iter(tasks)
    first = next(it, None)
    if first is None:
        return
    second = next(it, None)
    if second is None:  # one task: no pool to start
        on_result(fn(*first))
        return
    pending = [first, second]
    done: queue.SimpleQueue = queue.SimpleQueue()
    n = min(workers, len(tasks)) if hasattr(tasks, "__len__") else workers
    # spawn: forking a process whose MediaPipe/BLAS threads already ran can deadlock the children
    with mp.get_context("spawn").Pool(n, initializer=worker_init, initargs=(initializer,)) as pool:
        def submit() -> bool:
            t = pending.pop(0) if pending else next(it, None)
            if t is None:
                return False
            pool.apply_async(fn, t, callback=done.put, error_callback=lambda e: done.put(_Failed(e)))
            return True

        in_flight = 0
        while in_flight < limit and submit():
            in_flight += 1
        while in_flight:
            while True:
                try:
                    r = done.get(timeout=0.2)  # a timeout keeps Ctrl-C responsive
                    break
                except queue.Empty:
                    continue
            in_flight -= 1
            if isinstance(r, _Failed):
                raise r.exc
            on_result(r)
            if submit():
                in_flight += 1
    # leaving the with block terminates the pool: on Ctrl-C or an error nothing keeps running


def _run_ray(fn, tasks, on_result, workers, limit, address, initializer) -> None:
    """Ray tasks with one CPU each. Tasks should be idempotent: Ray retries tasks of lost workers."""
    try:
        import ray
    except ImportError:
        raise ValueError("--executor ray needs the ray package (pip install ray)") from None
    started = False
    if not ray.is_initialized():
        if address:
            ray.init(address=address, log_to_driver=False)
        else:
            ray.init(num_cpus=workers, include_dashboard=False, log_to_driver=False)
        started = True
    pending: list = []
    try:
        remote = ray.remote(num_cpus=1)(_ray_call)
        it = iter(tasks)
        while True:
            while len(pending) < limit:
                t = next(it, None)
                if t is None:
                    break
                pending.append(remote.remote(fn, t, initializer))
            if not pending:
                break
            ready, pending = ray.wait(pending, num_returns=1)
            on_result(ray.get(ready[0]))
    except KeyboardInterrupt:
        for ref in pending:
            ray.cancel(ref, force=True)
        raise
    finally:
        if started:
            ray.shutdown()


_RAY_READY = False


def _ray_call(fn, args: tuple, initializer):
    global _RAY_READY
    if not _RAY_READY:
        worker_init(initializer)
        _RAY_READY = True
    return fn(*args)
