"""tools/demo_summary.py, the end of `make demo`: the doctor's verdict, the benchmark and propagation tables
of each host, from reports made by the validators' own code, run as the Makefile runs it."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

REPO = Path(__file__).resolve().parents[2]
DEMO_SUMMARY = REPO / "tools" / "demo_summary.py"


def run_demo_summary(*args: str) -> subprocess.CompletedProcess[str]:
    # a bare environment and another working directory, as `make demo` runs it with the controller venv
    return subprocess.run(
        [sys.executable, str(DEMO_SUMMARY), *args],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
        cwd="/",
        env={"PATH": "/usr/bin:/bin", "LANG": "C.UTF-8"},
    )


@pytest.fixture
def reports(tmp_path: Path, doctor_report: dict, benchmark_report: dict, propagation_report: dict) -> Path:
    host = tmp_path / "reports" / "leap156-1"
    host.mkdir(parents=True)
    docs: dict[str, Any] = {
        "doctor": doctor_report, "benchmark": benchmark_report, "propagation": propagation_report,
    }
    for name, doc in docs.items():
        (host / f"{name}.json").write_text(json.dumps(doc))
    (host / "benchmark.png").write_bytes(b"\x89PNG")
    return tmp_path / "reports"


def test_prints_every_report_with_its_table(reports: Path) -> None:
    res = run_demo_summary("--reports", str(reports), "--host", "leap156-1")
    assert res.returncode == 0, res.stderr
    out = res.stdout
    assert "=== leap156-1 ===" in out
    for name in ("doctor", "benchmark", "propagation"):
        assert f"--- {name} ({reports / 'leap156-1' / name}.json) ---" in out
    assert "GPU doctor on " in out and "MNIST benchmark" in out and "propagation: OK" in out
    assert f"plots: {reports / 'leap156-1' / 'benchmark.png'}" in out


def test_a_missing_report_is_named_and_exits_1(reports: Path) -> None:
    (reports / "leap156-1" / "benchmark.json").unlink()
    res = run_demo_summary("--reports", str(reports))
    assert res.returncode == 1, res.stderr
    assert f"benchmark: no report at {reports / 'leap156-1' / 'benchmark.json'}" in res.stdout
    assert "GPU doctor on " in res.stdout and "propagation: OK" in res.stdout
