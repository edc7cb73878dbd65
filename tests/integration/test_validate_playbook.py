"""The validate playbook on a host of the converged Leap 15.6 snapshot (site.yml ran there: provision, then
validate): the reports land on the controller under <reports>/<host>/ with the fleet summary beside them,
a second run measures nothing again and changes nothing, and a broken stack fails the play at the end,
after the reports were fetched, with the doctor's failures and their fixes.

One host for the whole module, started from the snapshot instead of converging again.
Needs root and a built sandbox, like every scenario here.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml
from conftest import REPO_ROOT, converged_snapshot, host_name_for, run_playbook

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
    # the converged snapshot is a site.yml run: validating it again fetches its reports into `reports`
    with SandboxHost(host_name_for("validate-playbook"), snapshot=converged_snapshot("leap156")) as host:
        res = run_playbook(host, "playbooks/validate.yml",
                           extra_vars={"gpu_validation_reports_dir": str(reports)})
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
    benchmark = "TASK [gpu_stack.opensuse.gpu_validation : measure | Run the benchmark]"
    assert benchmark in res.stdout
    run_block = res.stdout.split(benchmark)[1].split("TASK [")[0]
    assert f"skipping: [{host.name}]" in run_block
    assert (reports / "fleet.md").read_bytes() == fleet_before


def test_check_mode_on_the_validated_host_changes_nothing(validated, reports: Path) -> None:
    host, first = validated
    assert first.returncode == 0
    res = run_playbook(host, "playbooks/validate.yml", check=True, diff=True,
                       extra_vars={"gpu_validation_reports_dir": str(reports)})
    assert res.returncode == 0, res.stdout[-5000:]
    assert _recap(res)["changed"] == 0, changed_tasks(res.stdout)


VENV = "/opt/gpu-stack/venv"
CPU_BUILD_INFO = (
    "build_info = collections.OrderedDict([('cpu_compiler', 'clang 18'), ('is_cuda_build', False), "
    "('is_rocm_build', False), ('is_tensorrt_build', False)])"
)


def _pinned_tensorflow() -> str:
    """gpu_stack_tensorflow_version of the inventory: what the ml_venv role installed."""
    versions = REPO_ROOT / "pins.yml"
    return str(yaml.safe_load(versions.read_text(encoding="utf-8"))["gpu_stack_tensorflow_version"])


def _host_doctor(host) -> tuple[int, dict]:
    res = host.run(f"{VENV}/bin/gpu-doctor", "--json", "--require-tensorflow")
    assert res.returncode in (0, 1), res.stderr
    return res.returncode, json.loads(res.stdout)


def test_tensorflow_without_gpu_support_is_a_failure(validated) -> None:
    """A TensorFlow build without CUDA (what tensorflow-cpu is: its build info says is_cuda_build False)
    in the ML venv: the stack promises a CUDA build, so the doctor fails, GPU or not, and names the fix."""
    host, first = validated
    assert first.returncode == 0
    site = f"{VENV.lstrip('/')}-*/lib/python3*/site-packages"
    (info,) = Path(host.root).glob(f"{site}/tensorflow/python/platform/build_info.py")
    original = info.read_text(encoding="utf-8")
    lines = [CPU_BUILD_INFO if line.startswith("build_info = ") else line for line in original.splitlines()]
    info.write_text("\n".join(lines) + "\n", encoding="utf-8")
    try:
        rc, report = _host_doctor(host)
    finally:
        info.write_text(original, encoding="utf-8")
    assert rc == 1
    version = _pinned_tensorflow()
    # pip mode (NVIDIA's CUDA wheels): TensorFlow comes back with the extra that pins them
    pip = f"'tensorflow[and-cuda]=={version}'" if report["cuda_mode"] == "pip" else f"tensorflow=={version}"
    (fail,) = [f for f in report["failures"] if f["check"] == "tensorflow"]
    assert fail["message"] == (
        f"TensorFlow {version} (tensorflow) is a build without GPU support (is_cuda_build false)"
    )
    assert fail["fix"] == (
        f"{VENV}/bin/python -m pip uninstall -y tensorflow && {VENV}/bin/python -m pip install "
        f"{pip} (or converge the ml_venv role again)"
    )
    assert report["expected"]["source"] == "pins"  # the libraries are then checked against the pins
    assert _host_doctor(host)[0] == 0


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
    verdict = "TASK [gpu_stack.opensuse.gpu_validation : verdict | Fail on the checks that failed]"
    tail = res.stdout.split(verdict)[1]
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
