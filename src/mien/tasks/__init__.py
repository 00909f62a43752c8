"""LightningModules wrapping the pure models of :mod:`mien.models`: losses, schedules, metric logging.

One module per family; importing a module imports Lightning (``pip install "mien[train]"``):

* :mod:`mien.tasks.tokenizer` — :class:`~mien.tasks.tokenizer.TokenizerTask` (expression tokenizer joint
  training), its schedule and losses, a temporary in-memory video DataModule and ``cli_main``.
"""
