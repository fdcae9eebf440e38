"""Seconds per H3K27M co-training step of the 'full' network per base width and slice size (the speed half of
choosing a CPU size; issue 13).

One step = batch 8, forward, co-training loss, backward and an SGD step, one thread. One warm-up step, then 3
timed steps per configuration and round, configurations interleaved over 2 rounds; the median is reported and
the ratio to width 16 at 128x128.

    env OMP_NUM_THREADS=1 python -m benchmarks.h3k27m_speed_sweep [--widths 8,16,32] [--sizes 96,128,192]
"""

from __future__ import annotations

import argparse
import itertools
import json
import time

import torch


def step_seconds(widths: list[int], sizes: list[int], rounds: int = 2, steps: int = 3) -> dict[str, float]:
    from pipeline.engines.cotraining import CoTrainingObjective
    from pipeline.networks import build_h3k27m_net

    torch.manual_seed(0)
    loss_fn = CoTrainingObjective()
    configs = list(itertools.product(widths, sizes))
    nets = {c: build_h3k27m_net("full", base_width=c[0], img_size=c[1]) for c in configs}
    times: dict[tuple[int, int], list[float]] = {c: [] for c in configs}
    for round_ in range(rounds):
        for c in configs:
            net, size = nets[c], c[1]
            optimizer = torch.optim.SGD(net.parameters(), lr=0.01)
            x = torch.rand(8, 1, size, size)
            batch = {"status": torch.randint(0, 2, (8,)), "mask": (torch.rand(8, 1, size, size) > 0.9).float(),
                     "has_mask": torch.ones(8, dtype=torch.bool)}
            for i in range(steps + (1 if round_ == 0 else 0)):
                start = time.perf_counter()
                loss = loss_fn(net(x), batch)
                loss = loss[0] if isinstance(loss, tuple) else loss
                optimizer.zero_grad()
                loss.backward()
                optimizer.step()
                if not (round_ == 0 and i == 0):
                    times[c].append(time.perf_counter() - start)
    return {f"w{w}_s{s}": sorted(v)[len(v) // 2] for (w, s), v in times.items()}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--widths", default="8,16,32")
    parser.add_argument("--sizes", default="96,128,192")
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    medians = step_seconds([int(w) for w in args.widths.split(",")], [int(s) for s in args.sizes.split(",")])
    base = medians.get("w16_s128")
    print(json.dumps({k: {"s_per_step": round(v, 3), "relative_to_w16_s128": round(v / base, 2) if base else None}
                      for k, v in medians.items()}, indent=1))


if __name__ == "__main__":
    main()
