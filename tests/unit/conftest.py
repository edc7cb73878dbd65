"""Shared setup of the unit tests.

The modules import their module_utils as ansible_collections.gpu_stack.opensuse.plugins.module_utils.<name>
(Ansible ships those files with each module). The unit tests import the modules directly and render role
defaults that call the collection's lookup, so Ansible's collection loader is set up first, with the
checkout's collections/ directory (ansible_collections/gpu_stack/opensuse links back to the repository
root) as the collections path, as ansible.cfg has it. `build` compiles real shared libraries with gcc;
`doctor_report`, `benchmark_report` and `propagation_report` are reports made by the validators' own code,
as they land in reports/<host>/*.json.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from ansible.plugins.loader import init_plugin_loader

REPO = Path(__file__).resolve().parents[2]
init_plugin_loader([str(REPO / "collections")])


GCC = shutil.which("gcc")


@pytest.fixture(scope="session")
def build(tmp_path_factory):
    """build(soname) -> a real shared library with that DT_SONAME, built with gcc (cached per soname)."""
    if GCC is None:
        pytest.skip("gcc is needed to build test libraries")
    out = tmp_path_factory.mktemp("elf")
    src = out / "stub.c"
    src.write_text('#include <stdio.h>\nint stub_version(void) { puts("stub"); return 90300; }\n')
    cache = {}

    def _build(soname: str | None) -> Path:
        if soname not in cache:
            target = out / f"lib_{len(cache)}.so"
            cmd = [GCC, "-shared", "-fPIC", "-o", str(target), str(src)]
            if soname:
                cmd.insert(3, "-Wl,-soname," + soname)
            subprocess.run(cmd, check=True, capture_output=True)
            cache[soname] = target
        return cache[soname]

    return _build


@pytest.fixture(scope="session")
def doctor_report() -> dict[str, Any]:
    """gpu-doctor --json on this machine (without the TensorFlow check), whatever it finds."""
    pins = REPO / "tests" / "unit" / "fixtures" / "doctor" / "pins.json"
    res = subprocess.run(
        [sys.executable, "-m", "gpu_stack_validation.doctor.cli", "--json", "--skip-tensorflow",
         "--pins", str(pins)],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
        env=dict(os.environ, PYTHONPATH=str(REPO / "validation" / "src")),
    )
    assert res.returncode in (0, 1), res.stderr
    return json.loads(res.stdout)


@pytest.fixture(scope="session")
def benchmark_report() -> dict[str, Any]:
    """mnist-benchmark's run_benchmark with a canned worker (CPU 0.5 s, GPU 0.1 s a steady epoch, 6000
    samples, a 10 TFLOP/s peak), through JSON."""
    from gpu_stack_validation.benchmark import cli as bench
    from gpu_stack_validation.benchmark.core import finalize_run, new_run

    def runner(config: dict, _env: dict, _timeout: float) -> dict:
        runs = []
        for mode in config["modes"]:
            for batch in config["batch_sizes"]:
                # every key the real worker writes (new_run), two epochs measured
                run = new_run(config["device"], mode, batch, config["samples"], 2)
                run["epoch_times_s"] = [1.0, 0.5 if config["device"] == "cpu" else 0.1]
                run["loss_fell"] = True
                runs.append(finalize_run(run, config["samples"], 10.0))
        return {"status": "ok", "device": config["device"], "runs": runs}

    report = bench.run_benchmark(
        data="synthetic",
        device="both",
        batch_sizes=[128, 1024],
        epochs=2,
        subset=6000,
        runner=runner,
        probe=lambda: (True, "canned"),
    )
    return json.loads(json.dumps(report))


@pytest.fixture(scope="session")
def propagation_report() -> dict[str, Any]:
    """gpu-propagation's run_propagation on a tiny network, numpy only, through JSON."""
    from gpu_stack_validation.propagation import cli as prop

    report = prop.run_propagation(
        nodes=[8, 8, 8], batches=[1, 4], gpu="none", loop_cap=4, peak_size=32, repeat=1
    )
    return json.loads(json.dumps(report))
