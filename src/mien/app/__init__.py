"""``mien app``: a local Gradio web app over mien's Python API, one tab per capability (needs the ``app``
extra).

- :mod:`mien.app.main`: builds the Blocks from :data:`mien.app.tabs.TABS` and serves them, locked down.
- :mod:`mien.app.tabs`: one module per tab (``TITLE`` + ``build(ctx)``).
- :mod:`mien.app.safety`: upload checks by content, size and duration.
- :mod:`mien.app.files`: the app's temporary folder (uploads and results; removed on exit).
- :mod:`mien.app.jobs`: context, one-line errors, progress and cancellation shared by the tabs.
"""
