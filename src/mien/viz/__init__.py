"""Visualisation: overlay videos and time-series plots of analysis results."""

from mien.viz.overlay import draw_faces, render_overlay
from mien.viz.plots import plot_timeseries

__all__ = ["draw_faces", "plot_timeseries", "render_overlay"]
