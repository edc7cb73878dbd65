"""Print one closing line summing the JUnit XML files of a `make test` run.

Usage: summary.py RESULTS_DIR   ->  "summary: N passed, N failed, N skipped"
Stages reused from an earlier run with the same inputs (tests/result_cache.py leaves a STAGE.reused note)
are named on a second line, with how many of the passed tests are theirs.
Exit 1 when anything failed or errored, or when no test ran at all.
"""

from __future__ import annotations

import json
import sys
import xml.etree.ElementTree as ET
from pathlib import Path


def count(results: Path, only: set[str] | None = None) -> dict[str, int]:
    totals = {"tests": 0, "failures": 0, "errors": 0, "skipped": 0}
    for xml in sorted(results.glob("*.xml")):
        if only is not None and xml.name not in only:
            continue
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
    notes = [json.loads(n.read_text()) for n in sorted(Path(argv[0]).glob("*.reused"))]
    if notes:
        r = count(Path(argv[0]), {name for note in notes for name in note["junit"]})
        reused = r["tests"] - r["failures"] - r["errors"] - r["skipped"]
        stages = ", ".join(f"{n['stage']} ({n['passed_at']})" for n in notes)
        print(f"summary: {reused} of the passed reused, inputs unchanged, from {stages}; FRESH=1 reruns them")
    return 1 if failed or passed == 0 else 0


if __name__ == "__main__":
    sys.exit(main())
