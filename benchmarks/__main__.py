import sys

from pipeline.cpu_threads import configure_process_threads

configure_process_threads()  # before torch starts: the benchmark runs as dmg does (no OpenMP spinning)

from benchmarks.harness import main  # noqa: E402

sys.exit(main())
