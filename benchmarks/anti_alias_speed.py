"""Preprocessing time with our anti-aliasing smoothing against MONAI's ``Resized(anti_aliasing=True)`` (issue 15).

    python -m benchmarks.anti_alias_speed --cohort /work/data/heldout/manifest.csv --sequence t2 --limit 5

Both pipelines are ``build_transforms("infer")``; the reference replaces :class:`transforms.AntiAliasSmoothd` +
``Resized(anti_aliasing=False)`` by MONAI's anti-aliased ``Resized`` (:func:`with_monai_anti_aliasing`). One
thread; per volume, repetitions alternate between the two pipelines (one warm-up round first); prints per
volume the median seconds of each, their ratio and the largest output difference, then the median ratio.
"""

from __future__ import annotations

import argparse
import csv
import time
from pathlib import Path

import numpy as np
import torch
from monai.transforms import Compose, Resized

from transforms import AntiAliasSmoothd, build_transforms


def with_monai_anti_aliasing(pipeline: Compose, image_key: str = "image") -> Compose:
    """``pipeline`` (from ``build_transforms``) with MONAI's ``Resized(anti_aliasing=True)`` for the image in place
    of ``AntiAliasSmoothd`` + ``Resized(anti_aliasing=False)``: the preprocessing before issue 15."""
    steps = list(pipeline.transforms)
    at = next(i for i, t in enumerate(steps) if isinstance(t, AntiAliasSmoothd))
    resized = steps[at + 1]
    if not isinstance(resized, Resized) or any(resized.anti_aliasing):
        raise ValueError("expected AntiAliasSmoothd followed by Resized(anti_aliasing=False)")
    steps[at:at + 2] = [Resized(resized.keys, spatial_size=resized.resizer.spatial_size, mode=resized.mode,
                                anti_aliasing=[k == image_key for k in resized.keys], allow_missing_keys=True)]
    return Compose(steps)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--cohort", required=True, help="manifest.csv (patient_id and one column per sequence)")
    p.add_argument("--sequence", default="t2")
    p.add_argument("--spatial_size", type=int, default=160)
    p.add_argument("--limit", type=int, default=5, help="first N patients only")
    p.add_argument("--repeats", type=int, default=15)
    args = p.parse_args(argv)
    torch.set_num_threads(1)
    ours = build_transforms("infer", spatial_size=args.spatial_size)
    pipelines = {"ours": ours, "monai": with_monai_anti_aliasing(ours)}
    manifest = Path(args.cohort)
    with manifest.open(newline="") as f:
        rows = list(csv.DictReader(f))[: args.limit]
    items = [{"patient_id": r["patient_id"], "image": str(manifest.parent / r[args.sequence])} for r in rows]
    ratios = []
    print("patient, file shape, ours s, MONAI s, MONAI / ours, max |difference|")
    for item in items:
        outputs = {name: pipe({"image": item["image"]})["image"] for name, pipe in pipelines.items()}  # warm-up
        times: dict[str, list[float]] = {name: [] for name in pipelines}
        for _ in range(args.repeats):
            for name, pipe in pipelines.items():
                start = time.perf_counter()
                pipe({"image": item["image"]})
                times[name].append(time.perf_counter() - start)
        ours_s, monai_s = float(np.median(times["ours"])), float(np.median(times["monai"]))
        ratios.append(monai_s / ours_s)
        diff = float((outputs["ours"] - outputs["monai"]).abs().max())
        shape = tuple(int(n) for n in outputs["ours"].meta.get("spatial_shape", ()))
        print(f"{item['patient_id']}, {shape}, {ours_s:.4f}, {monai_s:.4f}, "
              f"{monai_s / ours_s:.2f}, {diff:.1e}")
    print(f"median MONAI / ours over {len(ratios)} volumes: {np.median(ratios):.2f}x "
          f"(one thread, {args.repeats} interleaved repetitions each)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
