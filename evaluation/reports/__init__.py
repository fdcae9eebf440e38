"""The evaluation reports: files, figures and self-contained HTML pages.

* :mod:`~evaluation.reports.segmentation`: a cohort evaluation (``cases.csv``, ``summary.csv``/``.json``,
  box plots by center, best/median/worst overlays, ``report.html``);
* :mod:`~evaluation.reports.classification`: the H3K27M status report (metrics with CIs, ROC/PR curves,
  t-SNE, saliency pictures, ``report.html``);
* :mod:`~evaluation.reports.slice_figures`: the one slice/outline/saliency drawing helper (also used by the
  cohort previews of :mod:`pipeline.data.preview`);
* :mod:`~evaluation.reports.html`: HTML and PNG building blocks.

JSON values follow :mod:`evaluation.json_values` (NaN is ``null``).
"""

from evaluation.reports.classification import write_classification_report
from evaluation.reports.segmentation import write_outputs

__all__ = ["write_classification_report", "write_outputs"]
