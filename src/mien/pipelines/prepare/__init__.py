"""``mien prepare``: videos → selected clips → aligned face crops + features → WebDataset shards.

Modules, one job each: :mod:`.options` (PrepareOptions, PrepareReport, VideoJob), :mod:`.select` (pass 1:
track analysis, window selection), :mod:`.encode` (pass 2: crops, mp4, per-clip arrays), :mod:`.run`
(:func:`prepare`, per-video work, subjects; run by :mod:`mien.pipelines.executor`: in-process / process pool /
Ray) and :mod:`.finalize` (manifest, index, report). The shard schema lives in :mod:`mien.data.schema`.
"""

from mien.pipelines.prepare.finalize import finalize
from mien.pipelines.prepare.options import PrepareOptions, PrepareReport
from mien.pipelines.prepare.run import prepare

__all__ = ["PrepareOptions", "PrepareReport", "finalize", "prepare"]
