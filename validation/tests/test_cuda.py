"""cuda: the pinned CUDA toolkit, selected as /usr/local/cuda, on PATH for login shells and resolvable by the
loader.

Expected values from the inventory (`stack_vars`): gpu_stack_cuda_version, gpu_stack_cuda_release and the
role inputs cuda_version / cuda_release / cuda_package where the inventory sets them.
"""

from __future__ import annotations

import pytest

CUDA_HOME = "/usr/local/cuda"
MARKER = "Managed by opensuse-gpu-stack (roles/cuda)"
PROJECT_LOADER_FILE = "/etc/ld.so.conf.d/opensuse-gpu-stack-cuda.conf"


def test_pip_mode_leaves_the_system_without_cuda(host, cuda_mode) -> None:
    """Where TensorFlow takes its CUDA from pip wheels, the role installs no toolkit at all."""
    if cuda_mode != "pip":
        pytest.skip("TensorFlow uses the system CUDA here")
    assert host.run("rpm -qa 'cuda-toolkit*' 'cuda-libraries*' 'libcublas*'").stdout.split() == []
    assert not host.file(CUDA_HOME).exists


@pytest.fixture(scope="module")
def cuda(stack_vars, system_cuda_only) -> dict:
    version = str(stack_vars.get("cuda_version", stack_vars["gpu_stack_cuda_version"]))
    release = str(stack_vars.get("cuda_release", stack_vars["gpu_stack_cuda_release"]))
    dashed = version.replace(".", "-")
    package = stack_vars.get("cuda_package", f"cuda-toolkit-{dashed}")
    return {"version": version, "release": release, "package": package, "major": version.split(".")[0],
            "dir": f"/usr/local/cuda-{version}", "toolkit": not package.startswith("cuda-libraries")}


def test_meta_package_at_pinned_release(host, cuda) -> None:
    pkg = host.package(cuda["package"])
    assert pkg.is_installed, cuda["package"]
    if cuda["release"]:
        assert pkg.version == cuda["release"], f"{cuda['package']} {pkg.version}, pinned {cuda['release']}"


@pytest.mark.parametrize("link", ["cuda", "cuda-MAJOR"])
def test_link_points_at_pinned_version(host, cuda, link: str) -> None:
    path = f"/usr/local/{link.replace('MAJOR', cuda['major'])}"
    assert host.file(path).is_symlink, f"{path} is not a link"
    assert host.check_output(f"readlink -f {path}") == cuda["dir"]


def test_nvcc_reports_pinned_version(host, cuda) -> None:
    if not cuda["toolkit"]:
        pytest.skip("cuda-libraries-* has no compiler")
    out = host.check_output(f"{CUDA_HOME}/bin/nvcc --version")
    assert f"release {cuda['version']}," in out, out


@pytest.mark.parametrize("snippet", ["/etc/profile.d/cuda.sh", "/etc/profile.d/cuda.csh"])
def test_profile_snippet(host, cuda, snippet: str) -> None:
    f = host.file(snippet)
    assert f.exists and f.user == "root" and f.mode == 0o644
    assert f"{CUDA_HOME}/bin" in f.content_string
    assert MARKER in f.content_string


def test_login_shell_finds_nvcc(host, cuda) -> None:
    if not cuda["toolkit"]:
        pytest.skip("cuda-libraries-* has no compiler")
    res = host.run("env -i HOME=/root PATH=/usr/bin:/bin bash -lc 'command -v nvcc'")
    assert res.stdout.strip() == f"{CUDA_HOME}/bin/nvcc", res.stdout + res.stderr


@pytest.mark.parametrize("library", ["libcudart", "libcublas"])
def test_loader_resolves_library_of_pinned_major(host, cuda, library: str) -> None:
    soname = f"{library}.so.{cuda['major']}"
    paths = [line.split("=>")[-1].strip() for line in host.check_output("ldconfig -p").splitlines()
             if line.strip().startswith(soname + " ")]
    assert paths, f"ldconfig -p does not resolve {soname}"
    real = host.check_output(f"readlink -f {paths[0]}")
    assert real.startswith(cuda["dir"] + "/"), f"{soname} -> {real}, not under {cuda['dir']}"


def test_cuda_packages_verify(host, cuda) -> None:
    names = host.check_output("rpm -qa 'cuda-*' 'libcu*'").split()
    assert names, "no CUDA packages installed"
    res = host.run("rpm -V " + " ".join(names))
    assert res.rc == 0 and not res.stdout.strip(), res.stdout


def _conf_dirs(host, text: str) -> set[str]:
    dirs = [line.split("#")[0].strip() for line in text.splitlines()]
    return {host.check_output("readlink -f %s", d) for d in dirs if d.startswith("/")}


def test_one_project_loader_file_duplicating_no_other(host) -> None:
    """The project owns at most one ld.so.conf.d file, and it lists no directory another file lists (NVIDIA's
    000_cuda.conf and 98x_cuda-<major>.conf normally cover the CUDA directory, so it does not exist)."""
    names = host.check_output("ls -1 /etc/ld.so.conf.d").split()
    ours = [n for n in names if MARKER in host.file(f"/etc/ld.so.conf.d/{n}").content_string
            or "opensuse-gpu-stack" in n]
    assert set(ours) <= {PROJECT_LOADER_FILE.rsplit("/", 1)[1]}, f"loader files of the project: {ours}"
    others = set()
    for name in names:
        if name not in ours and name.endswith(".conf"):
            others |= _conf_dirs(host, host.file(f"/etc/ld.so.conf.d/{name}").content_string)
    if ours:
        conf = host.file(PROJECT_LOADER_FILE)
        assert (conf.user, conf.group, conf.mode) == ("root", "root", 0o644)
        assert MARKER in conf.content_string.splitlines()[0]
        duplicated = _conf_dirs(host, conf.content_string) & others
        assert duplicated == set(), f"{PROJECT_LOADER_FILE} repeats {duplicated}"


def test_loader_searches_the_cuda_libraries(host, cuda) -> None:
    """With or without the project's file, ldconfig scans the CUDA library directory."""
    real = host.check_output(f"readlink -f {CUDA_HOME}/lib64")
    scanned = [line.split(":")[0] for line in host.check_output("ldconfig -v -N -X 2>/dev/null").splitlines()
               if line.startswith("/")]
    assert real in {host.check_output("readlink -f %s", d) for d in scanned}
