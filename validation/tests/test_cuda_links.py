"""cuda_links: CUDA/cuDNN headers and libraries linked into /usr/include and /usr/lib64 (files only, never a
directory link), SONAME and development links present, every link the project made resolving and in the
loader cache, and no alias that crosses major versions (a different ABI) among them.

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
VERSIONED = re.compile(r"^lib.*\.so\.(\d+)(\.\d+)*$")


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


def _manifest(host) -> dict:
    return json.loads(host.file(MANIFEST).content_string)


def _realpaths(host, paths) -> dict[str, str]:
    """Real paths of many paths in one call on the host (readlink -m: one line per path, existing or not)."""
    paths = sorted(set(paths))
    if not paths:
        return {}
    out = host.check_output("readlink -m --" + " %s" * len(paths), *paths).splitlines()
    return dict(zip(paths, out, strict=True))


@pytest.mark.parametrize(("source", "dest", "find"), [
    ("include", "sys_include", "-type f"),
    ("lib", "sys_lib", "-maxdepth 1 -name '*.so*' ! -type d"),
], ids=["headers", "libraries"])
def test_system_dir_links_point_into_cuda(host, links, source: str, dest: str, find: str) -> None:
    """Every header (at any depth) and library of the CUDA tree is reachable under the system directory."""
    if not links["system_dirs"]:
        pytest.skip("cuda_links_system_dirs_enabled is false")
    found = host.check_output(f"find -L %s -mindepth 1 {find} -printf '%%P\\n'", links[source]).split()
    names = sorted(n for n in found if not n.split("/")[-1].startswith("."))
    assert names, f"nothing in {links[source]}"
    real = _realpaths(host, [f"{links[d]}/{n}" for n in names for d in (source, dest)])
    wrong = [f"{links[dest]}/{n} -> {real[f'{links[dest]}/{n}']} (want {real[f'{links[source]}/{n}']})"
             for n in names if real[f"{links[dest]}/{n}"] != real[f"{links[source]}/{n}"]]
    assert wrong == []


@pytest.mark.parametrize("dest", ["sys_include", "sys_lib"])
def test_no_directory_links_in_system_dirs(host, links, dest: str) -> None:
    """Files only: a package that later owns such a directory collides with a link or writes through it."""
    made = [e["path"] for e in _manifest(host)["entries"]
            if e["kind"] == "link" and e["path"].startswith(links[dest] + "/")
            and host.file(e["path"]).is_directory]
    assert made == [], "directory links made by this project"
    into_cuda = host.check_output("find %s -xdev -type l -xtype d -lname '/usr/local/cuda*'", links[dest])
    assert into_cuda.split() == [], "directory links into the CUDA tree"


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


def test_no_alias_across_majors(host) -> None:
    """An alias from one major version to another (libcufft.so.11 -> libcufft.so.10) is a different ABI:
    TensorFlow would load the wrong library. Flagged here even when the role was told to make it."""
    cache = _ldconfig(host)
    links = [e for e in _manifest(host)["entries"] if e["kind"] == "link" and VERSIONED.match(
        e["path"].rsplit("/", 1)[-1]) and e.get("reason") in ("alias", "expected-alias", "mirror")]
    real = _realpaths(host, [p for paths in cache.values() for p in paths] + [e["path"] for e in links])
    soname_of = {real[p]: name for name, paths in cache.items() if VERSIONED.match(name) for p in paths}
    crossing = []
    for entry in links:
        major = VERSIONED.match(entry["path"].rsplit("/", 1)[-1]).group(1)
        soname = soname_of.get(real[entry["path"]])
        if soname and VERSIONED.match(soname).group(1) != major:
            crossing.append(f"{entry['path']} leads to {soname}")
    assert crossing == [], "aliases across major versions (a different ABI): " + "; ".join(crossing)


def test_links_are_in_the_loader_cache(host) -> None:
    """Each SONAME-named link the project made in a directory ldconfig scans is in the cache (not stale)."""
    cache = _ldconfig(host)
    scanned_out = host.check_output("ldconfig -v -N -X 2>/dev/null").splitlines()
    scanned = [line.split(":")[0] for line in scanned_out if line.startswith("/")]
    entries = [e for e in _manifest(host)["entries"]
               if e["kind"] == "link" and e["path"].rsplit("/", 1)[1] in cache]
    real = _realpaths(host, scanned + [e["path"].rsplit("/", 1)[0] for e in entries]
                      + [p.rsplit("/", 1)[0] for e in entries for p in cache[e["path"].rsplit("/", 1)[1]]])
    scanned_real = {real[d] for d in scanned}
    missing = []
    for entry in entries:
        directory, name = entry["path"].rsplit("/", 1)
        if real[directory] in scanned_real and real[directory] not in {
                real[p.rsplit("/", 1)[0]] for p in cache[name]}:
            missing.append(entry["path"])
    assert missing == [], "not in the loader cache (no ldconfig after they were made): " + ", ".join(missing)


def test_every_created_link_resolves(host) -> None:
    data = _manifest(host)
    assert data["state"] == "applied"
    broken = [e["path"] for e in data["entries"] if e["kind"] == "link" and not host.file(e["path"]).exists]
    assert broken == []


def test_manifest_matches_disk(host) -> None:
    manifest = host.file(MANIFEST)
    assert (manifest.user, manifest.mode) == ("root", 0o644)
    entries = json.loads(manifest.content_string)["entries"]
    changed = [e["path"] for e in entries
               if e["kind"] == "link" and host.run("readlink %s", e["path"]).stdout.strip() != e["target"]]
    changed += [e["path"] for e in entries if e["kind"] == "dir" and not host.file(e["path"]).is_directory]
    assert changed == []
    assert [e["path"] for e in entries if e["kind"] not in ("link", "dir")] == [], "files in the manifest"
