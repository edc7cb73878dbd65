#!/usr/bin/env python3
"""sandboxctl: build and run sandbox hosts, Debian chroots that Ansible sees as openSUSE Leap 15.6.

The base rootfs (debootstrap'd bookworm + zypper/rpm + the Leap disguise, see sandbox/README.md) is built
once and cached under .cache/sandbox/base; each host is an overlayfs copy of it under
.cache/sandbox/hosts/<name>/merged with proc, sys, dev, dev/pts, the stub repos and the pip cache mounted.

Subcommands: build, repos, up, down, reset, status, shell, clean (see `sandboxctl.py -h`).
Python API for tests: `SandboxHost`, `sandbox_host()`.

Exit codes: 0 ok, 1 operation failed, 2 usage or environment error (not root, missing tools,
no mount rights, mirror unreachable, base not built).
"""

from __future__ import annotations

import argparse
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
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator, Sequence
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent
# Debian/openSUSE-compatible path of the CA bundle pip reads (copied from the machine into each host)
HOST_CA_BUNDLE = "/etc/ssl/certs/ca-certificates.crt"

DEFAULT_MIRROR = "http://deb.debian.org/debian"
# Environment for every command run inside a chroot: the caller's environment must not leak in (trap 7).
CHROOT_ENV = {
    "PATH": "/usr/sbin:/usr/bin:/sbin:/bin",
    "HOME": "/root",
    "LANG": "C.UTF-8",
    "TERM": "dumb",
}
# Host tools the sandbox needs, with the Debian package that ships each.
HOST_TOOLS_BASE = {"debootstrap": "debootstrap", "chroot": "coreutils", "mount": "mount", "umount": "mount"}
HOST_TOOLS_REPOS = {
    "rpmbuild": "rpm", "rpmsign": "rpm", "createrepo_c": "createrepo-c", "gpg": "gnupg", "gcc": "gcc",
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

    @property
    def base_link(self) -> Path:
        # Symlink to the current base-<digest>; hosts keep their own base pinned until they go down.
        return self.cache / "base"

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

    @property
    def build_log(self) -> Path:
        return self.cache / "build.log"

    def base_dir(self, digest: str) -> Path:
        return self.cache / f"base-{digest[:16]}"

    def host_dir(self, name: str) -> Path:
        return self.hosts / name

    def host_inventory(self, name: str) -> Path:
        # Inside inventory/ so Ansible loads inventory/group_vars/{all,sandbox} for it; the leading dot keeps
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
                argv, stdin=subprocess.PIPE if input_text is not None else subprocess.DEVNULL, env=env,
                text=True, start_new_session=True, **out_kw,
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


def expand_host_names(names: Sequence[str], count: int | None, prefix: str = "leap156") -> list[str]:
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


def render_inventory(hosts: dict[str, Path | str], comment: str) -> str:
    """YAML inventory (group `sandbox`) for chroot hosts. JSON strings are valid YAML scalars."""
    lines = ["---", f"# {comment}", "# Generated by sandbox/sandboxctl.py; do not edit.", "sandbox:"]
    if not hosts:
        lines.append("  hosts: {}")
    else:
        lines.append("  hosts:")
        for name in sorted(hosts):
            lines += [
                f"    {name}:",
                "      ansible_connection: community.general.chroot",
                f"      ansible_host: {json.dumps(str(hosts[name]))}",
                "      ansible_python_interpreter: /usr/bin/python3",
                "      ansible_become: false",
            ]
    return "\n".join(lines) + "\n"


def host_mount_plan(layout: Layout, name: str, lower: Path) -> list[list[str]]:
    """mount(8) argument lists that bring host `name` up, in order (the last target is innermost)."""
    hd = layout.host_dir(name)
    merged = hd / "merged"
    for p in (lower, hd):
        # overlayfs option syntax uses ',' and ':' as separators
        if any(c in str(p) for c in ",:"):
            raise EnvironmentProblem(f"path {p} contains ',' or ':', which overlayfs options cannot carry")
    opts = f"lowerdir={lower},upperdir={hd / 'upper'},workdir={hd / 'work'}"
    return [
        ["mount", "-t", "overlay", "overlay", "-o", opts, str(merged)],
        ["mount", "-t", "proc", "-o", "nosuid,nodev,noexec", "proc", str(merged / "proc")],
        # read-only: a chroot must not be able to write the host's /sys
        ["mount", "-t", "sysfs", "-o", "ro,nosuid,nodev,noexec", "sysfs", str(merged / "sys")],
        # plain (non-recursive) binds: unmounting them can never take the host's own submounts along
        ["mount", "--bind", "/dev", str(merged / "dev")],
        ["mount", "--bind", "/dev/pts", str(merged / "dev/pts")],
        ["mount", "-o", "bind,ro", str(layout.repos), str(merged / "srv/sandbox-repos")],
        ["mount", "--bind", str(layout.pip_cache), str(merged / "var/cache/sandbox-pip")],
    ]


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
# >>> BASE RECIPE START: everything between these markers shapes the base rootfs and is hashed into its
# stamp (with sandbox/rootfs/* and the openSUSE test key); changing it makes the cached base stale.

SUITE = "bookworm"
# Debian packages the image needs whatever the stub repos hold: zypper/rpm, what Ansible modules use
# (python3-rpm for package_facts, gpg for rpm_key) and the usual payload of the OSS stubs (python311,
# libopenblas_pthreads0, hdf5, gcc...). `build_repos.py --debian-packages` adds the rest of that payload.
BASE_PACKAGES = (
    "python3", "python3.11", "python3.11-venv", "python3-venv", "python3-rpm",
    "zypper", "rpm", "gpg", "xz-utils", "bzip2", "pciutils", "ca-certificates",
    "libopenblas0-pthread", "libopenblas-dev", "libhdf5-103-1", "libhdf5-dev",
    "gcc", "g++", "make",
)
PROVIDES_PACKAGE = "sandbox-dpkg-provides"
# Library dirs whose ELF sonames the provides package announces to rpm (trap 3).
PROVIDES_LIB_DIRS = ("usr/lib/x86_64-linux-gnu", "usr/lib64", "usr/lib/gcc/x86_64-linux-gnu")
PROVIDES_BIN_DIRS = ("usr/bin", "usr/sbin")
SAFE_CAPABILITY = re.compile(r"^[A-Za-z0-9_./+-]+$")


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


def chroot_cmd(rootfs: Path, *cmd: str) -> list[str]:
    return ["chroot", str(rootfs), *cmd]


def _build_mounts(rootfs: Path, layout: Layout, with_repos: bool) -> list[list[str]]:
    plan = [
        ["mount", "-t", "proc", "proc", str(rootfs / "proc")],
        ["mount", "-t", "sysfs", "-o", "ro", "sysfs", str(rootfs / "sys")],
        ["mount", "--bind", "/dev", str(rootfs / "dev")],
        ["mount", "--bind", "/dev/pts", str(rootfs / "dev/pts")],
    ]
    if with_repos:
        plan.append(["mount", "-o", "bind,ro", str(layout.repos), str(rootfs / "srv/sandbox-repos")])
    return plan


@contextlib.contextmanager
def mounted(plan: list[list[str]], scope: Path) -> Iterator[None]:
    try:
        for argv in plan:
            must(argv, f"mounting {argv[-1]}")
        yield
    finally:
        left = unmount_under(scope / "proc") + unmount_under(scope / "sys") + unmount_under(scope / "dev")
        left += unmount_under(scope / "srv")
        if left:
            raise SandboxError(f"could not unmount {', '.join(left)}")


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


def configure_rootfs(rootfs: Path, layout: Layout, log: Path) -> None:
    """Turn a bookworm rootfs with the packages installed into the sandbox's 'openSUSE Leap 15.6'."""
    # Files that are copied as they are (sandbox/rootfs mirrors the image's paths).
    for src in sorted(layout.rootfs_overlay.rglob("*")):
        dst = rootfs / src.relative_to(layout.rootfs_overlay)
        if src.is_dir():
            dst.mkdir(parents=True, exist_ok=True)
            continue
        if dst.is_symlink():
            dst.unlink()  # /etc/os-release is a symlink to ../usr/lib/os-release on Debian
        shutil.copyfile(src, dst)
        os.chmod(dst, 0o644)
    # Leap ships the same text in /usr/lib/os-release; keep tools reading either file consistent.
    usr_os_release = rootfs / "usr/lib/os-release"
    if usr_os_release.is_symlink():
        usr_os_release.unlink()
    shutil.copyfile(rootfs / "etc/os-release", usr_os_release)
    # Base product link: lets zypper expand $releasever to 15.6.
    baseproduct = rootfs / "etc/products.d/baseproduct"
    if not baseproduct.is_symlink():
        baseproduct.symlink_to("openSUSE.prod")
    # openSUSE's update-alternatives lives in /usr/sbin (NVIDIA's scriptlets call it there).
    ua = rootfs / "usr/sbin/update-alternatives"
    if not ua.exists() and not ua.is_symlink():
        ua.symlink_to("../bin/update-alternatives")
    # Mount points for `up` live in the base so a fresh host's upper layer starts empty.
    for rel in ("srv/sandbox-repos", "var/cache/sandbox-pip", "usr/lib64", "root/.ansible"):
        (rootfs / rel).mkdir(parents=True, exist_ok=True)
    env = dict(CHROOT_ENV)
    must(chroot_cmd(rootfs, "ldconfig"), "ldconfig", env=env, log=log)
    must(chroot_cmd(rootfs, "rpm", "--initdb"), "rpm --initdb", env=env, log=log)

    entry, key_file = opensuse_key(layout)
    with mounted(_build_mounts(rootfs, layout, with_repos=True), rootfs):
        # Trusted like a real Leap install's key; the NVIDIA key is left to the cuda_repo role.
        chroot_key = "/srv/sandbox-repos/" + str(key_file.relative_to(layout.repos))
        must(chroot_cmd(rootfs, "rpm", "--import", chroot_key), "rpm --import", env=env, log=log)
        keyid = str(entry.get("keyid") or entry["fingerprint"]).replace(" ", "")[-8:].lower()
        res = must(chroot_cmd(rootfs, "rpm", "-q", "gpg-pubkey", "--qf", "%{VERSION}\n"), "rpm -q", env=env)
        if keyid not in res.stdout.split():
            raise SandboxError(f"openSUSE test key {keyid} not in the rpmdb after import: {res.stdout!r}")
        install_provides_package(rootfs, env, log)
        # Smoke test of the pre-configured repo with all GPG checks on; it also creates zypper's state
        # files (/var/lib/zypp) in the base, so a host's first zypper call changes nothing there.
        must(chroot_cmd(rootfs, "zypper", "--non-interactive", "refresh"), "zypper refresh", env=env, log=log)
    # Metadata caches and logs of that smoke test: hosts fetch fresh metadata (autorefresh=1).
    logs = [rootfs / "var/log/zypp", rootfs / "var/log/zypper.log"]
    for path in [*(rootfs / "var/cache/zypp").glob("*"), *logs]:
        safe_rmtree(path)


def install_provides_package(rootfs: Path, env: dict[str, str], log: Path) -> None:
    """Build (with the chroot's own rpmbuild) and install the files-free provides package (trap 3)."""
    work = rootfs / "tmp/sandbox-provides"
    work.mkdir(parents=True, exist_ok=True)
    libs = shared_objects(rootfs)
    res = must(chroot_cmd(rootfs, "/usr/lib/rpm/elfdeps", "--provides"), "elfdeps",
               input_text="\n".join(libs) + "\n", env=env)
    caps = [c for c in res.stdout.split("\n") if c.strip()]
    caps += file_capabilities(rootfs)
    pyver = must(chroot_cmd(rootfs, "python3", "-c", "import sys; print('%d.%d' % sys.version_info[:2])"),
                 "python3", env=env)
    caps += ["rtld(GNU_HASH)", f"python(abi) = {pyver.stdout.strip()}", "/bin/sh"]
    (work / "provides.spec").write_text(provides_spec([c.strip() for c in caps]))
    must(chroot_cmd(rootfs, "rpmbuild", "-bb", "--define", "_topdir /tmp/sandbox-provides", "--define",
                    "_build_id_links none", "/tmp/sandbox-provides/provides.spec"),
         "rpmbuild of the provides package", env=env, log=log)
    rpms = sorted((work / "RPMS").rglob("*.rpm"))
    if not rpms:
        raise SandboxError("rpmbuild produced no provides package")
    must(chroot_cmd(rootfs, "rpm", "-U", "/" + str(rpms[0].relative_to(rootfs))),
         "installing the provides package", env=env, log=log)
    safe_rmtree(work)


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


def bootstrap_rootfs(rootfs: Path, layout: Layout, mirror: str, packages: Sequence[str], log: Path) -> None:
    """debootstrap + apt-get install of `packages`, apt caches dropped afterwards."""
    archives = rootfs / "var/cache/apt/archives"
    _link_debs(layout.debs, archives)  # debootstrap reuses debs already in the target when checksums match
    must(["debootstrap", "--variant=minbase", SUITE, str(rootfs), mirror], "debootstrap", log=log)
    _link_debs(archives, layout.debs)
    env = dict(CHROOT_ENV, DEBIAN_FRONTEND="noninteractive")
    policy = rootfs / "usr/sbin/policy-rc.d"
    policy.write_text("#!/bin/sh\n# no daemons in the sandbox build\nexit 101\n")
    policy.chmod(0o755)
    with mounted(_build_mounts(rootfs, layout, with_repos=False), rootfs):
        must(chroot_cmd(rootfs, "apt-get", "update"), "apt-get update", env=env, log=log)
        must(chroot_cmd(rootfs, "apt-get", "install", "-y", "--no-install-recommends", *packages),
             "apt-get install", env=env, log=log)
        _link_debs(archives, layout.debs)
        must(chroot_cmd(rootfs, "apt-get", "clean"), "apt-get clean", env=env, log=log)
    policy.unlink()
    for child in (rootfs / "var/lib/apt/lists").glob("*"):
        if child.is_file():
            child.unlink()


# <<< BASE RECIPE END
# --------------------------------------------------------------------------------------------------


def recipe_source(text: str) -> str:
    """The part of this file between the BASE RECIPE markers."""
    start = text.index("# >>> BASE RECIPE START")
    end = text.index("# <<< BASE RECIPE END")
    return text[start:end]


def digest_inputs(
    recipe: str, overlay_files: Sequence[tuple[str, int, bytes]], key: bytes, packages: Sequence[str]
) -> str:
    """sha256 over the build recipe, the files copied into the image (path, mode, content), the key and
    the Debian package list."""
    h = hashlib.sha256()
    h.update(b"recipe\0" + recipe.encode())
    for rel, mode, content in sorted(overlay_files):
        h.update(f"\0file\0{rel}\0{mode:o}\0{len(content)}\0".encode() + content)
    h.update(b"\0key\0" + key)
    h.update(b"\0packages\0" + " ".join(sorted(set(packages))).encode())
    return h.hexdigest()


DEB_NAME_RE = re.compile(r"^[a-z0-9][a-z0-9+.-]+$")


def debian_payload(layout: Layout) -> list[str]:
    """The Debian packages the image installs: BASE_PACKAGES plus the OSS stubs' payload that
    `build_repos.py --debian-packages` lists (the repo builder owns the openSUSE->Debian mapping)."""
    if not layout.build_repos.is_file():
        raise EnvironmentProblem(f"{layout.build_repos} not found: the stub repo builder is missing")
    res = run_cmd([sys.executable, str(layout.build_repos), "--debian-packages"], timeout=120)
    names = res.stdout.split()
    bad = [n for n in names if not DEB_NAME_RE.match(n)]
    if res.returncode != 0 or bad:
        raise SandboxError(f"{layout.build_repos.name} --debian-packages failed (rc {res.returncode}):"
                           f" {res.stderr.strip() or bad}")
    return sorted(set(BASE_PACKAGES) | set(names))


def base_digest(layout: Layout, packages: Sequence[str]) -> str:
    """Digest of the build inputs (raises EnvironmentProblem when the stub repos are missing)."""
    _entry, key_file = opensuse_key(layout)
    files = []
    for p in sorted(layout.rootfs_overlay.rglob("*")):
        if p.is_file():
            rel = str(p.relative_to(layout.rootfs_overlay))
            files.append((rel, p.stat().st_mode & 0o777, p.read_bytes()))
    return digest_inputs(recipe_source(Path(__file__).read_text()), files, key_file.read_bytes(), packages)


def read_stamp(base: Path) -> dict | None:
    try:
        stamp = json.loads((base / "stamp.json").read_text())
    except (OSError, ValueError):
        return None
    return stamp if isinstance(stamp, dict) else None


def current_base(layout: Layout, packages: Sequence[str] | None = None) -> Path:
    """The up-to-date base rootfs; EnvironmentProblem if it is missing or stale.

    Without `packages` the package list recorded in the current base's stamp is used: `up` stays fast
    (no catalogue run) and still sees changes to this recipe, sandbox/rootfs/ and the key; `build`
    passes the catalogue's current list.
    """
    stamp = read_stamp(layout.base_link) if layout.base_link.exists() else None
    if packages is None:
        packages = (stamp or {}).get("packages") or BASE_PACKAGES
    digest = base_digest(layout, packages)
    base = layout.base_dir(digest)
    stamp = read_stamp(base)
    if stamp is None or stamp.get("digest") != digest or not (base / "rootfs/etc/os-release").is_file():
        what = "stale (its inputs changed)" if layout.base_link.exists() else "not built"
        raise EnvironmentProblem(f"sandbox base rootfs is {what}: run `sandbox/sandboxctl.py build` as root")
    return base / "rootfs"


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


def check_mirror(mirror: str, timeout: float = 10.0) -> None:
    url = f"{mirror.rstrip('/')}/dists/{SUITE}/Release"
    try:
        with urllib.request.urlopen(urllib.request.Request(url, method="HEAD"), timeout=timeout) as resp:
            if resp.status >= 400:
                raise urllib.error.HTTPError(url, resp.status, resp.reason, resp.headers, None)
    except (urllib.error.URLError, OSError, ValueError) as exc:
        raise EnvironmentProblem(
            f"Debian mirror unreachable: {url}: {exc}; set SANDBOX_MIRROR to a reachable bookworm mirror"
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
    """Drop half-built bases of dead builds (a build's temp dir carries its pid)."""
    for p in layout.cache.glob("base-*.partial-*"):
        pid = p.name.rsplit("-", 1)[-1]
        if not pid.isdigit() or not Path(f"/proc/{pid}").exists():
            log_step(f"removing half-built {p.name}")
            safe_rmtree(p)


def gc_bases(layout: Layout) -> None:
    """Delete bases that are neither current nor the lower layer of a host that is up."""
    current = layout.base_link.resolve() if layout.base_link.exists() else None
    in_use = set()
    for info in host_infos(layout).values():
        in_use.add(str(Path(info.get("base", "")).parent))
    for p in layout.cache.glob("base-*"):
        if ".partial-" in p.name or p == current or str(p) in in_use:
            continue
        log_step(f"removing old base {p.name}")
        safe_rmtree(p)


def build_base(layout: Layout, mirror: str, packages: Sequence[str]) -> Path:
    """Ensure the base rootfs for the current inputs exists; returns its rootfs path."""
    digest = base_digest(layout, packages)
    final = layout.base_dir(digest)
    with file_lock(layout.build_lock):
        if (read_stamp(final) or {}).get("digest") == digest:
            log_step(f"base rootfs up to date: {final}/rootfs")
        else:
            _remove_leftovers(layout)
            partial = layout.cache / f"{final.name}.partial-{os.getpid()}"
            log = layout.build_log
            log.write_text(f"sandboxctl build {digest}\n")
            t0 = time.monotonic()
            try:
                rootfs = partial / "rootfs"
                rootfs.mkdir(parents=True)
                log_step(f"debootstrap {SUITE} + apt-get install (log: {log})")
                bootstrap_rootfs(rootfs, layout, mirror, packages, log)
                t1 = time.monotonic()
                log_step(f"  userland ready in {t1 - t0:.0f} s; applying the Leap 15.6 disguise")
                configure_rootfs(rootfs, layout, log)
                stamp = {
                    "digest": digest, "suite": SUITE, "mirror": mirror, "packages": sorted(packages),
                    "built_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
                    "build_seconds": round(time.monotonic() - t0, 1),
                }
                (partial / "stamp.json").write_text(json.dumps(stamp, indent=2) + "\n")
                if final.exists():
                    safe_rmtree(final)  # an incomplete dir without a valid stamp
                os.rename(partial, final)
            except BaseException:
                log_step(f"build failed or interrupted: removing {partial}")
                safe_rmtree(partial)
                raise
            log_step(f"base rootfs built in {time.monotonic() - t0:.0f} s: {final}/rootfs")
    with file_lock(layout.state_lock):
        tmp_link = layout.cache / f".base-link-{os.getpid()}"
        with contextlib.suppress(FileNotFoundError):
            tmp_link.unlink()
        tmp_link.symlink_to(final.name)
        os.replace(tmp_link, layout.base_link)  # atomic switch; hosts already up keep their pinned base
        gc_bases(layout)
    return final / "rootfs"


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
    if not info or info.get("broken"):
        return False
    return all(argv[-1] in points for argv in host_mount_plan(layout, name, Path(info["base"])))


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
            listed[name] = info["merged"]
    write_atomic(layout.inventory_file, render_inventory(listed, "Sandbox hosts up now (sandboxctl up)."))
    for f in layout.inventory_dir.glob(".sandbox-*.yml"):
        if f.name[len(".sandbox-"):-len(".yml")] not in names:
            f.unlink(missing_ok=True)


def host_up(layout: Layout, name: str, *, listed: bool = True, owner_pid: int | None = None) -> Path:
    """Bring host `name` up (a no-op when it is up). Returns its root (the merged dir)."""
    validate_host_name(name)
    check_root()
    base = current_base(layout)
    if not (layout.repos / "KEYS.json").is_file():
        raise EnvironmentProblem("stub repos missing: run `sandbox/sandboxctl.py repos`")
    hd = layout.host_dir(name)
    merged = hd / "merged"
    with file_lock(layout.state_lock):
        if is_up(layout, name):
            if repos_bind_stale(layout, name):
                refresh_repos_bind(layout, name)
            return merged
        if hd.exists():
            safe_rmtree(hd)  # half up or half down: start over
        for sub in ("upper", "work", "merged"):
            (hd / sub).mkdir(parents=True)
        layout.pip_cache.mkdir(parents=True, exist_ok=True)
        info = {
            "name": name, "base": str(base), "merged": str(merged), "listed": listed,
            "owner_pid": owner_pid, "owner_start": pid_start_time(owner_pid) if owner_pid else None,
            "created": time.time(),
        }
        try:
            (hd / "host.json").write_text(json.dumps(info, indent=2) + "\n")
            for argv in host_mount_plan(layout, name, base):
                must(argv, f"mounting {argv[-1]}")
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
            one_host = render_inventory({name: merged}, f"Sandbox host {name} (one-host inventory).")
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

    `with SandboxHost("fault1") as h:` gives h.name, h.root (the merged dir to chroot into) and
    h.inventory_path (a one-host inventory inside inventory/, so group_vars apply).
    """

    def __init__(self, name: str, layout: Layout = DEFAULT_LAYOUT) -> None:
        self.name = validate_host_name(name)
        self.layout = layout
        self.root = layout.host_dir(name) / "merged"
        self.inventory_path = layout.host_inventory(name)

    @property
    def upper(self) -> Path:
        """The overlay upper dir: exactly what changed compared to the base."""
        return self.layout.host_dir(self.name) / "upper"

    @property
    def lower(self) -> Path:
        """The base rootfs this host was brought up on (read-only overlay lower layer)."""
        info = json.loads((self.layout.host_dir(self.name) / "host.json").read_text())
        return Path(info["base"])

    def up(self) -> SandboxHost:
        _install_teardown_hooks()
        _ACTIVE[self.name] = self
        try:
            host_up(self.layout, self.name, listed=False, owner_pid=os.getpid())
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
def sandbox_host(name: str, layout: Layout = DEFAULT_LAYOUT) -> Iterator[SandboxHost]:
    """`with sandbox_host("faultX") as h:` -- a fresh host, always torn down."""
    host = SandboxHost(name, layout)
    host.up()
    try:
        yield host
    finally:
        host.down()


# --------------------------------------------------------------------------------------------------
# CLI


def _cmd_build(args: argparse.Namespace, layout: Layout) -> int:
    check_root()
    check_tools({**HOST_TOOLS_BASE, **HOST_TOOLS_REPOS})
    layout.cache.mkdir(parents=True, exist_ok=True)
    check_mount(layout)
    mirror = os.environ.get("SANDBOX_MIRROR", DEFAULT_MIRROR)
    packages = debian_payload(layout)
    try:
        current_base(layout, packages)
        needs_build = False
    except EnvironmentProblem:
        needs_build = True
    if needs_build:
        check_mirror(mirror)  # before anything is built
    build_repos(layout)
    build_base(layout, mirror, packages)
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
        root = host_up(layout, name)
        state = "already up" if was_up else f"up in {time.monotonic() - t0:.3f} s"
        print(f"{name}: {state}: {root}")
    print(f"inventory: {layout.inventory_file}")
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
    host_down(layout, name)
    root = host_up(layout, name)
    print(f"{name}: reset in {time.monotonic() - t0:.3f} s: {root}")
    return 0


def status_report(layout: Layout) -> dict:
    """What is built and up, as a dict with stable keys."""
    report: dict = {
        "base": None, "base_current": False, "repos": (layout.repos / "KEYS.json").is_file(), "hosts": [],
    }
    if layout.base_link.exists():
        base = layout.base_link.resolve()
        report["base"] = {"path": str(base / "rootfs"), **(read_stamp(base) or {})}
        with contextlib.suppress(EnvironmentProblem):
            report["base_current"] = current_base(layout).parent == base
    mountpoints = current_mounts()
    failures = [] if report["base_current"] else ["base rootfs missing or stale: run build"]
    failures += [] if report["repos"] else ["stub repos missing: run repos"]
    for name, info in host_infos(layout).items():
        report["hosts"].append({
            "name": name, "up": is_up(layout, name, mountpoints), "root": info.get("merged"),
            "on_current_base": report["base_current"] and info.get("base") == report["base"]["path"],
            "repos_stale": repos_bind_stale(layout, name),
            "listed": bool(info.get("listed")), "owner_pid": info.get("owner_pid"),
            "orphan": not info.get("broken") and not owner_alive(info),
        })
    failures += [f"host {h['name']} is not fully mounted" for h in report["hosts"] if not h["up"]]
    return {"ok": not failures, "failures": failures, **report}


def _cmd_status(args: argparse.Namespace, layout: Layout) -> int:
    report = status_report(layout)
    if args.json:
        print(json.dumps(report, indent=2))
        return 0
    base = report["base"]
    if base:
        state = "current" if report["base_current"] else "STALE (run build)"
        built = f"built {base.get('built_at', '?')} in {base.get('build_seconds', '?')} s"
        print(f"base:  {base['path']} ({state}, {built})")
    else:
        print("base:  not built (run build)")
    print(f"repos: {'ready' if report['repos'] else 'missing (run repos)'} ({layout.repos})")
    for h in report["hosts"]:
        flags = ["up" if h["up"] else "DOWN/broken"]
        flags += ["in sandbox.yml"] if h["listed"] else [f"test pid {h['owner_pid']}"]
        flags += ["ORPHAN"] if h["orphan"] else []
        flags += [] if h["on_current_base"] else ["old base: reset it"]
        flags += ["old stub repos: run up again"] if h["repos_stale"] else []
        print(f"host:  {h['name']:<24} {', '.join(flags)}  {h['root']}")
    if not report["hosts"]:
        print("hosts: none")
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
    for f in layout.inventory_dir.glob(".sandbox-*.yml"):
        f.unlink()
    layout.inventory_file.unlink(missing_ok=True)
    print(f"removed {layout.cache} (kept {layout.pip_cache})")
    return 0


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="sandboxctl.py", description=__doc__.split("\n\n")[0])
    sub = p.add_subparsers(dest="command", required=True)
    sub.add_parser("build", help="build stub repos and the cached base rootfs (env SANDBOX_MIRROR)")
    sub.add_parser("repos", help="build the stub repos (sandbox/build_repos.py)")
    up = sub.add_parser("up", help="bring hosts up (a no-op for hosts already up)")
    up.add_argument("names", nargs="*", metavar="NAME")
    up.add_argument("--count", type=int, help="also bring up PREFIX-1..N")
    up.add_argument("--prefix", default="leap156", help="name prefix for --count (default: leap156)")
    down = sub.add_parser("down", help="unmount and delete hosts")
    down.add_argument("names", nargs="*", metavar="NAME")
    group = down.add_mutually_exclusive_group()
    group.add_argument("--all", action="store_true", help="every host, whoever brought it up")
    group.add_argument("--orphans", action="store_true", help="hosts whose test process died")
    reset = sub.add_parser("reset", help="down + up: a fresh copy of the base")
    reset.add_argument("name", metavar="NAME")
    status = sub.add_parser("status", help="what is built and up")
    status.add_argument("--json", action="store_true")
    root = sub.add_parser("root", help="print the root (merged dir) of a host that is up")
    root.add_argument("name", metavar="NAME")
    shell = sub.add_parser("shell", help="chroot into a host: shell NAME [-- cmd...]")
    shell.add_argument("name", metavar="NAME")
    shell.add_argument("cmd", nargs=argparse.REMAINDER)
    sub.add_parser("clean", help="down --all, then delete .cache/sandbox (keeps .cache/pip)")
    return p


COMMANDS = {
    "build": _cmd_build, "repos": _cmd_repos, "up": _cmd_up, "down": _cmd_down, "reset": _cmd_reset,
    "status": _cmd_status, "root": _cmd_root, "shell": _cmd_shell, "clean": _cmd_clean,
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
