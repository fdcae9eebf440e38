"""Moved to :mod:`evaluation.reports.html`; this alias is kept for one release (issue 17)."""

from evaluation.reports.html import *  # noqa: F401,F403
from evaluation.reports.html import __all__  # noqa: F401
