"""Figures of search runs (quality-cost trade-off, search progress); `python -m automoe.plot`
redraws them from run folders."""

from automoe.plot.figures import load_run, plot_progress, plot_tradeoff

__all__ = ["load_run", "plot_progress", "plot_tradeoff"]
