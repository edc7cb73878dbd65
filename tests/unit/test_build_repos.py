"""Unit tests for sandbox/build_repos.py and its catalogue sandbox/stubs/packages.py.

Pure and fast: no rpmbuild, gcc or gpg. They check that the catalogue is consistent (every Requires
resolves inside each repo, sonames, file clashes, NVIDIA's layout), the spec rendering, the
committed test keys against their README, and the cuDNN fixtures' layouts (written with fake
library bytes and read back with tarfile).
"""

from __future__ import annotations

import importlib.util
import json
import os
import re
import sys
import tarfile
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
SPEC = importlib.util.spec_from_file_location("build_repos", REPO / "sandbox/build_repos.py")
br = importlib.util.module_from_spec(SPEC)
sys.modules["build_repos"] = br
SPEC.loader.exec_module(br)
cat = br.load_catalogue()

TEMPLATES = REPO / "sandbox/stubs/include"
BY_NAME: dict[str, list] = {}
for _pkg in cat.PACKAGES:
    BY_NAME.setdefault(_pkg.name, []).append(_pkg)


def pkg(name: str, version: str | None = None):
    matches = [p for p in BY_NAME[name] if version is None or p.version == version]
    assert len(matches) == 1, f"{name} {version}: {len(matches)} matches"
    return matches[0]


def paths(package) -> dict[str, object]:
    return {e.path: e for e in package.entries}


def newest(name: str, repo: str):
    candidates = [p for p in BY_NAME[name] if repo in p.repos]
    best = candidates[0]
    for candidate in candidates[1:]:
        if br.rpmvercmp(candidate.version, best.version) > 0:
            best = candidate
    return best


# ------------------------------------------------------------------------------------------ catalogue


@pytest.mark.parametrize("repo", cat.REPOS)
def test_every_requires_resolves_inside_its_repo(repo):
    assert br.unresolved(cat.PACKAGES, repo) == []


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


@pytest.mark.parametrize(
    ("name", "version"),
    [
        ("cuda-cudart-12-5", "12.5.82"),
        ("cuda-cudart-devel-12-5", "12.5.82"),
        ("cuda-nvcc-12-5", "12.5.82"),
        ("cuda-nvrtc-12-5", "12.5.82"),
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
        ("cuda-toolkit-12-5", "12.5.1"),
        ("cuda-12-5", "12.5.1"),
        ("cuda", "12.5.1"),
        ("cuda-drivers", "555.42.06"),
        ("nvidia-open-driver-G07-signed-cuda-kmp-default", "555.42.06_k6.4.0_150600.21"),
        ("nvidia-compute-G07", "555.42.06"),
        ("nvidia-compute-utils-G07", "555.42.06"),
        ("nvidia-persistenced", "555.42.06"),
        ("libcudnn9-cuda-12", "9.3.0.75"),
        ("libcudnn9-devel-cuda-12", "9.3.0.75"),
        ("cudnn9-cuda-12", "9.3.0.75"),
    ],
)
def test_pinned_cuda_packages_are_in_network_repo_and_local_installer(name, version):
    package = pkg(name, version)
    assert cat.CUDA in package.repos
    if not name.startswith(("libcudnn", "cudnn")):  # cuDNN has its own installers
        assert cat.LOCAL in package.repos


def test_plain_cuda_follows_the_newest_release_but_local_installer_stays_at_12_5():
    assert newest("cuda", cat.CUDA).version == "13.0.2"
    assert newest("cuda", cat.CUDA).requires == ("cuda-13-0 >= 13.0.2",)
    assert newest("cuda", cat.LOCAL).version == "12.5.1"
    assert newest("cuda-drivers", cat.LOCAL).version == "555.42.06"
    assert not any("13" in p.version.split(".")[0] for p in cat.PACKAGES if cat.LOCAL in p.repos)


def test_meta_packages_chain_like_nvidia():
    assert "cuda-12-5 >= 12.5.1" in pkg("cuda", "12.5.1").requires
    assert {"cuda-runtime-12-5 >= 12.5.1", "cuda-toolkit-12-5 >= 12.5.1"} == set(pkg("cuda-12-5").requires)
    assert "cuda-drivers >= 555.42.06" in pkg("cuda-runtime-12-5").requires
    assert "cuda-libraries-12-5 >= 12.5.1" in pkg("cuda-toolkit-12-5").requires
    drivers = pkg("cuda-drivers", "555.42.06").requires
    assert "nvidia-compute-utils-G07 = 555.42.06" in drivers
    assert "nvidia-open-driver-G07-signed-cuda-kmp = 555.42.06" in drivers
    assert pkg("nvidia-compute-utils-G07", "555.42.06").requires == ("nvidia-compute-G07 = 555.42.06",)


def test_kmps_of_cuda_and_gfx_repo_conflict():
    cuda_kmp = pkg("nvidia-open-driver-G07-signed-cuda-kmp-default", "555.42.06_k6.4.0_150600.21")
    gfx_kmp = pkg("nvidia-open-driver-G07-signed-kmp-default")
    assert "nvidia-open-driver-G07-signed-kmp-default" in cuda_kmp.conflicts
    assert "nvidia-open-driver-G07-signed-cuda-kmp-default" in gfx_kmp.conflicts
    assert "/lib/modules/6.4.0-150600.21-default/updates/nvidia.ko" in paths(gfx_kmp)


def test_gfx_meta_package():
    meta = pkg("nvidia-open-driver-G07-signed-kmp-meta")
    assert meta.repos == {cat.GFX}
    assert "nvidia-open-driver-G07-signed-kmp = 555.42.06" in meta.requires


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
        ("nvml-555.42.06", "libnvidia-ml.so.1", "libnvidia-ml.so.555.42.06"),
        ("libcudnn", "libcudnn.so.9", "libcudnn.so.9.3.0"),
        (
            "libcudnn_engines_runtime_compiled",
            "libcudnn_engines_runtime_compiled.so.9",
            "libcudnn_engines_runtime_compiled.so.9.3.0",
        ),
        ("cudart-13.0", "libcudart.so.13", "libcudart.so.13.0.96"),
    ],
)
def test_library_sonames(library_id, soname, filename):
    library = cat.LIBRARIES[library_id]
    assert (library.soname, library.filename) == (soname, filename)
    assert (REPO / "sandbox/stubs/src" / library.source).is_file()


def test_tensorflow_sonames_are_all_shipped_by_cuda_12_5():
    versions = (REPO / "inventory/group_vars/all/versions.yml").read_text()
    block = versions.split('"12":', 1)[1].split('"10":', 1)[0]
    wanted = set(re.findall(r"- (lib\S+)", block))
    shipped = {
        Path(e.path).name
        for p in cat.PACKAGES
        if cat.LOCAL in p.repos
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
            "libcublas-12-5",
            "/usr/local/cuda-12.5/targets/x86_64-linux/lib/libcublasLt.so.12",
            "symlink",
            "libcublasLt.so.12.5.3.2",
        ),
        ("cuda-nvcc-12-5", "/usr/local/cuda-12.5/bin/nvcc", "text", ""),
        ("nvidia-compute-G07", "/usr/lib64/libcuda.so.1", "symlink", "libcuda.so.555.42.06"),
        ("nvidia-compute-G07", "/usr/lib64/libnvidia-ml.so.1", "symlink", "libnvidia-ml.so.555.42.06"),
        ("nvidia-compute-utils-G07", "/usr/bin/nvidia-smi", "text", ""),
        ("nvidia-persistenced", "/usr/bin/nvidia-persistenced", "text", ""),
        ("libcudnn9-cuda-12", "/usr/lib64/libcudnn.so.9", "symlink", "libcudnn.so.9.3.0"),
        ("libcudnn9-devel-cuda-12", "/usr/lib64/libcudnn.so", "symlink", "libcudnn.so.9"),
        ("libcudnn9-devel-cuda-12", "/usr/include/cudnn_version.h", "template", "cudnn_version.h"),
    ],
)
def test_nvidia_file_layout(name, path, kind, target):
    candidates = [p for p in BY_NAME[name] if cat.LOCAL in p.repos or name.startswith("libcudnn")]
    entry = paths(candidates[0])[path]
    assert entry.kind == kind
    if target:
        assert entry.target == target


def test_scripts_print_what_the_real_tools_print():
    nvcc = paths(pkg("cuda-nvcc-12-5"))["/usr/local/cuda-12.5/bin/nvcc"]
    assert nvcc.mode == 0o755 and "Cuda compilation tools, release 12.5, V12.5.82" in nvcc.text
    smi = paths(pkg("nvidia-compute-utils-G07", "555.42.06"))["/usr/bin/nvidia-smi"]
    assert "NVIDIA-SMI has failed because it couldn't communicate with the NVIDIA driver." in smi.text
    assert "exit 9" in smi.text


@pytest.mark.parametrize(
    ("name", "version", "path", "line"),
    [
        (
            "cuda-toolkit-config-common",
            "12.5.82",
            "/etc/ld.so.conf.d/000_cuda.conf",
            "/usr/local/cuda/targets/x86_64-linux/lib",
        ),
        (
            "cuda-toolkit-12-config-common",
            "12.5.82",
            "/etc/ld.so.conf.d/988_cuda-12.conf",
            "/usr/local/cuda-12/targets/x86_64-linux/lib",
        ),
        (
            "cuda-toolkit-13-config-common",
            "13.0.96",
            "/etc/ld.so.conf.d/987_cuda-13.conf",
            "/usr/local/cuda-13/targets/x86_64-linux/lib",
        ),
    ],
)
def test_ld_so_conf_files(name, version, path, line):
    assert paths(pkg(name, version))[path].text == line + "\n"


def test_alternatives_scriptlets():
    config = pkg("cuda-toolkit-12-5-config-common")
    assert "update-alternatives --install /usr/local/cuda cuda /usr/local/cuda-12.5 125" in config.post
    assert "update-alternatives --install /usr/local/cuda-12 cuda-12 /usr/local/cuda-12.5 125" in config.post
    assert 'if [ "$1" = 0 ]' in config.preun and "--remove cuda /usr/local/cuda-12.5" in config.preun
    assert "/usr/local/cuda-13.0 130" in pkg("cuda-toolkit-13-0-config-common").post
    for name in ("cuda-cudart-12-5", "nvidia-compute-G07", "libcudnn9-cuda-12"):
        assert BY_NAME[name][0].post == cat.LDCONFIG


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


def test_symlinks_resolve_inside_their_repo():
    for repo in cat.REPOS:
        members = [p for p in cat.PACKAGES if repo in p.repos]
        known = {e.path for p in members for e in p.entries}
        known |= set(br.owned_dirs(known))
        for p in members:
            for e in p.entries:
                if e.kind == "symlink":
                    resolved = os.path.normpath(os.path.join(os.path.dirname(e.path), e.target))
                    assert resolved in known, (repo, p.name, e.path, e.target)


def test_shared_paths_are_identical_or_declared_conflicts():
    owners: dict[str, list] = {}
    for p in cat.PACKAGES:
        for e in p.entries:
            owners.setdefault(e.path, []).append((p, e))
    for path, pairs in owners.items():
        for p1, e1 in pairs:
            for p2, e2 in pairs:
                if p1.name == p2.name or br.entry_identity(e1) == br.entry_identity(e2) or e1.kind == "dir":
                    continue
                assert p2.name in p1.conflicts or p1.name in p2.conflicts, (path, p1.nvr, p2.nvr)


def test_oss_packages_are_files_free_and_name_their_debian_payload():
    oss = [p for p in cat.PACKAGES if cat.OSS in p.repos]
    names = {p.name for p in oss}
    for wanted in (
        "python311",
        "python311-devel",
        "python311-pip",
        "libopenblas_pthreads0",
        "libopenblas_pthreads-devel",
        "hdf5",
        "hdf5-devel",
        "libhdf5-103",
        "gcc",
        "gcc-c++",
        "make",
        "pciutils",
        "kernel-default-devel",
    ):
        assert wanted in names
    for p in oss:
        assert p.entries == () and p.post == "" and p.vendor == cat.OSS_VENDOR
        for deb in p.debian:
            assert deb in p.description
    assert "openblas-devel = 0.3.21" in pkg("libopenblas_pthreads-devel").provides
    assert set(cat.DEBIAN_PAYLOAD) == {d for p in oss for d in p.debian}


def test_local_installer_metadata():
    li = cat.LOCAL_INSTALLER
    filename = f"{li['name']}-{li['version']}-{li['release']}.{li['arch']}.rpm"
    assert filename == "cuda-repo-opensuse15-12-5-local-12.5.1_555.42.06-1.x86_64.rpm"
    assert li["repo_dir"] == "/var/cuda-repo-opensuse15-12-5-local"


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
        ("13.0.2", "12.5.1", 1),
        ("12.5.82", "12.5.82", 0),
        ("555.42.06", "580.95.05", -1),
        ("1.10", "1.9", 1),
        ("2.0a", "2.0", 1),
        ("555.42.06_k6.4.0_150600.21", "555.42.06", 1),
    ],
)
def test_rpmvercmp(a, b, expected):
    assert br.rpmvercmp(a, b) == expected


def test_satisfies_ignores_release_unless_given():
    assert br.satisfies("555.42.06-1", "=", "555.42.06")
    assert not br.satisfies("555.42.06-1", "=", "555.42.06-2")
    assert br.satisfies("580.95.05-1", ">=", "555.42.06")


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


def test_assign_buckets_keeps_same_names_apart():
    nvidia = [p for p in cat.PACKAGES if cat.SIGNING_KEY[next(iter(p.repos))] == "nvidia"]
    buckets = br.assign_buckets(nvidia)
    assert len(buckets) == 2
    for bucket in buckets:
        names = [p.name for p in bucket]
        assert len(names) == len(set(names))
    assert sum(len(b) for b in buckets) == len(nvidia)


def test_render_spec():
    packages = [pkg("cuda-cudart-12-5"), pkg("cuda-toolkit-12-5-config-common"), pkg("gcc")]
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
    assert spec.endswith("%files -n gcc\n%defattr(-,root,root,-)\n")  # files-free
    assert "Debian package(s) gcc" in spec


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


def test_debian_packages_option(capsys):
    assert br.main(["--debian-packages"]) == 0
    assert capsys.readouterr().out.split() == list(cat.DEBIAN_PAYLOAD)


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
