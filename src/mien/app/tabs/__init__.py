"""The app's tabs, one module each: ``TITLE`` (the tab's label) and ``build(ctx)`` (its components and
handlers, created inside ``gr.Tab(TITLE)``; handlers only call mien's Python API). :data:`TABS` is the order
shown; adding a capability is one module plus one entry here."""

from mien.app.tabs import analyze, datasets, face3d, live, reactions, reenact, tokens

TABS = (analyze, live, tokens, reenact, face3d, reactions, datasets)

__all__ = ["TABS"]
