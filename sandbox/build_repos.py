#!/usr/bin/env python3
"""Build the sandbox's GPG-signed stub repositories and cuDNN archive fixtures.

Usage:
    build_repos.py --out DIR [--force] [--json] [--mount-point /srv/sandbox-repos]
    build_repos.py --debian-packages --suite SUITE   # Debian packages a suite base must preinstall

What it builds (facts: sandbox/stubs/facts.yml; catalogue: sandbox/stubs/packages.py; keys: sandbox/keys/):
    DIR/oss/<platform>/               each platform's base OS repo, signed by the "opensuse" test key
    DIR/cuda/<dist>/x86_64/           stub NVIDIA CUDA repos opensuse15, sles15, suse16 (+ <KEYID>.pub, .repo)
    DIR/gfx/<path>/                   stub NVIDIA graphics driver repos (opensuse/leap/15.6, suse/sle16, ...)
    DIR/local-installer/cuda-repo-opensuse15-12-5-local-12.5.1_555.42.06-1.x86_64.rpm (+ .sha256)
    DIR/cudnn/*.tar.xz, *.tgz         cuDNN tarball fixtures, both layouts (+ .sha256)
    DIR/keys/{opensuse,nvidia}.asc, DIR/KEYS.json, DIR/SHA256SUMS, DIR/.stamp.json
RPMs and repomd.xml files are signed (repodata/repomd.xml.asc, key in repodata/repomd.xml.key).
Libraries that facts.yml names a wheel for (NVIDIA's libcudart) are taken from NVIDIA's PyPI wheel,
downloaded once into DIR/../downloads and checked against the sha256 in facts.yml.

The build happens in DIR.tmp-<pid>, which is renamed to DIR only when complete. DIR/.stamp.json
holds a hash of the inputs (this file, sandbox/facts.py, sandbox/stubs/**, sandbox/keys/**, the mount
point); when it matches, the run does nothing. GnuPG runs in a private temporary GNUPGHOME.

Host commands: gcc, rpmbuild, rpmsign, rpm, createrepo_c, gpg, gpgconf (Debian: rpm, createrepo-c,
gnupg, gcc). Exit codes: 0 built or up to date, 1 build failed, 2 usage or environment error.
"""

from __future__ import annotations

import argparse
import base64
import concurrent.futures
import contextlib
import fcntl
import gzip
import hashlib
import importlib.util
import io
import json
import lzma
import os
import platform
import re
import shutil
import subprocess
import sys
import tarfile
import tempfile
import time
import zipfile
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType

HERE = Path(__file__).resolve().parent
STUBS = HERE / "stubs"
KEYS = HERE / "keys"
DEFAULT_MOUNT_POINT = "/srv/sandbox-repos"
STAMP = ".stamp.json"
REQUIRED_TOOLS = {
    "gcc": "gcc",
    "rpmbuild": "rpm",
    "rpmsign": "rpm",
    "rpm": "rpm",
    "createrepo_c": "createrepo-c",
    "gpg": "gnupg",
    "gpgconf": "gnupg",
}
# Directories below these roots are owned by the packages that put files there, so that
# erasing the packages leaves nothing behind. System directories (/usr/lib64, /etc/...) are not.
OWNED_BELOW = ("/usr/local", "/lib/modules", "/var")


class BuildError(Exception):
    """A build step failed; the message says which and why."""


# --------------------------------------------------------------------------- subprocess
@dataclass(frozen=True)
class Result:
    rc: int
    out: str
    err: str


def run(
    cmd: Sequence[str], *, env: dict[str, str] | None = None, cwd: Path | None = None, timeout: float = 300
) -> Result:
    """Run a command; never raises (missing command -> 127, timeout -> 124)."""
    try:
        proc = subprocess.run(
            list(cmd),
            env=env,
            cwd=cwd,
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )
    except FileNotFoundError as exc:
        return Result(127, "", str(exc))
    except subprocess.TimeoutExpired:
        return Result(124, "", f"timed out after {timeout}s")
    return Result(proc.returncode, proc.stdout, proc.stderr)


NOISE = re.compile(r"^warning: Could not set GPG_TTY")


def check(cmd: Sequence[str], what: str, **kwargs: object) -> Result:
    result = run(cmd, **kwargs)  # type: ignore[arg-type]
    if result.rc != 0:
        # rpmsign warns about GPG_TTY once per package; that noise would push the error out of the tail.
        lines = (result.err or result.out).strip().splitlines()
        tail = [line for line in lines if NOISE.search(line) is None][-15:]
        raise BuildError(f"{what} failed (rc {result.rc}): {' '.join(cmd[:3])} ...\n" + "\n".join(tail))
    return result


# --------------------------------------------------------------------------- catalogue
def load_catalogue(path: Path = STUBS / "packages.py") -> ModuleType:
    spec = importlib.util.spec_from_file_location("sandbox_stub_packages", path)
    if spec is None or spec.loader is None:
        raise BuildError(f"cannot load the package catalogue {path}")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses need the module registered
    spec.loader.exec_module(module)
    return module


# --------------------------------------------------------------------------- pure helpers
def inputs_digest(paths: Iterable[Path], base: Path, extra: str = "") -> str:
    """SHA-256 over the relative names and contents of every file under `paths`, plus `extra`."""
    digest = hashlib.sha256()
    files: list[Path] = []
    for path in paths:
        if path.is_dir():
            files.extend(p for p in path.rglob("*") if p.is_file() and "__pycache__" not in p.parts)
        elif path.is_file():
            files.append(path)
    for file in sorted(set(files)):
        digest.update(str(file.relative_to(base)).encode() + b"\0")
        digest.update(hashlib.sha256(file.read_bytes()).digest())
    digest.update(extra.encode())
    return digest.hexdigest()


def dearmor(armored: str) -> bytes:
    """Binary body of an ASCII-armored OpenPGP block (checksum line dropped)."""
    lines = armored.strip().splitlines()
    try:
        start = next(i for i, line in enumerate(lines) if line.startswith("-----BEGIN PGP"))
        end = next(i for i, line in enumerate(lines) if line.startswith("-----END PGP"))
    except StopIteration as exc:
        raise ValueError("not an ASCII-armored OpenPGP block") from exc
    body = lines[start + 1 : end]
    while body and body[0].strip():  # armor headers ("Comment: ...") end at the first blank line
        if ":" not in body[0]:
            break
        body.pop(0)
    data = "".join(line.strip() for line in body if line.strip() and not line.startswith("="))
    return base64.b64decode(data)


def first_packet(data: bytes) -> tuple[int, bytes]:
    """(tag, body) of the first OpenPGP packet (old and new packet formats)."""
    header = data[0]
    if not header & 0x80:
        raise ValueError("not an OpenPGP packet")
    if header & 0x40:  # new format
        tag = header & 0x3F
        first = data[1]
        if first < 192:
            length, offset = first, 2
        elif first < 224:
            length, offset = ((first - 192) << 8) + data[2] + 192, 3
        elif first == 255:
            length, offset = int.from_bytes(data[2:6], "big"), 6
        else:
            raise ValueError("partial body lengths are not used for keys")
    else:  # old format
        tag = (header >> 2) & 0x0F
        length_type = header & 0x03
        size = {0: 1, 1: 2, 2: 4}.get(length_type)
        if size is None:
            raise ValueError("indeterminate packet length")
        length, offset = int.from_bytes(data[1 : 1 + size], "big"), 1 + size
    return tag, data[offset : offset + length]


def pgp_key_info(armored: str) -> dict[str, object]:
    """Fingerprint, key ids and creation time of an armored v4 OpenPGP public key."""
    tag, body = first_packet(dearmor(armored))
    if tag != 6 or body[0] != 4:
        raise ValueError("expected a version 4 public-key packet")
    fingerprint = hashlib.sha1(b"\x99" + len(body).to_bytes(2, "big") + body).hexdigest().upper()
    created = int.from_bytes(body[1:5], "big")
    return {
        "fingerprint": fingerprint,
        "long_keyid": fingerprint[-16:],
        "keyid": fingerprint[-8:],
        "created": created,
        "rpm_name": f"gpg-pubkey-{fingerprint[-8:].lower()}-{created:08x}",
    }


def render_template(text: str, variables: dict[str, str]) -> str:
    """Replace @NAME@ placeholders; an unknown or leftover placeholder is an error."""

    def replace(match: re.Match[str]) -> str:
        name = match.group(1)
        if name not in variables:
            raise KeyError(f"template variable @{name}@ has no value")
        return variables[name]

    return re.sub(r"@([A-Z_]+)@", replace, text)


def rpmvercmp(a: str, b: str) -> int:
    """rpm's version segment comparison (no ~ or ^ handling, which the catalogue does not use)."""
    seg = re.compile(r"(\d+|[a-zA-Z]+)")
    xa, xb = seg.findall(a), seg.findall(b)
    for pa, pb in zip(xa, xb, strict=False):
        if pa.isdigit() and pb.isdigit():
            na, nb = int(pa), int(pb)
            if na != nb:
                return 1 if na > nb else -1
        elif pa.isdigit() != pb.isdigit():
            return 1 if pa.isdigit() else -1
        elif pa != pb:
            return 1 if pa > pb else -1
    return (len(xa) > len(xb)) - (len(xa) < len(xb))


def satisfies(provided_version: str, op: str, wanted: str) -> bool:
    """Does `provided_version` (version or version-release) meet `op wanted`?"""
    if "-" in wanted:
        cmp = rpmvercmp(provided_version, wanted)
    else:  # release not given: compare versions only
        cmp = rpmvercmp(provided_version.split("-")[0], wanted)
    return {"=": cmp == 0, ">=": cmp >= 0, "<=": cmp <= 0, ">": cmp > 0, "<": cmp < 0}[op]


def parse_dependency(dep: str) -> tuple[str, str, str]:
    """'name >= 1.2' -> ('name', '>=', '1.2'); 'name' -> ('name', '', '')."""
    parts = dep.split()
    if len(parts) == 1:
        return parts[0], "", ""
    if len(parts) == 3 and parts[1] in ("=", ">=", "<=", ">", "<"):
        return parts[0], parts[1], parts[2]
    raise ValueError(f"unsupported dependency syntax: {dep!r}")


def capabilities(pkg: object) -> list[tuple[str, str]]:
    """(name, version) pairs a package provides: itself and its explicit Provides."""
    caps = [(pkg.name, f"{pkg.version}-{pkg.release}")]  # type: ignore[attr-defined]
    for provide in pkg.provides:  # type: ignore[attr-defined]
        name, _, version = parse_dependency(provide)
        caps.append((name, version))
    return caps


def unresolved(packages: Sequence[object], repo: str) -> list[str]:
    """Requires of packages in `repo` that no package of that repo satisfies."""
    members = [p for p in packages if repo in p.repos]  # type: ignore[attr-defined]
    provided: dict[str, list[str]] = {}
    for pkg in members:
        for name, version in capabilities(pkg):
            provided.setdefault(name, []).append(version)
    problems = []
    for pkg in members:
        for dep in pkg.requires:  # type: ignore[attr-defined]
            name, op, wanted = parse_dependency(dep)
            versions = provided.get(name, [])
            if not versions or (op and not any(v and satisfies(v, op, wanted) for v in versions)):
                problems.append(f"{repo}: {pkg.name} requires {dep}")  # type: ignore[attr-defined]
    return problems


def owned_dirs(paths: Iterable[str]) -> list[str]:
    """Parent directories of `paths` that lie strictly below one of OWNED_BELOW."""
    dirs: set[str] = set()
    for path in paths:
        parent = os.path.dirname(path)
        while parent not in ("/", ""):
            if any(parent.startswith(root + "/") for root in OWNED_BELOW):
                dirs.add(parent)
            parent = os.path.dirname(parent)
    return sorted(dirs)


def entry_payload(entry: object, templates: Path) -> bytes | None:
    """Content of a text/template entry (None for libs, links and dirs)."""
    kind = entry.kind  # type: ignore[attr-defined]
    if kind == "text":
        return entry.text.encode()  # type: ignore[attr-defined]
    if kind == "template":
        raw = (templates / entry.target).read_text()  # type: ignore[attr-defined]
        return render_template(raw, dict(entry.variables)).encode()  # type: ignore[attr-defined]
    return None


def entry_identity(entry: object) -> tuple[str, str, str]:
    """What makes two packages' copies of one path identical (rpm allows identical shared files)."""
    kind = entry.kind  # type: ignore[attr-defined]
    detail = entry.text if kind == "text" else repr(entry.variables)  # type: ignore[attr-defined]
    return kind, entry.target, detail  # type: ignore[attr-defined]


def assign_buckets(packages: Sequence[object]) -> list[list[object]]:
    """Group packages into as few spec files as possible: one spec cannot hold two packages of
    the same name, nor two different contents for one path."""
    buckets: list[tuple[list[object], set[str], dict[str, tuple[str, str, str]]]] = []
    for pkg in packages:
        for members, names, paths in buckets:  # noqa: B007 - `members` is used after the break
            if pkg.name in names:  # type: ignore[attr-defined]
                continue
            if any(paths.get(e.path, entry_identity(e)) != entry_identity(e) for e in pkg.entries):  # type: ignore[attr-defined]
                continue
            break
        else:
            members, names, paths = [], set(), {}
            buckets.append((members, names, paths))
        members.append(pkg)
        names.add(pkg.name)  # type: ignore[attr-defined]
        for entry in pkg.entries:  # type: ignore[attr-defined]
            paths[entry.path] = entry_identity(entry)
    return [members for members, _, _ in buckets]


def _scriptlet(section: str, name: str, body: str, ldconfig_marker: str) -> list[str]:
    if not body:
        return []
    if body == ldconfig_marker:
        return [f"%{section} -n {name} -p /sbin/ldconfig", ""]
    return [f"%{section} -n {name}", body.rstrip("\n"), ""]


def render_spec(spec_name: str, packages: Sequence[object], description: str, ldconfig_marker: str) -> str:
    """A spec whose subpackages are `packages`; %install copies the pre-rendered tree
    %{_sandbox_stage} into the buildroot."""
    lines = [
        f"Name: {spec_name}",
        "Version: 1",
        "Release: 1",
        "Summary: Sandbox stub packages",
        "License: NONE",
        "AutoReqProv: no",
        "%define debug_package %{nil}",
        "%define __os_install_post %{nil}",
        "%define _build_id_links none",
        "",
        "%description",
        "Container spec for sandbox stub packages; it builds only subpackages.",
        "",
    ]
    for pkg in packages:
        p = pkg  # type: ignore[assignment]
        lines += [
            f"%package -n {p.name}",
            f"Version: {p.version}",
            f"Release: {p.release}",
            f"Summary: {p.summary}",
            f"License: {p.license}",
            f"Vendor: {p.vendor}",
            "Group: System/Sandbox",
            # No automatic dependencies: the chroot's rpmdb does not list what dpkg installed.
            "AutoReqProv: no",
        ]
        if p.arch == "noarch":
            lines.append("BuildArch: noarch")
        lines += [f"Requires: {dep}" for dep in p.requires]
        lines += [f"Provides: {cap}" for cap in p.provides]
        lines += [f"Conflicts: {dep}" for dep in p.conflicts]
        text = description + ("\n\n" + p.description if p.description else "")
        lines += ["", f"%description -n {p.name}", text, ""]
        lines += _scriptlet("post", p.name, p.post, ldconfig_marker)
        lines += _scriptlet("preun", p.name, p.preun, ldconfig_marker)
        lines += _scriptlet("postun", p.name, p.postun, ldconfig_marker)
    lines += [
        "%prep",
        "%build",
        "%install",
        "mkdir -p %{buildroot}",
        "cp -a %{_sandbox_stage}/. %{buildroot}/",
        "",
    ]
    for pkg in packages:
        p = pkg  # type: ignore[assignment]
        lines += [f"%files -n {p.name}", "%defattr(-,root,root,-)"]
        explicit_dirs = {e.path for e in p.entries if e.kind == "dir"}
        for directory in sorted(set(owned_dirs(e.path for e in p.entries)) | explicit_dirs):
            lines.append(f"%dir %attr(0755,root,root) {directory}")
        for e in sorted(p.entries, key=lambda e: e.path):
            if e.kind == "dir":
                continue
            if e.kind == "symlink":
                lines.append(e.path)
            elif e.config:
                lines.append(f"%config(noreplace) %attr({e.mode:04o},root,root) {e.path}")
            else:
                lines.append(f"%attr({e.mode:04o},root,root) {e.path}")
        lines.append("")
    return "\n".join(lines)


def repo_file(section: str, name: str, baseurl: str, gpgkey: str, extra: Sequence[str] = ()) -> str:
    lines = [
        f"[{section}]",
        f"name={name}",
        f"baseurl={baseurl}",
        "enabled=1",
        "gpgcheck=1",
        f"gpgkey={gpgkey}",
    ]
    return "\n".join([*lines, *extra]) + "\n"


@dataclass(frozen=True)
class Member:
    """One tar member of a cuDNN fixture."""

    name: str
    kind: str  # "dir", "file", "symlink"
    mode: int
    data: bytes = b""
    target: str = ""


def cudnn_members(cat: ModuleType, layout: str, lib_bytes: dict[str, bytes], templates: Path) -> list[Member]:
    """Members of the cuDNN archive in `layout` ("current" or "old"), in archive order."""
    if layout == "current":
        top = cat.CUDNN_ARCHIVES["current"].removesuffix(".tar.xz")
        inc, libdir, license_name = f"{top}/include", f"{top}/lib", f"{top}/LICENSE"
        dirs, header_mode = [top, inc, libdir], 0o444
    elif layout == "old":
        inc, libdir, license_name = "cuda/include", "cuda/lib64", "cuda/NVIDIA_SLA_cuDNN_Support.txt"
        dirs, header_mode = ["cuda", inc, libdir], 0o664
    else:
        raise ValueError(f"unknown cuDNN layout {layout!r}")
    members = [Member(name, "dir", 0o775) for name in dirs]
    for entry in cat.cudnn_header_entries(inc):
        members.append(Member(entry.path, "file", header_mode, entry_payload(entry, templates) or b""))
    for lib_id in cat.CUDNN_LIBS:
        library = cat.LIBRARIES[lib_id]
        members.append(Member(f"{libdir}/{library.filename}", "file", 0o775, lib_bytes[lib_id]))
        members.append(Member(f"{libdir}/{library.soname}", "symlink", 0o777, target=library.filename))
        members.append(Member(f"{libdir}/{lib_id}.so", "symlink", 0o777, target=library.soname))
    members.append(Member(license_name, "file", 0o664, cat.CUDNN_LICENSE.encode()))
    return members


def write_tarball(path: Path, members: Sequence[Member], owner: dict[str, object], mtime: int) -> None:
    """Write members into a .tar.xz or .tgz with a foreign owner and fixed mtime (deterministic)."""
    raw = io.BytesIO()
    fmt = tarfile.PAX_FORMAT if path.name.endswith(".tar.xz") else tarfile.GNU_FORMAT
    with tarfile.open(fileobj=raw, mode="w", format=fmt) as tar:
        for member in members:
            info = tarfile.TarInfo(member.name)
            info.mode = member.mode
            info.mtime = mtime
            info.uid, info.gid = int(owner["uid"]), int(owner["gid"])  # type: ignore[call-overload]
            info.uname, info.gname = str(owner["uname"]), str(owner["gname"])
            if member.kind == "dir":
                info.type = tarfile.DIRTYPE
                tar.addfile(info)
            elif member.kind == "symlink":
                info.type = tarfile.SYMTYPE
                info.linkname = member.target
                tar.addfile(info)
            else:
                info.size = len(member.data)
                tar.addfile(info, io.BytesIO(member.data))
    if path.name.endswith(".tar.xz"):
        path.write_bytes(lzma.compress(raw.getvalue(), preset=6))
    else:
        with open(path, "wb") as fh, gzip.GzipFile(filename="", mode="wb", fileobj=fh, mtime=mtime) as gz:
            gz.write(raw.getvalue())


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def write_sha256_sidecar(path: Path) -> None:
    """<file>.sha256 in sha256sum format, so `sha256sum -c` works in that directory."""
    Path(f"{path}.sha256").write_text(f"{sha256_file(path)}  {path.name}\n")


# --------------------------------------------------------------------------- build steps
class Builder:
    def __init__(self, cat: ModuleType, work: Path, out: Path, mount_point: str, jobs: int,
                 downloads: Path | None = None) -> None:
        self.cat = cat
        self.downloads = downloads or out.parent / "downloads"
        self.work = work
        self.out = out
        self.mount_point = mount_point.rstrip("/")
        self.jobs = jobs
        self.gnupghome = work / "gnupg"
        self.keys: dict[str, dict[str, object]] = {}
        self.libs: dict[str, Path] = {}
        self.rpms: dict[tuple[str, str, str], Path] = {}  # (name, version, release) -> signed rpm
        self.templates = STUBS / "include"

    # ---- keys
    def setup_gnupg(self) -> None:
        self.gnupghome.mkdir(mode=0o700)
        # Parallel rpmsign jobs share one agent; its fixed secure memory runs out with many at once
        # ("signing failed: Cannot allocate memory", GnuPG T3530) unless it may grow.
        (self.gnupghome / "gpg-agent.conf").write_text("auto-expand-secmem\n")
        for name in ("opensuse", "nvidia"):
            public = (KEYS / f"{name}.pub.asc").read_text()
            info = pgp_key_info(public)
            check(
                [
                    "gpg",
                    "--homedir",
                    str(self.gnupghome),
                    "--batch",
                    "--quiet",
                    "--import",
                    str(KEYS / f"{name}.sec.asc"),
                ],
                f"import of the {name} test key",
            )
            listed = check(
                [
                    "gpg",
                    "--homedir",
                    str(self.gnupghome),
                    "--batch",
                    "--with-colons",
                    "--list-secret-keys",
                    str(info["fingerprint"]),
                ],
                f"listing the {name} key",
            ).out
            if f":{info['fingerprint']}:" not in listed:
                raise BuildError(f"sandbox/keys/{name}.sec.asc does not match {name}.pub.asc")
            info["public"] = public
            self.keys[name] = info

    def gpg_env(self) -> dict[str, str]:
        return {**os.environ, "GNUPGHOME": str(self.gnupghome)}

    def stop_gnupg(self) -> None:
        if self.gnupghome.exists():
            run(["gpgconf", "--homedir", str(self.gnupghome), "--kill", "all"], timeout=30)

    # ---- libraries
    def compile_libraries(self) -> None:
        libdir = self.work / "libs"
        libdir.mkdir()

        def build(item: tuple[str, object]) -> None:
            lib_id, library = item
            target = libdir / f"{lib_id}.so"
            if library.source == "wheel":  # type: ignore[attr-defined]
                self.extract_from_wheel(library.wheel, target)  # type: ignore[attr-defined]
                self.libs[lib_id] = target
                return
            defines = [
                f"-DSTUB_ID_SYMBOL=sandbox_stub_{re.sub(r'[^A-Za-z0-9]', '_', lib_id)}",
                f'-DSTUB_LIBRARY="{library.soname}"',  # type: ignore[attr-defined]
                f'-DSTUB_VERSION="{library.version}"',  # type: ignore[attr-defined]
            ] + [f"-D{k}={v}" for k, v in library.defines]  # type: ignore[attr-defined]
            check(
                [
                    "gcc",
                    "-shared",
                    "-fPIC",
                    "-O2",
                    "-Wall",
                    "-Werror",
                    "-fvisibility=hidden",
                    f"-Wl,-soname,{library.soname}",
                    "-o",
                    str(target),  # type: ignore[attr-defined]
                    *defines,
                    str(STUBS / "src" / library.source),
                    "-ldl",
                ],  # type: ignore[attr-defined]
                f"compiling stub library {lib_id}",
            )
            self.libs[lib_id] = target

        with concurrent.futures.ThreadPoolExecutor(self.jobs) as pool:
            list(pool.map(build, self.cat.LIBRARIES.items()))

    def fetch_wheel(self, key: str) -> Path:
        """NVIDIA's wheel named in facts.yml `wheels:`, from the download cache or PyPI, sha256-checked."""
        info = self.cat.WHEELS[key]
        self.downloads.mkdir(parents=True, exist_ok=True)
        path = self.downloads / info["file"]
        if not path.is_file() or sha256_file(path) != info["sha256"]:
            with tempfile.TemporaryDirectory(dir=self.downloads) as tmp:
                check(
                    [sys.executable, "-m", "pip", "download", "--quiet", "--no-deps", "--only-binary=:all:",
                     "--platform", "manylinux2014_x86_64", "--python-version", "3.11", "--dest", tmp,
                     f"{key}=={info['version']}"],
                    f"downloading {info['file']} from PyPI", timeout=600,
                )
                got = Path(tmp) / info["file"]
                if not got.is_file():
                    raise BuildError(f"pip download of {key}=={info['version']} did not give {info['file']}")
                os.replace(got, path)
        actual = sha256_file(path)
        if actual != info["sha256"]:
            path.unlink()
            raise BuildError(
                f"{info['file']} has sha256 {actual}, facts.yml says {info['sha256']}: not using it"
            )
        return path

    def extract_from_wheel(self, key: str, target: Path) -> None:
        info = self.cat.WHEELS[key]
        with zipfile.ZipFile(self.fetch_wheel(key)) as whl:
            target.write_bytes(whl.read(info["member"]))

    # ---- rpms
    def stage(self, root: Path, packages: Sequence[object]) -> None:
        for pkg in packages:
            for entry in pkg.entries:  # type: ignore[attr-defined]
                dest = root / entry.path.lstrip("/")
                if entry.kind == "staged":  # already in the tree passed as extra_stage
                    continue
                if entry.kind == "dir":
                    dest.mkdir(parents=True, exist_ok=True)
                    continue
                dest.parent.mkdir(parents=True, exist_ok=True)
                if dest.is_symlink() or dest.exists():
                    continue  # identical shared file (assign_buckets guarantees it)
                if entry.kind == "symlink":
                    dest.symlink_to(entry.target)
                elif entry.kind == "lib":
                    shutil.copyfile(self.libs[entry.target], dest)
                else:
                    dest.write_bytes(entry_payload(entry, self.templates) or b"")
                if entry.kind != "symlink":
                    dest.chmod(entry.mode)

    def rpmbuild(
        self, spec_name: str, packages: Sequence[object], extra_stage: Path | None = None
    ) -> list[Path]:
        top = self.work / "rpmbuild" / spec_name
        stage = top / "STAGE"
        stage.mkdir(parents=True)
        self.stage(stage, packages)
        if extra_stage is not None:
            shutil.copytree(extra_stage, stage, symlinks=True, dirs_exist_ok=True)
        spec = top / f"{spec_name}.spec"
        spec.write_text(render_spec(spec_name, packages, self.cat.STUB_NOTE, self.cat.LDCONFIG))
        check(
            [
                "rpmbuild",
                "-bb",
                "--quiet",
                "--target",
                "x86_64",
                "--define",
                f"_topdir {top}",
                "--define",
                f"_sandbox_stage {stage}",
                "--define",
                "_build_name_fmt %%{NAME}-%%{VERSION}-%%{RELEASE}.%%{ARCH}.rpm",
                "--define",
                "_buildhost build.sandbox.invalid",
                str(spec),
            ],
            f"rpmbuild of {spec_name}",
            timeout=600,
        )
        built = sorted((top / "RPMS").glob("*.rpm"))
        expected = {p.rpm_filename for p in packages}  # type: ignore[attr-defined]
        if {b.name for b in built} != expected:
            raise BuildError(
                f"rpmbuild of {spec_name} made {sorted(b.name for b in built)}, expected {sorted(expected)}"
            )
        return built

    def sign_rpms(self, batches: Sequence[tuple[str, Sequence[Path]]]) -> None:
        """Sign (key, rpms) batches; rpmsign runs gpg once per package, so split them over the jobs."""
        work = [(key, list(rpms)[i :: self.jobs]) for key, rpms in batches for i in range(self.jobs)]
        with concurrent.futures.ThreadPoolExecutor(self.jobs) as pool:
            list(pool.map(lambda job: self._rpmsign(*job), [job for job in work if job[1]]))

    def _rpmsign(self, key: str, rpms: Sequence[Path]) -> None:
        fingerprint = str(self.keys[key]["fingerprint"])
        check(
            [
                "rpmsign",
                "--addsign",
                "--define",
                f"_gpg_name {fingerprint}",
                "--define",
                "__gpg /usr/bin/gpg",  # rpmsign looks for gpg2 otherwise
                "--define",
                f"_gpg_path {self.gnupghome}",
                "--define",
                "_gpg_digest_algo sha256",
                "--define",
                "_gpg_sign_cmd_extra_args --batch --pinentry-mode loopback",
                *map(str, rpms),
            ],
            f"signing RPMs with the {key} test key",
            env=self.gpg_env(),
            timeout=600,
        )

    def build_packages(self) -> None:
        cat = self.cat
        by_key: dict[str, list[object]] = {}
        for pkg in cat.PACKAGES:
            keys = {cat.SIGNING_KEY[r] for r in pkg.repos}
            if len(keys) != 1:
                raise BuildError(f"{pkg.name} is in repos signed by different keys: {sorted(pkg.repos)}")
            by_key.setdefault(keys.pop(), []).append(pkg)
        jobs = []
        for key, pkgs in sorted(by_key.items()):
            for index, bucket in enumerate(assign_buckets(pkgs), 1):
                jobs.append((key, f"sandbox-stubs-{key}-{index}", bucket))
        with concurrent.futures.ThreadPoolExecutor(self.jobs) as pool:
            results = list(pool.map(lambda job: (job[0], job[2], self.rpmbuild(job[1], job[2])), jobs))
        self.sign_rpms(
            [(key, [rpm for k, _, built in results if k == key for rpm in built]) for key in by_key]
        )
        for _, bucket, built in results:
            by_file = {b.name: b for b in built}
            for pkg in bucket:
                self.rpms[(pkg.name, pkg.version, pkg.release)] = by_file[pkg.rpm_filename]  # type: ignore[attr-defined]

    # ---- repositories
    def packages_in(self, repo: str) -> list[object]:
        return [p for p in self.cat.PACKAGES if repo in p.repos]

    def fill_repo(self, directory: Path, packages: Sequence[object], arch_dirs: bool = False) -> None:
        directory.mkdir(parents=True, exist_ok=True)
        for pkg in packages:
            src = self.rpms[(pkg.name, pkg.version, pkg.release)]  # type: ignore[attr-defined]
            dest_dir = directory / pkg.arch if arch_dirs else directory  # type: ignore[attr-defined]
            dest_dir.mkdir(exist_ok=True)
            shutil.copyfile(src, dest_dir / src.name)

    def createrepo(self, directory: Path, key: str) -> None:
        check(
            ["createrepo_c", "--quiet", "--no-database", "--general-compress-type", "gz", str(directory)],
            f"createrepo_c in {directory.name}",
        )
        repomd = directory / "repodata" / "repomd.xml"
        check(
            [
                "gpg",
                "--homedir",
                str(self.gnupghome),
                "--batch",
                "--yes",
                "--pinentry-mode",
                "loopback",
                "--local-user",
                str(self.keys[key]["fingerprint"]),
                "--armor",
                "--detach-sign",
                "--output",
                f"{repomd}.asc",
                str(repomd),
            ],
            f"signing {repomd}",
            env=self.gpg_env(),
        )
        (directory / "repodata" / "repomd.xml.key").write_text(str(self.keys[key]["public"]))

    def build_repos(self) -> None:
        cat, out = self.cat, self.out
        nvidia = self.keys["nvidia"]
        jobs = []
        for repo in cat.REPOS:
            if repo == cat.LOCAL:
                continue
            directory = out / repo
            self.fill_repo(directory, self.packages_in(repo), arch_dirs=repo.startswith("gfx/"))
            jobs.append((directory, cat.SIGNING_KEY[repo]))
        with concurrent.futures.ThreadPoolExecutor(self.jobs) as pool:
            list(pool.map(lambda job: self.createrepo(*job), jobs))
        # Key files and repo files, named like the real ones.
        for info in cat.CUDA_REPO_FILES.values():
            cuda = out / info["dir"]
            (cuda / f"{nvidia['keyid']}.pub").write_text(str(nvidia["public"]))
            url = f"file:{self.mount_point}/{info['dir']}"
            (cuda / info["repo_file"]).write_text(
                repo_file(info["repo_id"], info["repo_id"], url, f"{url}/{nvidia['keyid']}.pub"))
        keys = out / "keys"
        keys.mkdir()
        for name, info in self.keys.items():
            (keys / f"{name}.asc").write_text(str(info["public"]))

    def build_local_installer(self) -> None:
        cat = self.cat
        li = cat.LOCAL_INSTALLER
        nvidia = self.keys["nvidia"]
        tree = self.work / "local-tree"
        repo_dir = tree / li["repo_dir"].lstrip("/")
        self.fill_repo(repo_dir, self.packages_in(cat.LOCAL))
        self.createrepo(repo_dir, "nvidia")
        (repo_dir / f"{nvidia['keyid']}.pub").write_text(str(nvidia["public"]))
        repo_path = tree / li["repo_file"].lstrip("/")
        repo_path.parent.mkdir(parents=True)
        repo_path.write_text(
            repo_file(
                li["repo_id"],
                li["repo_id"],
                f"file:{li['repo_dir']}",
                f"file://{li['repo_dir']}/{nvidia['keyid']}.pub",
            )
        )
        entries = [cat.Entry(li["repo_file"], "staged", mode=0o644, config=True)]
        for path in sorted(repo_dir.rglob("*")):
            if path.is_file():
                path.chmod(0o644)
                entries.append(cat.Entry("/" + str(path.relative_to(tree)), "staged", mode=0o644))
        package = cat.Package(
            li["name"],
            li["version"],
            f"CUDA {cat.CUDA_12_5['release']} local repository",
            frozenset({cat.LOCAL}),
            release=li["release"],
            arch=li["arch"],
            entries=tuple(entries),
            description=(
                f"Like NVIDIA's local installer: a signed repository under {li['repo_dir']} with the CUDA "
                f"{cat.CUDA_12_5['release']} and driver {cat.CUDA_12_5['driver']} packages, and the repo "
                f"file {li['repo_file']}. Then: zypper install cuda-toolkit-12-5."
            ),
        )
        (built,) = self.rpmbuild("sandbox-local-installer", [package], extra_stage=tree)
        self.sign_rpms([("nvidia", [built])])
        dest = self.out / "local-installer"
        dest.mkdir()
        shutil.copyfile(built, dest / built.name)
        write_sha256_sidecar(dest / built.name)

    def build_cudnn(self) -> None:
        cat = self.cat
        dest = self.out / "cudnn"
        dest.mkdir()
        lib_bytes = {lib_id: self.libs[lib_id].read_bytes() for lib_id in cat.CUDNN_LIBS}
        for layout, name in cat.CUDNN_ARCHIVES.items():
            members = cudnn_members(cat, layout, lib_bytes, self.templates)
            write_tarball(dest / name, members, cat.CUDNN_ARCHIVE_OWNER, cat.CUDNN_ARCHIVE_MTIME)
            write_sha256_sidecar(dest / name)

    # ---- checks and summary
    def verify_signatures(self) -> None:
        rpmdb = self.work / "rpmdb"
        rpmdb.mkdir()
        for name in ("opensuse", "nvidia"):
            check(
                ["rpm", "--dbpath", str(rpmdb), "--import", str(KEYS / f"{name}.pub.asc")],
                f"importing the {name} key into a scratch rpmdb",
            )
        rpms = sorted(str(p) for p in self.out.rglob("*.rpm"))
        result = run(["rpm", "--dbpath", str(rpmdb), "-K", *rpms], timeout=300)
        bad = [
            line for line in result.out.splitlines() if not line.rstrip().endswith("digests signatures OK")
        ]
        if result.rc != 0 or bad:
            raise BuildError("RPM signature check failed:\n" + "\n".join(bad[:20] or [result.err]))
        for repomd in self.out.rglob("repomd.xml"):
            check(
                [
                    "gpg",
                    "--homedir",
                    str(self.gnupghome),
                    "--batch",
                    "--verify",
                    f"{repomd}.asc",
                    str(repomd),
                ],
                f"verifying {repomd}",
                env=self.gpg_env(),
            )

    def write_keys_json(self) -> None:
        cat = self.cat
        files = {name: f"keys/{name}.asc" for name in self.keys}
        data = {
            name: {
                "fingerprint": info["fingerprint"],
                "keyid": info["keyid"],
                "long_keyid": info["long_keyid"],
                "rpm_name": info["rpm_name"],
                "file": files[name],
                "signs": sorted(r for r, k in cat.SIGNING_KEY.items() if k == name),
            }
            for name, info in sorted(self.keys.items())
        }
        (self.out / "KEYS.json").write_text(json.dumps(data, indent=2, sort_keys=True) + "\n")

    def write_sha256sums(self) -> None:
        lines = []
        for path in sorted(p for p in self.out.rglob("*") if p.is_file() and not p.is_symlink()):
            rel = path.relative_to(self.out)
            if str(rel) in ("SHA256SUMS", STAMP):
                continue
            lines.append(f"{sha256_file(path)}  {rel}")
        (self.out / "SHA256SUMS").write_text("\n".join(lines) + "\n")

    def build(self) -> dict[str, object]:
        self.setup_gnupg()
        self.compile_libraries()
        self.build_packages()
        self.build_repos()
        self.build_local_installer()
        self.build_cudnn()
        self.verify_signatures()
        self.write_keys_json()
        self.write_sha256sums()
        return {
            "packages": len(self.cat.PACKAGES),
            "rpms": len(list(self.out.rglob("*.rpm"))),
            "libraries": len(self.libs),
            "keys": {k: v["fingerprint"] for k, v in self.keys.items()},
        }


# --------------------------------------------------------------------------- output dir handling
def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def is_bind_source(path: Path, mountinfo: str | None = None) -> bool:
    """Is the directory `path` the source of a mount (a sandbox host's read-only /srv/sandbox-repos)?
    The kernel reports a bind mount's source by its current name, also after a rename."""
    try:
        st = path.stat()
        if mountinfo is None:
            mountinfo = Path("/proc/self/mountinfo").read_text()
    except OSError:
        return False
    dev = f"{os.major(st.st_dev)}:{os.minor(st.st_dev)}"
    for line in mountinfo.splitlines():
        fields = line.split()
        if len(fields) > 4 and fields[2] == dev and fields[3] != "/" and str(path).endswith(fields[3]):
            return True
    return False


def remove_stale(out: Path) -> None:
    """Remove DIR.tmp-<pid> / DIR.old-<pid> left by builds that no longer run, except old trees
    that sandbox hosts still have mounted (they keep seeing a consistent repo until `down`)."""
    for sibling in out.parent.glob(f"{out.name}.*-*"):
        match = re.fullmatch(re.escape(out.name) + r"\.(tmp|old)-(\d+)", sibling.name)
        if match and not pid_alive(int(match.group(2))) and not is_bind_source(sibling):
            shutil.rmtree(sibling, ignore_errors=True)


def read_stamp(out: Path) -> str | None:
    try:
        return str(json.loads((out / STAMP).read_text())["inputs"])
    except (OSError, ValueError, KeyError, TypeError):
        return None


@contextlib.contextmanager
def locked(path: Path) -> Iterator[None]:
    """Serialise concurrent builds of the same DIR."""
    with open(path, "w") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def missing_tools() -> list[str]:
    return [
        f"{tool} (Debian package {pkg})" for tool, pkg in REQUIRED_TOOLS.items() if shutil.which(tool) is None
    ]


def build_into(out: Path, mount_point: str, force: bool, jobs: int) -> dict[str, object]:
    digest = inputs_digest(
        [Path(__file__).resolve(), HERE / "facts.py", STUBS, KEYS],
        HERE.parent,
        extra=f"mount_point={mount_point}",
    )
    out.parent.mkdir(parents=True, exist_ok=True)
    with locked(out.parent / f".{out.name}.lock"):
        if not force and read_stamp(out) == digest:
            return {"built": False, "inputs": digest}
        remove_stale(out)
        tmp = out.parent / f"{out.name}.tmp-{os.getpid()}"
        if tmp.exists():
            shutil.rmtree(tmp)
        tmp.mkdir()
        work = Path(tempfile.mkdtemp(prefix="sandbox-repos-"))
        cat = load_catalogue()
        builder = Builder(cat, work, tmp, mount_point, jobs)
        try:
            summary = builder.build()
            (tmp / STAMP).write_text(json.dumps({"inputs": digest, "built_at": int(time.time())}) + "\n")
            if out.exists():
                old = out.parent / f"{out.name}.old-{os.getpid()}"
                out.rename(old)
                tmp.rename(out)
                if not is_bind_source(old):  # else removed by a later build, once unmounted
                    shutil.rmtree(old, ignore_errors=True)
            else:
                tmp.rename(out)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
        finally:
            builder.stop_gnupg()
            shutil.rmtree(work, ignore_errors=True)
    return {"built": True, "inputs": digest, **summary}


# --------------------------------------------------------------------------- main
def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, help="output directory (built atomically)")
    parser.add_argument("--force", action="store_true", help="rebuild even when the stamp matches")
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    parser.add_argument(
        "--mount-point",
        default=DEFAULT_MOUNT_POINT,
        help="where sandbox hosts see DIR (used in .repo files); default %(default)s",
    )
    parser.add_argument("--jobs", type=int, default=os.cpu_count() or 2, help="parallel build steps")
    parser.add_argument(
        "--debian-packages",
        action="store_true",
        help="print the Debian packages whose files the oss stubs of --suite stand for, and exit",
    )
    parser.add_argument("--suite", help="Debian suite for --debian-packages (bookworm, trixie)")
    args = parser.parse_args(argv)

    if args.debian_packages:
        payload = load_catalogue().DEBIAN_PAYLOAD
        if args.suite not in payload:
            parser.error(f"--debian-packages needs --suite, one of {', '.join(payload)}")
        print("\n".join(payload[args.suite]))
        return 0
    if args.out is None:
        parser.error("--out DIR is required")

    report: dict[str, object] = {"ok": False, "failures": [], "out": str(args.out.resolve())}

    def finish(code: int) -> int:
        if args.json:
            print(json.dumps(report, sort_keys=True))
        elif report["failures"]:
            for failure in report["failures"]:  # type: ignore[attr-defined]
                print(f"build_repos: {failure}", file=sys.stderr)
        elif report.get("built"):
            print(
                f"build_repos: built {report['out']} in {report['seconds']}s: {report['rpms']} RPMs "
                f"({report['packages']} catalogue packages), {report['libraries']} stub libraries"
            )
            for name, fpr in sorted(report["keys"].items()):  # type: ignore[attr-defined]
                print(f"  key {name:8s} {fpr}")
        else:
            print(f"build_repos: {report['out']} is up to date (inputs {str(report['inputs'])[:12]})")
        return code

    if platform.machine() != "x86_64":
        report["failures"] = [f"the stub libraries are x86_64 only; this machine is {platform.machine()}"]
        return finish(2)
    missing = missing_tools()
    if missing:
        report["failures"] = [f"missing host commands: {', '.join(missing)}; install them with apt-get"]
        return finish(2)
    start = time.monotonic()
    try:
        result = build_into(args.out.resolve(), args.mount_point, args.force, max(1, args.jobs))
    except (BuildError, OSError, ValueError, KeyError) as exc:
        report["failures"] = [str(exc)]
        return finish(1)
    report.update(result)
    report["ok"] = True
    report["seconds"] = round(time.monotonic() - start, 1)
    return finish(0)


if __name__ == "__main__":
    sys.exit(main())
