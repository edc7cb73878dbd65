"""cuda_links: CUDA/cuDNN headers and libraries linked into /usr/include and /usr/lib64, SONAME and
development links present, the loader configured, every link the project made resolving.

Expected values come from the inventory (`stack_vars`): gpu_stack_cuda_version, gpu_stack_tensorflow_sonames
and the role inputs cuda_links_* where the inventory sets them (role defaults otherwise).
"""

from __future__ import annotations

import json
import re

import pytest

# cuDNN and the links go into the system CUDA tree only where TensorFlow uses it
pytestmark = pytest.mark.usefixtures("system_cuda_only")

MANIFEST = "/var/lib/opensuse-gpu-stack/manifest-cuda_links.json"
LOADER_CONF = "/etc/ld.so.conf.d/opensuse-gpu-stack-cuda-links.conf"


@pytest.fixture(scope="module")
def links(host, stack_vars) -> dict:
    home = stack_vars.get("cuda_links_cuda_home", "/usr/local/cuda")
    major = str(stack_vars["gpu_stack_cuda_version"]).split(".")[0]
    return {
        "home": home,
        "include": f"{home}/include",
        "lib": f"{home}/lib64",
        "sys_include": stack_vars.get("cuda_links_include_dir", "/usr/include"),
        "sys_lib": stack_vars.get("cuda_links_lib_dir", "/usr/lib64"),
        "system_dirs": bool(stack_vars.get("cuda_links_system_dirs_enabled", True)),
        "loader_conf": stack_vars.get("cuda_links_loader_conf", LOADER_CONF),
        "sonames": list(stack_vars["gpu_stack_tensorflow_sonames"].get(major, [])),
        "cudnn_soname": f"libcudnn.so.{str(stack_vars['gpu_stack_cudnn_version']).split('.')[0]}",
    }


def _names(host, directory: str, pattern: str) -> list[str]:
    find = "find -L %s -mindepth 1 -maxdepth 1 -name %s -printf '%%f\\n'"
    out = host.check_output(find, directory, pattern)
    return sorted(n for n in out.split() if not n.startswith("."))


def _ldconfig(host) -> dict[str, list[str]]:
    cache: dict[str, list[str]] = {}
    for line in host.check_output("ldconfig -p").splitlines():
        m = re.match(r"^\s*(\S+) \(.*\) => (\S+)$", line)
        if m:
            cache.setdefault(m.group(1), []).append(m.group(2))
    return cache


@pytest.mark.parametrize(("source", "dest", "pattern"), [
    ("include", "sys_include", "*"),
    ("lib", "sys_lib", "*.so*"),
], ids=["headers", "libraries"])
def test_system_dir_links_point_into_cuda(host, links, source: str, dest: str, pattern: str) -> None:
    if not links["system_dirs"]:
        pytest.skip("cuda_links_system_dirs_enabled is false")
    names = _names(host, links[source], pattern)
    assert names, f"nothing in {links[source]}"
    wrong = []
    for name in names:
        want = host.check_output("readlink -f %s", f"{links[source]}/{name}")
        got = host.run("readlink -f %s", f"{links[dest]}/{name}").stdout.strip()
        if got != want:
            wrong.append(f"{links[dest]}/{name} -> {got or 'missing'} (want {want})")
    assert wrong == []


@pytest.mark.parametrize("which", ["soname", "dev"])
def test_soname_and_dev_links(host, links, which: str) -> None:
    """Every SONAME ldconfig reads from the CUDA libraries has its link, and the unversioned dev link."""
    real = host.check_output("readlink -f %s", links["lib"])
    cache = _ldconfig(host)
    dirs = {p.rsplit("/", 1)[0] for paths in cache.values() for p in paths}
    cuda_dirs = {d for d in dirs if host.check_output("readlink -f %s", d) == real}
    sonames = [s for s, paths in cache.items() if any(p.rsplit("/", 1)[0] in cuda_dirs for p in paths)]
    assert links["cudnn_soname"] in sonames
    missing = []
    for soname in sonames:
        name = soname if which == "soname" else soname.split(".so")[0] + ".so"
        if not host.file(f"{links['lib']}/{name}").exists:
            missing.append(name)
    assert missing == []


def test_tensorflow_sonames_resolve(host, links) -> None:
    cache = _ldconfig(host)
    wanted = [*links["sonames"], links["cudnn_soname"]]
    assert [s for s in wanted if s not in cache] == [], "ldconfig -p misses sonames TensorFlow dlopens"


def test_loader_conf(host, links) -> None:
    conf = host.file(links["loader_conf"])
    assert conf.is_file and (conf.user, conf.group, conf.mode) == ("root", "root", 0o644)
    assert f"{links['lib']}\n" in conf.content_string


def test_every_created_link_resolves(host) -> None:
    data = json.loads(host.file(MANIFEST).content_string)
    assert data["state"] == "applied"
    broken = [e["path"] for e in data["entries"] if e["kind"] == "link" and not host.file(e["path"]).exists]
    assert broken == []


def test_manifest_matches_disk(host) -> None:
    manifest = host.file(MANIFEST)
    assert (manifest.user, manifest.mode) == ("root", 0o644)
    changed = [e["path"] for e in json.loads(manifest.content_string)["entries"]
               if e["kind"] == "link" and host.run("readlink %s", e["path"]).stdout.strip() != e["target"]]
    assert changed == []
