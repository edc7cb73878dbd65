"""GPU generations on sandbox hosts with fake sysfs trees (tests/pci_fixtures.py): each GPU of the original
article's and today's generations converges the driver role with the right packages, or preflight stops
before any change, naming the GPU, the reason and the route that fits. One ansible-playbook run covers all
cases of a group in parallel (each case its own fresh host)."""

from __future__ import annotations

import re
import sys
from pathlib import Path

import pytest
from conftest import diff_snapshots, run_playbook_on, scenario_hosts, snapshot

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
import pci_fixtures

PCI = "/srv/fake-pci"
DRIVER_TAGS = "preflight,cuda_repo,nvidia_driver"
# case -> (platform, kmp package, user-space package): Turing and newer take SUSE's signed open G07 kmp
# from the distribution with NVIDIA's G07 user space; Maxwell, Pascal and Volta (and a host that mixes
# Pascal with Ampere) the 580 proprietary G06 kmp from NVIDIA's graphics repository
CONVERGE = {
    "gtx960": ("leap156", "nvidia-driver-G06-kmp-default", "nvidia-compute-G06"),
    "gtx1080ti": ("leap156", "nvidia-driver-G06-kmp-default", "nvidia-compute-G06"),
    "v100": ("sles15", "nvidia-driver-G06-kmp-default", "nvidia-compute-G06"),
    "rtx2080": ("leap156", "nvidia-open-driver-G07-signed-cuda-kmp-default", "nvidia-compute-G07"),
    "rtx4090": ("leap160", "nvidia-open-driver-G07-signed-cuda-kmp-default", "nvidia-compute-G07"),
    "h100": ("sles16", "nvidia-open-driver-G07-signed-cuda-kmp-default", "nvidia-compute-G07"),
    "mixed": ("tumbleweed", "nvidia-driver-G06-kmp-default", "nvidia-compute-G06"),
}
# case -> (platform, host vars, texts the failure must name): preflight stops before any change
STOPS = {
    "kepler": ("leap156", {}, ["0000:01:00.0", "10de:1180", "GeForce GTX 680", "Kepler", "470 branch"]),
    "unknown": ("leap160", {}, ["0000:01:00.0", "10de:3f00", "preflight_gpu_driver_generation_override"]),
    "pascal_blackwell": ("sles16", {}, ["GTX 1080 Ti", "RTX 5090", "no one driver drives all GPUs"]),
    "gtx960-no-key": (
        "leap156",
        {"nvidia_driver_gfx_repo_gpgkey_fingerprint": ""},
        ["NVIDIA GeForce GTX 960", "G06", "nvidia_driver_gfx_repo_gpgkey_fingerprint", "Nothing was changed"],
    ),
    "pin-wrong-generation": (
        "leap156",
        {"gpu_stack_nvidia_driver_version": "580.82.07"},
        ["580.82.07", "G07", "RTX 4090"],
    ),
}
# Input typos: preflight checks every role's inputs and the version formats before the first change
STOPS.update(
    {
        "typo-cuda-version": (
            "leap156",
            {"gpu_stack_cuda_version": "12.5.1"},
            ["cuda_version is", "12.5.1", "(from gpu_stack_cuda_version)", "expected CUDA X.Y"],
        ),
        "typo-cudnn-source": (
            "leap160",
            {"cudnn_source": "controler"},
            ["cudnn_source", "controler", "controller, host, url", "role cudnn"],
        ),
    }
)
STOP_TREES = {
    "gtx960-no-key": "gtx960",
    "pin-wrong-generation": "rtx4090",
    "typo-cuda-version": "rtx4090",
    "typo-cudnn-source": "no_gpu",
}


def _rpm(host, name: str) -> str:
    res = host.run("rpm", "-q", "--qf", "%{VERSION}", name)
    return res.stdout.strip() if res.returncode == 0 else ""


@pytest.fixture(scope="module")
def converged(sandbox_ready):
    cases = {
        case: (platform, {"preflight_pci_devices_path": PCI}) for case, (platform, _k, _u) in CONVERGE.items()
    }
    with scenario_hosts("gen", cases) as (inventory, hosts):
        for case, host in hosts.items():
            pci_fixtures.write_tree(case, host.root / PCI.lstrip("/"))
        res = run_playbook_on(
            inventory, ",".join(h.name for h in hosts.values()), "playbooks/provision.yml", tags=DRIVER_TAGS
        )
        yield res, hosts


@pytest.mark.parametrize("case", sorted(CONVERGE))
def test_gpu_gets_the_driver_of_its_generation(converged, case: str) -> None:
    res, hosts = converged
    host = hosts[case]
    assert f"{host.name}" in res.stdout and re.search(rf"{re.escape(host.name)}\s+:.*failed=0", res.stdout), (
        res.stdout[-4000:]
    )
    _platform, kmp, userspace = CONVERGE[case]
    installed = host.run("rpm", "-qa", "--qf", "%{NAME}\\n", "nvidia*kmp*").stdout.split()
    assert installed == [kmp], f"{case}: kernel module packages {installed}, expected {kmp}"
    # SUSE's recipe: the user space at exactly the kmp's driver version
    assert _rpm(host, userspace) == _rpm(host, kmp).split("_")[0], (
        f"{case}: {userspace} not at the kmp's version"
    )
    expected_generation = pci_fixtures.EXPECTED[case][0]
    assert f"Driver generation {expected_generation}" in res.stdout


def test_legacy_driver_is_the_newest_580(converged) -> None:
    _res, hosts = converged
    assert _rpm(hosts["gtx960"], "nvidia-driver-G06-kmp-default").startswith("580.")


@pytest.fixture(scope="module")
def stopped(sandbox_ready):
    cases = {
        case: (platform, {"preflight_pci_devices_path": PCI, **host_vars})
        for case, (platform, host_vars, _texts) in STOPS.items()
    }
    with scenario_hosts("stop", cases) as (inventory, hosts):
        before = {}
        for case, host in hosts.items():
            pci_fixtures.write_tree(STOP_TREES.get(case, case), host.root / PCI.lstrip("/"))
            before[case] = snapshot(host)
        res = run_playbook_on(inventory, ",".join(h.name for h in hosts.values()), "site.yml")
        yield res, hosts, before


@pytest.mark.parametrize("case", sorted(STOPS))
def test_preflight_stops_before_any_change(stopped, case: str) -> None:
    res, hosts, before = stopped
    host = hosts[case]
    assert re.search(rf"{re.escape(host.name)}\s+:.*failed=1", res.stdout), res.stdout[-3000:]
    flat = " ".join(res.stdout.split())  # the callback folds long messages over lines
    for text in STOPS[case][2]:
        assert text in flat, f"{case}: the failure does not name {text!r}"
    assert diff_snapshots(before[case], snapshot(host)) == [], f"{case}: the run changed the host"


def test_legacy_gpu_where_no_legacy_driver_is_offered(sandbox_ready) -> None:
    """Leap 16.0's graphics repository has no G06 proprietary kmp: the driver role stops, naming the GPU
    and the package it looked for (after the repository was added: only the repository says so)."""
    with scenario_hosts("nolegacy", {"gtx1080ti": ("leap160", {"preflight_pci_devices_path": PCI})}) as (
        inventory,
        hosts,
    ):
        host = hosts["gtx1080ti"]
        pci_fixtures.write_tree("gtx1080ti", host.root / PCI.lstrip("/"))
        res = run_playbook_on(inventory, host.name, "playbooks/provision.yml", tags=DRIVER_TAGS)
        flat = " ".join(res.stdout.split())
        assert res.returncode != 0
        for text in (
            "nvidia-driver-G06-kmp-default",
            "is not in the enabled repositories",
            "NVIDIA GeForce GTX 1080 Ti",
            "Available: none",
        ):
            assert text in flat, text
        assert host.run("rpm", "-qa", "nvidia*kmp*").stdout.strip() == ""
