"""Print one closing line summing the JUnit XML files of a `make test` run.

Usage: summary.py RESULTS_DIR   ->  "summary: N passed, N failed, N skipped"
Exit 1 when anything failed or errored, or when no test ran at all.
"""

from __future__ import annotations

import sys
import xml.etree.ElementTree as ET
from pathlib import Path


def count(results: Path) -> dict[str, int]:
    totals = {"tests": 0, "failures": 0, "errors": 0, "skipped": 0}
    for xml in sorted(results.glob("*.xml")):
        root = ET.parse(xml).getroot()
        suites = [root] if root.tag == "testsuite" else root.findall("testsuite")
        for suite in suites:
            for key in totals:
                totals[key] += int(suite.get(key, 0))
    return totals


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if len(argv) != 1:
        print(__doc__, file=sys.stderr)
        return 2
    t = count(Path(argv[0]))
    failed = t["failures"] + t["errors"]
    passed = t["tests"] - failed - t["skipped"]
    print(f"summary: {passed} passed, {failed} failed, {t['skipped']} skipped")
    return 1 if failed or passed == 0 else 0


if __name__ == "__main__":
    sys.exit(main())
