"""Unit tests for sandbox/build_repos.py and its catalogue sandbox/stubs/packages.py.

Pure and fast: no rpmbuild, gcc, gpg or network. They check that the catalogue is consistent (every
Requires resolves inside each repository and inside what each platform's hosts see, one signing key per
package, sonames, file clashes, NVIDIA's layout), that it models what sandbox/stubs/facts.yml says and
invents no driver, toolkit or component version of its own, the spec rendering, the committed test keys
against their README, the wheel handling, and the cuDNN fixtures' layouts (written with fake library
bytes and read back with tarfile).
"""

from __future__ import annotations

import dataclasses
import hashlib
import importlib
import importlib.util
import json
import os
import re
import shutil
import sys
import tarfile
import types
import zipfile
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
SPEC = importlib.util.spec_from_file_location("build_repos", REPO / "sandbox/build_repos.py")
br = importlib.util.module_from_spec(SPEC)
sys.modules["build_repos"] = br
SPEC.loader.exec_module(br)
cat = br.load_catalogue()
sys.path.insert(0, str(REPO))
sandbox_facts = importlib.import_module("sandbox.facts")
sandboxctl = importlib.import_module("sandbox.sandboxctl")

TEMPLATES = REPO / "sandbox/stubs/include"
FACTS = cat.FACTS
MODEL = FACTS["stub_model"]
PLATFORMS = FACTS["platforms"]
TK125 = FACTS["cuda_toolkits"]["12.5.1"]
TK132 = FACTS["cuda_toolkits"]["13.2"]
BUNDLED_DRIVER = str(TK125["driver_bundled"]["version"])

BY_NAME: dict[str, list] = {}
for _pkg in cat.PACKAGES:
    BY_NAME.setdefault(_pkg.name, []).append(_pkg)

CUDA15 = cat.cuda_repo("opensuse15")
SLES15 = cat.cuda_repo("sles15")
SUSE16 = cat.cuda_repo("suse16")


def pkg(name: str, version: str | None = None, repo: str | None = None):
    matches = [
        p
        for p in BY_NAME.get(name, [])
        if (version is None or p.version == version) and (repo is None or repo in p.repos)
    ]
    assert len(matches) == 1, f"{name} {version} in {repo}: {len(matches)} matches"
    return matches[0]


def in_repo(repo: str) -> list:
    return [p for p in cat.PACKAGES if repo in p.repos]


def paths(package) -> dict[str, object]:
    return {e.path: e for e in package.entries}


def newest(name: str, repo: str):
    candidates = [p for p in BY_NAME[name] if repo in p.repos]
    best = candidates[0]
    for candidate in candidates[1:]:
        if br.rpmvercmp(candidate.version, best.version) > 0:
            best = candidate
    return best


def platform_repos(pid: str) -> tuple[str, str, str]:
    """What a host of the platform has enabled once the roles ran: its base OS repository, NVIDIA's CUDA
    repository directory and NVIDIA's graphics repository."""
    pf = PLATFORMS[pid]
    return cat.oss_repo(pid), cat.cuda_repo(pf["cuda_repo"]["dist"]), cat.gfx_repo(pf["gfx_repo"]["path"])


def seen_together(repos) -> list:
    """The catalogue as one repository holding everything `repos` hold (what zypper resolves against)."""
    return [dataclasses.replace(p, repos=frozenset({"view"})) for p in cat.PACKAGES if p.repos & set(repos)]


def kmp_driver(version: str) -> str:
    """555.42.06_k6.4.0_150600.23.7 -> 555.42.06 (SUSE's recipe: the version cut at '_')."""
    return version.split("_k", 1)[0]


DRIVER_PACKAGE = re.compile(
    r"^(nvidia-(compute|compute-utils|video|gl)-G0\d|nvidia-persistenced|nvidia-open-driver-G0\d"
    r"(-signed(-cuda)?-kmp-(default|meta))?|nvidia-driver-G0\d-kmp-default|cuda-drivers)$"
)
TOOLKIT_META = re.compile(r"^cuda(-(toolkit|libraries|libraries-devel|compiler|runtime))?(-\d+-\d+)?$")
NVIDIA_NAME = re.compile(r"^(nvidia|cuda|libcu|libnv|libcudnn|cudnn)")


# ------------------------------------------------------------------------------------------ dependencies


@pytest.mark.parametrize("repo", cat.REPOS)
def test_every_requires_resolves_inside_its_repo(repo):
    assert br.unresolved(cat.PACKAGES, repo) == []


@pytest.mark.parametrize("pid", sorted(PLATFORMS))
def test_every_requires_resolves_in_what_a_platform_host_sees(pid):
    assert br.unresolved(seen_together(platform_repos(pid)), "view") == []


@pytest.mark.parametrize("pid", ["leap156", "sles15"])
def test_local_installer_resolves_with_the_base_os(pid):
    assert br.unresolved(seen_together((cat.oss_repo(pid), cat.LOCAL)), "view") == []


def test_every_repository_belongs_to_a_platform():
    used = {repo for pid in PLATFORMS for repo in platform_repos(pid)} | {cat.LOCAL}
    assert used == set(cat.REPOS)
    assert all(in_repo(repo) for repo in cat.REPOS)


def test_unresolved_reports_missing_and_too_old():
    base = cat.Package("a", "1.0", "s", frozenset({"r"}), requires=("b >= 2", "c"))
    other = cat.Package("b", "1.5", "s", frozenset({"r"}))
    assert br.unresolved([base, other], "r") == ["r: a requires b >= 2", "r: a requires c"]


def test_name_version_release_is_unique():
    nvrs = [p.nvr for p in cat.PACKAGES]
    assert len(nvrs) == len(set(nvrs))


def test_each_package_is_signed_by_one_key():
    for p in cat.PACKAGES:
        assert p.repos and p.repos <= set(cat.REPOS)
        assert len({cat.SIGNING_KEY[r] for r in p.repos}) == 1, p.name
    for repo, key in cat.SIGNING_KEY.items():
        assert key == ("opensuse" if repo.startswith("oss/") else "nvidia"), repo


# ------------------------------------------------------------------------------------------ CUDA toolkits

CUDA_12_5_PACKAGES = [
    ("cuda-cudart-12-5", "12.5.82"),
    ("cuda-cudart-devel-12-5", "12.5.82"),
    ("cuda-driver-devel-12-5", "12.5.82"),
    ("cuda-nvcc-12-5", "12.5.82"),
    ("cuda-nvrtc-12-5", "12.5.82"),
    ("cuda-nvrtc-devel-12-5", "12.5.82"),
    ("libcublas-12-5", "12.5.3.2"),
    ("libcublas-devel-12-5", "12.5.3.2"),
    ("libcufft-12-5", "11.2.3.61"),
    ("libcurand-12-5", "10.3.6.82"),
    ("libcusolver-12-5", "11.6.3.83"),
    ("libcusparse-12-5", "12.5.1.3"),
    ("cuda-toolkit-config-common", "12.5.82"),
    ("cuda-toolkit-12-config-common", "12.5.82"),
    ("cuda-toolkit-12-5-config-common", "12.5.82"),
    ("cuda-libraries-12-5", "12.5.1"),
    ("cuda-libraries-devel-12-5", "12.5.1"),
    ("cuda-compiler-12-5", "12.5.1"),
    ("cuda-toolkit-12-5", "12.5.1"),
    ("cuda-runtime-12-5", "12.5.1"),
    ("cuda-12-5", "12.5.1"),
    ("cuda", "12.5.1"),
]


@pytest.mark.parametrize(("name", "version"), CUDA_12_5_PACKAGES)
def test_cuda_12_5_is_in_opensuse15_sles15_and_the_local_installer_not_suse16(name, version):
    package = pkg(name, version)
    assert {CUDA15, SLES15, cat.LOCAL} <= package.repos
    assert SUSE16 not in package.repos


def test_suse16_has_no_cuda_12_5():
    """NVIDIA's suse16 directory carries CUDA 13 only: TensorFlow takes its pip CUDA wheels there."""
    assert FACTS["cuda_repos"]["suse16"]["cuda_libraries_12_5"]["model"] == "absent"
    names = {p.name for p in in_repo(SUSE16)}
    assert "cuda-toolkit-12-5" not in names and "cuda-libraries-12-5" not in names
    assert not [n for n in names if "12-5" in n or n.endswith("-cuda-12")]
    assert not [p.nvr for p in in_repo(SUSE16) for e in p.entries if e.path.startswith("/usr/local/cuda-12")]


@pytest.mark.parametrize("dist", ["opensuse15", "sles15", "suse16"])
def test_plain_cuda_follows_the_newest_release(dist):
    repo = cat.cuda_repo(dist)
    releases = [str(r) for r in MODEL["toolkits"][dist]]
    assert newest("cuda", repo).version == "13.2.1" == max(releases, key=cat._vkey)
    assert newest("cuda", repo).requires == ("cuda-13-2 >= 13.2.1",)


def test_local_installer_stays_at_12_5_1():
    assert newest("cuda", cat.LOCAL).version == "12.5.1"
    assert newest("cuda-drivers", cat.LOCAL).version == BUNDLED_DRIVER == "555.42.06"
    assert not [p.nvr for p in in_repo(cat.LOCAL) if p.version.split(".")[0] == "13"]
    assert not [p.nvr for p in in_repo(cat.LOCAL) if "13-" in p.name]


def test_meta_packages_chain_like_nvidia():
    assert pkg("cuda", "12.5.1").requires == ("cuda-12-5 >= 12.5.1",)
    assert {"cuda-runtime-12-5 >= 12.5.1", "cuda-toolkit-12-5 >= 12.5.1"} == set(pkg("cuda-12-5").requires)
    assert "cuda-drivers >= 555.42.06" in pkg("cuda-runtime-12-5").requires
    assert "cuda-libraries-12-5 >= 12.5.1" in pkg("cuda-toolkit-12-5").requires
    # CUDA 13.2 came with driver 595.45.04, the oldest seen next to it
    for release in ("13.2.0", "13.2.1"):
        assert "cuda-drivers >= 595.45.04" in pkg("cuda-13-2", release, SUSE16).requires
        assert pkg("cuda-13-2", release, SUSE16).requires[0] == f"cuda-toolkit-13-2 >= {release}"


@pytest.mark.parametrize("package", BY_NAME["cuda-drivers"], ids=lambda p: p.version)
def test_cuda_drivers_pulls_nvidias_dkms_module_of_its_generation(package):
    gen, v = cat.DRIVERS[package.version], package.version
    assert package.requires == (
        f"nvidia-open-driver-{gen} = {v}",
        f"nvidia-compute-utils-{gen} = {v}",
        f"nvidia-persistenced = {v}",
    )
    assert pkg(f"nvidia-compute-utils-{gen}", v).requires == (f"nvidia-compute-{gen} = {v}",)


def test_cuda_13_2_is_modelled_by_its_meta_packages_and_cccl_only():
    """CUDA 13's libraries are not modelled: no libcudart.so.13, nothing outside /usr/local/cuda-13.2."""
    cuda13 = [p for p in cat.PACKAGES if p.name.endswith("13-2") or p.version.split(".")[0] == "13"]
    assert {p.name for p in cuda13} == {"cuda", "cuda-13-2", "cuda-toolkit-13-2", "cuda-cccl-13-2"}
    cccl = dict(zip(map(str, TK132["releases_seen"]), map(str, TK132["cuda_cccl"]), strict=True))
    for release in MODEL["toolkits"]["suse16"]:
        assert pkg("cuda-toolkit-13-2", str(release), SUSE16).requires == (
            f"cuda-cccl-13-2 = {cccl[release]}",
        )
    for p in cuda13:
        assert p.post == p.preun == p.postun == ""  # no alternatives: /usr/local/cuda stays where it was
        assert all(e.kind == "dir" and e.path.startswith("/usr/local/cuda-13.2") for e in p.entries), p.nvr
    assert not [lib_id for lib_id, lib in cat.LIBRARIES.items() if lib.soname.startswith("libcudart.so.13")]


@pytest.mark.parametrize("dist", ["opensuse15", "sles15", "suse16"])
def test_cudnn_rpms_where_facts_model_them(dist):
    wanted = cat.CUDNN["version"] in [str(v) for v in MODEL["cudnn_rpms"].get(dist, [])]
    names = {p.name for p in in_repo(cat.cuda_repo(dist))}
    for name in ("libcudnn9-cuda-12", "libcudnn9-devel-cuda-12", "cudnn9-cuda-12"):
        assert (name in names) == wanted, (dist, name)
        if wanted:
            assert pkg(name, "9.3.0.75", cat.cuda_repo(dist))
    assert not [p for p in in_repo(cat.LOCAL) if "cudnn" in p.name]  # cuDNN has its own installers


# ------------------------------------------------------------------------------------------ driver packages


def _nvidia_in(repo: str) -> list:
    return [p for p in in_repo(repo) if p.vendor != cat.OSS_VENDOR]


@pytest.mark.parametrize("pid", sorted(PLATFORMS))
def test_oss_repo_carries_the_signed_kmps_and_nothing_else_of_nvidias(pid):
    repo = cat.oss_repo(pid)
    expected = {
        (f"nvidia-open-driver-{k['generation']}-signed-cuda-kmp-default", f"{k['driver']}_k{k['kernel']}")
        for k in MODEL["signed_kmps"][pid]
    }
    assert {(p.name, p.version) for p in _nvidia_in(repo)} == expected
    for p in _nvidia_in(repo):
        gen, driver = p.name.split("-")[3], kmp_driver(p.version)
        assert p.vendor == "SUSE LLC"
        assert p.provides == (f"nvidia-open-driver-{gen}-signed-cuda-kmp = {driver}",)
        kdir = cat._kernel_dir(p.version.split("_k", 1)[1])
        assert f"/lib/modules/{kdir}/updates/nvidia.ko" in paths(p)
    others = [p.name for p in in_repo(repo) if p.vendor == cat.OSS_VENDOR and NVIDIA_NAME.match(p.name)]
    assert others == []


SIGNED_KMPS = [
    pytest.param(pid, k, id=f"{pid}-{k['generation']}-{k['driver']}")
    for pid in sorted(PLATFORMS)
    for k in MODEL["signed_kmps"][pid]
]


@pytest.mark.parametrize(("pid", "kmp"), SIGNED_KMPS)
def test_user_space_at_every_kmps_version_is_in_the_platforms_cuda_repo(pid, kmp):
    """SUSE's recipe: install the signed kmp, cut its version at '_', pin the user space to it."""
    dist = PLATFORMS[pid]["cuda_repo"]["dist"]
    repo, gen, driver = cat.cuda_repo(dist), str(kmp["generation"]), str(kmp["driver"])
    if gen not in {str(d["generation"]) for d in MODEL["cuda_userspace"][dist]}:
        # No user space of that generation at all in the directory: facts.yml must say so
        assert FACTS["cuda_repos"][dist]["driver_packages"][gen]["model"] == "absent", (dist, gen)
        return
    for name in (
        f"nvidia-compute-{gen}",
        f"nvidia-compute-utils-{gen}",
        "nvidia-persistenced",
        "cuda-drivers",
    ):
        assert pkg(name, driver, repo)


@pytest.mark.parametrize("pid", sorted(PLATFORMS))
def test_the_newest_g07_kmp_has_its_user_space(pid):
    """The role's default (G07, no pin): the newest signed kmp and the user space at its version."""
    oss, cuda, _gfx = platform_repos(pid)
    kmp = newest("nvidia-open-driver-G07-signed-cuda-kmp-default", oss)
    driver = kmp_driver(kmp.version)
    assert cat.DRIVERS[driver] == "G07"
    for name in ("nvidia-compute-G07", "nvidia-compute-utils-G07", "nvidia-persistenced"):
        assert pkg(name, driver, cuda)


@pytest.mark.parametrize("path", sorted(MODEL["gfx_drivers"]))
def test_gfx_repo_carries_what_stub_model_lists(path):
    repo = cat.gfx_repo(path)
    platform = cat._gfx_platform(path)
    expected = set()
    for d in MODEL["gfx_drivers"][path]:
        gen, driver = str(d["generation"]), str(d["driver"])
        expected |= {
            (f"nvidia-compute-{gen}", driver),
            (f"nvidia-compute-utils-{gen}", driver),
            (f"nvidia-video-{gen}", driver),
            (f"nvidia-gl-{gen}", driver),
        }
        if d.get("proprietary"):
            kmp = pkg(f"nvidia-driver-{gen}-kmp-default", repo=repo)
        else:
            kmp = pkg(f"nvidia-open-driver-{gen}-signed-kmp-default", repo=repo)
            expected.add((f"nvidia-open-driver-{gen}-signed-kmp-meta", driver))
        assert kmp_driver(kmp.version) == driver
        kernel = kmp.version.split("_k", 1)[1]
        assert kernel in {str(k["kernel"]) for k in MODEL["signed_kmps"][platform]}
        expected.add((kmp.name, kmp.version))
    assert {(p.name, p.version) for p in in_repo(repo)} == expected


def test_g06_proprietary_kmp_only_where_the_graphics_repository_has_it():
    have = {
        path
        for path in MODEL["gfx_drivers"]
        if any(p.name == "nvidia-driver-G06-kmp-default" for p in in_repo(cat.gfx_repo(path)))
    }
    assert have == {"opensuse/leap/15.6", "suse/sle15sp6", "opensuse/tumbleweed"}
    assert FACTS["gfx_repos"]["opensuse/leap/16.0"]["G06_proprietary"]["model"].startswith("absent")


def test_gfx_meta_package():
    for meta in BY_NAME["nvidia-open-driver-G07-signed-kmp-meta"]:
        v = meta.version
        assert all(r.startswith("gfx/") for r in meta.repos)
        assert meta.requires == (
            f"nvidia-open-driver-G07-signed-kmp = {v}",
            f"nvidia-compute-utils-G07 = {v}",
            f"nvidia-gl-G07 = {v}",
        )


def test_kernel_module_packages_conflict_with_each_other():
    kmps = [p for p in cat.PACKAGES if p.name in cat.KMP_NAMES]
    assert {p.name for p in kmps} <= set(cat.KMP_NAMES)
    for p in kmps:
        assert set(p.conflicts) == set(cat.KMP_NAMES) - {p.name}, p.nvr
    for dkms in [p for p in cat.PACKAGES if re.fullmatch(r"nvidia-open-driver-G0\d", p.name)]:
        assert set(dkms.conflicts) == set(cat.KMP_NAMES), dkms.nvr
    # the CUDA-repo route's and the graphics route's kmp install the same module file
    cuda_kmp = pkg(
        "nvidia-open-driver-G07-signed-cuda-kmp-default", "595.71.05_k6.4.0_150600.23.65", "oss/leap156"
    )
    gfx_kmp = pkg("nvidia-open-driver-G07-signed-kmp-default", repo="gfx/opensuse/leap/15.6")
    assert set(paths(cuda_kmp)) == set(paths(gfx_kmp))


def test_driver_versions_fit_their_generation():
    """G07 is 590 and newer, G06 the 550-580 branches (facts.yml driver_generations)."""
    g07_min = int(re.search(r"\d+", str(FACTS["driver_generations"]["G07"]["branches"])).group())
    g06_low, g06_high = map(int, re.findall(r"\d+", str(FACTS["driver_generations"]["G06"]["branches"])))
    for driver, gen in cat.DRIVERS.items():
        branch = int(driver.split(".")[0])
        assert branch >= g07_min if gen == "G07" else g06_low <= branch <= g06_high, (driver, gen)
    for p in cat.PACKAGES:
        m = re.search(r"-(G0\d)(-|$)", p.name)
        if m:
            assert cat.DRIVERS[kmp_driver(p.version)] == m.group(1), p.nvr


# ------------------------------------------------------------------------------------------ traceability


def _facts_tokens(node) -> set[str]:
    """Every scalar of facts.yml (keys too) and every dotted number inside one."""
    out: set[str] = set()
    stack = [node]
    while stack:
        item = stack.pop()
        if isinstance(item, dict):
            stack += list(item.keys()) + list(item.values())
        elif isinstance(item, list):
            stack += item
        elif item is not None:
            text = str(item)
            out.add(text)
            out.update(re.findall(r"\d+(?:[._]\d+)+", text))
    return out


FACT_TOKENS = _facts_tokens({k: v for k, v in FACTS.items() if k != "sources"})


def _expected_drivers(repo: str) -> dict[str, str]:
    """driver -> generation that stub_model (or, for the local installer, the bundled driver) gives `repo`."""
    if repo == cat.LOCAL:
        return {BUNDLED_DRIVER: cat.DRIVERS[BUNDLED_DRIVER]}
    kind, rest = repo.split("/", 1)
    section, key = {
        "oss": ("signed_kmps", rest),
        "cuda": ("cuda_userspace", rest.split("/")[0]),
        "gfx": ("gfx_drivers", rest),
    }[kind]
    return {str(d["driver"]): str(d["generation"]) for d in MODEL[section][key]}


@pytest.mark.parametrize("repo", cat.REPOS)
def test_driver_versions_per_repo_are_the_ones_stub_model_lists(repo):
    got = {kmp_driver(p.version) for p in in_repo(repo) if DRIVER_PACKAGE.match(p.name)}
    expected = _expected_drivers(repo)
    assert got == set(expected)
    for p in in_repo(repo):
        m = re.search(r"-(G0\d)(-|$)", p.name)
        if m:
            assert expected[kmp_driver(p.version)] == m.group(1), p.nvr


@pytest.mark.parametrize("repo", [*[cat.cuda_repo(d) for d in MODEL["toolkits"]], cat.LOCAL])
def test_toolkit_releases_per_repo_are_the_ones_stub_model_lists(repo):
    got = {p.version for p in in_repo(repo) if TOOLKIT_META.match(p.name)}
    expected = (
        {TK125["cuda"]} if repo == cat.LOCAL else {str(r) for r in MODEL["toolkits"][repo.split("/")[1]]}
    )
    assert got == {str(r) for r in expected}
    for p in in_repo(repo):
        m = re.search(r"-(\d+)-(\d+)$", p.name)
        if TOOLKIT_META.match(p.name) and m:
            assert p.version.startswith(f"{m.group(1)}.{m.group(2)}."), p.nvr


def test_cuda_12_5_component_versions_come_from_facts():
    known = {str(v) for v in TK125["components"].values()} | {str(v) for v in TK125["libraries"].values()}
    for p in cat.PACKAGES:
        if (p.name.endswith("-12-5") and not TOOLKIT_META.match(p.name)) or p.name.endswith("config-common"):
            assert p.version in known, p.nvr
    assert {p.version for p in BY_NAME["cuda-cccl-13-2"]} == {str(v) for v in TK132["cuda_cccl"]}
    assert cat.CUDNN["version"] == "9.3.0.75" and "9.3.0.75" in FACT_TOKENS


def test_every_version_in_the_catalogue_is_in_facts():
    """packages.py invents no version: each package version (a kmp's driver and kernel, the local
    installer's release and driver) is a value of facts.yml, or the stated 'version not named' 0."""
    for p in cat.PACKAGES:
        if p.version == cat.UNMODELLED_VERSION:
            assert p.vendor == cat.OSS_VENDOR and re.fullmatch(r"0\.[a-z0-9]+", p.release), p.nvr
            assert p.release.split(".", 1)[1] in PLATFORMS, p.nvr
            continue
        assert p.release == "1", p.nvr
        for part in p.version.split("_k", 1):
            assert part in FACT_TOKENS, (p.nvr, part)
    for lib in cat.LIBRARIES.values():
        assert lib.version in FACT_TOKENS, lib
    release, driver = cat.LOCAL_INSTALLER["version"].split("_")
    assert (release, driver) == (str(TK125["cuda"]), BUNDLED_DRIVER)


def test_traceability_check_would_catch_an_invented_version():
    assert "595.71.05" in FACT_TOKENS and "12.5.82" in FACT_TOKENS
    for invented in ("555.42.07", "590.44.01", "13.0.2", "12.5.83", "580.95.05"):
        assert invented not in FACT_TOKENS


@pytest.mark.parametrize("pid", sorted(PLATFORMS))
def test_oss_repo_carries_the_names_facts_list(pid):
    pf = PLATFORMS[pid]
    names = {p.name for p in in_repo(cat.oss_repo(pid)) if p.vendor == cat.OSS_VENDOR}
    wanted = {str(pf["python"]["system"]["package"])}
    wanted |= set(pf["numeric"]["openblas"]) | set(pf["numeric"]["hdf5"]["packages"])
    wanted |= set(pf["build_tools"]["packages"])
    venv = sandbox_facts.venv_python(pf).replace(".", "")
    wanted |= {f"python{venv}{suffix}" for suffix in MODEL["python_subpackages"]["names"]}
    assert names == wanted
    hdf5_version = str(pf["numeric"]["hdf5"].get("version", ""))
    for name in pf["numeric"]["hdf5"]["packages"]:
        got = pkg(name, repo=cat.oss_repo(pid)).version
        assert got == (hdf5_version or cat.UNMODELLED_VERSION), name


# ------------------------------------------------------------------------------------------ payload


@pytest.mark.parametrize(
    ("library_id", "soname", "filename"),
    [
        ("cudart-12.5", "libcudart.so.12", "libcudart.so.12.5.82"),
        ("cublas-12.5", "libcublas.so.12", "libcublas.so.12.5.3.2"),
        ("cublasLt-12.5", "libcublasLt.so.12", "libcublasLt.so.12.5.3.2"),
        ("cufft-12.5", "libcufft.so.11", "libcufft.so.11.2.3.61"),
        ("curand-12.5", "libcurand.so.10", "libcurand.so.10.3.6.82"),
        ("cusolver-12.5", "libcusolver.so.11", "libcusolver.so.11.6.3.83"),
        ("cusparse-12.5", "libcusparse.so.12", "libcusparse.so.12.5.1.3"),
        ("nvrtc-12.5", "libnvrtc.so.12", "libnvrtc.so.12.5.82"),
        ("cuda-555.42.06", "libcuda.so.1", "libcuda.so.555.42.06"),
        ("cuda-595.71.05", "libcuda.so.1", "libcuda.so.595.71.05"),
        ("nvml-580.82.07", "libnvidia-ml.so.1", "libnvidia-ml.so.580.82.07"),
        ("libcudnn", "libcudnn.so.9", "libcudnn.so.9.3.0"),
        (
            "libcudnn_engines_runtime_compiled",
            "libcudnn_engines_runtime_compiled.so.9",
            "libcudnn_engines_runtime_compiled.so.9.3.0",
        ),
    ],
)
def test_library_sonames(library_id, soname, filename):
    library = cat.LIBRARIES[library_id]
    assert (library.soname, library.filename) == (soname, filename)


def test_every_library_has_a_source_and_every_driver_its_libcuda():
    for lib_id, library in cat.LIBRARIES.items():
        if library.source == "wheel":
            assert library.wheel in cat.WHEELS, lib_id
        else:
            assert (REPO / "sandbox/stubs/src" / library.source).is_file(), lib_id
    for driver in cat.DRIVERS:
        assert cat.LIBRARIES[f"cuda-{driver}"].filename == f"libcuda.so.{driver}"
        assert cat.LIBRARIES[f"nvml-{driver}"].filename == f"libnvidia-ml.so.{driver}"


@pytest.mark.parametrize(
    ("driver", "cuda"),
    [
        ("555.42.06", 12050),
        ("580.65.06", 13000),
        ("580.82.07", 13000),
        ("595.45.04", 13020),
        ("525.60.13", 12000),
    ],
)
def test_libcuda_reports_the_cuda_version_of_its_driver(driver, cuda):
    assert cat.driver_cuda_int(driver) == cuda


def test_cudart_12_5_is_nvidias_own_from_the_wheel():
    library = cat.LIBRARIES["cudart-12.5"]
    wheel = MODEL["wheels"]["nvidia-cuda-runtime-cu12"]
    assert (library.source, library.wheel) == ("wheel", "nvidia-cuda-runtime-cu12")
    assert str(wheel["version"]) == library.version == str(TK125["components"]["cuda_cudart"])
    assert re.fullmatch(r"[0-9a-f]{64}", str(wheel["sha256"]))
    assert str(wheel["file"]).startswith(f"nvidia_cuda_runtime_cu12-{wheel['version']}-")
    assert str(wheel["member"]).endswith("/" + library.soname)
    assert "wheel" in pkg("cuda-cudart-12-5").description
    # the only wheel-sourced library; everything else is a stub compiled from sandbox/stubs/src
    assert [i for i, lib in cat.LIBRARIES.items() if lib.source == "wheel"] == ["cudart-12.5"]


def _fake_wheel(tmp_path: Path, member: str, data: bytes) -> tuple[Path, str]:
    whl = tmp_path / "fake-1.0-py3-none-any.whl"
    with zipfile.ZipFile(whl, "w") as zf:
        zf.writestr(member, data)
    return whl, hashlib.sha256(whl.read_bytes()).hexdigest()


def test_wheel_member_is_extracted_from_the_cached_download(tmp_path):
    member = "nvidia/cuda_runtime/lib/libcudart.so.12"
    downloads = tmp_path / "downloads"
    downloads.mkdir()
    whl, digest = _fake_wheel(downloads, member, b"\x7fELF real bytes")
    fake_cat = types.SimpleNamespace(
        WHEELS={"w": {"version": "1.0", "file": whl.name, "sha256": digest, "member": member}}
    )
    builder = br.Builder(fake_cat, tmp_path / "work", tmp_path / "out", "/srv/x", 1, downloads=downloads)
    target = tmp_path / "libcudart.so"
    builder.extract_from_wheel("w", target)  # no pip: the cached file has the right sha256
    assert target.read_bytes() == b"\x7fELF real bytes"


def test_wheel_with_another_sha256_is_refused(tmp_path, monkeypatch):
    downloads = tmp_path / "downloads"
    downloads.mkdir()
    whl, _digest = _fake_wheel(downloads, "m", b"x")
    fake_cat = types.SimpleNamespace(
        WHEELS={"w": {"version": "1.0", "file": whl.name, "sha256": "0" * 64, "member": "m"}}
    )

    def fake_download(cmd, what, **kwargs):  # stands in for pip: "downloads" the same wrong file
        dest = Path(cmd[cmd.index("--dest") + 1])
        (dest / whl.name).write_bytes(whl.read_bytes())
        return br.Result(0, "", "")

    monkeypatch.setattr(br, "check", fake_download)
    builder = br.Builder(fake_cat, tmp_path / "work", tmp_path / "out", "/srv/x", 1, downloads=downloads)
    with pytest.raises(br.BuildError, match=r"facts\.yml says 0000"):
        builder.fetch_wheel("w")
    assert not (downloads / whl.name).exists()


@pytest.mark.parametrize("repo", [CUDA15, SLES15, cat.LOCAL])
def test_tensorflow_sonames_are_all_shipped_by_cuda_12_5(repo):
    versions = (REPO / "pins.yml").read_text()
    block = versions.split('"12":', 1)[1].split('"10":', 1)[0]
    wanted = set(re.findall(r"- (lib\S+)", block))
    shipped = {
        Path(e.path).name
        for p in in_repo(repo)
        for e in p.entries
        if e.kind == "symlink" and e.path.startswith("/usr/local/cuda-12.5/targets/")
    }
    assert wanted and wanted <= shipped


@pytest.mark.parametrize(
    ("name", "path", "kind", "target"),
    [
        (
            "cuda-cudart-12-5",
            "/usr/local/cuda-12.5/targets/x86_64-linux/lib/libcudart.so.12.5.82",
            "lib",
            "cudart-12.5",
        ),
        (
            "cuda-cudart-12-5",
            "/usr/local/cuda-12.5/targets/x86_64-linux/lib/libcudart.so.12",
            "symlink",
            "libcudart.so.12.5.82",
        ),
        ("cuda-cudart-12-5", "/usr/local/cuda-12.5/lib64", "symlink", "targets/x86_64-linux/lib"),
        ("cuda-cudart-12-5", "/usr/local/cuda-12.5/include", "symlink", "targets/x86_64-linux/include"),
        (
            "cuda-cudart-devel-12-5",
            "/usr/local/cuda-12.5/targets/x86_64-linux/lib/libcudart.so",
            "symlink",
            "libcudart.so.12",
        ),
        (
            "cuda-cudart-devel-12-5",
            "/usr/local/cuda-12.5/targets/x86_64-linux/include/cuda_runtime_api.h",
            "template",
            "cuda_runtime_api.h",
        ),
        (
            "cuda-driver-devel-12-5",
            "/usr/local/cuda-12.5/targets/x86_64-linux/include/cuda.h",
            "template",
            "cuda.h",
        ),
        (
            "cuda-driver-devel-12-5",
            "/usr/local/cuda-12.5/targets/x86_64-linux/lib/stubs/libcuda.so",
            "lib",
            "cuda-555.42.06",
        ),
        (
            "libcublas-12-5",
            "/usr/local/cuda-12.5/targets/x86_64-linux/lib/libcublasLt.so.12",
            "symlink",
            "libcublasLt.so.12.5.3.2",
        ),
        ("cuda-nvcc-12-5", "/usr/local/cuda-12.5/bin/nvcc", "text", ""),
        ("cuda-toolkit-12-5", "/usr/local/cuda-12.5/version.json", "text", ""),
        ("libcudnn9-cuda-12", "/usr/lib64/libcudnn.so.9", "symlink", "libcudnn.so.9.3.0"),
        ("libcudnn9-devel-cuda-12", "/usr/lib64/libcudnn.so", "symlink", "libcudnn.so.9"),
        ("libcudnn9-devel-cuda-12", "/usr/include/cudnn_version.h", "template", "cudnn_version.h"),
    ],
)
def test_nvidia_file_layout(name, path, kind, target):
    entry = paths(pkg(name))[path]
    assert entry.kind == kind
    if target:
        assert entry.target == target


def test_version_json_names_the_release_and_its_components():
    data = json.loads(paths(pkg("cuda-toolkit-12-5"))["/usr/local/cuda-12.5/version.json"].text)
    assert data["cuda"]["version"] == "12.5.1"
    assert data["cuda_cudart"]["version"] == data["cuda_nvcc"]["version"] == "12.5.82"
    assert data["libcublas"]["version"] == "12.5.3.2"


@pytest.mark.parametrize("package", BY_NAME["nvidia-compute-G06"] + BY_NAME["nvidia-compute-G07"], ids=str)
def test_driver_user_space_layout(package):
    v = package.version
    files = paths(package)
    assert files["/usr/lib64/libcuda.so.1"].target == f"libcuda.so.{v}"
    assert files["/usr/lib64/libcuda.so"].target == "libcuda.so.1"
    assert files[f"/usr/lib64/libcuda.so.{v}"].target == f"cuda-{v}"
    assert files["/usr/lib64/libnvidia-ml.so.1"].target == f"libnvidia-ml.so.{v}"
    assert package.post == cat.LDCONFIG


def test_scripts_print_what_the_real_tools_print():
    nvcc = paths(pkg("cuda-nvcc-12-5"))["/usr/local/cuda-12.5/bin/nvcc"]
    assert nvcc.mode == 0o755 and "Cuda compilation tools, release 12.5, V12.5.82" in nvcc.text
    for utils in BY_NAME["nvidia-compute-utils-G06"] + BY_NAME["nvidia-compute-utils-G07"]:
        smi = paths(utils)["/usr/bin/nvidia-smi"]
        assert "NVIDIA-SMI has failed because it couldn't communicate with the NVIDIA driver." in smi.text
        assert "exit 9" in smi.text and smi.mode == 0o755
    for persistenced in BY_NAME["nvidia-persistenced"]:
        text = paths(persistenced)["/usr/bin/nvidia-persistenced"].text
        assert f"nvidia-persistenced:  version {persistenced.version}" in text


@pytest.mark.parametrize(
    ("name", "path", "line"),
    [
        (
            "cuda-toolkit-config-common",
            "/etc/ld.so.conf.d/000_cuda.conf",
            "/usr/local/cuda/targets/x86_64-linux/lib",
        ),
        (
            "cuda-toolkit-12-config-common",
            "/etc/ld.so.conf.d/988_cuda-12.conf",
            "/usr/local/cuda-12/targets/x86_64-linux/lib",
        ),
    ],
)
def test_ld_so_conf_files(name, path, line):
    assert paths(pkg(name, "12.5.82"))[path].text == line + "\n"


def test_alternatives_scriptlets():
    config = pkg("cuda-toolkit-12-5-config-common")
    assert "update-alternatives --install /usr/local/cuda cuda /usr/local/cuda-12.5 125" in config.post
    assert "update-alternatives --install /usr/local/cuda-12 cuda-12 /usr/local/cuda-12.5 125" in config.post
    assert 'if [ "$1" = 0 ]' in config.preun and "--remove cuda /usr/local/cuda-12.5" in config.preun
    assert [p.nvr for p in cat.PACKAGES if "update-alternatives" in p.post] == [config.nvr]
    for name in ("cuda-cudart-12-5", "libcudnn9-cuda-12"):
        assert pkg(name).post == cat.LDCONFIG


def test_every_entry_is_well_formed_and_templates_render():
    for p in cat.PACKAGES:
        for e in p.entries:
            assert e.path.startswith("/") and "//" not in e.path, (p.name, e.path)
            assert e.kind in ("lib", "symlink", "text", "template", "dir"), (p.name, e.kind)
            if e.kind == "lib":
                assert e.target in cat.LIBRARIES
                assert Path(e.path).name in (cat.LIBRARIES[e.target].filename, "libcuda.so"), e.path
            if e.kind == "template":
                rendered = br.entry_payload(e, TEMPLATES).decode()
                assert "@" not in rendered, (p.name, e.path)


@pytest.mark.parametrize("repo", cat.REPOS)
def test_symlinks_resolve_inside_their_repo(repo):
    """Every link points at a path of its repository, or (python3XX-base on 15.x) at the real interpreter
    the sandbox's platform layer keeps out of PATH."""
    members = in_repo(repo)
    known = {e.path for p in members for e in p.entries}
    known |= set(br.owned_dirs(known))
    for p in members:
        for e in p.entries:
            if e.kind == "symlink":
                resolved = os.path.normpath(os.path.join(os.path.dirname(e.path), e.target))
                if resolved.startswith(cat.SANDBOX_LIBEXEC + "/"):
                    assert repo.startswith("oss/") and p.name.endswith("-base"), (repo, p.name)
                    continue
                assert resolved in known, (repo, p.name, e.path, e.target)


@pytest.mark.parametrize("pid", sorted(PLATFORMS))
def test_python_base_links_the_hidden_interpreter_on_15(pid):
    pf = PLATFORMS[pid]
    venv = sandbox_facts.venv_python(pf)
    base = pkg(f"python{venv.replace('.', '')}-base", repo=cat.oss_repo(pid))
    assert venv == sandbox_facts.SUITE_PYTHON[sandbox_facts.suite_for(pf)]
    if sandbox_facts.python_too_old(pf):  # Leap/SLE 15: python3 is 3.6
        assert cat.SANDBOX_LIBEXEC == sandboxctl.SANDBOX_LIBEXEC
        assert [(e.path, e.kind, e.target) for e in base.entries] == [
            (f"/usr/bin/python{venv}", "symlink", f"{cat.SANDBOX_LIBEXEC}/python{venv}")
        ]
    else:  # the suite's interpreter is the platform's system python3, in place already
        assert base.entries == ()
    for suffix in ("", "-devel", "-pip"):
        dependent = pkg(f"python{venv.replace('.', '')}{suffix}", repo=cat.oss_repo(pid))
        assert dependent.requires == (base.name,)


def test_suites_of_the_platforms():
    suites = {pid: sandbox_facts.suite_for(pf) for pid, pf in PLATFORMS.items()}
    assert suites == {
        "leap156": "bookworm",
        "sles15": "bookworm",
        "leap160": "trixie",
        "sles16": "trixie",
        "tumbleweed": "trixie",
    }


def test_shared_paths_are_identical_or_declared_conflicts():
    """rpm refuses two packages with different content at one path unless they conflict (the G06 and G07
    user space, the kmps of both generations)."""
    owners: dict[str, list] = {}
    for p in cat.PACKAGES:
        for e in p.entries:
            owners.setdefault(e.path, []).append((p, e))
    for where, pairs in sorted(owners.items()):
        for p1, e1 in pairs:
            for p2, e2 in pairs:
                if p1.name == p2.name or br.entry_identity(e1) == br.entry_identity(e2) or e1.kind == "dir":
                    continue
                assert p2.name in p1.conflicts or p1.name in p2.conflicts, (where, p1.nvr, p2.nvr)


def test_oss_packages_are_files_free_and_name_their_debian_payload():
    for repo in (r for r in cat.REPOS if r.startswith("oss/")):
        for p in (p for p in in_repo(repo) if p.vendor == cat.OSS_VENDOR):
            assert p.post == "" and p.license == "SUSE-Public-Domain", p.nvr
            assert p.entries == () or p.name.endswith("-base"), p.nvr
            for deb in p.debian:
                assert deb in p.description


@pytest.mark.parametrize("suite", sorted(sandbox_facts.SUITE_PYTHON))
def test_debian_payload_per_suite(suite):
    on_suite = {pid for pid, pf in PLATFORMS.items() if sandbox_facts.suite_for(pf) == suite}
    wanted = {
        deb
        for p in cat.PACKAGES
        for deb in p.debian
        if any(r.startswith("oss/") and r.split("/", 1)[1] in on_suite for r in p.repos)
    }
    assert set(cat.DEBIAN_PAYLOAD[suite]) == wanted
    assert list(cat.DEBIAN_PAYLOAD[suite]) == sorted(wanted)
    python = sandbox_facts.SUITE_PYTHON[suite]
    assert {f"python{python}", f"python{python}-venv", f"python{python}-dev"} <= wanted
    other = [v for s, v in sandbox_facts.SUITE_PYTHON.items() if s != suite]
    assert not [d for d in wanted for v in other if d.startswith(f"python{v}")]
    assert {"libopenblas0-pthread", "libopenblas-dev", "gcc", "g++", "make"} <= wanted


def test_debian_payload_covers_every_suite():
    assert set(cat.DEBIAN_PAYLOAD) == set(sandbox_facts.SUITE_PYTHON)


def test_local_installer_metadata():
    li = cat.LOCAL_INSTALLER
    filename = f"{li['name']}-{li['version']}-{li['release']}.{li['arch']}.rpm"
    assert filename == "cuda-repo-opensuse15-12-5-local-12.5.1_555.42.06-1.x86_64.rpm"
    assert li["repo_dir"] == "/var/cuda-repo-opensuse15-12-5-local"


def test_cuda_repo_files_are_nvidias_names():
    assert {d: info["repo_file"] for d, info in cat.CUDA_REPO_FILES.items()} == {
        "opensuse15": "cuda-opensuse15.repo",
        "sles15": "cuda-sles15.repo",
        "suse16": "cuda-suse16.repo",
    }
    assert {info["repo_id"] for info in cat.CUDA_REPO_FILES.values()} == {
        "cuda-opensuse15-x86_64",
        "cuda-sles15-x86_64",
        "cuda-suse16-x86_64",
    }


# ------------------------------------------------------------------------------------------ keys


def readme_keys() -> dict[str, tuple[str, str, str]]:
    rows = {}
    for line in (REPO / "sandbox/keys/README.md").read_text().splitlines():
        m = re.match(
            r"\| `(\w+)` \|.*\| `([0-9A-F]{8})` \| `([0-9A-F ]+)` \| `(gpg-pubkey-[0-9a-f-]+)` \|", line
        )
        if m:
            rows[m.group(1)] = (m.group(2), m.group(3).replace(" ", ""), m.group(4))
    return rows


@pytest.mark.parametrize("name", ["opensuse", "nvidia"])
def test_committed_keys_match_their_readme(name):
    info = br.pgp_key_info((REPO / f"sandbox/keys/{name}.pub.asc").read_text())
    keyid, fingerprint, rpm_name = readme_keys()[name]
    assert (info["keyid"], info["fingerprint"], info["rpm_name"]) == (keyid, fingerprint, rpm_name)
    secret = (REPO / f"sandbox/keys/{name}.sec.asc").read_text()
    assert secret.startswith("-----BEGIN PGP PRIVATE KEY BLOCK-----")


def test_pgp_key_info_rejects_non_keys():
    with pytest.raises(ValueError):
        br.pgp_key_info("no armor here")


# ------------------------------------------------------------------------------------------ helpers


@pytest.mark.parametrize(
    ("a", "b", "expected"),
    [
        ("13.2.1", "12.5.1", 1),
        ("13.2.1", "13.2.0", 1),
        ("12.5.82", "12.5.82", 0),
        ("555.42.06", "580.82.07", -1),
        ("580.126.20", "580.82.07", 1),
        ("1.10", "1.9", 1),
        ("2.0a", "2.0", 1),
        ("595.71.05_k6.4.0_150600.23.65", "595.71.05", 1),
        ("580.82.07_k6.4.0_150600.23.65", "555.42.06_k6.4.0_150600.23.7", 1),
    ],
)
def test_rpmvercmp(a, b, expected):
    assert br.rpmvercmp(a, b) == expected


def test_satisfies_ignores_release_unless_given():
    assert br.satisfies("555.42.06-1", "=", "555.42.06")
    assert not br.satisfies("555.42.06-1", "=", "555.42.06-2")
    assert br.satisfies("595.71.05-1", ">=", "595.45.04")


@pytest.mark.parametrize(
    ("kernel", "suffix", "directory"),
    [
        ("6.4.0_150600.23.65", "_k6.4.0_150600.23.65", "6.4.0-150600.23.65-default"),
        ("6.12.0_160000.29", "_k6.12.0_160000.29", "6.12.0-160000.29-default"),
        ("6.18.21_1", "_k6.18.21_1", "6.18.21-1-default"),
    ],
)
def test_kmp_version_and_module_directory(kernel, suffix, directory):
    assert cat.kmp_suffix(kernel) == suffix
    assert cat._kernel_dir(kernel) == directory


def test_owned_dirs_stop_at_system_directories():
    dirs = br.owned_dirs(
        [
            "/usr/local/cuda-12.5/targets/x86_64-linux/lib/x.so",
            "/usr/lib64/libcuda.so.1",
            "/lib/modules/k/updates/nvidia.ko",
        ]
    )
    assert dirs == [
        "/lib/modules/k",
        "/lib/modules/k/updates",
        "/usr/local/cuda-12.5",
        "/usr/local/cuda-12.5/targets",
        "/usr/local/cuda-12.5/targets/x86_64-linux",
        "/usr/local/cuda-12.5/targets/x86_64-linux/lib",
    ]


def test_render_template_refuses_unknown_variables():
    assert br.render_template("#define X @A@", {"A": "1"}) == "#define X 1"
    with pytest.raises(KeyError):
        br.render_template("@B@", {})


def test_assign_buckets_keeps_same_names_and_clashing_paths_apart():
    one = cat.Package("a", "1", "s", frozenset({"r"}), entries=(cat.text("/x", "1"),))
    two = cat.Package("a", "2", "s", frozenset({"r"}), entries=(cat.text("/x", "1"),))
    clash = cat.Package("b", "1", "s", frozenset({"r"}), entries=(cat.text("/x", "2"),))
    fits = cat.Package("c", "1", "s", frozenset({"r"}), entries=(cat.text("/x", "1"),))
    assert br.assign_buckets([one, two, clash, fits]) == [[one, fits], [two], [clash]]


def test_assign_buckets_on_the_catalogue():
    nvidia = [p for p in cat.PACKAGES if cat.SIGNING_KEY[next(iter(p.repos))] == "nvidia"]
    buckets = br.assign_buckets(nvidia)
    most = max(sum(1 for p in nvidia if p.name == name) for name in {p.name for p in nvidia})
    assert most <= len(buckets) < len(nvidia)
    for bucket in buckets:
        names = [p.name for p in bucket]
        assert len(names) == len(set(names))
        seen: dict[str, tuple] = {}
        for p in bucket:
            for e in p.entries:
                assert seen.setdefault(e.path, br.entry_identity(e)) == br.entry_identity(e), e.path
    assert sorted(p.nvr for b in buckets for p in b) == sorted(p.nvr for p in nvidia)


def test_render_spec():
    packages = [
        pkg("cuda-cudart-12-5"),
        pkg("cuda-toolkit-12-5-config-common"),
        pkg("gcc", repo="oss/leap156"),
    ]
    spec = br.render_spec("t", packages, cat.STUB_NOTE, cat.LDCONFIG)
    assert spec.count("AutoReqProv: no") == 4  # container + each subpackage
    assert "%package -n cuda-cudart-12-5\nVersion: 12.5.82\nRelease: 1\n" in spec
    assert "Requires: cuda-toolkit-config-common" in spec
    assert "%post -n cuda-cudart-12-5 -p /sbin/ldconfig" in spec
    assert "%post -n cuda-toolkit-12-5-config-common\nupdate-alternatives --install" in spec
    assert "BuildArch: noarch" in spec
    assert "%dir %attr(0755,root,root) /usr/local/cuda-12.5/targets/x86_64-linux/lib" in spec
    assert "%attr(0755,root,root) /usr/local/cuda-12.5/targets/x86_64-linux/lib/libcudart.so.12.5.82" in spec
    assert "\n/usr/local/cuda-12.5/lib64\n" in spec
    assert "%package -n gcc\nVersion: 0\nRelease: 0.leap156\n" in spec
    assert spec.endswith("%files -n gcc\n%defattr(-,root,root,-)\n")  # files-free
    assert "Debian package(s) gcc" in spec


def test_render_spec_kmp_conflicts_and_provides():
    kmp = pkg("nvidia-driver-G06-kmp-default", repo="gfx/opensuse/leap/15.6")
    spec = br.render_spec("t", [kmp], cat.STUB_NOTE, cat.LDCONFIG)
    assert f"Version: {kmp.version}\n" in spec
    assert "Provides: nvidia-driver-G06-kmp = 580.82.07" in spec
    assert "Conflicts: nvidia-open-driver-G07-signed-cuda-kmp-default" in spec


def test_repo_file_has_nvidia_keys():
    text = br.repo_file(
        "cuda-opensuse15-x86_64", "cuda-opensuse15-x86_64", "file:/srv/x", "file:/srv/x/K.pub"
    )
    assert text.splitlines() == [
        "[cuda-opensuse15-x86_64]",
        "name=cuda-opensuse15-x86_64",
        "baseurl=file:/srv/x",
        "enabled=1",
        "gpgcheck=1",
        "gpgkey=file:/srv/x/K.pub",
    ]


def test_inputs_digest_follows_content(tmp_path):
    (tmp_path / "d").mkdir()
    (tmp_path / "d/a").write_text("1")
    first = br.inputs_digest([tmp_path / "d"], tmp_path)
    assert br.inputs_digest([tmp_path / "d"], tmp_path) == first
    assert br.inputs_digest([tmp_path / "d"], tmp_path, extra="x") != first
    (tmp_path / "d/a").write_text("2")
    assert br.inputs_digest([tmp_path / "d"], tmp_path) != first


def test_stamp_and_stale_directories(tmp_path):
    out = tmp_path / "repos"
    out.mkdir()
    assert br.read_stamp(out) is None
    (out / br.STAMP).write_text(json.dumps({"inputs": "abc"}))
    assert br.read_stamp(out) == "abc"
    dead = 4_000_000  # above the default pid_max, never a live process
    (tmp_path / f"repos.tmp-{dead}").mkdir()
    (tmp_path / f"repos.tmp-{os.getpid()}").mkdir()
    br.remove_stale(out)
    assert not (tmp_path / f"repos.tmp-{dead}").exists()
    assert (tmp_path / f"repos.tmp-{os.getpid()}").exists()


def test_is_bind_source(tmp_path):
    st = tmp_path.stat()
    dev = f"{os.major(st.st_dev)}:{os.minor(st.st_dev)}"
    mounted = f"51 27 {dev} {tmp_path} /srv/x ro,relatime - ext4 /dev/vda rw\n"
    assert br.is_bind_source(tmp_path, mounted)
    assert not br.is_bind_source(tmp_path, f"22 27 {dev} / / rw - ext4 /dev/vda rw\n")
    assert not br.is_bind_source(tmp_path, mounted.replace(dev, "0:999"))


@pytest.mark.parametrize("suite", sorted(sandbox_facts.SUITE_PYTHON))
def test_debian_packages_option(suite, capsys):
    assert br.main(["--debian-packages", "--suite", suite]) == 0
    assert capsys.readouterr().out.split() == list(cat.DEBIAN_PAYLOAD[suite])


@pytest.mark.parametrize("argv", [["--debian-packages"], ["--debian-packages", "--suite", "jessie"]])
def test_debian_packages_needs_a_known_suite(argv, capsys):
    with pytest.raises(SystemExit) as exc:
        br.main(argv)
    assert exc.value.code == 2
    assert "--debian-packages needs --suite, one of bookworm, trixie" in capsys.readouterr().err


def test_out_is_required():
    with pytest.raises(SystemExit) as exc:
        br.main([])
    assert exc.value.code == 2


# ------------------------------------------------------------------------------------------ cuDNN fixtures

FAKE_LIBS = {lib_id: f"ELF {lib_id}".encode() for lib_id in cat.CUDNN_LIBS}


@pytest.fixture(params=["current", "old"])
def archive(request, tmp_path):
    path = tmp_path / cat.CUDNN_ARCHIVES[request.param]
    members = br.cudnn_members(cat, request.param, FAKE_LIBS, TEMPLATES)
    br.write_tarball(path, members, cat.CUDNN_ARCHIVE_OWNER, cat.CUDNN_ARCHIVE_MTIME)
    br.write_sha256_sidecar(path)
    return request.param, path


def test_cudnn_archive_layout(archive):
    layout, path = archive
    mode = "r:xz" if layout == "current" else "r:gz"
    with tarfile.open(path, mode) as tar:
        members = {m.name: m for m in tar.getmembers()}
        top = "cudnn-linux-x86_64-9.3.0.75_cuda12-archive" if layout == "current" else "cuda"
        inc, lib = (f"{top}/include", f"{top}/lib") if layout == "current" else ("cuda/include", "cuda/lib64")
        assert {n.split("/")[0] for n in members} == {top}
        for name in cat.CUDNN_LIBS:
            real = members[f"{lib}/{name}.so.9.3.0"]
            assert real.isfile() and real.mode == 0o775
            assert members[f"{lib}/{name}.so.9"].linkname == f"{name}.so.9.3.0"
            assert members[f"{lib}/{name}.so"].linkname == f"{name}.so.9"
        for m in members.values():
            assert (m.uid, m.gid, m.uname) == (2000, 2000, "buildbot")
            if m.isdir():
                assert m.mode == 0o775
        header = members[f"{inc}/cudnn_version.h"]
        assert header.mode == (0o444 if layout == "current" else 0o664)
        text = tar.extractfile(header).read().decode()
        assert "#define CUDNN_MAJOR 9\n#define CUDNN_MINOR 3\n#define CUDNN_PATCHLEVEL 0\n" in text
        assert "#define CUDNN_VERSION (CUDNN_MAJOR * 10000 + CUDNN_MINOR * 100 + CUDNN_PATCHLEVEL)" in text
        for base in cat.CUDNN_HEADER_BASES:
            assert f"{inc}/{base}.h" in members and f"{inc}/{base}_v9.h" in members
        if layout == "current":
            assert members[f"{top}/LICENSE"].isfile()
    sidecar = Path(f"{path}.sha256").read_text()
    assert sidecar == f"{br.sha256_file(path)}  {path.name}\n"


def test_cudnn_archive_is_deterministic(tmp_path):
    members = br.cudnn_members(cat, "current", FAKE_LIBS, TEMPLATES)
    for name in ("a.tar.xz", "b.tar.xz"):
        br.write_tarball(tmp_path / name, members, cat.CUDNN_ARCHIVE_OWNER, cat.CUDNN_ARCHIVE_MTIME)
    assert (tmp_path / "a.tar.xz").read_bytes() == (tmp_path / "b.tar.xz").read_bytes()


# ------------------------------------------------------------------------------------------ build errors


def test_a_failed_step_shows_its_error_not_the_gpg_tty_noise():
    """rpmsign warns about GPG_TTY once per package; the error line must survive into the message."""
    noise = "for i in $(seq 30); do echo 'warning: Could not set GPG_TTY to stdin: x' >&2; done"
    script = f"{noise}; echo 'gpg: signing failed: Cannot allocate memory' >&2; {noise}; exit 1"
    with pytest.raises(br.BuildError) as caught:
        br.check(["sh", "-c", script], "signing RPMs with the nvidia test key")
    tail = str(caught.value).splitlines()[1:]
    assert tail == ["gpg: signing failed: Cannot allocate memory"]


@pytest.mark.skipif(shutil.which("gpg") is None, reason="needs gpg (make host-packages)")
def test_the_signing_agent_may_grow_its_secure_memory(tmp_path):
    """Parallel rpmsign jobs share one gpg-agent; without auto-expand-secmem it fails with ENOMEM."""
    builder = br.Builder(cat, tmp_path, tmp_path / "out", "/srv", jobs=32)
    try:
        builder.setup_gnupg()
        conf = (builder.gnupghome / "gpg-agent.conf").read_text().split()
    finally:
        builder.stop_gnupg()
    assert "auto-expand-secmem" in conf
    assert set(builder.keys) == {"opensuse", "nvidia"}
