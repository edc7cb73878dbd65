"""gpu_validation: the validation package installed in the ML virtualenv from the wheel built of this
checkout, its commands in the virtualenv's bin/, the doctor's pins file equal to the inventory's pins,
the last measurement kept on the host, and its verdicts recorded as local facts
(/etc/ansible/facts.d/gpu_stack.fact, readable as ansible_local.gpu_stack).

Expected values come from the inventory (`stack_vars`): the gpu_stack_* pins, ml_venv_path and the role
inputs gpu_validation_* where the inventory sets them (role defaults otherwise).
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
COMMANDS = ("gpu-doctor", "mnist-benchmark", "gpu-propagation", "gpu-fleet-report")
# The measurements whose last results stay on the host
MEASUREMENTS = ("benchmark", "propagation")


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
        "bin": f"{venv}/bin",
        "results": stack_vars.get("gpu_validation_results_dir", "/var/lib/gpu-stack/validation"),
        "fact": f"{facts_dir}/gpu_stack.fact",
        "enabled": {tool: bool(stack_vars.get(f"gpu_validation_{tool}_enabled", True))
                    for tool in ("doctor", "benchmark", "propagation")},
    }


@pytest.fixture(scope="module")
def expected_pins(stack_vars) -> dict:
    """pins.json as the role renders it from the gpu_stack_* pins (the doctor's --pins schema)."""
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


def _project_version() -> str:
    text = (REPO / "validation" / "pyproject.toml").read_text(encoding="utf-8")
    return re.search(r'^version = "([^"]+)"', text, re.MULTILINE).group(1)


def test_package_installed_from_its_wheel(host, validation) -> None:
    """pip installed gpu-stack-validation from the wheel beside pins.json and recorded the wheel's sha256."""
    code = ("import importlib.metadata as m, json; d = m.distribution('gpu-stack-validation'); "
            "print(json.dumps({'version': d.version, "
            "'direct_url': json.loads(d.read_text('direct_url.json'))}))")
    res = host.run(f"{validation['python']} -c \"{code}\"")
    assert res.rc == 0, res.stderr
    info = json.loads(res.stdout)
    assert info["version"] == _project_version()
    wheel = host.file(f"{validation['install']}/gpu_stack_validation-{info['version']}-py3-none-any.whl")
    assert wheel.is_file and (wheel.user, wheel.mode) == ("root", 0o644)
    assert info["direct_url"]["archive_info"]["hashes"]["sha256"] == wheel.sha256sum


@pytest.mark.parametrize("command", COMMANDS)
def test_command_runs_from_the_virtualenv(host, validation, command: str) -> None:
    f = host.file(f"{validation['bin']}/{command}")
    assert f.is_file and f.mode & 0o111
    res = host.run(f"{f.path} --help")
    assert res.rc == 0 and "Exit codes" in res.stdout


def test_nvidia_ml_py_is_in_the_virtualenv(host, validation) -> None:
    """The package's one dependency, NVIDIA's NVML binding (pinned in ml_venv's set)."""
    assert host.run(f"{validation['python']} -c 'import pynvml'").rc == 0


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


@pytest.mark.parametrize("tool", MEASUREMENTS)
def test_last_measurement_kept_on_the_host(host, validation, tool: str) -> None:
    if not validation["enabled"][tool]:
        pytest.skip(f"gpu_validation_{tool}_enabled is false")
    f = host.file(f"{validation['results']}/{tool}.json")
    assert f.is_file
    report = json.loads(f.content_string)
    assert report["ok"] is True and report["failures"] == []
    if tool == "benchmark":
        # at least two epochs (the quick profile too): the steady epoch is one without compilation
        assert report["runs"] and all(
            len(r["epoch_times_s"]) >= 2 and r["steady_rule"].startswith("best of epochs 2..")
            and r["loss_fell"] is True for r in report["runs"]
        )
        assert report["config"]["flops_per_sample"] == 4 * 784 * 512 + 6 * 512 * 10


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
