"""A validation report: one line per check, PASS/FAIL/WARN/SKIP, and what to fix when it fails."""
from __future__ import annotations

from dataclasses import dataclass, field

PASS, FAIL, WARN, SKIP = "PASS", "FAIL", "WARN", "SKIP"


@dataclass(frozen=True)
class Check:
    name: str
    status: str
    message: str
    fix: str = ""

    def line(self) -> str:
        text = f"{self.status} {self.name}: {self.message}"
        if self.fix and self.status in (FAIL, WARN):
            text += f" -> fix: {self.fix}"
        return text

    def as_dict(self) -> dict:
        return {"check": self.name, "status": self.status, "message": self.message, "fix": self.fix}


@dataclass
class Report:
    path: str
    kind: str = "method"
    checks: list[Check] = field(default_factory=list)
    extra: dict = field(default_factory=dict)

    def add(self, name: str, status: str, message: str, fix: str = "") -> Check:
        c = Check(name, status, message, fix)
        self.checks.append(c)
        return c

    def extend(self, checks) -> None:
        self.checks.extend(checks)

    @property
    def ok(self) -> bool:
        return not any(c.status == FAIL for c in self.checks)

    def failed(self, prefix: str = "") -> bool:
        return any(c.status == FAIL and c.name.startswith(prefix) for c in self.checks)

    def lines(self) -> list[str]:
        return [c.line() for c in self.checks]

    def text(self) -> str:
        n_fail = sum(c.status == FAIL for c in self.checks)
        head = f"Validating {self.kind} submission {self.path}"
        tail = "VALID: every check passed" if self.ok else f"INVALID: {n_fail} check(s) failed; fix them and run `ratspain-bench submit validate` again"
        return "\n".join([head, *self.lines(), tail]) + "\n"

    def as_dict(self) -> dict:
        return {"path": self.path, "kind": self.kind, "valid": self.ok, "checks": [c.as_dict() for c in self.checks], **self.extra}
