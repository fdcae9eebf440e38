"""Cohorts: loading and validating real cohorts, and the synthetic DMG cohort generator."""

from .cohort import (
    SEQUENCES,
    Cohort,
    CohortError,
    CohortIssue,
    load_cohort,
    read_brats_folder,
    read_datalist,
    read_manifest,
    validate_case,
)

__all__ = [
    "SEQUENCES",
    "Cohort",
    "CohortError",
    "CohortIssue",
    "load_cohort",
    "read_brats_folder",
    "read_datalist",
    "read_manifest",
    "validate_case",
]
