"""The app's tabs, one module each: ``TITLE`` (the tab's label) and ``build(ctx)`` (its components and
handlers, created inside ``gr.Tab(TITLE)``; handlers only call mien's Python API). :data:`TABS` is the order
shown; adding a capability is one module plus one entry here."""

from mien.app.tabs import analyze, datasets, face3d, live, tokens

TABS = (analyze, live, tokens, face3d, datasets)

__all__ = ["TABS"]
