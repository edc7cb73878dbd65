"""Reuse a `make test` stage's result while nothing it could depend on changed since it passed.

    result_cache.py run STAGE [--key TEXT] [--junit NAME]... [--tree-only] -- COMMAND...
        run COMMAND unless STAGE passed before with the same inputs (and the same TEXT: the make
        variables that choose what the stage runs); when it did, copy the JUnit files NAME it wrote
        into RESULTS back there, and leave a note, STAGE.reused, that tests/summary.py reports.
        Exit status: COMMAND's, or 0 when reused.
    result_cache.py digest
        print the inputs digest

The inputs are deliberately coarse: every file of the working tree that git would see (tracked or
not ignored: roles, plugins, tests, sandbox code, Makefile, README, ...), the wheelhouse manifest, the
stub repositories' stamp and the sandbox layers each platform's hosts stand on (not for a --tree-only
stage, such as lint, which runs while the sandbox is being built and uses none of it). Any edit anywhere
reruns every stage; an unchanged tree (a second `make test` in the same clone) reuses them. A stage
whose command failed, or whose inputs changed while it ran, is not kept. FRESH=1 reruns everything
(a clean clone, as CI has, has nothing to reuse).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from sandbox import sandboxctl as sc  # noqa: E402
from tests import converge_cache  # noqa: E402

STORE = REPO / ".cache" / "test-results-reused"
RESULTS = Path(os.environ.get("RESULTS", REPO / ".cache" / "test-results"))


def digest(key: str = "", layout: sc.Layout = sc.DEFAULT_LAYOUT, tree_only: bool = False) -> str:
    h = converge_cache.hash_inputs(layout, seed=key.encode() + b"\0", built=not tree_only)
    for name, platform in () if tree_only else sorted(sc.load_platforms().items()):
        try:
            lowers = [str(p) for p in sc.current_layers(layout, platform).lowers]
        except sc.EnvironmentProblem:
            lowers = ["not built"]
        h.update(f"layers {name}\0{lowers}".encode())
    return h.hexdigest()[:16]


def reuse(stage: str, inputs: str, junit: list[str]) -> bool:
    record_file = STORE / f"{stage}.json"
    try:
        record = json.loads(record_file.read_text())
    except (OSError, ValueError):
        return False
    if record.get("inputs") != inputs or any(not (STORE / stage / name).is_file() for name in junit):
        return False
    when = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(record["passed_at"]))
    RESULTS.mkdir(parents=True, exist_ok=True)
    for name in junit:
        shutil.copyfile(STORE / stage / name, RESULTS / name)
    note = {"stage": stage, "passed_at": when, "inputs": inputs, "junit": junit}
    (RESULTS / f"{stage}.reused").write_text(json.dumps(note) + "\n")
    print(
        f"{stage}: reused: it passed at {when} ({record['seconds']} s) with the same inputs ({inputs}); "
        "FRESH=1 reruns it"
    )
    return True


def keep(stage: str, inputs: str, junit: list[str], seconds: float) -> None:
    shutil.rmtree(STORE / stage, ignore_errors=True)
    (STORE / stage).mkdir(parents=True)
    for name in junit:
        shutil.copyfile(RESULTS / name, STORE / stage / name)
    record = {"inputs": inputs, "passed_at": int(time.time()), "seconds": round(seconds), "junit": junit}
    (STORE / f"{stage}.json").write_text(json.dumps(record) + "\n")


def run(stage: str, key: str, junit: list[str], command: list[str], tree_only: bool = False) -> int:
    inputs = digest(key, tree_only=tree_only)
    if not os.environ.get("FRESH") and reuse(stage, inputs, junit):
        return 0
    (STORE / f"{stage}.json").unlink(missing_ok=True)
    start = time.monotonic()
    rc = subprocess.run(command, check=False).returncode
    seconds = time.monotonic() - start
    if rc != 0:
        return rc
    missing = [name for name in junit if not (RESULTS / name).is_file()]
    if missing:
        print(f"result_cache: {stage} wrote no {', '.join(missing)}: not kept", file=sys.stderr)
    elif digest(key, tree_only=tree_only) != inputs:
        print(f"result_cache: the inputs changed while {stage} ran: not kept", file=sys.stderr)
    else:
        keep(stage, inputs, junit, seconds)
    return 0


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv == ["digest"]:
        print(digest())
        return 0
    # The command is everything after "--", options and all: argparse would read its options as ours
    if argv[:1] != ["run"] or "--" not in argv:
        print(__doc__, file=sys.stderr)
        return 2
    split = argv.index("--")
    command = argv[split + 1 :]
    parser = argparse.ArgumentParser(prog="result_cache.py run", description=__doc__.split("\n\n")[0])
    parser.add_argument("stage")
    parser.add_argument("--key", default="", help="what else chooses what the stage runs (make variables)")
    parser.add_argument("--junit", action="append", default=[], help="JUnit file it writes in RESULTS")
    parser.add_argument("--tree-only", action="store_true",
                        help="the stage uses no sandbox host: its inputs are the working tree alone")
    args = parser.parse_args(argv[1:split])
    if not command:
        parser.error("no COMMAND after --")
    return run(args.stage, args.key, args.junit, command, args.tree_only)


if __name__ == "__main__":
    sys.exit(main())
