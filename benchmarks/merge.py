"""Keep the sections of an earlier BENCHMARKS.md whose parts were not run this time (``--only``).

A part's sections are found by heading (``## Evaluation ...``) and its target bullets by their first
words (``* Evaluation ...`` with their indented continuation lines). The kept text is marked as such.
"""

from __future__ import annotations

__all__ = ["PART_SECTIONS", "merge_unmeasured"]

PART_SECTIONS: dict[str, tuple[tuple[str, ...], tuple[str, ...]]] = {
    # part: (section heading prefixes, target bullet prefixes)
    "hardware": (("## Hardware limit",), ()),
    "evaluation": (("## Evaluation",), ("* Evaluation",)),
    "training": (("## Training step",), ("* GAN step",)),
    "inference": (("## Inference", "## What the numbers decide"), ("* Inference",)),
    "runtimes": (("## Runtimes",), ("* Network ≥50%",)),
    "cohort": (("## End to end",), ("* `dmg segment` default", "* Default at most", "* End to end ≥3×",
                                    "* 2-process `torchrun`")),
}


def _sections(text: str) -> list[list[str]]:
    out: list[list[str]] = [[]]
    for line in text.splitlines():
        if line.startswith("## "):
            out.append([])
        out[-1].append(line)
    return out


def _bullets(lines: list[str], prefixes: tuple[str, ...]) -> list[str]:
    kept, keep = [], False
    for line in lines:
        if line.startswith("* "):
            keep = line.startswith(prefixes)
        elif not line.startswith("  "):
            keep = False
        if keep:
            kept.append(line)
    return kept


def merge_unmeasured(old: str, new: str, parts_run: tuple[str, ...]) -> str:
    """``new`` plus the sections and target bullets of ``old`` that belong to parts not in ``parts_run``."""
    missing = [p for p in PART_SECTIONS if p not in parts_run]
    headings = tuple(h for p in missing for h in PART_SECTIONS[p][0])
    bullets = tuple(b for p in missing for b in PART_SECTIONS[p][1])
    old_sections = _sections(old)
    kept = [s for s in old_sections[1:] if s[0].startswith(headings) and not s[0].startswith("## Targets")]
    old_targets = next((s for s in old_sections if s and s[0] == "## Targets"), [])
    kept_bullets = _bullets(old_targets, bullets) if bullets else []
    if not kept and not kept_bullets:
        return new
    note = (f"Parts not run by this command ({', '.join(missing)}): their sections and targets below are kept "
            "from the previous BENCHMARKS.md, measured under that run's conditions (see its date there).")
    sections = _sections(new)
    sections[0] = [*sections[0], note, ""]
    out: list[str] = []
    for section in sections:
        if section and section[0] == "## Targets":
            for old_section in kept:
                out += [f"{old_section[0]} (kept from the previous run)", *old_section[1:]]
            body = [line for line in section[1:] if line.strip()]
            out += [section[0], "", *body, *(f"{line} (kept)" if line.startswith("* ") else line for line in kept_bullets), ""]
        else:
            out += section
    return "\n".join(out)
