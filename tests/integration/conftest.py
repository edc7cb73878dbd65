"""Fixtures for sandbox scenarios: a fresh sandbox host per test, a clean-environment ansible-playbook
runner, and file-tree/rpmdb snapshots to assert that a failing run changed nothing.

    def test_bad_pin(fresh_host):
        before = snapshot(fresh_host)
        res = run_playbook(fresh_host, "site.yml", extra_vars={"gpu_stack_cuda_version": "9.9"})
        assert res.returncode != 0 and "9.9" in res.stdout
        assert diff_snapshots(before, snapshot(fresh_host)) == []

Needs root and a built sandbox (`sandbox/sandboxctl.py build`); hosts are torn down even when the
test fails or the run is interrupted (see sandbox.sandboxctl.SandboxHost).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import re
import signal
import stat
import subprocess
import sys
import textwrap
import uuid
from collections.abc import Iterator, Sequence
from pathlib import Path

import pytest
import yaml

REPO_ROOT = Path(__file__).resolve().parents[2]
if str(REPO_ROOT) not in sys.path:
    sys.path.insert(0, str(REPO_ROOT))

from sandbox import facts as sandbox_facts  # noqa: E402
from sandbox.sandboxctl import (  # noqa: E402  (needs the repo root on sys.path first)
    DEFAULT_LAYOUT,
    DEFAULT_PLATFORM,
    EnvironmentProblem,
    SandboxHost,
    current_layers,
    file_lock,
    host_down,
    load_platforms,
    orphan_hosts,
    read_snapshot,
    snapshot_host,
)

VENV_BIN = REPO_ROOT / ".venv" / "bin"
# Ansible gets a clean environment: the chroot connection passes the controller's environment into the
# target (a stray GNUPGHOME broke rpm key import there).
CLEAN_ENV = {
    "PATH": f"{VENV_BIN}:/usr/sbin:/usr/bin:/sbin:/bin",
    "HOME": "/root",
    "LANG": "C.UTF-8",
    "ANSIBLE_CONFIG": str(REPO_ROOT / "ansible.cfg"),
    "ANSIBLE_NOCOLOR": "1",
}
# Not part of a host's state: pseudo filesystems, shared binds, scratch and caches, logs.
SNAPSHOT_EXCLUDES = (
    "/proc", "/sys", "/dev", "/srv/sandbox-repos", "/srv/sandbox-wheelhouse", "/var/cache/sandbox-pip",
    "/tmp",
    "/root/.ansible",
    "/var/cache/zypp", "/var/log",
)


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Mark every test that uses a sandbox host `sandbox` (deselect with -m 'not sandbox')."""
    for item in items:
        if "fresh_host" in getattr(item, "fixturenames", ()):
            item.add_marker(pytest.mark.sandbox)


@pytest.fixture(scope="session")
def sandbox_ready() -> Path:
    """The default platform's suite base; skips without root, fails when a platform was not built."""
    if os.geteuid() != 0:
        pytest.skip("sandbox scenarios need root (overlayfs mounts, chroot)")
    try:
        layers = {name: current_layers(DEFAULT_LAYOUT, pf) for name, pf in load_platforms().items()}
    except EnvironmentProblem as exc:
        pytest.fail(str(exc), pytrace=False)
    # Hosts left behind by test processes that were killed (SIGKILL skips every cleanup).
    for name in orphan_hosts(DEFAULT_LAYOUT):
        host_down(DEFAULT_LAYOUT, name)
    return layers[DEFAULT_PLATFORM].suite


def host_name_for(nodename: str) -> str:
    """A unique, valid host name derived from a test's name."""
    slug = re.sub(r"[^a-z0-9]+", "-", nodename.lower()).strip("-")[:40].strip("-") or "t"
    return f"{slug}-{uuid.uuid4().hex[:6]}"


@pytest.fixture
def fresh_host(request: pytest.FixtureRequest, sandbox_ready: Path) -> Iterator[SandboxHost]:
    """A fresh sandbox host for this test only (own overlay, own one-host inventory), always torn down.
    Its platform is the default one, or the parameter of `@pytest.mark.parametrize("fresh_host",
    ["leap160"], indirect=True)`."""
    platform = getattr(request, "param", DEFAULT_PLATFORM)
    snapshot = prepared_snapshot(platform)
    with SandboxHost(host_name_for(request.node.name), platform=platform, snapshot=snapshot) as host:
        yield host


def give_python(host: SandboxHost) -> None:
    """On a 15.x platform, install python311 as python_bootstrap's first run would: scenarios compare the host
    before and after the roles, and that one change is the bootstrap's, tested by the matrix converge."""
    if sandbox_facts.python_too_old(load_platforms()[host.platform].facts):
        res = host.run("zypper", "--non-interactive", "install", "--no-recommends", "python311")
        assert res.returncode == 0, res.stdout + res.stderr


def prepared_snapshot(platform: str, cuda: bool = False) -> str | None:
    """The snapshot fresh hosts of `platform` start from: give_python() and, with `cuda`,
    install_cuda_toolkit(), done once on a host of their own and kept instead of in every scenario (None:
    nothing to prepare).
    Made again when this file, the pins, the stub repositories or the platform's layers change; the lock
    makes one pytest-xdist worker build it while the others wait."""
    if not cuda and not sandbox_facts.python_too_old(load_platforms()[platform].facts):
        return None
    name = f"prepared-{platform}{'-cuda' if cuda else ''}"
    lowers = [str(p) for p in current_layers(DEFAULT_LAYOUT, load_platforms()[platform]).lowers]
    inputs = hashlib.sha256()
    for path in (Path(__file__), REPO_ROOT / "pins.yml", DEFAULT_LAYOUT.repos / ".stamp.json"):
        inputs.update(path.read_bytes())
    label = inputs.hexdigest()[:16]
    with file_lock(DEFAULT_LAYOUT.snapshots.parent / ".prepared.lock"):
        try:
            stamp = read_snapshot(DEFAULT_LAYOUT, name)
        except EnvironmentProblem:
            stamp = {}
        if stamp.get("label") != label or stamp.get("lowers") != lowers:
            host = SandboxHost(f"{name}-{uuid.uuid4().hex[:6]}", platform=platform).up()
            try:
                give_python(host)
                if cuda:
                    install_cuda_toolkit(host)
                snapshot_host(DEFAULT_LAYOUT, host.name, name, label=label)
            finally:
                host.down()
    return name


def host_python(host: SandboxHost) -> str:
    """The interpreter that runs code on the host (15.x: python3.11; there python3 is the 3.6 stand-in)."""
    too_old = sandbox_facts.python_too_old(load_platforms()[host.platform].facts)
    return "/usr/bin/python3.11" if too_old else "python3"


def converged_snapshot(platform: str) -> str:
    """The snapshot of the matrix converge of `platform` (make converge snapshot), or fail saying so."""
    name = f"converged-{platform}-1"
    try:
        read_snapshot(DEFAULT_LAYOUT, name)
    except EnvironmentProblem:
        pytest.fail(f"no snapshot {name}: run `make converge snapshot` (make test does) first", pytrace=False)
    return name


@pytest.fixture
def converged_host(request: pytest.FixtureRequest, sandbox_ready: Path) -> Iterator[SandboxHost]:
    """A fresh host that starts from the converged snapshot of its platform (site.yml already ran): the
    default platform, or `@pytest.mark.parametrize("converged_host", ["leap160"], indirect=True)`."""
    platform = getattr(request, "param", DEFAULT_PLATFORM)
    snapshot = converged_snapshot(platform)
    with SandboxHost(host_name_for(request.node.name), platform=platform, snapshot=snapshot) as host:
        yield host


@contextlib.contextmanager
def scenario_hosts(
    tag: str, cases: dict[str, tuple[str, dict]], cuda: bool = False
) -> Iterator[tuple[Path, dict[str, SandboxHost]]]:
    """Fresh hosts for several cases at once, and one inventory listing them all with per-host variables,
    so a single ansible-playbook run covers every case in parallel. `cases` maps case -> (platform,
    host vars); with `cuda` each host has the CUDA toolkit (prepared_snapshot). Yields (inventory path,
    {case: host}); everything is torn down afterwards."""
    hosts: dict[str, SandboxHost] = {}
    # Not .sandbox-*.yml: sandboxctl drops those of hosts that are not up whenever a host goes up or down,
    # which other pytest-xdist workers do at any time
    inventory = REPO_ROOT / "inventory" / f".scenario-{tag}-{uuid.uuid4().hex[:6]}.yml"
    try:
        for case, (platform, _vars) in cases.items():
            name = f"{tag}-{re.sub(r'[^a-z0-9]+', '-', case.lower())}-{uuid.uuid4().hex[:4]}"
            snap = prepared_snapshot(platform, cuda)
            hosts[case] = SandboxHost(name, platform=platform, snapshot=snap).up()
        entries = {
            hosts[case].name: {
                "ansible_connection": "community.general.chroot", "ansible_host": str(hosts[case].root),
                "ansible_become": False, "sandbox_platform": platform, **host_vars,
            }
            for case, (platform, host_vars) in cases.items()
        }
        # Inside inventory/ (hidden): Ansible loads group_vars/ next to it
        inventory.write_text(json.dumps({"sandbox": {"hosts": entries}}, indent=2) + "\n")
        yield inventory, hosts
    finally:
        inventory.unlink(missing_ok=True)
        for host in hosts.values():
            host.down()


def _session_options(new_session: bool) -> dict:
    """subprocess options for an ansible-playbook that leads its own process group and takes SIGINT as from a
    terminal: a shell without job control starts background jobs with SIGINT ignored, the child inherits
    that, and Python then never raises KeyboardInterrupt (make test run as `make test &` in a script)."""
    if not new_session:
        return {}
    return {"start_new_session": True, "preexec_fn": lambda: signal.signal(signal.SIGINT, signal.SIG_DFL)}


def run_playbook_on(inventory: Path, limit: str, playbook: str | Path, extra_vars: dict | None = None,
                    tags: str | None = None, args: Sequence[str] = (), timeout: float = 3600,
                    env: dict | None = None, new_session: bool = False) -> subprocess.CompletedProcess[str]:
    """ansible-playbook with an inventory of scenario_hosts(), clean environment, output in .stdout (`env`
    and `new_session` as in run_playbook)."""
    cmd = [str(VENV_BIN / "ansible-playbook"), "-i", str(inventory), "--limit", limit]
    if extra_vars:
        cmd += ["--extra-vars", json.dumps(extra_vars)]
    if tags:
        cmd += ["--tags", tags]
    cmd += [*args, str(playbook)]
    return subprocess.run(cmd, cwd=REPO_ROOT, env={**CLEAN_ENV, **(env or {})}, text=True,
                          stdout=subprocess.PIPE, stderr=subprocess.STDOUT, timeout=timeout, check=False,
                          **_session_options(new_session))


def run_playbook(
    host: SandboxHost,
    playbook: str | Path,
    extra_vars: dict | None = None,
    tags: str | Sequence[str] | None = None,
    check: bool = False,
    diff: bool = False,
    args: Sequence[str] = (),
    timeout: float = 3600,
    env: dict | None = None,
    new_session: bool = False,
) -> subprocess.CompletedProcess[str]:
    """Run ansible-playbook (repo-relative path) against `host` only, with a clean environment.

    stdout and stderr are captured together in `.stdout`; the return code is not checked. `env` adds to
    the clean environment; `new_session` makes ansible-playbook lead its own process group, with SIGINT's
    default action whatever the caller inherited (for the interrupt_at callback, which sends SIGINT to that
    group).
    """
    cmd = [str(VENV_BIN / "ansible-playbook"), "-i", str(host.inventory_path), "--limit", host.name]
    if extra_vars:
        cmd += ["--extra-vars", json.dumps(extra_vars)]
    if tags:
        cmd += ["--tags", tags if isinstance(tags, str) else ",".join(tags)]
    if check:
        cmd.append("--check")
    if diff:
        cmd.append("--diff")
    cmd += [*args, str(playbook)]
    return subprocess.run(
        cmd, cwd=REPO_ROOT, env={**CLEAN_ENV, **(env or {})}, text=True, stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT, timeout=timeout, check=False, **_session_options(new_session),
    )


def run_testinfra(host: SandboxHost, *tests: str, timeout: float = 600) -> subprocess.CompletedProcess[str]:
    """The testinfra suite (validation/tests/<tests>, pytest node ids or -k expressions) against `host`."""
    return run_testinfra_on(host.inventory_path, [host], *tests, timeout=timeout)


def run_testinfra_on(inventory: Path, hosts: Sequence[SandboxHost], *tests: str,
                     timeout: float = 600) -> subprocess.CompletedProcess[str]:
    """The testinfra suite against several hosts in one pytest run (expected values from `inventory`, e.g.
    one of scenario_hosts()). failed_tests() lists what failed, per host."""
    cmd = [str(VENV_BIN / "pytest"), *[f"validation/tests/{t}" for t in tests], "-q", "-rf",
           "-p", "no:cacheprovider", "--connection=chroot", "--hosts=" + ",".join(str(h.root) for h in hosts),
           "-m", "not gpu", f"--stack-inventory={inventory}"]
    return subprocess.run(cmd, cwd=REPO_ROOT, env=CLEAN_ENV, text=True, stdout=subprocess.PIPE,
                          stderr=subprocess.STDOUT, timeout=timeout, check=False)


def failed_tests(output: str, host: SandboxHost) -> list[str]:
    """Names (file::test) of the tests that failed on `host` in a run_testinfra_on() output (-rf lines)."""
    names = set()
    for m in re.finditer(r"^FAILED validation/tests/(\S+?)\[(.*?)\]", output, re.M):
        if re.search(re.escape(str(host.root)) + r"(-|$)", m.group(2)):
            names.add(m.group(1))
    return sorted(names)


def flat(text: str) -> str:
    """Output with whitespace runs collapsed (the YAML callback wraps long messages)."""
    return " ".join(text.split())


def recap(output: str, host: str | None = None) -> dict[str, int]:
    """The PLAY RECAP counts (ok, changed, failed ...) of a one-host run, or of `host`'s line."""
    for line in output.splitlines()[::-1]:
        if " changed=" in line and " failed=" in line and (host is None or line.split()[0] == host):
            return {k: int(v) for k, v in re.findall(r"(\w+)=(\d+)", line)}
    raise AssertionError(f"no PLAY RECAP{' for ' + host if host else ''} in the output:\n" + output[-3000:])


def recap_changed(output: str, host: str | None = None) -> int:
    """changed= of the PLAY RECAP line of a one-host run, or of `host`'s line."""
    return recap(output, host)["changed"]


def task_status(output: str, task: str, host: str) -> str | None:
    """What the (first) run of `task` ("role : name") reported for `host`: ok, changed, skipping, failed,
    fatal, or None when the task did not run for it."""
    # roles named by FQCN (the playbooks) print as gpu_stack.opensuse.<role>
    start = output.find(f"TASK [{task}]")
    if start < 0:
        start = output.find(f"TASK [gpu_stack.opensuse.{task}]")
    assert start >= 0, f"task {task!r} not in the output:\n{output[-3000:]}"
    section = output[start:]
    end = re.search(r"^(TASK|RUNNING HANDLER|PLAY RECAP) \[?", section[1:], re.M)
    section = section[: end.start() + 1] if end else section
    m = re.search(rf"^(ok|changed|skipping|failed|fatal): \[{re.escape(host)}\]", section, re.M)
    return m.group(1) if m else None


def failure_text(output: str, host: str) -> str:
    """The failure reports of `host` in a run's output, flattened ('' when it did not fail): each
    `fatal: [host]: FAILED! =>` (or `failed: [host]`) and its result, read as the YAML the callback prints."""
    texts = []
    for m in re.finditer(rf"^(?:fatal|failed): \[{re.escape(host)}\].*\n((?:[ \t]+.*\n|\n)*)", output, re.M):
        try:
            result = yaml.safe_load(textwrap.dedent(m.group(1)))
        except yaml.YAMLError:
            result = None
        if isinstance(result, dict):
            texts.append(" ".join(f"{k}: {v}" for k, v in result.items()))
        else:
            texts.append(m.group(0))
    return flat("\n".join(texts))


def install_cuda_toolkit(host: SandboxHost) -> SandboxHost:
    """NVIDIA's (stub) CUDA repo and the pinned CUDA toolkit on `host`, as the cuda roles leave them."""
    keys = json.loads((REPO_ROOT / ".cache/sandbox/repos/KEYS.json").read_text())
    pins = yaml.safe_load((REPO_ROOT / "pins.yml").read_text())
    toolkit = "cuda-toolkit-" + str(pins["gpu_stack_cuda_version"]).replace(".", "-")
    repo = "/srv/sandbox-repos/cuda/opensuse15/x86_64/cuda-opensuse15.repo"
    for cmd in (
        ("rpm", "--import", f"/srv/sandbox-repos/{keys['nvidia']['file']}"),
        ("zypper", "--non-interactive", "addrepo", repo),
        ("zypper", "--non-interactive", "install", "--no-recommends", toolkit),
        # the -devel packages have no %post ldconfig: refresh the cache as the cuda role does
        ("ldconfig",),
    ):
        res = host.run(*cmd)
        assert res.returncode == 0, f"{cmd}: {res.stdout[-2000:]}{res.stderr[-2000:]}"
    return host


@pytest.fixture
def cuda_host(request: pytest.FixtureRequest, sandbox_ready: Path) -> Iterator[SandboxHost]:
    """A fresh host with NVIDIA's (stub) CUDA repo and the CUDA toolkit, as the cuda roles leave it (the
    default platform: install_cuda_toolkit adds the opensuse15 repository)."""
    snapshot = prepared_snapshot(DEFAULT_PLATFORM, cuda=True)
    with SandboxHost(host_name_for(request.node.name), snapshot=snapshot) as host:
        yield host


def _excluded(rel: str) -> bool:
    return any(rel == e or rel.startswith(e + "/") for e in SNAPSHOT_EXCLUDES)


_KINDS = {stat.S_IFREG: "f", stat.S_IFDIR: "d", stat.S_IFLNK: "l", stat.S_IFCHR: "c", stat.S_IFBLK: "b",
          stat.S_IFIFO: "p", stat.S_IFSOCK: "s"}


def _sha256(path: Path) -> str | None:
    try:
        return hashlib.sha256(path.read_bytes()).hexdigest()
    except OSError:
        return None


def snapshot(host: SandboxHost) -> dict:
    """State of a host: installed RPMs and the file tree.

    files maps path -> (type, mode, uid, gid, link target, size, sha256). The sha256 is taken only for
    regular files in the overlay upper layer (the only ones whose content can differ from the base) and
    is None otherwise; diff_snapshots() fills the gap from the base when needed.
    """
    res = host.run("rpm", "-qa", "--qf", "%{NAME}-%{VERSION}-%{RELEASE}.%{ARCH}\\n")
    assert res.returncode == 0, f"rpm -qa failed in {host.name}: {res.stderr}"
    touched = set()
    for dirpath, dirnames, filenames in os.walk(host.upper):
        rel_dir = "/" + os.path.relpath(dirpath, host.upper).removeprefix(".").lstrip("/")
        touched.update(os.path.join(rel_dir, f) for f in filenames)
        dirnames[:] = [d for d in dirnames if not _excluded(os.path.join(rel_dir, d))]
    files: dict[str, tuple] = {}
    root = str(host.root)
    for dirpath, dirnames, filenames in os.walk(root):
        rel_dir = "/" + os.path.relpath(dirpath, root).removeprefix(".").lstrip("/")
        dirnames[:] = [d for d in dirnames if not _excluded(os.path.join(rel_dir, d))]
        for name in dirnames + filenames:
            rel = os.path.join(rel_dir, name)
            if _excluded(rel):
                continue
            full = os.path.join(dirpath, name)
            st = os.lstat(full)
            link = os.readlink(full) if stat.S_ISLNK(st.st_mode) else None
            digest = _sha256(Path(full)) if stat.S_ISREG(st.st_mode) and rel in touched else None
            files[rel] = (_KINDS.get(stat.S_IFMT(st.st_mode), "?"), f"{stat.S_IMODE(st.st_mode):04o}",
                          st.st_uid, st.st_gid, link, st.st_size, digest)
    return {"host": host.name, "lowers": [str(p) for p in host.lowers], "rpm": sorted(res.stdout.split()),
            "files": files}


def diff_snapshots(before: dict, after: dict) -> list[str]:
    """Readable differences between two snapshots of one host ([] when nothing changed)."""
    out = [f"rpm removed: {p}" for p in sorted(set(before["rpm"]) - set(after["rpm"]))]
    out += [f"rpm added: {p}" for p in sorted(set(after["rpm"]) - set(before["rpm"]))]
    b, a = before["files"], after["files"]
    out += [f"file removed: {p}" for p in sorted(set(b) - set(a))]
    out += [f"file added: {p}" for p in sorted(set(a) - set(b))]
    for p in sorted(set(a) & set(b)):
        old, new = b[p], a[p]
        if old[:6] != new[:6]:
            out.append(f"file changed: {p}: {old[:6]} -> {new[:6]}")
        elif old[0] == "f" and old[6] != new[6]:
            # a file only hashed on one side is unchanged there from the base: hash the base copy
            base_hash = next((h for h in (_sha256(Path(lower + p)) for lower in before["lowers"]) if h), None)
            if (old[6] or base_hash) != (new[6] or base_hash):
                out.append(f"file content changed: {p}")
    return out
