"""Moved to :mod:`evaluation.reports.classification`; this alias is kept for one release (issue 17)."""

from evaluation.reports.classification import *  # noqa: F401,F403
from evaluation.reports.classification import __all__  # noqa: F401
