"""Network only, per slice: ONNX Runtime vs PyTorch vs the plain MONAI ``SliceInferer``, at two widths, quiet and
beside one competing CPU-bound process.

The same random-weight MSCG generator (seed 0) runs a stack of slices three ways: ONNX Runtime
(:class:`pipeline.inference.onnx_runtime.OnnxNetwork`, no spinning), our PyTorch slice loop
(``SegmentationModel.logits`` path: one slice per pass under ``inference_mode``) and MONAI's
``SliceInferer``. Reported: seconds per slice (median, IQR), GFLOP/s and the fraction of the measured fp32
matmul limit, and the largest ONNX-vs-PyTorch logit difference.
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
from pathlib import Path

import torch

from benchmarks.harness import interleaved, slice_flops, stats

__all__ = ["bench_runtimes", "competing_process"]


def competing_process() -> subprocess.Popen:
    """One CPU-bound process (a pure-Python busy loop) that holds one core until killed."""
    return subprocess.Popen([sys.executable, "-c", "while True: pass"])


def _widths(cfg) -> dict[str, tuple[list[int], int]]:
    from benchmarks.harness import BUNDLE
    from pipeline.networks.mscg_generator import PAPER_FEATURES

    if cfg.name == "smoke":
        return {"smoke (4-8-16, 32²)": ([4, 8, 16], 32)}
    import json

    config = json.loads((BUNDLE / "configs" / "inference.json").read_text())
    shipped = (list(config["features"]), int(config["spatial_size"]))
    return {f"shipped ({'-'.join(map(str, shipped[0]))}, {shipped[1]}²)": shipped,
            f"paper ({'-'.join(map(str, PAPER_FEATURES))}, 240²)": (list(PAPER_FEATURES), 240)}


def bench_runtimes(cfg) -> dict:
    from monai.inferers import SliceInferer

    from pipeline.inference.onnx_export import export_onnx
    from pipeline.inference.onnx_runtime import OnnxNetwork
    from pipeline.networks import build_generator

    slices = 2 if cfg.name == "smoke" else cfg.runtime_slices
    out: dict = {}
    with tempfile.TemporaryDirectory(prefix="dmg_bench_rt_") as tmp:
        for width, (features, size) in _widths(cfg).items():
            torch.manual_seed(0)
            net = build_generator("MSCG", features=features).eval()
            path = export_onnx(net, Path(tmp) / f"{size}.onnx", size)
            onnx_net = OnnxNetwork(path, "cpu", threads=torch.get_num_threads())
            volume = torch.rand(1, 1, size, size, slices, generator=torch.Generator().manual_seed(1))
            stack = volume[0].permute(3, 0, 1, 2).contiguous()  # (D, 1, H, W)
            inferer = SliceInferer(roi_size=(size, size), sw_batch_size=1, spatial_dim=2, progress=False)

            def pytorch() -> torch.Tensor:
                with torch.inference_mode():
                    return torch.cat([net(stack[i:i + 1]) for i in range(slices)])

            def onnx() -> torch.Tensor:
                return torch.cat([onnx_net(stack[i:i + 1]) for i in range(slices)])

            def plain() -> torch.Tensor:
                with torch.no_grad():
                    return inferer(volume, net)

            variants = {"ONNX Runtime": onnx, "PyTorch (ours)": pytorch, "plain MONAI SliceInferer": plain}
            diff = float((onnx() - pytorch()).abs().max())
            quiet = interleaved(variants, cfg.infer_reps)
            competitor = competing_process()
            try:
                loaded = interleaved(variants, cfg.infer_reps)
            finally:
                competitor.kill()
                competitor.wait()
            out[width] = {"loadavg": os.getloadavg()[0], "quiet": {k: [t / slices for t in v] for k, v in quiet.items()},
                          "loaded": {k: [t / slices for t in v] for k, v in loaded.items()},
                          "flops": slice_flops(net, size), "max_logit_diff": diff, "slices": slices}
    return out


def render_runtimes(res: dict, fp32: float | None) -> list[str]:
    lines = ["## Runtimes, network only (seconds per slice)", "",
             "Same random-weight generator; one slice per pass; quiet = no process of ours competing (the "
             "session's background load still runs), loaded = plus one busy-loop process. Ratios are within one "
             "interleaved measurement.", "",
             "| width | runtime | quiet s/slice | loaded s/slice | loaded / quiet | × plain MONAI (quiet) | "
             "× plain MONAI (loaded) | GFLOP/s (quiet) | of fp32 limit |", "|---|---|---|---|---|---|---|---|---|"]
    for width, row in res.items():
        plain_q = stats(row["quiet"]["plain MONAI SliceInferer"])[0]
        plain_l = stats(row["loaded"]["plain MONAI SliceInferer"])[0]
        for name in row["quiet"]:
            q, qi = stats(row["quiet"][name])
            ld, li = stats(row["loaded"][name])
            rate = row["flops"] / q / 1e9
            frac = f"{rate / fp32:.0%}" if fp32 else "—"
            lines.append(f"| {width} | {name} | {q:.3g} ± {qi:.2g} | {ld:.3g} ± {li:.2g} | {ld / q:.2f} | "
                         f"{plain_q / q:.2f} | {plain_l / ld:.2f} | {rate:.1f} | {frac} |")
        lines.append(f"| {width} | ONNX vs PyTorch | max logit difference {row['max_logit_diff']:.1e} "
                     f"({row['slices']} slices) | machine load average {row['loadavg']:.1f} | | | | "
                     f"{row['flops'] / 1e9:.2f} GFLOP/slice | |")
    lines.append("")
    return lines
