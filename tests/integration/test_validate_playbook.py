"""The validate playbook on a fresh sandbox host: site.yml converges it (provision, then validate), the
reports land on the controller under <reports>/<host>/ with the fleet summary beside them, a second run
measures nothing again and changes nothing, and a broken stack fails the play at the end, after the
reports were fetched, with the doctor's failures and their fixes.

One host for the whole module: the converge installs TensorFlow and times it (minutes on 2 cores).
Needs root and a built sandbox, like every scenario here.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from conftest import REPO_ROOT, host_name_for, run_playbook

from sandbox.sandboxctl import SandboxHost  # conftest put the repository root on sys.path

sys.path.insert(0, str(REPO_ROOT / "tests"))
from check_recap import changed_tasks, parse_recap

FACT = "/etc/ansible/facts.d/gpu_stack.fact"
RESULTS = "/var/lib/gpu-stack/validation"


@pytest.fixture(scope="module")
def reports(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("reports")


@pytest.fixture(scope="module")
def validated(sandbox_ready: Path, reports: Path) -> Iterator[tuple[SandboxHost, object]]:
    """A fresh host converged with site.yml (quick profile from group_vars/sandbox), reports to `reports`."""
    with SandboxHost(host_name_for("validate-playbook")) as host:
        res = run_playbook(host, "site.yml", extra_vars={"gpu_validation_reports_dir": str(reports)})
        yield host, res


def _recap(res) -> dict[str, int]:
    recap = parse_recap(res.stdout)
    assert len(recap) == 1, res.stdout[-3000:]
    return next(iter(recap.values()))


def test_site_converge_validates_and_reports(validated, reports: Path) -> None:
    host, res = validated
    assert res.returncode == 0, res.stdout[-5000:]
    got = sorted(p.name for p in (reports / host.name).iterdir())
    assert got == ["benchmark.json", "benchmark.png", "doctor.json", "propagation.json", "propagation.png"]
    doctor = json.loads((reports / host.name / "doctor.json").read_text())
    assert doctor["ok"] is True and doctor["mode"] == "cpu-only"
    bench = json.loads((reports / host.name / "benchmark.json").read_text())
    assert bench["ok"] is True and bench["data"] == "synthetic"
    assert {(r["device"], r["mode"]) for r in bench["runs"]} == {("cpu", "article"), ("cpu", "resident")}


def test_fleet_summary_has_the_host(validated, reports: Path) -> None:
    host, _res = validated
    md = (reports / "fleet.md").read_text()
    row = next(line for line in md.splitlines() if line.startswith(f"| {host.name} |"))
    cells = [c.strip() for c in row.strip("|").split("|")]
    assert cells[1:4] == ["ok", "ok", "CPU-only"]
    assert "SYNTHETIC" in cells and cells[-1].endswith("%")


def test_local_fact_holds_the_verdicts(validated) -> None:
    host, _res = validated
    fact = json.loads((Path(host.root) / FACT.lstrip("/")).read_text())
    assert fact["ok"] is True and fact["failures"] == []
    assert {fact[t]["ok"] for t in ("doctor", "benchmark", "propagation")} == {True}


def test_second_run_measures_nothing_and_changes_nothing(validated, reports: Path) -> None:
    host, first = validated
    assert first.returncode == 0
    fleet_before = (reports / "fleet.md").read_bytes()
    res = run_playbook(host, "playbooks/validate.yml",
                       extra_vars={"gpu_validation_reports_dir": str(reports)})
    assert res.returncode == 0, res.stdout[-5000:]
    assert _recap(res)["changed"] == 0, changed_tasks(res.stdout)
    assert "TASK [gpu_validation : measure | Run the benchmark]" in res.stdout
    run_block = res.stdout.split("TASK [gpu_validation : measure | Run the benchmark]")[1].split("TASK [")[0]
    assert f"skipping: [{host.name}]" in run_block
    assert (reports / "fleet.md").read_bytes() == fleet_before


def test_check_mode_on_the_validated_host_changes_nothing(validated, reports: Path) -> None:
    host, first = validated
    assert first.returncode == 0
    res = run_playbook(host, "playbooks/validate.yml", check=True, diff=True,
                       extra_vars={"gpu_validation_reports_dir": str(reports)})
    assert res.returncode == 0, res.stdout[-5000:]
    assert _recap(res)["changed"] == 0, changed_tasks(res.stdout)


def test_broken_stack_fails_after_the_reports_are_fetched(validated, reports: Path) -> None:
    """Runs last in this module: it breaks the host (cuDNN gone from the loader)."""
    host, first = validated
    assert first.returncode == 0
    broken = host.run("sh", "-c", "for f in $(ldconfig -p | awk '/libcudnn\\.so\\.9 /{print $NF}'); do "
                      "rm -f \"$(readlink -f \"$f\")\" \"$f\"; done; "
                      "ldconfig; ! ldconfig -p | grep -q libcudnn.so.9")
    assert broken.returncode == 0, broken.stderr
    quick = {"gpu_validation_reports_dir": str(reports), "gpu_validation_benchmark_enabled": False,
             "gpu_validation_propagation_enabled": False}
    res = run_playbook(host, "playbooks/validate.yml", extra_vars=quick)
    assert res.returncode != 0
    assert _recap(res)["failed"] == 1
    tail = res.stdout.split("TASK [gpu_validation : verdict | Fail on the checks that failed]")[1]
    assert f"Validation failed on {host.name}" in tail and "libcudnn.so.9" in tail and "fix:" in tail
    # the reports were fetched and the fleet summary rendered before the play failed
    doctor = json.loads((reports / host.name / "doctor.json").read_text())
    assert doctor["ok"] is False
    md = (reports / "fleet.md").read_text()
    assert f"| {host.name} | FAIL | FAIL (" in md and "libcudnn.so.9" in md
    fact = json.loads((Path(host.root) / FACT.lstrip("/")).read_text())
    assert fact["ok"] is False and fact["doctor"]["ok"] is False
    # gpu_validation_fail_on_error: false reports the same failures without failing the play
    res = run_playbook(host, "playbooks/validate.yml",
                       extra_vars={**quick, "gpu_validation_fail_on_error": False})
    assert res.returncode == 0, res.stdout[-3000:]
    assert "libcudnn.so.9" in res.stdout.split("verdict | Report the checks that failed")[1]
