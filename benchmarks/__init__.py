"""Speed benchmarks of dmg-pipeline against its peers (MONAI, medpy); ``python -m benchmarks``, results in BENCHMARKS.md."""

from benchmarks.harness import SIZES, Config, main, run_all

__all__ = ["SIZES", "Config", "main", "run_all"]
