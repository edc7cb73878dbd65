#!/usr/bin/env python3
"""sandboxctl: build and run sandbox hosts, Debian chroots that Ansible sees as openSUSE or SLES.

One sandbox host per claimed platform (Leap 15.6, Leap 16.0, Tumbleweed, SLES 15, SLES 16; the list and
each platform's facts are in sandbox/stubs/facts.yml). Three cached layers make a host:
  suite base     debootstrap'd Debian (bookworm for the 15.x platforms, whose python311 is a 3.11,
                 trixie for the 16.x ones and Tumbleweed, whose system Python is 3.13) + zypper/rpm
  platform layer the platform's disguise on top: os-release, products.d, its base OS repo, the rpmdb,
                 and on 15.x a system python3 that is as unusable for ansible-core as Leap 15's 3.6
  host           an overlayfs upper dir per host: .cache/sandbox/hosts/<name>/merged is its root, with
                 proc, sys (read-only), a private /dev (tmpfs with the few nodes a chroot needs), the
                 stub repos (read-only) and the pip cache mounted.

Subcommands: build, repos, up, down, reset, status, root, shell, clean (see `sandboxctl.py -h`).
Python API for tests: `SandboxHost`, `sandbox_host()`.

Exit codes: 0 ok, 1 operation failed, 2 usage or environment error (not root, missing tools,
no mount rights, no Debian mirror, base not built).
"""

from __future__ import annotations

import argparse
import ast
import atexit
import contextlib
import dataclasses
import fcntl
import hashlib
import json
import os
import re
import shutil
import signal
import stat
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent
if str(REPO_ROOT) not in sys.path:  # run as a script: make `sandbox.facts` importable
    sys.path.insert(0, str(REPO_ROOT))

from sandbox import facts as sandbox_facts  # noqa: E402  (needs the repository root on sys.path)

# Debian/openSUSE-compatible path of the CA bundle pip reads (copied from the machine into each host)
HOST_CA_BUNDLE = "/etc/ssl/certs/ca-certificates.crt"

# The Debian mirror comes from the machine's own apt sources (or $SANDBOX_MIRROR): no host is hard-coded.
APT_SOURCES = (Path("/etc/apt/sources.list"), Path("/etc/apt/sources.list.d"))
# The platform a host gets when neither --platform nor its name says
DEFAULT_PLATFORM = "leap156"
# Environment for every command run inside a chroot: the caller's environment must not leak in (a stray
# GNUPGHOME broke rpm key import inside the chroot).
CHROOT_ENV = {
    "PATH": "/usr/sbin:/usr/bin:/sbin:/bin",
    "HOME": "/root",
    "LANG": "C.UTF-8",
    "TERM": "dumb",
}
# Host tools the sandbox needs, with the Debian package that ships each.
HOST_TOOLS_BASE = {"debootstrap": "debootstrap", "chroot": "coreutils", "mount": "mount", "umount": "mount"}
HOST_TOOLS_REPOS = {
    "rpmbuild": "rpm",
    "rpmsign": "rpm",
    "createrepo_c": "createrepo-c",
    "gpg": "gnupg",
    "gcc": "gcc",
}

HOST_NAME_RE = re.compile(r"^[a-z0-9][a-z0-9_-]{0,62}$")


class SandboxError(Exception):
    """An operation failed (exit 1)."""

    exit_code = 1


class EnvironmentProblem(SandboxError):
    """The machine cannot run the sandbox, or a prerequisite step was not done (exit 2)."""

    exit_code = 2


# --------------------------------------------------------------------------------------------------
# Paths


@dataclasses.dataclass(frozen=True)
class Layout:
    """Where everything lives, derived from the repository root (tests point it at a temp dir)."""

    repo_root: Path

    @property
    def cache(self) -> Path:
        return self.repo_root / ".cache" / "sandbox"

    def suite_link(self, suite: str) -> Path:
        # Symlink to the current suite-<suite>-<digest>; hosts keep their layers pinned until they go down.
        return self.cache / f"suite-{suite}"

    def suite_dir(self, suite: str, digest: str) -> Path:
        return self.cache / f"suite-{suite}-{digest[:16]}"

    def platform_link(self, platform: str) -> Path:
        return self.cache / f"platform-{platform}"

    def platform_dir(self, platform: str, digest: str) -> Path:
        return self.cache / f"platform-{platform}-{digest[:16]}"

    @property
    def repos(self) -> Path:
        return self.cache / "repos"

    @property
    def hosts(self) -> Path:
        return self.cache / "hosts"

    @property
    def debs(self) -> Path:
        return self.cache / "debs"

    @property
    def wheelhouse(self) -> Path:
        # The ML virtualenv's pinned wheels (tools/wheelhouse.py, make wheelhouse), kept by `clean` like the
        # pip cache: every host installs TensorFlow from it without downloading it again
        return self.repo_root / ".cache" / "wheelhouse"

    @property
    def pip_cache(self) -> Path:
        return self.repo_root / ".cache" / "pip"

    @property
    def inventory_dir(self) -> Path:
        return self.repo_root / "inventory"

    @property
    def inventory_file(self) -> Path:
        return self.inventory_dir / "sandbox.yml"

    @property
    def rootfs_overlay(self) -> Path:
        return self.repo_root / "sandbox" / "rootfs"

    @property
    def build_repos(self) -> Path:
        return self.repo_root / "sandbox" / "build_repos.py"

    @property
    def state_lock(self) -> Path:
        return self.cache / ".lock"

    @property
    def build_lock(self) -> Path:
        return self.cache / ".build.lock"

    def build_log(self, what: str) -> Path:
        return self.cache / f"build-{what}.log"

    @property
    def snapshots(self) -> Path:
        return self.cache / "snapshots"

    def snapshot_dir(self, name: str) -> Path:
        return self.snapshots / name

    def host_dir(self, name: str) -> Path:
        return self.hosts / name

    def host_inventory(self, name: str) -> Path:
        # Inside inventory/ so Ansible loads inventory/group_vars/sandbox for it; the leading dot keeps
        # it out of `-i inventory/` (Ansible skips hidden files in inventory directories).
        return self.inventory_dir / f".sandbox-{name}.yml"


DEFAULT_LAYOUT = Layout(REPO_ROOT)


# --------------------------------------------------------------------------------------------------
# Small helpers (pure ones are unit-tested)


def _stop_group(proc: subprocess.Popen[str]) -> None:
    """Stop a command and everything it started (debootstrap's dpkg, apt's fetchers...), politely first:
    SIGINT lets Python children such as build_repos.py clean up, SIGKILL ends the rest."""
    for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGKILL):
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, sig)
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline:
            proc.poll()  # reap the leader so an exited group really disappears
            try:
                os.killpg(proc.pid, 0)
            except ProcessLookupError:
                return
            time.sleep(0.05)


def run_cmd(
    cmd: Sequence[str],
    *,
    input_text: str | None = None,
    env: dict[str, str] | None = None,
    timeout: float | None = None,
    capture: bool = True,
    log: Path | None = None,
) -> subprocess.CompletedProcess[str]:
    """Run a command; never raises for the command's sake: a missing command gives rc 127, a timeout
    rc 124. With `log`, stdout and stderr go to that file instead of being captured.

    The command gets its own process group; on a timeout, Ctrl-C or SIGTERM the whole group is stopped
    before this returns or re-raises, so nothing keeps writing into a tree that is being removed.
    """
    argv = list(cmd)
    with contextlib.ExitStack() as stack:
        if log is not None:
            fh = stack.enter_context(log.open("a"))
            fh.write(f"\n$ {' '.join(argv)}\n")
            fh.flush()
            out_kw: dict = {"stdout": fh, "stderr": subprocess.STDOUT}
        elif capture:
            out_kw = {"stdout": subprocess.PIPE, "stderr": subprocess.PIPE}
        else:
            out_kw = {}
        try:
            proc = subprocess.Popen(
                argv,
                stdin=subprocess.PIPE if input_text is not None else subprocess.DEVNULL,
                env=env,
                text=True,
                start_new_session=True,
                **out_kw,
            )
        except (FileNotFoundError, PermissionError) as exc:
            return subprocess.CompletedProcess(argv, 127, "", str(exc))
        try:
            out, err = proc.communicate(input_text, timeout=timeout)
        except subprocess.TimeoutExpired:
            _stop_group(proc)
            return subprocess.CompletedProcess(argv, 124, "", f"timed out after {timeout} s")
        except BaseException:
            _stop_group(proc)
            raise
        return subprocess.CompletedProcess(argv, proc.returncode, out or "", err or "")


def must(cmd: Sequence[str], what: str, **kwargs: object) -> subprocess.CompletedProcess[str]:
    """run_cmd, raising SandboxError naming `what` when the command fails."""
    res = run_cmd(cmd, **kwargs)  # type: ignore[arg-type]
    if res.returncode != 0:
        detail = (res.stderr or res.stdout or "").strip()[-3000:]
        log = kwargs.get("log")
        if log is not None:
            detail = f"see {log}:\n" + tail_file(Path(str(log)), 25)
        raise SandboxError(f"{what} failed (rc {res.returncode}): {' '.join(cmd)}\n{detail}".rstrip())
    return res


def tail_file(path: Path, lines: int) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return ""


def validate_host_name(name: str) -> str:
    """Return `name` if it is a usable host name (also an Ansible inventory name and a path part)."""
    if not HOST_NAME_RE.match(name):
        raise EnvironmentProblem(
            f"invalid host name {name!r}: use 1-63 characters of a-z, 0-9, '-' and '_', starting with a"
            " letter or digit"
        )
    return name


def expand_host_names(names: Sequence[str], count: int | None, prefix: str = DEFAULT_PLATFORM) -> list[str]:
    """Names given on the command line plus PREFIX-1..N for --count N, de-duplicated, in order."""
    out = list(names)
    if count is not None:
        if count < 1:
            raise EnvironmentProblem("--count must be at least 1")
        out += [f"{prefix}-{i}" for i in range(1, count + 1)]
    seen: dict[str, None] = {}
    for name in out:
        seen.setdefault(validate_host_name(name), None)
    return list(seen)


def _unescape_mount_path(field: str) -> str:
    # mountinfo escapes space, tab, newline and backslash as \ooo octal
    return re.sub(r"\\([0-7]{3})", lambda m: chr(int(m.group(1), 8)), field)


def parse_mountinfo(text: str) -> list[str]:
    """Mount points from /proc/self/mountinfo text, in mount order."""
    points = []
    for line in text.splitlines():
        fields = line.split()
        if len(fields) >= 5:
            points.append(_unescape_mount_path(fields[4]))
    return points


def mounts_under(path: Path | str, mountpoints: Sequence[str]) -> list[str]:
    """Mount points at or below `path`, innermost (last mounted) first: the order to unmount them."""
    root = os.path.normpath(str(path))
    hits = [m for m in mountpoints if m == root or m.startswith(root.rstrip("/") + "/")]
    return list(reversed(hits))


def current_mounts() -> list[str]:
    return parse_mountinfo(Path("/proc/self/mountinfo").read_text())


def render_inventory(hosts: dict[str, tuple[Path | str, str]], comment: str) -> str:
    """YAML inventory (group `sandbox`, and `sandbox_<platform>` per platform) for chroot hosts.

    `hosts` maps name -> (root, platform). No ansible_python_interpreter: like a real host, the
    python_bootstrap role finds (or installs) the interpreter. JSON strings are valid YAML scalars.
    """
    lines = ["---", f"# {comment}", "# Generated by sandbox/sandboxctl.py; do not edit.", "sandbox:"]
    if not hosts:
        lines.append("  hosts: {}")
        return "\n".join(lines) + "\n"
    lines.append("  hosts:")
    for name in sorted(hosts):
        root, platform = hosts[name]
        lines += [
            f"    {name}:",
            "      ansible_connection: community.general.chroot",
            f"      ansible_host: {json.dumps(str(root))}",
            "      ansible_become: false",
            f"      sandbox_platform: {platform}",
        ]
    lines.append("  children:")
    for platform in sorted({p for _root, p in hosts.values()}):
        lines += [f"    sandbox_{platform}:", "      hosts:"]
        lines += [f"        {name}: {{}}" for name in sorted(hosts) if hosts[name][1] == platform]
    return "\n".join(lines) + "\n"


# The private /dev of a host: what a chroot needs (character devices as on any Linux, by major/minor),
# never the machine's own device nodes.
DEV_NODES = (
    ("null", 1, 3),
    ("zero", 1, 5),
    ("full", 1, 7),
    ("random", 1, 8),
    ("urandom", 1, 9),
    ("tty", 5, 0),
)
DEV_LINKS = (
    ("fd", "/proc/self/fd"),
    ("stdin", "/proc/self/fd/0"),
    ("stdout", "/proc/self/fd/1"),
    ("stderr", "/proc/self/fd/2"),
    ("ptmx", "pts/ptmx"),
)


def host_mount_plan(layout: Layout, name: str, lowers: Sequence[Path]) -> list[list[str]]:
    """mount(8) argument lists that bring host `name` up, in order (the last target is innermost).

    `lowers` are the read-only layers, topmost first (platform layer, suite base). /dev is a private
    tmpfs that populate_dev() fills after it is mounted: nothing below the host reaches the machine's
    device nodes, so deleting a host tree by mistake cannot remove them.
    """
    hd = layout.host_dir(name)
    merged = hd / "merged"
    for p in (*lowers, hd):
        # overlayfs option syntax uses ',' and ':' as separators
        if any(c in str(p) for c in ",:"):
            raise EnvironmentProblem(f"path {p} contains ',' or ':', which overlayfs options cannot carry")
    opts = f"lowerdir={':'.join(str(p) for p in lowers)},upperdir={hd / 'upper'},workdir={hd / 'work'}"
    return [
        ["mount", "-t", "overlay", "overlay", "-o", opts, str(merged)],
        ["mount", "-t", "proc", "-o", "nosuid,nodev,noexec", "proc", str(merged / "proc")],
        # read-only: a chroot must not be able to write the host's /sys
        ["mount", "-t", "sysfs", "-o", "ro,nosuid,nodev,noexec", "sysfs", str(merged / "sys")],
        ["mount", "-t", "tmpfs", "-o", "nosuid,noexec,mode=0755,size=1m", "sandbox-dev", str(merged / "dev")],
        # a new devpts instance: the chroot's ptys are its own
        [
            "mount",
            "-t",
            "devpts",
            "-o",
            "newinstance,ptmxmode=0666,mode=0620,nosuid,noexec",
            "devpts",
            str(merged / "dev/pts"),
        ],
        ["mount", "-t", "tmpfs", "-o", "nosuid,nodev,mode=1777", "sandbox-shm", str(merged / "dev/shm")],
        ["mount", "-o", "bind,ro", str(layout.repos), str(merged / "srv/sandbox-repos")],
        ["mount", "--bind", str(layout.pip_cache), str(merged / "var/cache/sandbox-pip")],
        ["mount", "-o", "bind,ro", str(layout.wheelhouse), str(merged / "srv/sandbox-wheelhouse")],
    ]


def populate_dev(dev: Path) -> None:
    """Fill a freshly mounted private /dev tmpfs: the usual character devices, links, pts/ and shm/."""
    for node, major, minor in DEV_NODES:
        os.mknod(dev / node, 0o666 | stat.S_IFCHR, os.makedev(major, minor))
        os.chmod(dev / node, 0o666)  # mknod applies the umask
    for link, target in DEV_LINKS:
        (dev / link).symlink_to(target)
    for sub in ("pts", "shm"):
        (dev / sub).mkdir(mode=0o755)


def pid_start_time(pid: int) -> str | None:
    """Start time of a process (field 22 of /proc/PID/stat), to tell a live owner from a reused pid."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return stat.rsplit(")", 1)[1].split()[19]


def owner_alive(info: dict) -> bool:
    pid = info.get("owner_pid")
    if not pid:
        return True  # CLI hosts have no owner; they stay up until `down`
    return pid_start_time(int(pid)) == info.get("owner_start")


@contextlib.contextmanager
def file_lock(path: Path) -> Iterator[None]:
    """Exclusive flock, so parallel sandboxctl runs (and test sessions) do not interleave state changes."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("a") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def write_atomic(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}-{threading.get_ident()}")
    tmp.write_text(text)
    os.replace(tmp, path)


def log_step(msg: str) -> None:
    print(f"sandboxctl: {msg}", file=sys.stderr, flush=True)


# --------------------------------------------------------------------------------------------------
# Mount handling and safe removal


def unmount_under(path: Path) -> list[str]:
    """Unmount everything at or below `path`, innermost first; lazy unmount when busy. Returns leftovers."""
    for point in mounts_under(path, current_mounts()):
        if run_cmd(["umount", point]).returncode != 0:
            run_cmd(["umount", "-l", point])
    return mounts_under(path, current_mounts())


def safe_rmtree(path: Path) -> None:
    """rm -rf that refuses while anything is mounted below `path` (so it can never reach a bind source)."""
    if not path.exists() and not path.is_symlink():
        return
    left = unmount_under(path)
    if left:
        raise SandboxError(f"refusing to delete {path}: still mounted: {', '.join(left)}")
    if path.is_symlink() or not path.is_dir():
        path.unlink()
        return
    for attempt in range(3):
        try:
            shutil.rmtree(path)  # rmtree never follows symlinks to directories
            return
        except OSError:
            if attempt == 2:
                raise
            time.sleep(1)  # a process that was just stopped may still have been writing there


# --------------------------------------------------------------------------------------------------
# Platforms


@dataclasses.dataclass(frozen=True)
class Platform:
    """A claimed platform as the sandbox builds it (facts from sandbox/stubs/facts.yml)."""

    name: str  # leap156, leap160, tumbleweed, sles15, sles16
    title: str
    suite: str  # the Debian suite under it
    facts: dict = dataclasses.field(hash=False, compare=False)

    @property
    def system_python(self) -> str:
        return str(sandbox_facts.system_python(self.facts)["version"])

    @property
    def oss_dir(self) -> str:
        """The platform's base OS repo under /srv/sandbox-repos."""
        return f"oss/{self.name}"


def version_key(version: str) -> tuple[int, ...]:
    return tuple(int(p) for p in re.findall(r"\d+", version))


def load_platforms() -> dict[str, Platform]:
    try:
        data = sandbox_facts.platforms()
        return {
            name: Platform(name, str(pf["name"]), sandbox_facts.suite_for(pf), pf)
            for name, pf in data.items()
        }
    except sandbox_facts.FactsError as exc:
        raise EnvironmentProblem(str(exc)) from exc


def platform_for_host(name: str, requested: str | None, platforms: dict[str, Platform]) -> Platform:
    """--platform if given, else the platform whose id starts the host name (tumbleweed-2), else default."""
    if requested:
        if requested not in platforms:
            raise EnvironmentProblem(f"unknown platform {requested!r}; choose one of {', '.join(platforms)}")
        return platforms[requested]
    for pid in sorted(platforms, key=len, reverse=True):
        if name == pid or name.startswith(pid + "-"):
            return platforms[pid]
    return platforms[DEFAULT_PLATFORM]


def apt_source_uris(texts: Sequence[str]) -> list[tuple[str, list[str]]]:
    """(URI, suites) of the `deb` entries in sources.list (one-line) and .sources (deb822) texts."""
    out: list[tuple[str, list[str]]] = []
    for text in texts:
        stanza: dict[str, str] = {}
        for raw in [*text.splitlines(), ""]:
            if raw.lstrip().startswith("#"):
                continue  # a comment line, not a stanza separator
            line = raw.split("#", 1)[0].rstrip()
            if line.startswith(("deb ", "deb\t")):
                fields = re.sub(r"\[[^]]*\]", " ", line).split()
                if len(fields) >= 3:
                    out.append((fields[1], [fields[2]]))
                continue
            if not line.strip():
                if "deb" in stanza.get("types", "").split() and stanza.get("uris"):
                    for uri in stanza["uris"].split():
                        out.append((uri, stanza.get("suites", "").split()))
                stanza = {}
                continue
            if ":" in line and not line[0].isspace():
                key, value = line.split(":", 1)
                stanza[key.strip().lower()] = value.strip()
    return out


DEBIAN_CODENAMES = ("bullseye", "bookworm", "trixie", "forky", "sid", "unstable", "stable", "testing")


def machine_mirror(environ: dict[str, str] | None = None) -> str:
    """$SANDBOX_MIRROR, else the Debian archive the machine's own apt sources use."""
    env = os.environ if environ is None else environ
    if env.get("SANDBOX_MIRROR"):
        return env["SANDBOX_MIRROR"].rstrip("/")
    texts = []
    for src in APT_SOURCES:
        files = sorted(src.glob("*.list")) + sorted(src.glob("*.sources")) if src.is_dir() else [src]
        for f in files:
            with contextlib.suppress(OSError):
                texts.append(f.read_text())
    for uri, suites in apt_source_uris(texts):
        if any(s.split("-")[0] in DEBIAN_CODENAMES and not s.endswith("-security") for s in suites):
            return uri.rstrip("/")
    raise EnvironmentProblem(
        "no Debian mirror found in the machine's apt sources (/etc/apt/sources.list, sources.list.d): set"
        " SANDBOX_MIRROR to a Debian mirror that carries " + " and ".join(SUITE_PYTHON)
    )


# --------------------------------------------------------------------------------------------------
# >>> SUITE RECIPE START: everything between these markers shapes a suite base and is hashed into its
# stamp (with the suite's Debian package list); changing it makes the cached suite bases stale.

SUITE_PYTHON = sandbox_facts.SUITE_PYTHON
# Debian packages every image needs whatever the stub repos hold: zypper/rpm, what Ansible modules use
# (python3-rpm for package_facts, gpg for rpm_key), the real Python with venv/ensurepip, and the usual
# payload of the base OS stubs. `build_repos.py --debian-packages --suite S` adds the rest of that payload.
COMMON_PACKAGES = (
    "python3",
    "python3-venv",
    "python3-rpm",
    "zypper",
    "rpm",
    "gpg",
    "xz-utils",
    "bzip2",
    "pciutils",
    "ca-certificates",
    "libopenblas0-pthread",
    "libopenblas-dev",
    "libhdf5-dev",
    "gcc",
    "g++",
    "make",
)
SUITE_PACKAGES = {
    "bookworm": ("python3.11", "python3.11-venv", "python3.11-dev"),
    "trixie": ("python3.13", "python3.13-venv", "python3.13-dev"),
}


def build_mounts(rootfs: Path, layout: Layout, with_repos: bool) -> list[list[str]]:
    """Mounts a build step needs in its chroot; /dev is private as in a host (populate_dev)."""
    plan = [
        ["mount", "-t", "proc", "proc", str(rootfs / "proc")],
        ["mount", "-t", "sysfs", "-o", "ro", "sysfs", str(rootfs / "sys")],
        ["mount", "-t", "tmpfs", "-o", "nosuid,noexec,mode=0755,size=1m", "sandbox-dev", str(rootfs / "dev")],
        [
            "mount",
            "-t",
            "devpts",
            "-o",
            "newinstance,ptmxmode=0666,mode=0620",
            "devpts",
            str(rootfs / "dev/pts"),
        ],
    ]
    if with_repos:
        plan.append(["mount", "-o", "bind,ro", str(layout.repos), str(rootfs / "srv/sandbox-repos")])
    return plan


@contextlib.contextmanager
def mounted(plan: list[list[str]], scope: Path) -> Iterator[None]:
    """Mount `plan` (filling a private /dev right after its tmpfs), unmount everything below `scope` after."""
    try:
        for argv in plan:
            target = Path(argv[-1])
            target.mkdir(parents=True, exist_ok=True)
            must(argv, f"mounting {target}")
            if argv[1:4] == ["-t", "tmpfs", "-o"] and target.name == "dev":
                populate_dev(target)
        yield
    finally:
        left = []
        for sub in ("srv", "dev", "sys", "proc"):
            left += unmount_under(scope / sub)
        if left:
            raise SandboxError(f"could not unmount {', '.join(left)}")


def chroot_cmd(rootfs: Path, *cmd: str) -> list[str]:
    return ["chroot", str(rootfs), *cmd]


def _link_debs(src: Path, dst: Path) -> None:
    """Hard-link .deb files from src into dst (a local cache: rebuilds do not download them again)."""
    if not src.is_dir():
        return
    dst.mkdir(parents=True, exist_ok=True)
    for deb in src.glob("*.deb"):
        target = dst / deb.name
        if target.exists():
            continue
        try:
            os.link(deb, target)
        except OSError:
            shutil.copy2(deb, target)


def bootstrap_suite(
    rootfs: Path, layout: Layout, suite: str, mirror: str, packages: Sequence[str], log: Path
) -> None:
    """debootstrap + apt-get install of `packages`, apt caches dropped afterwards."""
    archives = rootfs / "var/cache/apt/archives"
    debs = layout.debs / suite
    _link_debs(debs, archives)  # debootstrap reuses debs already in the target when checksums match
    must(["debootstrap", "--variant=minbase", suite, str(rootfs), mirror], f"debootstrap {suite}", log=log)
    _link_debs(archives, debs)
    env = dict(CHROOT_ENV, DEBIAN_FRONTEND="noninteractive")
    policy = rootfs / "usr/sbin/policy-rc.d"
    policy.write_text("#!/bin/sh\n# no daemons in the sandbox build\nexit 101\n")
    policy.chmod(0o755)
    resolv = rootfs / "etc/resolv.conf"
    if resolv.is_symlink():
        resolv.unlink()
    shutil.copyfile("/etc/resolv.conf", resolv)
    with mounted(build_mounts(rootfs, layout, with_repos=False), rootfs):
        must(chroot_cmd(rootfs, "apt-get", "update"), "apt-get update", env=env, log=log)
        must(
            chroot_cmd(rootfs, "apt-get", "install", "-y", "--no-install-recommends", *packages),
            "apt-get install",
            env=env,
            log=log,
        )
        _link_debs(archives, debs)
        must(chroot_cmd(rootfs, "apt-get", "clean"), "apt-get clean", env=env, log=log)
    policy.unlink()
    for child in (rootfs / "var/lib/apt/lists").glob("*"):
        if child.is_file():
            child.unlink()
    # Mount points every host and build step uses live in the base, so an upper layer starts empty
    for rel in ("srv/sandbox-repos", "var/cache/sandbox-pip", "usr/lib64", "root/.ansible", "dev"):
        (rootfs / rel).mkdir(parents=True, exist_ok=True)
    for child in (rootfs / "dev").iterdir():  # debootstrap's device nodes: every mount of it is private
        if child.is_dir() and not child.is_symlink():
            shutil.rmtree(child)
        else:
            child.unlink()


# <<< SUITE RECIPE END
# --------------------------------------------------------------------------------------------------
# >>> PLATFORM RECIPE START: everything between these markers shapes a platform layer and is hashed into
# its stamp (with sandbox/rootfs/*, the platform's facts, the openSUSE test key and the suite's digest).

PROVIDES_PACKAGE = "sandbox-dpkg-provides"
# Library dirs whose ELF sonames the provides package announces to rpm
PROVIDES_LIB_DIRS = ("usr/lib/x86_64-linux-gnu", "usr/lib64", "usr/lib/gcc/x86_64-linux-gnu")
PROVIDES_BIN_DIRS = ("usr/bin", "usr/sbin")
SAFE_CAPABILITY = re.compile(r"^[A-Za-z0-9_./+-]+$")
# sandbox/rootfs files a suite does not take: trixie's rpm 4.20 no longer prints bookworm's "use Alien
# instead" warning, and its popt refuses the aliases that silence it ("rpm: -U: unknown option")
ROOTFS_NOT_FOR = {"trixie": ("etc/popt.d/sandbox-force-debian",)}
# Where a 15.x platform keeps the real interpreter that its python3XX stub package links to
SANDBOX_LIBEXEC = "/usr/libexec/sandbox"
PYTHON_STANDIN = """#!/bin/sh
# Sandbox stand-in for {title}'s system Python {version} (package {package}).
# ansible-core 2.17 and newer cannot run modules with it: every module fails with "SyntaxError: future
# feature annotations is not defined" (ansible/ansible#84358). So a play must install a newer Python
# first (role python_bootstrap), as on the real platform. It runs no code.
case "$1" in
    -V|--version) echo "Python {version}"; exit 0 ;;
esac
echo "sandbox stand-in for Python {version} ({package} of {title}): runs no code." >&2
echo "SyntaxError: future feature annotations is not defined" >&2
exit 1
"""


def provides_spec(capabilities: Sequence[str], version: str = "1") -> str:
    """A files-free RPM spec that Provides what dpkg installed, so rpm/zypper automatic dependencies
    (/bin/sh, libc.so.6()(64bit), rtld(GNU_HASH)...) resolve against the Debian userland."""
    provides = "\n".join(f"Provides: {cap}" for cap in sorted(set(capabilities)))
    return f"""\
Name: {PROVIDES_PACKAGE}
Version: {version}
Release: 1
Summary: Capabilities of the sandbox's Debian userland
License: MIT
AutoReqProv: no
%define debug_package %{{nil}}
{provides}

%description
Files-free package: announces to rpm what dpkg installed in this sandbox rootfs.

%files
"""


def file_capabilities(rootfs: Path) -> list[str]:
    """File provides for every command in /usr/bin and /usr/sbin (and /bin, /sbin: merged /usr)."""
    caps = []
    for rel in PROVIDES_BIN_DIRS:
        d = rootfs / rel
        if not d.is_dir():
            continue
        for entry in os.scandir(d):
            if not SAFE_CAPABILITY.match(entry.name):
                continue  # e.g. `[`, which rpm's spec parser would not take
            caps.append(f"/{rel}/{entry.name}")
            legacy = rel.removeprefix("usr/")
            if (rootfs / legacy).is_symlink():
                caps.append(f"/{legacy}/{entry.name}")
    return caps


def _is_elf(path: Path) -> bool:
    try:
        with path.open("rb") as fh:
            return fh.read(4) == b"\x7fELF"
    except OSError:
        return False


def shared_objects(rootfs: Path) -> list[str]:
    """Chroot-relative paths of the ELF shared objects whose sonames get announced."""
    found = []
    for rel in PROVIDES_LIB_DIRS:
        top = rootfs / rel
        if not top.is_dir():
            continue
        for dirpath, _dirs, files in os.walk(top):
            for fname in files:
                if re.search(r"\.so(\.\d+)*$", fname):
                    full = Path(dirpath) / fname
                    if not full.is_symlink() and _is_elf(full):  # libc.so etc. are linker scripts
                        found.append("/" + str(full.relative_to(rootfs)))
    return sorted(found)


def opensuse_key(layout: Layout) -> tuple[dict, Path]:
    """The openSUSE test key entry of the stub repos' KEYS.json, and its key file."""
    keys_json = layout.repos / "KEYS.json"
    try:
        entry = json.loads(keys_json.read_text())["opensuse"]
        key_file = layout.repos / entry["file"]
        key_file.stat()
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise EnvironmentProblem(
            f"stub repos are missing or incomplete ({keys_json}: {exc}): run `sandbox/sandboxctl.py repos`"
        ) from exc
    return entry, key_file


def os_release_text(facts_os_release: dict) -> str:
    """/etc/os-release from the platform's facts (upper-case keys only: the rest describes the fact)."""
    return "".join(
        f"{key}={json.dumps(str(value))}\n" for key, value in facts_os_release.items() if key.isupper()
    )


# <product> elements zypper and SUSEConnect read, in the order SUSE's .prod files have them
PRODUCT_FIELDS = (
    "vendor",
    "name",
    "version",
    "baseversion",
    "patchlevel",
    "release",
    "arch",
    "productline",
    "summary",
    "shortsummary",
    "cpeid",
    "codestream",
)


def baseproduct_xml(product: dict) -> str:
    values = {"arch": "x86_64", "release": "0", **product}
    fields = "".join(f"  <{key}>{values[key]}</{key}>\n" for key in PRODUCT_FIELDS if key in values)
    if "register_target" in values:
        fields += f"  <register><target>{values['register_target']}</target></register>\n"
    return (
        '<?xml version="1.0" encoding="UTF-8"?>\n'
        "<!-- Sandbox: the base product zypper reads to expand $releasever, as on the real platform. -->\n"
        f'<product schemeversion="0">\n{fields}</product>\n'
    )


def oss_repo_file(platform: Platform) -> str:
    return (
        f"[repo-oss]\nname=Main Repository (sandbox stub of {platform.title})\nenabled=1\nautorefresh=1\n"
        f"baseurl=file:/srv/sandbox-repos/{platform.oss_dir}\ntype=rpm-md\n"
        "gpgcheck=1\nrepo_gpgcheck=1\npkg_gpgcheck=1\nkeeppackages=0\n"
    )


# Debian's package tools, out of PATH on every platform: tools that choose a package manager by looking
# for one (testinfra, Ansible's package_facts) must find rpm, as on SUSE. Nothing in a host runs them.
DEBIAN_PACKAGE_TOOLS = ("dpkg", "dpkg-query", "dpkg-deb", "apt", "apt-get", "apt-cache")


def hide_debian_tools(root: Path) -> None:
    hidden = root / SANDBOX_LIBEXEC.lstrip("/") / "debian"
    hidden.mkdir(parents=True, exist_ok=True)
    for name in DEBIAN_PACKAGE_TOOLS:
        tool = root / "usr/bin" / name
        if tool.exists() or tool.is_symlink():
            os.rename(tool, hidden / name)


def disguise_python(root: Path, platform: Platform) -> None:
    """On a platform whose system python3 is too old for ansible-core, the suite's real interpreter
    belongs to a python3XX package that is not installed yet: move it out of PATH (its stub package
    links it back) and make python3 a stand-in for the system one."""
    system = sandbox_facts.system_python(platform.facts)
    if not sandbox_facts.python_too_old(platform.facts):
        return
    real = SUITE_PYTHON[platform.suite]
    hidden = root / SANDBOX_LIBEXEC.lstrip("/")
    hidden.mkdir(parents=True, exist_ok=True)
    os.rename(root / f"usr/bin/python{real}", hidden / f"python{real}")
    python3 = root / "usr/bin/python3"
    python3.unlink()
    python3.write_text(
        PYTHON_STANDIN.format(title=platform.title, version=system["version"], package=system["package"])
    )
    python3.chmod(0o755)


def configure_platform(root: Path, layout: Layout, platform: Platform, log: Path) -> None:
    """Turn a suite base (mounted writable at `root`) into the sandbox's stand-in of `platform`."""
    # Files every platform shares (sandbox/rootfs mirrors the image's paths).
    for src in sorted(layout.rootfs_overlay.rglob("*")):
        rel = str(src.relative_to(layout.rootfs_overlay))
        if rel in ROOTFS_NOT_FOR.get(platform.suite, ()):
            continue
        dst = root / rel
        if src.is_dir():
            dst.mkdir(parents=True, exist_ok=True)
            continue
        if dst.is_symlink():
            dst.unlink()
        shutil.copyfile(src, dst)
        os.chmod(dst, 0o644)
    # os-release: real files in /etc and /usr/lib (Debian's /etc/os-release is a symlink)
    for rel in ("etc/os-release", "usr/lib/os-release"):
        path = root / rel
        if path.is_symlink() or path.exists():
            path.unlink()
        path.write_text(os_release_text(platform.facts["os_release"]))
    product = platform.facts["baseproduct"]
    products = root / "etc/products.d"
    products.mkdir(parents=True, exist_ok=True)
    (products / product["file"]).write_text(baseproduct_xml(product))
    (products / "baseproduct").symlink_to(product["file"])
    repos_d = root / "etc/zypp/repos.d"
    repos_d.mkdir(parents=True, exist_ok=True)
    (repos_d / "repo-oss.repo").write_text(oss_repo_file(platform))
    (root / "srv/sandbox-wheelhouse").mkdir(parents=True, exist_ok=True)  # mount point of the wheelhouse
    # openSUSE's update-alternatives lives in /usr/sbin (NVIDIA's scriptlets call it there).
    ua = root / "usr/sbin/update-alternatives"
    if not ua.exists() and not ua.is_symlink():
        ua.symlink_to("../bin/update-alternatives")
    disguise_python(root, platform)
    hide_debian_tools(root)
    env = dict(CHROOT_ENV)
    must(chroot_cmd(root, "ldconfig"), "ldconfig", env=env, log=log)
    must(chroot_cmd(root, "rpm", "--initdb"), "rpm --initdb", env=env, log=log)
    entry, key_file = opensuse_key(layout)
    with mounted(build_mounts(root, layout, with_repos=True), root):
        # Trusted like a real install's key; the NVIDIA key is left to the cuda_repo role.
        chroot_key = "/srv/sandbox-repos/" + str(key_file.relative_to(layout.repos))
        must(chroot_cmd(root, "rpm", "--import", chroot_key), "rpm --import", env=env, log=log)
        keyid = str(entry.get("keyid") or entry["fingerprint"]).replace(" ", "")[-8:].lower()
        res = must(chroot_cmd(root, "rpm", "-q", "gpg-pubkey", "--qf", "%{VERSION}\n"), "rpm -q", env=env)
        if keyid not in res.stdout.split():
            raise SandboxError(f"openSUSE test key {keyid} not in the rpmdb after import: {res.stdout!r}")
        install_provides_package(root, platform, env, log)
        # Smoke test of the pre-configured repo with all GPG checks on; it also creates zypper's state
        # files (/var/lib/zypp) in the layer, so a host's first zypper call changes nothing there.
        must(chroot_cmd(root, "zypper", "--non-interactive", "refresh"), "zypper refresh", env=env, log=log)
    for path in [*(root / "var/cache/zypp").glob("*"), root / "var/log/zypp", root / "var/log/zypper.log"]:
        safe_rmtree(path)


def install_provides_package(root: Path, platform: Platform, env: dict[str, str], log: Path) -> None:
    """Build (with the chroot's own rpmbuild) and install the files-free provides package."""
    work = root / "tmp/sandbox-provides"
    work.mkdir(parents=True, exist_ok=True)
    libs = shared_objects(root)
    res = must(
        chroot_cmd(root, "/usr/lib/rpm/elfdeps", "--provides"),
        "elfdeps",
        input_text="\n".join(libs) + "\n",
        env=env,
    )
    caps = [c for c in res.stdout.split("\n") if c.strip()]
    caps += file_capabilities(root)
    system_python = ".".join(platform.system_python.split(".")[:2])
    caps += ["rtld(GNU_HASH)", f"python(abi) = {system_python}", "/bin/sh"]
    (work / "provides.spec").write_text(provides_spec([c.strip() for c in caps]))
    must(
        chroot_cmd(
            root,
            "rpmbuild",
            "-bb",
            "--define",
            "_topdir /tmp/sandbox-provides",
            "--define",
            "_build_id_links none",
            "/tmp/sandbox-provides/provides.spec",
        ),
        "rpmbuild of the provides package",
        env=env,
        log=log,
    )
    rpms = sorted((work / "RPMS").rglob("*.rpm"))
    if not rpms:
        raise SandboxError("rpmbuild produced no provides package")
    must(
        chroot_cmd(root, "rpm", "-U", "/" + str(rpms[0].relative_to(root))),
        "installing the provides package",
        env=env,
        log=log,
    )
    safe_rmtree(work)


# <<< PLATFORM RECIPE END
# --------------------------------------------------------------------------------------------------


def recipe_source(text: str, which: str) -> str:
    """The code between the `which` (SUITE or PLATFORM) RECIPE markers, as its syntax tree: what it does, so
    that comments and formatting do not make the cached layers stale."""
    start = text.index(f"# >>> {which} RECIPE START")
    end = text.index(f"# <<< {which} RECIPE END")
    return ast.dump(ast.parse(text[start:end]))


def digest_inputs(
    recipe: str, files: Sequence[tuple[str, int, bytes]], parts: Sequence[tuple[str, bytes]]
) -> str:
    """sha256 over a build recipe, the files copied into the image (path, mode, content) and named parts
    (key, package list, platform facts, the lower layer's digest)."""
    h = hashlib.sha256()
    h.update(b"recipe\0" + recipe.encode())
    for rel, mode, content in sorted(files):
        h.update(f"\0file\0{rel}\0{mode:o}\0{len(content)}\0".encode() + content)
    for name, data in sorted(parts):
        h.update(f"\0{name}\0{len(data)}\0".encode() + data)
    return h.hexdigest()


DEB_NAME_RE = re.compile(r"^[a-z0-9][a-z0-9+.-]+$")


def debian_payload(layout: Layout, suite: str) -> list[str]:
    """The Debian packages a suite base installs: the common ones, the suite's Python and the base OS
    stubs' payload that `build_repos.py --debian-packages --suite S` lists (the repo builder owns the
    openSUSE -> Debian mapping)."""
    if not layout.build_repos.is_file():
        raise EnvironmentProblem(f"{layout.build_repos} not found: the stub repo builder is missing")
    res = run_cmd(
        [sys.executable, str(layout.build_repos), "--debian-packages", "--suite", suite], timeout=120
    )
    names = res.stdout.split()
    bad = [n for n in names if not DEB_NAME_RE.match(n)]
    if res.returncode != 0 or bad:
        raise SandboxError(
            f"{layout.build_repos.name} --debian-packages failed (rc {res.returncode}):"
            f" {res.stderr.strip() or bad}"
        )
    return sorted(set(COMMON_PACKAGES) | set(SUITE_PACKAGES[suite]) | set(names))


def _this_file() -> str:
    return Path(__file__).read_text()


def suite_digest(suite: str, packages: Sequence[str]) -> str:
    return digest_inputs(
        recipe_source(_this_file(), "SUITE"),
        [],
        [("suite", suite.encode()), ("packages", " ".join(sorted(set(packages))).encode())],
    )


def platform_digest(layout: Layout, platform: Platform, suite_dig: str) -> str:
    """Digest of a platform layer's inputs (raises EnvironmentProblem when the stub repos are missing)."""
    _entry, key_file = opensuse_key(layout)
    files = []
    for p in sorted(layout.rootfs_overlay.rglob("*")):
        if p.is_file():
            files.append(
                (str(p.relative_to(layout.rootfs_overlay)), p.stat().st_mode & 0o777, p.read_bytes())
            )
    parts = [
        ("key", key_file.read_bytes()),
        ("suite", suite_dig.encode()),
        (
            "platform",
            json.dumps({"name": platform.name, **platform.facts}, sort_keys=True, default=str).encode(),
        ),
    ]
    return digest_inputs(recipe_source(_this_file(), "PLATFORM"), files, parts)


def read_stamp(directory: Path) -> dict | None:
    try:
        stamp = json.loads((directory / "stamp.json").read_text())
    except (OSError, ValueError):
        return None
    return stamp if isinstance(stamp, dict) else None


@dataclasses.dataclass(frozen=True)
class Layers:
    """The read-only layers of a platform's hosts, topmost first."""

    platform: Path  # .../platform-<name>-<digest>/layer
    suite: Path  # .../suite-<suite>-<digest>/rootfs

    @property
    def lowers(self) -> list[Path]:
        return [self.platform, self.suite]


def current_layers(layout: Layout, platform: Platform) -> Layers:
    """The up-to-date layers of `platform`; EnvironmentProblem if one is missing or stale.

    The suite's package list is the one recorded in its stamp (so `up` needs no catalogue run); `build`
    checks it against the catalogue's current list.
    """
    suite_stamp = (
        read_stamp(layout.suite_link(platform.suite)) if layout.suite_link(platform.suite).exists() else None
    )
    packages = (suite_stamp or {}).get("packages")
    hint = "run `sandbox/sandboxctl.py build` as root"
    if not packages:
        raise EnvironmentProblem(f"sandbox suite base {platform.suite} is not built: {hint}")
    s_digest = suite_digest(platform.suite, packages)
    suite_dir = layout.suite_dir(platform.suite, s_digest)
    if (read_stamp(suite_dir) or {}).get("digest") != s_digest:
        raise EnvironmentProblem(f"sandbox suite base {platform.suite} is stale (its recipe changed): {hint}")
    p_digest = platform_digest(layout, platform, s_digest)
    pdir = layout.platform_dir(platform.name, p_digest)
    if (read_stamp(pdir) or {}).get("digest") != p_digest or not (pdir / "layer/etc/os-release").is_file():
        what = "stale (its inputs changed)" if layout.platform_link(platform.name).exists() else "not built"
        raise EnvironmentProblem(f"sandbox platform layer {platform.name} is {what}: {hint}")
    return Layers(pdir / "layer", suite_dir / "rootfs")


# --------------------------------------------------------------------------------------------------
# Preflight checks


def check_root() -> None:
    if os.geteuid() != 0:
        raise EnvironmentProblem("sandboxctl must run as root (it mounts overlayfs and chroots)")


def check_tools(tools: dict[str, str]) -> None:
    missing = {t: pkg for t, pkg in tools.items() if shutil.which(t) is None}
    if missing:
        pkgs = " ".join(sorted(set(missing.values())))
        raise EnvironmentProblem(
            f"missing host tools: {', '.join(sorted(missing))}; install them with `apt-get install {pkgs}`"
        )


def check_mount(layout: Layout) -> None:
    """Mount a tiny overlayfs in the cache dir: proves mount rights and overlay support on that filesystem."""
    probe = layout.cache / f".probe-{os.getpid()}"
    try:
        for d in ("l", "u", "w", "m"):
            (probe / d).mkdir(parents=True, exist_ok=True)
        opts = f"lowerdir={probe / 'l'},upperdir={probe / 'u'},workdir={probe / 'w'}"
        res = run_cmd(["mount", "-t", "overlay", "overlay", "-o", opts, str(probe / "m")])
        if res.returncode != 0:
            why = " ".join(res.stderr.split())
            raise EnvironmentProblem(
                f"cannot mount overlayfs under {layout.cache} ({why}): the sandbox needs root"
                " with CAP_SYS_ADMIN (not an unprivileged container) and a filesystem that can hold an"
                " overlay upper dir"
            )
    finally:
        safe_rmtree(probe)


def check_mirror(mirror: str, suite: str, timeout: float = 10.0) -> None:
    url = f"{mirror.rstrip('/')}/dists/{suite}/Release"
    try:
        with urllib.request.urlopen(urllib.request.Request(url, method="HEAD"), timeout=timeout) as resp:
            if resp.status >= 400:
                raise urllib.error.HTTPError(url, resp.status, resp.reason, resp.headers, None)
    except (urllib.error.URLError, OSError, ValueError) as exc:
        raise EnvironmentProblem(
            f"Debian mirror unreachable: {url}: {exc}; set SANDBOX_MIRROR to a mirror that carries {suite}"
        ) from exc


# --------------------------------------------------------------------------------------------------
# build / repos


def build_repos(layout: Layout) -> None:
    """Run the stub repo builder (sandbox/build_repos.py: atomic, a no-op when up to date)."""
    if not layout.build_repos.is_file():
        raise EnvironmentProblem(
            f"{layout.build_repos} not found: the stub repo builder is missing from this checkout"
        )
    check_tools(HOST_TOOLS_REPOS)
    t0 = time.monotonic()
    res = run_cmd([sys.executable, str(layout.build_repos), "--out", str(layout.repos)], capture=False)
    if res.returncode != 0:
        raise SandboxError(f"{layout.build_repos.name} failed (rc {res.returncode})")
    log_step(f"stub repos ready in {time.monotonic() - t0:.1f} s: {layout.repos}")


def _remove_leftovers(layout: Layout) -> None:
    """Drop half-built layers of dead builds (a build's temp dir carries its pid)."""
    for p in [*layout.cache.glob("suite-*.partial-*"), *layout.cache.glob("platform-*.partial-*")]:
        pid = p.name.rsplit("-", 1)[-1]
        if not pid.isdigit() or not Path(f"/proc/{pid}").exists():
            log_step(f"removing half-built {p.name}")
            safe_rmtree(p)


def gc_layers(layout: Layout) -> None:
    """Delete suite bases and platform layers that are neither current nor under a host that is up."""
    keep = {
        link.resolve()
        for link in [*layout.cache.glob("suite-*"), *layout.cache.glob("platform-*")]
        if link.is_symlink()
    }
    for info in [*host_infos(layout).values(), *snapshot_infos(layout).values()]:
        keep.update(Path(p).parent for p in info.get("lowers", []))
    for p in [*layout.cache.glob("suite-*-*"), *layout.cache.glob("platform-*-*")]:
        if p.is_symlink() or ".partial-" in p.name or p in keep:
            continue
        log_step(f"removing old layer {p.name}")
        safe_rmtree(p)


def _switch_link(layout: Layout, link: Path, target: Path) -> None:
    tmp_link = layout.cache / f".link-{os.getpid()}"
    with contextlib.suppress(FileNotFoundError):
        tmp_link.unlink()
    tmp_link.symlink_to(target.name)
    os.replace(tmp_link, link)  # atomic switch; hosts already up keep their pinned layers


@contextlib.contextmanager
def _partial(layout: Layout, final: Path) -> Iterator[Path]:
    """A temp dir beside `final`, renamed into place when the block completes, deleted otherwise."""
    partial = layout.cache / f"{final.name}.partial-{os.getpid()}"
    try:
        partial.mkdir(parents=True)
        yield partial
        if final.exists():
            safe_rmtree(final)  # an incomplete dir without a valid stamp
        os.rename(partial, final)
    except BaseException:
        log_step(f"build failed or interrupted: removing {partial}")
        safe_rmtree(partial)
        raise


def build_suite(layout: Layout, suite: str, mirror: str, packages: Sequence[str]) -> str:
    """Ensure the suite base for the current inputs exists; returns its digest."""
    digest = suite_digest(suite, packages)
    final = layout.suite_dir(suite, digest)
    if (read_stamp(final) or {}).get("digest") == digest:
        log_step(f"suite base {suite} up to date")
    else:
        check_mirror(mirror, suite)  # before anything is built
        log = layout.build_log(f"suite-{suite}")
        log.write_text(f"sandboxctl build suite {suite} {digest}\n")
        t0 = time.monotonic()
        with _partial(layout, final) as partial:
            log_step(f"debootstrap {suite} + apt-get install from {mirror} (log: {log})")
            bootstrap_suite(partial / "rootfs", layout, suite, mirror, packages, log)
            stamp = {
                "digest": digest,
                "suite": suite,
                "mirror": mirror,
                "packages": sorted(packages),
                "built_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
                "build_seconds": round(time.monotonic() - t0, 1),
            }
            (partial / "stamp.json").write_text(json.dumps(stamp, indent=2) + "\n")
        log_step(f"suite base {suite} built in {time.monotonic() - t0:.0f} s")
    with file_lock(layout.state_lock):
        _switch_link(layout, layout.suite_link(suite), final)
    return digest


def build_platform(layout: Layout, platform: Platform, suite_dig: str) -> None:
    """Ensure the platform layer for the current inputs exists (an overlay upper dir on its suite base)."""
    digest = platform_digest(layout, platform, suite_dig)
    final = layout.platform_dir(platform.name, digest)
    if (read_stamp(final) or {}).get("digest") != digest:
        log = layout.build_log(f"platform-{platform.name}")
        log.write_text(f"sandboxctl build platform {platform.name} {digest}\n")
        t0 = time.monotonic()
        base = layout.suite_dir(platform.suite, suite_dig) / "rootfs"
        with _partial(layout, final) as partial:
            for sub in ("layer", "work", "merged"):
                (partial / sub).mkdir()
            merged = partial / "merged"
            opts = f"lowerdir={base},upperdir={partial / 'layer'},workdir={partial / 'work'}"
            must(
                ["mount", "-t", "overlay", "overlay", "-o", opts, str(merged)], "mounting the platform build"
            )
            try:
                configure_platform(merged, layout, platform, log)
            finally:
                left = unmount_under(merged)
                if left:
                    raise SandboxError(f"could not unmount {', '.join(left)}")
            safe_rmtree(partial / "work")
            (partial / "merged").rmdir()
            stamp = {
                "digest": digest,
                "platform": platform.name,
                "title": platform.title,
                "suite": platform.suite,
                "suite_digest": suite_dig,
                "built_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
                "build_seconds": round(time.monotonic() - t0, 1),
            }
            (partial / "stamp.json").write_text(json.dumps(stamp, indent=2) + "\n")
        log_step(f"platform layer {platform.name} ({platform.title}) built in {time.monotonic() - t0:.1f} s")
    with file_lock(layout.state_lock):
        _switch_link(layout, layout.platform_link(platform.name), final)


def build_all(layout: Layout, platforms: Sequence[Platform]) -> None:
    mirror = machine_mirror()
    with file_lock(layout.build_lock):
        _remove_leftovers(layout)
        needed = list(dict.fromkeys(platform.suite for platform in platforms))
        payloads = {suite: debian_payload(layout, suite) for suite in needed}
        # The suites are independent debootstraps, mostly download and dpkg: build them at once. A failed one
        # raises here once the other has finished (kept, it is complete).
        with ThreadPoolExecutor(max_workers=max(len(needed), 1)) as pool:
            futures = {s: pool.submit(build_suite, layout, s, mirror, payloads[s]) for s in needed}
            suites = {suite: future.result() for suite, future in futures.items()}
        for platform in platforms:
            build_platform(layout, platform, suites[platform.suite])
        with file_lock(layout.state_lock):
            gc_layers(layout)


# --------------------------------------------------------------------------------------------------
# Hosts


def host_infos(layout: Layout) -> dict[str, dict]:
    """host.json of every host directory (present even while half up or half down)."""
    out: dict[str, dict] = {}
    if not layout.hosts.is_dir():
        return out
    for d in sorted(layout.hosts.iterdir()):
        try:
            out[d.name] = json.loads((d / "host.json").read_text())
        except (OSError, ValueError):
            out[d.name] = {"name": d.name, "broken": True}
    return out


def is_up(layout: Layout, name: str, mountpoints: Sequence[str] | None = None) -> bool:
    points = set(current_mounts() if mountpoints is None else mountpoints)
    info = host_infos(layout).get(name)
    if not info or info.get("broken") or not info.get("lowers"):
        return False
    plan = host_mount_plan(layout, name, [Path(p) for p in info["lowers"]])
    return all(argv[-1] in points for argv in plan)


def write_inventories(layout: Layout) -> None:
    """Rewrite inventory/sandbox.yml (hosts brought up by the CLI) and drop one-host files of gone hosts."""
    mountpoints = current_mounts()
    listed = {}
    names = set()
    for name, info in host_infos(layout).items():
        if info.get("broken") or not is_up(layout, name, mountpoints):
            continue
        names.add(name)
        if info.get("listed"):
            listed[name] = (info["merged"], info["platform"])
    write_atomic(layout.inventory_file, render_inventory(listed, "Sandbox hosts up now (sandboxctl up)."))
    for f in layout.inventory_dir.glob(".sandbox-*.yml"):
        if f.name[len(".sandbox-") : -len(".yml")] not in names:
            f.unlink(missing_ok=True)


def host_up(
    layout: Layout,
    name: str,
    platform: str | None = None,
    *,
    listed: bool = True,
    owner_pid: int | None = None,
    snapshot: str | None = None,
) -> Path:
    """Bring host `name` up on `platform` (a no-op when it is up), on top of snapshot `snapshot` when given
    (a converged host kept by snapshot_host; its platform wins). Returns its root (the merged dir)."""
    validate_host_name(name)
    check_root()
    snap = read_snapshot(layout, snapshot) if snapshot else None
    pf = platform_for_host(name, snap["platform"] if snap else platform, load_platforms())
    layers = current_layers(layout, pf)
    lowers = layers.lowers
    if snap:
        if snap["lowers"] != [str(p) for p in lowers]:
            raise EnvironmentProblem(
                f"snapshot {snapshot} was taken on layers no longer current (the sandbox was rebuilt):"
                f" converge a host again and snapshot it"
            )
        lowers = [layout.snapshot_dir(snapshot) / "layer", *lowers]
    if not (layout.repos / "KEYS.json").is_file():
        raise EnvironmentProblem("stub repos missing: run `sandbox/sandboxctl.py repos`")
    hd = layout.host_dir(name)
    merged = hd / "merged"
    with file_lock(layout.state_lock):
        if is_up(layout, name):
            info = host_infos(layout)[name]
            if info.get("platform") != pf.name:
                raise EnvironmentProblem(
                    f"host {name} is up as {info.get('platform')}, not {pf.name}: take it down first"
                )
            if repos_bind_stale(layout, name):
                refresh_repos_bind(layout, name)
            return merged
        if hd.exists():
            safe_rmtree(hd)  # half up or half down: start over
        for sub in ("upper", "work", "merged"):
            (hd / sub).mkdir(parents=True)
        layout.pip_cache.mkdir(parents=True, exist_ok=True)
        layout.wheelhouse.mkdir(parents=True, exist_ok=True)
        info = {
            "name": name,
            "platform": pf.name,
            "lowers": [str(p) for p in lowers],
            "snapshot": snapshot,
            "merged": str(merged),
            "listed": listed,
            "owner_pid": owner_pid,
            "owner_start": pid_start_time(owner_pid) if owner_pid else None,
            "created": time.time(),
        }
        try:
            (hd / "host.json").write_text(json.dumps(info, indent=2) + "\n")
            for argv in host_mount_plan(layout, name, lowers):
                must(argv, f"mounting {argv[-1]}")
                if argv[-1] == str(merged / "dev"):
                    populate_dev(merged / "dev")
            # pip needs DNS: take the machine's resolver (the base may hold a stale copy or a symlink)
            resolv = merged / "etc/resolv.conf"
            if resolv.is_symlink():
                resolv.unlink()
            with contextlib.suppress(OSError):
                shutil.copyfile("/etc/resolv.conf", resolv)
            # ...and its CA bundle: where outbound HTTPS goes through an intercepting proxy, only the
            # machine's bundle holds that proxy's CA, and pip in the host fails certificate checks
            if Path(HOST_CA_BUNDLE).is_file():
                shutil.copyfile(HOST_CA_BUNDLE, merged / HOST_CA_BUNDLE.lstrip("/"))
            one_host = render_inventory(
                {name: (merged, pf.name)}, f"Sandbox host {name} (one-host inventory)."
            )
            write_atomic(layout.host_inventory(name), one_host)
        except BaseException:
            safe_rmtree(hd)
            raise
        write_inventories(layout)
    return merged


def repos_bind_stale(layout: Layout, name: str) -> bool:
    """True when the stub repos were rebuilt (build_repos.py renames a new tree into place) after the
    host's /srv/sandbox-repos was bound: the host still sees the previous tree."""
    try:
        seen = os.stat(layout.host_dir(name) / "merged/srv/sandbox-repos")
        current = os.stat(layout.repos)
    except OSError:
        return False
    return (seen.st_dev, seen.st_ino) != (current.st_dev, current.st_ino)


def refresh_repos_bind(layout: Layout, name: str) -> None:
    """Point an up host's /srv/sandbox-repos at the current stub repos."""
    target = layout.host_dir(name) / "merged/srv/sandbox-repos"
    if run_cmd(["umount", str(target)]).returncode != 0:
        must(["umount", "-l", str(target)], f"unmounting {target}")
    must(["mount", "-o", "bind,ro", str(layout.repos), str(target)], f"mounting {target}")
    log_step(f"{name}: stub repos were rebuilt; /srv/sandbox-repos now shows the new ones")


def host_down(layout: Layout, name: str) -> bool:
    """Unmount and delete host `name`. Returns False when it did not exist."""
    hd = layout.host_dir(name)
    with file_lock(layout.state_lock):
        existed = hd.exists()
        safe_rmtree(hd)  # unmounts first and refuses while anything is still mounted below
        layout.host_inventory(name).unlink(missing_ok=True)
        write_inventories(layout)
    return existed


SNAPSHOT_NAME_RE = HOST_NAME_RE


def read_snapshot(layout: Layout, name: str) -> dict:
    """The stamp of snapshot `name` (platform, lowers, host, label); EnvironmentProblem if none."""
    if not SNAPSHOT_NAME_RE.match(name):
        raise EnvironmentProblem(f"invalid snapshot name {name!r}")
    stamp = read_stamp(layout.snapshot_dir(name))
    if not stamp or not (layout.snapshot_dir(name) / "layer").is_dir():
        raise EnvironmentProblem(
            f"no snapshot {name}: take one with `sandbox/sandboxctl.py snapshot HOST {name}`"
        )
    return stamp


def snapshot_host(layout: Layout, host: str, name: str, label: str = "") -> Path:
    """Turn host `host` into snapshot `name`: the host goes down and its upper dir becomes a read-only
    layer that later hosts start from (`up --snapshot`), so a converge is done once and reused."""
    if not SNAPSHOT_NAME_RE.match(name):
        raise EnvironmentProblem(f"invalid snapshot name {name!r}")
    info = host_infos(layout).get(host)
    if not info or not is_up(layout, host):
        raise EnvironmentProblem(f"host {host} is not up")
    hd = layout.host_dir(host)
    with file_lock(layout.state_lock):
        left = unmount_under(hd)
        if left:
            raise SandboxError(f"could not unmount {', '.join(left)}")
        final = layout.snapshot_dir(name)
        layout.snapshots.mkdir(parents=True, exist_ok=True)
        partial = layout.snapshots / f".{name}.partial-{os.getpid()}"
        safe_rmtree(partial)
        partial.mkdir()
        os.rename(hd / "upper", partial / "layer")
        stamp = {
            "name": name,
            "host": host,
            "platform": info["platform"],
            "lowers": info["lowers"],
            "label": label,
            "taken_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        }
        (partial / "stamp.json").write_text(json.dumps(stamp, indent=2) + "\n")
        if final.exists():
            safe_rmtree(final)
        os.rename(partial, final)
        safe_rmtree(hd)
        layout.host_inventory(host).unlink(missing_ok=True)
        write_inventories(layout)
    return final / "layer"


def snapshot_infos(layout: Layout) -> dict[str, dict]:
    out = {}
    if layout.snapshots.is_dir():
        for d in sorted(layout.snapshots.iterdir()):
            stamp = read_stamp(d)
            if stamp and not d.name.startswith("."):
                out[d.name] = stamp
    return out


def orphan_hosts(layout: Layout) -> list[str]:
    """Hosts brought up by a test process (Python API) that has since died without tearing them down."""
    return [n for n, info in host_infos(layout).items() if not info.get("broken") and not owner_alive(info)]


# --------------------------------------------------------------------------------------------------
# Python API for tests


_ACTIVE: dict[str, SandboxHost] = {}
_HOOKS_INSTALLED = False


def _teardown_all() -> None:
    for host in list(_ACTIVE.values()):
        with contextlib.suppress(Exception):
            host.down()


def _on_signal(signum: int, _frame: object) -> None:
    # Turn SIGTERM/SIGHUP into SystemExit so `finally` blocks and atexit unmount the hosts.
    raise SystemExit(128 + signum)


def _install_teardown_hooks() -> None:
    global _HOOKS_INSTALLED
    if _HOOKS_INSTALLED:
        return
    _HOOKS_INSTALLED = True
    atexit.register(_teardown_all)
    if threading.current_thread() is threading.main_thread():
        for sig in (signal.SIGTERM, signal.SIGHUP):
            if signal.getsignal(sig) in (signal.SIG_DFL, None):
                signal.signal(sig, _on_signal)


class SandboxHost:
    """A fresh sandbox host, torn down on exit (also on exceptions, SIGINT, SIGTERM and interpreter exit).

    `with SandboxHost("fault1", platform="leap160") as h:` gives h.name, h.platform, h.root (the merged
    dir to chroot into) and h.inventory_path (a one-host inventory inside inventory/, so group_vars apply).
    """

    def __init__(
        self,
        name: str,
        layout: Layout = DEFAULT_LAYOUT,
        platform: str = DEFAULT_PLATFORM,
        snapshot: str | None = None,
    ) -> None:
        self.name = validate_host_name(name)
        self.layout = layout
        self.platform = platform
        self.snapshot = snapshot
        self.root = layout.host_dir(name) / "merged"
        self.inventory_path = layout.host_inventory(name)

    @property
    def upper(self) -> Path:
        """The overlay upper dir: exactly what changed compared to the layers below."""
        return self.layout.host_dir(self.name) / "upper"

    @property
    def lowers(self) -> list[Path]:
        """The read-only layers this host was brought up on, topmost first."""
        info = json.loads((self.layout.host_dir(self.name) / "host.json").read_text())
        return [Path(p) for p in info["lowers"]]

    def up(self) -> SandboxHost:
        _install_teardown_hooks()
        _ACTIVE[self.name] = self
        try:
            host_up(
                self.layout,
                self.name,
                self.platform,
                listed=False,
                owner_pid=os.getpid(),
                snapshot=self.snapshot,
            )
        except BaseException:
            self.down()
            raise
        return self

    def down(self) -> None:
        try:
            host_down(self.layout, self.name)
        finally:
            _ACTIVE.pop(self.name, None)

    def reset(self) -> None:
        self.down()
        self.up()

    def run(self, *cmd: str, timeout: float | None = 600) -> subprocess.CompletedProcess[str]:
        """Run a command inside the host with a clean environment (never raises)."""
        return run_cmd(chroot_cmd(self.root, *cmd), env=dict(CHROOT_ENV), timeout=timeout)

    def __enter__(self) -> SandboxHost:
        return self.up()

    def __exit__(self, *_exc: object) -> None:
        self.down()


@contextlib.contextmanager
def sandbox_host(
    name: str, layout: Layout = DEFAULT_LAYOUT, platform: str = DEFAULT_PLATFORM
) -> Iterator[SandboxHost]:
    """`with sandbox_host("faultX") as h:` -- a fresh host, always torn down."""
    host = SandboxHost(name, layout, platform)
    host.up()
    try:
        yield host
    finally:
        host.down()


# --------------------------------------------------------------------------------------------------
# CLI


def _selected_platforms(args: argparse.Namespace) -> list[Platform]:
    platforms = load_platforms()
    wanted = args.platform or list(platforms)
    unknown = [p for p in wanted if p not in platforms]
    if unknown:
        raise EnvironmentProblem(f"unknown platform {', '.join(unknown)}; choose from {', '.join(platforms)}")
    return [platforms[p] for p in wanted]


def _cmd_build(args: argparse.Namespace, layout: Layout) -> int:
    check_root()
    check_tools({**HOST_TOOLS_BASE, **HOST_TOOLS_REPOS})
    layout.cache.mkdir(parents=True, exist_ok=True)
    check_mount(layout)
    platforms = _selected_platforms(args)
    build_repos(layout)
    build_all(layout, platforms)
    return 0


def _cmd_repos(args: argparse.Namespace, layout: Layout) -> int:
    check_root()
    build_repos(layout)
    return 0


def _cmd_up(args: argparse.Namespace, layout: Layout) -> int:
    names = expand_host_names(args.names, args.count, args.prefix)
    if not names:
        raise EnvironmentProblem("name at least one host, or use --count N")
    for name in names:
        t0 = time.monotonic()
        was_up = is_up(layout, name)
        root = host_up(layout, name, args.platform, snapshot=args.snapshot)
        state = "already up" if was_up else f"up in {time.monotonic() - t0:.3f} s"
        print(f"{name}: {state}: {root}")
    print(f"inventory: {layout.inventory_file}")
    return 0


def _cmd_snapshot(args: argparse.Namespace, layout: Layout) -> int:
    check_root()
    t0 = time.monotonic()
    layer = snapshot_host(layout, validate_host_name(args.host), args.name, args.label or "")
    print(f"{args.host}: now snapshot {args.name} ({time.monotonic() - t0:.2f} s): {layer}")
    return 0


def _cmd_down(args: argparse.Namespace, layout: Layout) -> int:
    check_root()
    if args.all:
        names = list(host_infos(layout))
    elif args.orphans:
        names = orphan_hosts(layout)
    else:
        names = [validate_host_name(n) for n in args.names]
    if not names and not (args.all or args.orphans):
        raise EnvironmentProblem("name at least one host, or use --all / --orphans")
    for name in names:
        t0 = time.monotonic()
        existed = host_down(layout, name)
        print(f"{name}: {'down in %.3f s' % (time.monotonic() - t0) if existed else 'was not up'}")
    if args.all or args.orphans:
        with file_lock(layout.state_lock):
            write_inventories(layout)
    return 0


def _cmd_reset(args: argparse.Namespace, layout: Layout) -> int:
    name = validate_host_name(args.name)
    t0 = time.monotonic()
    info = host_infos(layout).get(name, {})
    host_down(layout, name)
    root = host_up(layout, name, args.platform or info.get("platform"))
    print(f"{name}: reset in {time.monotonic() - t0:.3f} s: {root}")
    return 0


def status_report(layout: Layout) -> dict:
    """What is built and up, as a dict with stable keys."""
    report: dict = {"platforms": [], "repos": (layout.repos / "KEYS.json").is_file(), "hosts": []}
    failures: list[str] = [] if report["repos"] else ["stub repos missing: run repos"]
    current: dict[str, list[str]] = {}
    try:
        platforms = load_platforms()
    except EnvironmentProblem as exc:
        platforms = {}
        failures.append(str(exc))
    for name, pf in platforms.items():
        entry = {"name": name, "title": pf.title, "suite": pf.suite, "current": False, "problem": None}
        try:
            layers = current_layers(layout, pf)
            entry.update(current=True, layer=str(layers.platform), base=str(layers.suite))
            current[name] = [str(p) for p in layers.lowers]
        except EnvironmentProblem as exc:
            entry["problem"] = str(exc)
            failures.append(str(exc))
        report["platforms"].append(entry)
    mountpoints = current_mounts()
    for name, info in host_infos(layout).items():
        report["hosts"].append(
            {
                "name": name,
                "platform": info.get("platform"),
                "up": is_up(layout, name, mountpoints),
                "root": info.get("merged"),
                "on_current_layers": current.get(info.get("platform", "")) == info.get("lowers"),
                "repos_stale": repos_bind_stale(layout, name),
                "listed": bool(info.get("listed")),
                "owner_pid": info.get("owner_pid"),
                "orphan": not info.get("broken") and not owner_alive(info),
            }
        )
    report["snapshots"] = [
        {"name": n, "platform": s.get("platform"), "host": s.get("host"), "taken_at": s.get("taken_at"),
         "label": s.get("label"), "current": current.get(s.get("platform", "")) == s.get("lowers")}
        for n, s in snapshot_infos(layout).items()
    ]
    failures += [f"host {h['name']} is not fully mounted" for h in report["hosts"] if not h["up"]]
    return {"ok": not failures, "failures": failures, **report}


def _cmd_status(args: argparse.Namespace, layout: Layout) -> int:
    report = status_report(layout)
    if args.json:
        print(json.dumps(report, indent=2))
        return 0
    for p in report["platforms"]:
        state = "built" if p["current"] else "NOT BUILT or STALE (run build)"
        print(f"platform: {p['name']:<11} {p['title']:<36} on {p['suite']:<8} {state}")
    print(f"repos:    {'ready' if report['repos'] else 'missing (run repos)'} ({layout.repos})")
    for h in report["hosts"]:
        flags = ["up" if h["up"] else "DOWN/broken", h["platform"] or "?"]
        flags += ["in sandbox.yml"] if h["listed"] else [f"test pid {h['owner_pid']}"]
        flags += ["ORPHAN"] if h["orphan"] else []
        flags += [] if h["on_current_layers"] else ["old layers: reset it"]
        flags += ["old stub repos: run up again"] if h["repos_stale"] else []
        print(f"host:     {h['name']:<24} {', '.join(flags)}  {h['root']}")
    if not report["hosts"]:
        print("hosts:    none")
    for s in report["snapshots"]:
        state = "current" if s["current"] else "OLD LAYERS (unusable)"
        print(f"snapshot: {s['name']:<24} {s['platform']}, of {s['host']} at {s['taken_at']}, {state}")
    return 0


def _cmd_root(args: argparse.Namespace, layout: Layout) -> int:
    name = validate_host_name(args.name)
    if not is_up(layout, name):
        raise EnvironmentProblem(f"host {name} is not up: run `sandbox/sandboxctl.py up {name}`")
    print(layout.host_dir(name) / "merged")
    return 0


def _cmd_shell(args: argparse.Namespace, layout: Layout) -> int:
    check_root()
    name = validate_host_name(args.name)
    if not is_up(layout, name):
        raise EnvironmentProblem(f"host {name} is not up: run `sandbox/sandboxctl.py up {name}`")
    cmd = args.cmd[1:] if args.cmd[:1] == ["--"] else args.cmd
    env = dict(CHROOT_ENV, TERM=os.environ.get("TERM", "dumb"))
    root = str(layout.host_dir(name) / "merged")
    return subprocess.call(["chroot", root, *(cmd or ["/bin/bash", "-l"])], env=env)


def _cmd_clean(args: argparse.Namespace, layout: Layout) -> int:
    check_root()
    for name in host_infos(layout):
        host_down(layout, name)
    safe_rmtree(layout.cache)  # refuses if anything is still mounted below it
    for f in [*layout.inventory_dir.glob(".sandbox-*.yml"), *layout.inventory_dir.glob(".scenario-*.yml")]:
        f.unlink()
    layout.inventory_file.unlink(missing_ok=True)
    print(f"removed {layout.cache} (kept {layout.pip_cache} and {layout.wheelhouse})")
    return 0


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="sandboxctl.py", description=__doc__.split("\n\n")[0])
    sub = p.add_subparsers(dest="command", required=True)
    build = sub.add_parser(
        "build", help="build stub repos, suite bases and platform layers (env SANDBOX_MIRROR)"
    )
    build.add_argument("--platform", action="append", metavar="P", help="only this platform (repeatable)")
    sub.add_parser("repos", help="build the stub repos (sandbox/build_repos.py)")
    up = sub.add_parser("up", help="bring hosts up (a no-op for hosts already up)")
    up.add_argument("names", nargs="*", metavar="NAME")
    up.add_argument(
        "--platform",
        metavar="P",
        help=f"platform of the hosts (default: the one that starts the name, else {DEFAULT_PLATFORM})",
    )
    up.add_argument("--count", type=int, help="also bring up PREFIX-1..N")
    up.add_argument(
        "--prefix", default=DEFAULT_PLATFORM, help=f"name prefix for --count (default: {DEFAULT_PLATFORM})"
    )
    up.add_argument("--snapshot", metavar="S", help="start the hosts from snapshot S (see `snapshot`)")
    snap = sub.add_parser("snapshot", help="turn a host into a reusable snapshot: snapshot HOST NAME")
    snap.add_argument("host", metavar="HOST")
    snap.add_argument("name", metavar="NAME")
    snap.add_argument("--label", help="free text kept in the snapshot's stamp (e.g. the inputs' digest)")
    down = sub.add_parser("down", help="unmount and delete hosts")
    down.add_argument("names", nargs="*", metavar="NAME")
    group = down.add_mutually_exclusive_group()
    group.add_argument("--all", action="store_true", help="every host, whoever brought it up")
    group.add_argument("--orphans", action="store_true", help="hosts whose test process died")
    reset = sub.add_parser("reset", help="down + up: a fresh copy of the layers")
    reset.add_argument("name", metavar="NAME")
    reset.add_argument("--platform", metavar="P", help="platform (default: the host's, or from its name)")
    status = sub.add_parser("status", help="what is built and up")
    status.add_argument("--json", action="store_true")
    root = sub.add_parser("root", help="print the root (merged dir) of a host that is up")
    root.add_argument("name", metavar="NAME")
    shell = sub.add_parser("shell", help="chroot into a host: shell NAME [-- cmd...]")
    shell.add_argument("name", metavar="NAME")
    shell.add_argument("cmd", nargs=argparse.REMAINDER)
    sub.add_parser("clean", help="down --all, delete .cache/sandbox (keeps .cache/pip and .cache/wheelhouse)")
    return p


COMMANDS = {
    "snapshot": _cmd_snapshot,
    "build": _cmd_build,
    "repos": _cmd_repos,
    "up": _cmd_up,
    "down": _cmd_down,
    "reset": _cmd_reset,
    "status": _cmd_status,
    "root": _cmd_root,
    "shell": _cmd_shell,
    "clean": _cmd_clean,
}


def main(argv: Sequence[str] | None = None, layout: Layout = DEFAULT_LAYOUT) -> int:
    args = build_parser().parse_args(argv)
    try:
        return COMMANDS[args.command](args, layout)
    except SandboxError as exc:
        print(f"sandboxctl: error: {exc}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        print("sandboxctl: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    # SIGTERM/SIGHUP unwind like Ctrl-C: `finally` blocks unmount and remove half-built trees.
    for _sig in (signal.SIGTERM, signal.SIGHUP):
        signal.signal(_sig, _on_signal)
    sys.exit(main())
