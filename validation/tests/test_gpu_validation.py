"""gpu_validation: validators installed in the ML virtualenv, the doctor's pins file equal to the inventory's
pins, the last measurement kept on the host, and its verdicts recorded as local facts
(/etc/ansible/facts.d/gpu_stack.fact, readable as ansible_local.gpu_stack).

Expected values come from the inventory (`stack_vars`): the gpu_stack_* pins, ml_venv_path and the role
inputs gpu_validation_* where the inventory sets them (role defaults otherwise).
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
SCRIPTS = ("gpu_doctor.py", "mnist_benchmark.py", "propagation.py")
LAUNCHERS = {"gpu-doctor": "gpu_doctor.py", "mnist-benchmark": "mnist_benchmark.py",
             "gpu-propagation": "propagation.py"}
# Tool -> the files of its last measurement on the host
MEASUREMENTS = {"benchmark": "mnist_benchmark.py", "propagation": "propagation.py"}


@pytest.fixture(scope="module")
def validation(stack_vars) -> dict:
    """Where the role put things, as the role defaults derive it from the inventory."""
    if not bool(stack_vars.get("gpu_validation_enabled", True)):
        pytest.skip("gpu_validation_enabled is false for this host")
    venv = stack_vars.get("gpu_validation_venv_path", stack_vars["gpu_stack_venv_path"])
    install = stack_vars.get("gpu_validation_install_dir", f"{venv}/share/gpu-stack/validation")
    facts_dir = stack_vars.get("gpu_validation_facts_dir", "/etc/ansible/facts.d")
    return {
        "python": stack_vars.get("gpu_validation_python", f"{venv}/bin/python"),
        "install": install,
        "pins": f"{install}/pins.json",
        "bin": stack_vars.get("gpu_validation_bin_dir", f"{venv}/bin"),
        "results": stack_vars.get("gpu_validation_results_dir", "/var/lib/gpu-stack/validation"),
        "fact": f"{facts_dir}/gpu_stack.fact",
        "enabled": {tool: bool(stack_vars.get(f"gpu_validation_{tool}_enabled", True))
                    for tool in ("doctor", "benchmark", "propagation")},
    }


@pytest.fixture(scope="module")
def expected_pins(stack_vars) -> dict:
    """pins.json as the role renders it from the gpu_stack_* pins (gpu_doctor.py's --pins schema)."""
    sonames = stack_vars["gpu_stack_tensorflow_sonames"]
    major = str(stack_vars["gpu_stack_cuda_version"]).split(".")[0]
    return {
        "tensorflow_version": str(stack_vars["gpu_stack_tensorflow_version"]),
        "cuda_version": str(stack_vars["gpu_stack_cuda_version"]),
        "cudnn_version": str(stack_vars["gpu_stack_cudnn_version"]),
        "python_version": str(stack_vars["gpu_stack_python_version"]),
        "driver_version": str(stack_vars["gpu_stack_nvidia_driver_version"]),
        "sonames": list(sonames.get(major, [])),
        "sonames_by_cuda_major": {str(k): list(v) for k, v in sonames.items()},
        "min_driver": {str(k): str(v) for k, v in stack_vars["gpu_stack_cuda_min_driver"].items()},
    }


@pytest.fixture(scope="module")
def fact(host, validation) -> dict:
    f = host.file(validation["fact"])
    assert f.is_file, f"{validation['fact']} is missing: the validate playbook has not run on this host"
    return json.loads(f.content_string)


@pytest.mark.parametrize("script", SCRIPTS)
def test_validator_installed(host, validation, script: str) -> None:
    f = host.file(f"{validation['install']}/{script}")
    assert f.is_file
    assert (f.user, f.group, f.mode) == ("root", "root", 0o755)
    local = hashlib.sha256((REPO / "validation" / "scripts" / script).read_bytes()).hexdigest()
    assert f.sha256sum == local, f"{f.path} differs from validation/scripts/{script}: converge again"


@pytest.mark.parametrize(("launcher", "script"), sorted(LAUNCHERS.items()))
def test_launcher_runs_the_validator(host, validation, launcher: str, script: str) -> None:
    if not validation["bin"]:
        pytest.skip("gpu_validation_bin_dir is empty: no launchers")
    f = host.file(f"{validation['bin']}/{launcher}")
    assert f.is_file and f.mode == 0o755
    assert f"{validation['install']}/{script}" in f.content_string
    assert host.run(f"{f.path} --help").rc == 0


def test_doctor_pins_match_the_inventory(host, validation, expected_pins: dict) -> None:
    f = host.file(validation["pins"])
    assert f.is_file and f.mode == 0o644
    assert json.loads(f.content_string) == expected_pins


def test_local_fact_is_json_and_not_executable(host, validation, fact: dict) -> None:
    f = host.file(validation["fact"])
    # Ansible runs an executable .fact instead of reading it
    assert f.mode == 0o644 and f.user == "root"
    assert fact["schema"] == 1
    assert isinstance(fact["ok"], bool) and isinstance(fact["failures"], list)
    assert fact["ok"] == (fact["failures"] == [])


def test_local_fact_records_the_inventory_pins(fact: dict, expected_pins: dict) -> None:
    assert fact["pins"] == {k: expected_pins[k] for k in
                            ("tensorflow_version", "cuda_version", "cudnn_version", "python_version",
                             "driver_version")}


@pytest.mark.parametrize("tool", ["doctor", "benchmark", "propagation"])
def test_local_fact_verdict_passed(validation, fact: dict, tool: str) -> None:
    if not validation["enabled"][tool]:
        pytest.skip(f"gpu_validation_{tool}_enabled is false")
    record = fact.get(tool)
    assert record is not None, f"no {tool} verdict in {validation['fact']}"
    assert record["ok"] is True, f"{tool} failed: {record.get('failures')}"
    if tool != "doctor":
        # a passed measurement carries the fingerprint of its inputs (what makes a re-run unnecessary)
        assert len(record["inputs_sha256"]) == 64


@pytest.mark.parametrize("tool", sorted(MEASUREMENTS))
def test_last_measurement_kept_on_the_host(host, validation, tool: str) -> None:
    if not validation["enabled"][tool]:
        pytest.skip(f"gpu_validation_{tool}_enabled is false")
    f = host.file(f"{validation['results']}/{tool}.json")
    assert f.is_file
    report = json.loads(f.content_string)
    assert report["ok"] is True and report["failures"] == []


@pytest.mark.gpu
def test_doctor_saw_the_gpu_and_tensorflow_uses_it(fact: dict) -> None:
    stack = fact["doctor"]["stack"]
    assert stack["mode"] == "gpu" and stack["gpus"], stack
    assert stack["tensorflow_gpus"] >= 1, f"TensorFlow sees no GPU: {fact['doctor'].get('failures')}"


@pytest.mark.gpu
def test_benchmark_timed_the_gpu(host, validation) -> None:
    if not validation["enabled"]["benchmark"]:
        pytest.skip("gpu_validation_benchmark_enabled is false")
    report = json.loads(host.file(f"{validation['results']}/benchmark.json").content_string)
    assert any(run["device"] == "gpu" and not run.get("error") for run in report["runs"])
