"""Markdown results and ablation tables from the ``dmg evaluate`` outputs of ``reproduce_cpu.sh evaluate``.

    python scripts/results_tables.py RUNS_DIR [--shipped t2=t2_MSCG_cont ...]

Reads ``RUNS_DIR/<run>/{validation,heldout}_report/summary.csv`` (whichever exist) and prints two
tables: the shipped MSCG models per sequence next to the paper's (run ``<sequence>_MSCG`` unless
``--shipped`` names another), and the T2 ablation (runs ``t2_<variant>``, one budget for all).
Cells: mean ± SD over patients (BraTS empty-case policy), HD95 as median [IQR] in mm.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import pandas as pd

SEQUENCES = ("t2", "flair", "t1c")
VARIANTS = ("MSCG", "MSCG-Dis", "SCG", "MCG", "MSG")
SETS = (("validation_report", "validation, fold 0 (centers A+B)"), ("heldout_report", "held-out center C"))
METRICS = ("dsc", "hd95", "jaccard", "sensitivity", "ppv")
HEADER = "| DSC | HD95 mm | Jaccard | sensitivity | PPV |"
# Deng et al. 2026, real patients: Dice training / external test, HD95 external test
PAPER = {"t1c": ("0.802", "0.750", "13.2"), "t2": ("0.916", "0.872", "6.3"), "flair": ("0.893", "0.862", "7.2")}


def _cells(summary: Path) -> tuple[int, list[str]] | None:
    if not summary.is_file():
        return None
    table = pd.read_csv(summary)
    rows = table[table["level"] == "overall"].set_index("metric")
    cells = []
    for metric in METRICS:
        r = rows.loc[metric]
        if metric == "hd95":
            cells.append(f"{r['median']:.1f} [{r['q1']:.1f}–{r['q3']:.1f}]")
        else:
            cells.append(f"{r['mean']:.3f} ± {r['sd']:.3f}")
    return int(rows.loc["dsc", "n_evaluated"]), cells


def results_table(runs: Path, shipped: dict[str, str] | None = None) -> list[str]:
    lines = ["| sequence | patients | n " + HEADER, "|---|---|---|---|---|---|---|---|"]
    for seq in SEQUENCES:
        run = (shipped or {}).get(seq, f"{seq}_MSCG")
        for folder, label in SETS:
            found = _cells(runs / run / folder / "summary.csv")
            if found:
                lines.append(f"| {seq.upper()} | ours, synthetic, `{run}`: {label} | {found[0]} | " + " | ".join(found[1]) + " |")
        train, test, hd95 = PAPER[seq]
        lines.append(f"| {seq.upper()} | paper, real patients: training / external test | — | {train} / {test} "
                     f"| {hd95} (test) | — | — | — |")
    return lines


def ablation_table(runs: Path, sequence: str = "t2") -> list[str]:
    lines = ["| variant | patients | n " + HEADER, "|---|---|---|---|---|---|---|---|"]
    for variant in VARIANTS:
        for folder, label in SETS:
            found = _cells(runs / f"{sequence}_{variant}" / folder / "summary.csv")
            if found:
                lines.append(f"| {variant} | {label} | {found[0]} | " + " | ".join(found[1]) + " |")
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("runs", type=Path, help="the RUNS folder of reproduce_cpu.sh")
    parser.add_argument("--shipped", nargs="*", default=[], metavar="SEQ=RUN",
                        help="the run each shipped model comes from (default <sequence>_MSCG)")
    args = parser.parse_args()
    shipped = dict(item.split("=", 1) for item in args.shipped)
    print("\n".join(["### Results of the shipped models", "", *results_table(args.runs, shipped), "", "### Ablation (T2)", "",
                     *ablation_table(args.runs)]))


if __name__ == "__main__":
    main()
