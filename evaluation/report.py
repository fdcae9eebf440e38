"""Moved to :mod:`evaluation.reports.segmentation`; this alias is kept for one release (issue 17)."""

from evaluation.reports.segmentation import *  # noqa: F401,F403
from evaluation.reports.segmentation import __all__  # noqa: F401
