"""Speed benchmarks of dmg-pipeline against its peers (MONAI, medpy); ``python -m benchmarks``, results in BENCHMARKS.md."""

from pipeline.cpu_threads import configure_process_threads

configure_process_threads()  # before torch starts: benchmarks run as dmg does (no OpenMP spinning)

from benchmarks.harness import SIZES, Config, main, run_all  # noqa: E402

__all__ = ["SIZES", "Config", "main", "run_all"]
