"""The result of verifying a bundle: one row a check, PASS / FAIL / WARN / NOTE, printed as a table."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

__all__ = ["Check", "Status", "VerifyReport"]

Status = Literal["PASS", "FAIL", "WARN", "NOTE"]


@dataclass(frozen=True)
class Check:
    """One verification step: what was checked, its outcome and the details (file names, numbers)."""

    name: str
    status: Status
    detail: str = ""


@dataclass
class VerifyReport:
    """All checks of one bundle (a folder or a zip); it passes when no check FAILs (WARN/NOTE do not fail)."""

    source: str
    checks: list[Check] = field(default_factory=list)

    def add(self, name: str, status: Status, detail: str = "") -> Check:
        check = Check(name, status, detail)
        self.checks.append(check)
        return check

    def extend(self, checks: list[Check]) -> None:
        self.checks.extend(checks)

    @property
    def ok(self) -> bool:
        return not self.failures

    @property
    def failures(self) -> list[Check]:
        return [c for c in self.checks if c.status == "FAIL"]

    def count(self, status: Status) -> int:
        return sum(c.status == status for c in self.checks)

    def table(self) -> str:
        width = max([len("check"), *(len(c.name) for c in self.checks)])
        lines = [f"{'check':<{width}}  status  detail"]
        for c in self.checks:
            detail = c.detail.replace("\n", "\n" + " " * (width + 10))
            lines.append(f"{c.name:<{width}}  {c.status:<6}  {detail}".rstrip())
        return "\n".join(lines)

    def summary(self) -> str:
        verdict = "verified" if self.ok else "verification FAILED"
        return (f"{self.source}: {verdict} ({self.count('PASS')} passed, {self.count('FAIL')} failed, "
                f"{self.count('WARN')} warnings, {self.count('NOTE')} notes)")
