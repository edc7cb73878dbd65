"""Print what `make demo` produced: the doctor's verdict, the benchmark and propagation tables,
and where the JSON/PNG reports are.

Usage: demo_summary.py --reports DIR [--host NAME ...]
Reads DIR/<host>/{doctor,benchmark,propagation}.json (fetched by the gpu_validation role) and
renders them with the validators' own table functions. Exit 1 when a report is missing.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

# The validation package from its source tree, as the unit tests use it (the controller venv does not
# install it); its table functions import neither numpy nor Keras
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "validation" / "src"))

from gpu_stack_validation.benchmark.core import render_table as benchmark_table
from gpu_stack_validation.doctor.report import render_table as doctor_table
from gpu_stack_validation.propagation.cli import render_table as propagation_table

# report -> the validator's own table function
REPORTS = {"doctor": doctor_table, "benchmark": benchmark_table, "propagation": propagation_table}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--reports", type=Path, required=True)
    ap.add_argument("--host", action="append", default=[])
    args = ap.parse_args(argv)
    hosts = args.host or sorted(p.name for p in args.reports.iterdir() if p.is_dir())
    missing = 0
    for host in hosts:
        print(f"\n=== {host} ===")
        for report, render_table in REPORTS.items():
            path = args.reports / host / f"{report}.json"
            if not path.exists():
                print(f"{report}: no report at {path}")
                missing += 1
                continue
            data = json.loads(path.read_text())
            print(f"\n--- {report} ({path}) ---")
            print(render_table(data))
        pngs = sorted(str(p) for p in (args.reports / host).glob("*.png"))
        print("\nplots: " + (", ".join(pngs) or "none"))
    fleet = args.reports / "fleet.md"
    if fleet.exists():
        png = fleet.with_suffix(".png")
        print(f"\nfleet summary: {fleet}" + (f" and {png}" if png.exists() else ""))
    return 1 if missing else 0


if __name__ == "__main__":
    sys.exit(main())
