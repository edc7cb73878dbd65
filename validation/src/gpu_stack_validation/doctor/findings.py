"""Failures and warnings of a doctor run, each with the check that raised it and its fix."""

from __future__ import annotations


class Findings:
    """Collects {check, message, fix} items; a failure makes the run exit 1."""

    def __init__(self) -> None:
        self.failures: list[dict[str, str]] = []
        self.warnings: list[dict[str, str]] = []

    def fail(self, check: str, message: str, fix: str) -> None:
        self.failures.append({"check": check, "message": message, "fix": fix})

    def warn(self, check: str, message: str, fix: str) -> None:
        self.warnings.append({"check": check, "message": message, "fix": fix})
