"""Datasets of face clips: shard schema, storage, clip selection, audio features and readers.

``ClipDataset`` (PyTorch, WebDataset pipeline) is imported lazily so that this package works without torch.
"""

from mien.data.schema import SCHEMA_VERSION

__all__ = ["SCHEMA_VERSION", "ClipDataset", "iter_samples", "open_dataset"]


def __getattr__(name):
    if name in ("ClipDataset", "iter_samples", "open_dataset", "shard_urls"):
        from mien.data import reader

        return getattr(reader, name)
    raise AttributeError(name)
