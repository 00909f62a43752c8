"""LightningModules wrapping the pure models of :mod:`mien.models`: losses, schedules, metric logging.

Training only: importing a task imports Lightning (``pip install "mien[train]"``), and only ``mien.cli.train``
and ``mien.export`` import this package (analysis never does).

* :mod:`mien.tasks.au` — :class:`~mien.tasks.au.AUImageTask` (FaceFlow-style AU estimation from images) and
  :class:`~mien.tasks.au.AUFeaturesTask` (AUHead on per-face features, the default model's recipe), their
  DataModule, losses and augmentation;
* :mod:`mien.tasks.tokenizer` — :class:`~mien.tasks.tokenizer.TokenizerTask`,
  :class:`~mien.tasks.tokenizer.PredictorTask`, their losses and a small video DataModule;
* :mod:`mien.tasks.schedules` — the one warm-up + decay schedule (LR and loss weights) of all tasks.

Exports of trained checkpoints are in :mod:`mien.export` (``au``, ``tokenizer``).
"""
