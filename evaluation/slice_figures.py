"""Moved to :mod:`evaluation.reports.slice_figures`; this alias is kept for one release (issue 17)."""

from evaluation.reports.slice_figures import *  # noqa: F401,F403
from evaluation.reports.slice_figures import __all__  # noqa: F401
