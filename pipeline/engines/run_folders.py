"""Where a training run writes: ``<bundle_root>/runs/<name>_fold<fold>``, named in one place for every bundle.

A run folder holds the run's checkpoints, TensorBoard logs and its ``model.pt``; ``dmg bundle pack`` leaves
``runs/`` out. A config declares it as a component::

    "output_dir": {"_target_": "pipeline.engines.run_folders.run_folder", "bundle_root": "@bundle_root",
                   "name": ["@sequence", "@variant", "@stage"], "fold": "@fold"}
"""

from __future__ import annotations

import os
from collections.abc import Sequence

__all__ = ["RUNS_FOLDER", "run_folder"]

RUNS_FOLDER = "runs"


def run_folder(bundle_root: str | os.PathLike, name: str | Sequence[str], fold: int) -> str:
    """``<bundle_root>/runs/<name>_fold<fold>``; a list ``name`` is joined with ``_``
    (``["t2", "MSCG", "finetune"]``, fold 0 -> ``runs/t2_MSCG_finetune_fold0``)."""
    parts = [name] if isinstance(name, str) else list(name)
    if not parts or not all(str(p) for p in parts):
        raise ValueError(f"a run needs a non-empty name, got {name!r}")
    return f"{os.fspath(bundle_root)}/{RUNS_FOLDER}/{'_'.join(str(p) for p in parts)}_fold{int(fold)}"
