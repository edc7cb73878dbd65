"""Fail unless an ansible-playbook log shows a clean run (for the idempotence and check-mode gates).

Usage: check_recap.py --expect-unchanged LOG
Exit 0 when every host in PLAY RECAP has failed=0, unreachable=0 (and changed=0 with
--expect-unchanged); 1 otherwise, naming the tasks that reported changed; 2 on a log without a recap.
"""

from __future__ import annotations

import argparse
import re
import sys
from pathlib import Path

RECAP_LINE = re.compile(r"^(?P<host>\S+)\s+:\s+(?P<counts>(?:\w+=\d+\s*)+)$")
TASK_LINE = re.compile(r"^(?:TASK|RUNNING HANDLER) \[(?P<name>.*)\]")
CHANGED_LINE = re.compile(r"^changed: \[(?P<host>[^\]]+)\]")


def parse_recap(text: str) -> dict[str, dict[str, int]]:
    """Return {host: {ok, changed, unreachable, failed, ...}} from the last PLAY RECAP."""
    recap: dict[str, dict[str, int]] = {}
    in_recap = False
    for line in text.splitlines():
        if line.startswith("PLAY RECAP"):
            in_recap, recap = True, {}
            continue
        if in_recap:
            m = RECAP_LINE.match(line.strip())
            if m:
                counts = dict(kv.split("=") for kv in m["counts"].split())
                recap[m["host"]] = {k: int(v) for k, v in counts.items()}
            elif line.strip() and not line.startswith(" "):
                in_recap = False
    return recap


def changed_tasks(text: str) -> list[str]:
    """Names of tasks (and handlers) that reported changed, with the host."""
    task, found = "", []
    for line in text.splitlines():
        if m := TASK_LINE.match(line):
            task = m["name"]
        elif m := CHANGED_LINE.match(line):
            found.append(f"{task} [{m['host']}]")
    return found


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("log", type=Path)
    ap.add_argument("--expect-unchanged", action="store_true")
    args = ap.parse_args(argv)
    text = args.log.read_text(errors="replace")
    recap = parse_recap(text)
    if not recap:
        print(f"check_recap: no PLAY RECAP in {args.log}", file=sys.stderr)
        return 2
    bad = {h: c for h, c in recap.items() if c.get("failed", 0) or c.get("unreachable", 0)}
    if args.expect_unchanged:
        bad.update({h: c for h, c in recap.items() if c.get("changed", 0)})
    if bad:
        for host, counts in sorted(bad.items()):
            print(f"check_recap: {host}: {counts}", file=sys.stderr)
        for name in changed_tasks(text):
            print(f"check_recap: changed: {name}", file=sys.stderr)
        return 1
    print(f"check_recap: {len(recap)} host(s) clean" + (", changed=0" if args.expect_unchanged else ""))
    return 0


if __name__ == "__main__":
    sys.exit(main())
