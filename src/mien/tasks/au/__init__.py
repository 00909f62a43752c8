"""AU training (Lightning; ``pip install "mien[train]"``): two tasks sharing :class:`AUTaskBase`.

* :class:`AUImageTask` (:mod:`~mien.tasks.au.image`) — FaceFlow-style AU estimation from face images: timm or
  face-api backbones, occurrence/intensity heads, FixMatch/DeFixMatch, MIRO (``mien train au fit --config tiny``
  / ``faceflow``); exported to ONNX by :func:`mien.export.au.export_au_onnx`.
* :class:`AUFeaturesTask` (:mod:`~mien.tasks.au.task`) — :class:`mien.models.au.head.AUHead` on per-face
  feature vectors, the recipe of the shipped default model (``--config default``); saved for ``mien analyze`` by
  :func:`mien.export.au.export_au_head`.
* :class:`AUDataModule` (:mod:`~mien.tasks.au.data`) — labelled data of :mod:`mien.data.au` split by subject.
* :mod:`~mien.tasks.au.losses`, :mod:`~mien.tasks.au.augment`, :mod:`~mien.tasks.au.config` (option groups).

``mien train au`` (:mod:`mien.cli.train`) builds the LightningCLI: the task class comes from the config
(``model.class_path``), ``model.au_names`` and ``model.image`` are linked from the data options
(:func:`add_cli_links`).
"""

from mien.data.labels.facs import output_au_names
from mien.tasks.au.config import (
    BackboneConfig,
    ImageInput,
    IntensityConfig,
    LossConfig,
    MIROConfig,
    OptimConfig,
    SSLConfig,
)
from mien.tasks.au.data import AUDataModule, FeatureOptions, LabelSource, SplitOptions, UnlabeledSource
from mien.tasks.au.image import AUImageTask
from mien.tasks.au.task import AUFeaturesTask, AUTaskBase

__all__ = [
    "AUDataModule",
    "AUFeaturesTask",
    "AUImageTask",
    "AUTaskBase",
    "BackboneConfig",
    "FeatureOptions",
    "ImageInput",
    "IntensityConfig",
    "LabelSource",
    "LossConfig",
    "MIROConfig",
    "OptimConfig",
    "SSLConfig",
    "SplitOptions",
    "UnlabeledSource",
    "add_cli_links",
]


def add_cli_links(parser) -> None:
    """LightningCLI links of ``mien train au``: ``model.au_names`` from ``data.labels.au_names`` (side-merged
    with ``data.labels.merge_sides``) and, for :class:`AUImageTask`, ``model.image`` from ``data.image`` — so
    they cannot be set apart (a link whose target the chosen task lacks is skipped)."""
    parser.link_arguments(("data.labels.au_names", "data.labels.merge_sides"), "model.init_args.au_names",
                          compute_fn=lambda names, merge: output_au_names(names or [], merge))
    parser.link_arguments("data.image", "model.init_args.image")
