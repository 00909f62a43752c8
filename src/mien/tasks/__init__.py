"""LightningModules wrapping the pure models of :mod:`mien.models`: losses, schedules, metric logging.

One module per family; importing a module imports Lightning (``pip install "mien[train]"``):

* :mod:`mien.tasks.tokenizer` — :class:`~mien.tasks.tokenizer.TokenizerTask` (expression tokenizer joint
  training), its schedule and losses, a temporary in-memory video DataModule and ``cli_main``.
* :mod:`mien.tasks.au` — :class:`~mien.tasks.au.AUTask` (FaceFlow-style AU estimation: timm or face-api
  backbones, occurrence/intensity heads, BCE/focal/distribution-balanced losses, FixMatch/DeFixMatch, MIRO),
  ONNX export and :func:`~mien.tasks.au.load_au_model` for ``mien analyze --au-model``.
"""
