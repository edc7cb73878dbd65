"""cudnn: cuDNN in the CUDA tree (tarball) or in /usr (RPMs), owned by root, at the pinned version, loadable.

Expected values come from the inventory (`stack_vars`): gpu_stack_cudnn_version, gpu_stack_cuda_version and
the role inputs cudnn_install_method / cudnn_cuda_home where the inventory sets them.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
import yaml

# cuDNN and the links go into the system CUDA tree only where TensorFlow uses it
pytestmark = pytest.mark.usefixtures("system_cuda_only")

MANIFEST = "/var/lib/opensuse-gpu-stack/manifest-cudnn.json"
VERSIONS = Path(__file__).resolve().parents[2] / "pins.yml"
# Headers and sub-libraries per cuDNN major (NVIDIA's archive contents)
HEADERS = {
    "9": ["cudnn.h", "cudnn_version.h", "cudnn_adv.h", "cudnn_backend.h", "cudnn_cnn.h", "cudnn_graph.h",
          "cudnn_ops.h"],
    "8": ["cudnn.h", "cudnn_version.h", "cudnn_adv_infer.h", "cudnn_adv_train.h", "cudnn_backend.h",
          "cudnn_cnn_infer.h", "cudnn_cnn_train.h", "cudnn_ops_infer.h", "cudnn_ops_train.h"],
}
LIBRARIES = {
    "9": ["libcudnn", "libcudnn_graph", "libcudnn_ops", "libcudnn_cnn", "libcudnn_adv", "libcudnn_heuristic",
          "libcudnn_engines_precompiled", "libcudnn_engines_runtime_compiled"],
    "8": ["libcudnn", "libcudnn_ops_infer", "libcudnn_ops_train", "libcudnn_cnn_infer", "libcudnn_cnn_train",
          "libcudnn_adv_infer", "libcudnn_adv_train"],
}
# Parametrized with the names of the major pinned in pins.yml (read at collection time); a host whose
# inventory pins another major skips them (see _skip_other_major).
PINNED_MAJOR = str(yaml.safe_load(VERSIONS.read_text())["gpu_stack_cudnn_version"]).split(".")[0]
HEADER_CASES = [(PINNED_MAJOR, name) for name in HEADERS.get(PINNED_MAJOR, [])]
LIBRARY_CASES = [(PINNED_MAJOR, name) for name in LIBRARIES.get(PINNED_MAJOR, [])]


@pytest.fixture(scope="module")
def cudnn(host, stack_vars) -> dict:
    """What the role was asked to install, and where it lands."""
    pin = str(stack_vars["gpu_stack_cudnn_version"])
    method = stack_vars.get("cudnn_install_method", "tarball")
    home = stack_vars.get("cudnn_cuda_home", "/usr/local/cuda")
    if method == "rpm":
        include, lib = "/usr/include", "/usr/lib64"
    else:
        include, lib = f"{home}/include", f"{home}/lib64"
    major, minor, patch = pin.split(".")[:3]
    return {"pin": pin, "major": major, "minor": minor, "patch": patch, "method": method, "home": home,
            "include": include, "lib": lib, "cuda": str(stack_vars["gpu_stack_cuda_version"])}


def _skip_other_major(cudnn: dict, major: str) -> None:
    if major != cudnn["major"]:
        pytest.skip(f"cuDNN {major} name; the pin is {cudnn['pin']}")


@pytest.mark.parametrize(("major", "name"), HEADER_CASES)
def test_header_root_0644(host, cudnn, major: str, name: str) -> None:
    _skip_other_major(cudnn, major)
    header = host.file(f"{cudnn['include']}/{name}")
    assert header.is_file, f"{header.path} missing"
    assert (header.user, header.group, header.mode) == ("root", "root", 0o644)


@pytest.mark.parametrize(("major", "name"), LIBRARY_CASES)
def test_library_root_0755(host, cudnn, major: str, name: str) -> None:
    _skip_other_major(cudnn, major)
    link = host.file(f"{cudnn['lib']}/{name}.so.{major}")
    assert link.exists, f"{link.path} missing or dangling"
    real = host.file(host.check_output("readlink -f %s", link.path))
    assert real.is_file and not real.is_symlink
    assert (real.user, real.group, real.mode) == ("root", "root", 0o755), real.path


@pytest.mark.parametrize("sub", ["include", "lib"])
def test_directories_root_0755(host, cudnn, sub: str) -> None:
    real = host.file(host.check_output("readlink -f %s", cudnn[sub]))
    assert real.is_directory
    assert (real.user, real.group, real.mode) == ("root", "root", 0o755), real.path


@pytest.mark.parametrize("name", ["include", "lib64"])
def test_cuda_directory_symlinks_kept(host, cudnn, name: str) -> None:
    """Unpacking must not replace the RPM-owned include/lib64 symlinks of /usr/local/cuda-X.Y."""
    if cudnn["method"] == "rpm":
        pytest.skip("RPM route: nothing is written into the CUDA tree")
    tree = host.file(f"/usr/local/cuda-{cudnn['cuda']}/{name}")
    assert tree.is_symlink, f"{tree.path} is no longer a symlink"
    assert tree.linked_to.startswith(f"/usr/local/cuda-{cudnn['cuda']}/targets/")


def test_version_header_matches_pin(host, cudnn) -> None:
    text = host.file(f"{cudnn['include']}/cudnn_version.h").content_string
    found = dict(re.findall(r"#\s*define\s+CUDNN_(MAJOR|MINOR|PATCHLEVEL)\s+(\d+)", text))
    assert (found.get("MAJOR"), found.get("MINOR"), found.get("PATCHLEVEL")) == (
        cudnn["major"], cudnn["minor"], cudnn["patch"])


def test_every_cudnn_link_resolves(host, cudnn) -> None:
    dangling = host.check_output("find -L %s -maxdepth 1 -name 'libcudnn*' -type l", cudnn["lib"])
    assert dangling == "", f"dangling links: {dangling}"


@pytest.mark.parametrize(("major", "name"), LIBRARY_CASES)
def test_ldconfig_resolves_cudnn(host, cudnn, major: str, name: str) -> None:
    _skip_other_major(cudnn, major)
    soname = f"{name}.so.{major}"
    cache = host.check_output("ldconfig -p")
    assert re.search(rf"^\s*{re.escape(soname)} \(.*\) => /", cache, re.M), f"ldconfig -p has no {soname}"


@pytest.mark.parametrize("base", ["libcudart", "libcublas"])
def test_ldconfig_resolves_cuda_runtime(host, cudnn, base: str) -> None:
    soname = f"{base}.so.{cudnn['cuda'].split('.')[0]}"
    cache = host.check_output("ldconfig -p")
    assert re.search(rf"^\s*{re.escape(soname)} \(.*\) => /", cache, re.M), f"ldconfig -p has no {soname}"


def test_ctypes_load_returns_pinned_version(host, cudnn, host_python) -> None:
    major, minor, patch = (int(cudnn[k]) for k in ("major", "minor", "patch"))
    # cudnnGetVersion(): major*1000+minor*100+patch up to cuDNN 8, major*10000+minor*100+patch from 9
    expected = major * (10000 if major >= 9 else 1000) + minor * 100 + patch
    code = f"import ctypes; print(ctypes.CDLL('libcudnn.so.{major}').cudnnGetVersion())"
    assert host.check_output(f"{host_python} -c %s", code).strip() == str(expected)


def test_cuda_packages_verify_clean(host) -> None:
    """rpm -V of every CUDA/cuDNN/driver package: cuDNN's files must not have altered any of them."""
    names = host.check_output("rpm -qa --qf %s", "%{NAME}\n").split()
    ours = sorted(n for n in names if re.match(r"^(cuda|libcu|libnv|libcudnn|nvidia)", n))
    assert ours, "no CUDA packages installed"
    res = host.run("rpm -V" + " %s" * len(ours), *ours)
    assert res.rc == 0 and res.stdout.strip() == "", res.stdout + res.stderr


def test_manifest_matches_disk(host, cudnn) -> None:
    manifest = host.file(MANIFEST)
    assert manifest.is_file and (manifest.user, manifest.mode) == ("root", 0o644)
    data = json.loads(manifest.content_string)
    assert data["state"] == "installed" and data["version_pin"] == cudnn["pin"]
    if cudnn["method"] == "rpm":
        return
    for entry in data["entries"]:
        f = host.file(entry["path"])
        if entry["kind"] == "link":
            target = host.check_output("readlink %s", entry["path"])
            assert f.is_symlink and target == entry["target"], entry["path"]
        elif entry["kind"] == "file":
            assert f.is_file and f.mode == entry["mode"] and f.sha256sum == entry["sha256"], entry["path"]
        else:
            assert f.is_directory, entry["path"]
