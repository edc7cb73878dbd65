#!/usr/bin/python
"""Install cuDNN from an NVIDIA tarball into a CUDA tree: inspect, stage, move into place, keep a manifest.

The pure functions (member checks, layout detection, version parsing, planning) are imported by
tests/unit/test_cudnn_archive.py; `main()` is the Ansible entry point.
"""

import hashlib
import os
import posixpath
import re
import shutil
import stat
import tarfile
import tempfile
import time

from ansible.module_utils.basic import AnsibleModule
from ansible_collections.gpu_stack.opensuse.plugins.module_utils import gpu_stack_elf as elf
from ansible_collections.gpu_stack.opensuse.plugins.module_utils import gpu_stack_manifest as manifests

DOCUMENTATION = r"""
---
module: cudnn_archive
short_description: Install cuDNN from an NVIDIA tarball into a CUDA tree, safely and reversibly
description:
  - Inspects the archive before anything is written. Rejects absolute member names, C(..) components,
    links that point outside their directory or the archive, hard links, device files, FIFOs and other
    special members. Requires C(include/cudnn.h), C(include/cudnn_version.h) (not for cuDNN 7) and a
    C(libcudnn.so.*) library. Every member named like a shared library (C(*.so), C(*.so.N...)) must be
    an ELF shared object for the host's architecture (type, machine, class, byte order, program
    headers and dynamic section inside the file).
  - Detects the layout, the old C(cuda/{include,lib64}) or the current C(<top>/{include,lib}), reads
    C(CUDNN_MAJOR), C(CUDNN_MINOR) and C(CUDNN_PATCHLEVEL) and compares them with O(version).
  - Headers go to C(<cuda_home>/include) and libraries to C(<cuda_home>/lib64), written through the
    symlinks that NVIDIA's packages own (the real directories are resolved), so C(rpm -V) stays clean.
  - Files are extracted to a staging directory inside each destination directory, then renamed into
    place; the manifest listing every entry is written before the first rename, and C(libcudnn.so.N),
    the name loaders look for, is placed last.
  - Owner root:root, headers 0644, shared libraries 0755, other files 0644, directories 0755,
    whatever the tar headers say.
  - Never overwrites a path the manifest does not list; such conflicts fail before anything is written.
  - With O(state=absent) removes exactly the manifest's entries that are still as installed.
  - The action plugin of the same name transfers a controller-side archive only when the manifest
    says the installed cuDNN differs from it.
options:
  state:
    description: C(present) installs or updates, C(absent) removes what the manifest lists.
    type: str
    choices: [present, absent]
    default: present
  src:
    description:
      - Path of the archive. On the controller unless O(remote_src=true).
      - Mutually exclusive with O(url).
    type: path
  remote_src:
    description: O(src) is a path on the managed host.
    type: bool
    default: false
  url:
    description: URL of the archive (NVIDIA's redist pattern). Requires O(sha256).
    type: str
  sha256:
    description: Expected SHA-256 of the archive. Required with O(url).
    type: str
  version:
    description: Pinned cuDNN version, e.g. C(9.3.0.75); major.minor.patch must match the headers.
    type: str
  cuda_home:
    description: CUDA tree whose C(include) and C(lib64) receive cuDNN.
    type: path
    default: /usr/local/cuda
  manifest:
    description: JSON manifest of what this module installed.
    type: path
    default: /var/lib/opensuse-gpu-stack/manifest-cudnn.json
  timeout:
    description: Download timeout in seconds (O(url) only).
    type: int
    default: 600
  validate_certs:
    description: Validate TLS certificates (O(url) only).
    type: bool
    default: true
  archive_name:
    description: File name recorded in the manifest (default the basename of O(src) or O(url)).
    type: str
  archive_pending:
    description:
      - Internal, set by the action plugin. When no archive is given and the installed cuDNN is not
        current, return C(needs_archive=true) instead of failing.
    type: bool
    default: false
author:
  - opensuse-gpu-stack
"""

EXAMPLES = r"""
- name: Install cuDNN from a tarball on the controller
  cudnn_archive:
    src: files/cudnn-linux-x86_64-9.3.0.75_cuda12-archive.tar.xz
    version: 9.3.0.75

- name: Download and install cuDNN
  cudnn_archive:
    url: https://developer.download.nvidia.com/compute/cudnn/redist/cudnn/linux-x86_64/cudnn-linux-x86_64-9.3.0.75_cuda12-archive.tar.xz
    sha256: 0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef
    version: 9.3.0.75

- name: Remove what the manifest lists
  cudnn_archive:
    state: absent
"""

RETURN = r"""
version:
  description: cuDNN version found in the archive headers (major.minor.patch).
  type: str
  returned: when an archive was inspected
layout:
  description: C(legacy) for cuda/{include,lib64}, C(redist) for <top>/{include,lib}.
  type: str
  returned: when an archive was inspected
include_dir:
  description: Real directory that received the headers.
  type: str
  returned: state=present
lib_dir:
  description: Real directory that received the libraries.
  type: str
  returned: state=present
archive_sha256:
  description: SHA-256 of the archive.
  type: str
  returned: state=present
installed:
  description: Paths written (or that would be written in check mode).
  type: list
  elements: str
  returned: always
removed:
  description: Paths removed (or that would be removed).
  type: list
  elements: str
  returned: always
kept:
  description: Manifest paths left alone because they no longer are what was installed.
  type: list
  elements: str
  returned: always
needs_archive:
  description: The action plugin must transfer the archive (only with O(archive_pending)).
  type: bool
  returned: sometimes
"""


STAGING_PREFIX = ".cudnn-staging-"
MAX_HEADER_BYTES = 1024 * 1024
CHUNK = 1024 * 1024
VERSION_RE = re.compile(r"^\s*#\s*define\s+CUDNN_(MAJOR|MINOR|PATCHLEVEL)\s+(\d+)\b", re.M)
LIBCUDNN_RE = re.compile(r"^libcudnn\.so\.\d+(\.\d+)*$")
LOADER_NAME_RE = re.compile(r"^libcudnn\.so\.\d+$")
# Names that claim to be shared libraries: libX.so, libX.so.9, libX.so.9.3.0
SHARED_NAME_RE = re.compile(r"\.so(\.\d+)*$")
SECTIONS = ("include", "lib")


class ArchiveError(Exception):
    """The archive is unsafe, incomplete or not the pinned cuDNN."""


class ConflictError(Exception):
    """A destination path exists and was not installed by this project."""


# ----------------------------------------------------------------------------------------------
# Pure helpers: archive inspection


def normalize_name(name):
    """Return a member name without './' and trailing '/'; raise ArchiveError on absolute or '..' names."""
    if name.startswith("/"):
        raise ArchiveError(f"member {name!r} has an absolute path")
    parts = [p for p in name.split("/") if p not in ("", ".")]
    if ".." in parts:
        raise ArchiveError(f"member {name!r} escapes the archive with '..'")
    if not parts:
        return ""
    return "/".join(parts)


def member_problem(info):
    """Return why a TarInfo is unsafe (None when it is a plain file, directory or inner symlink)."""
    try:
        name = normalize_name(info.name)
    except ArchiveError as exc:
        return str(exc)
    if info.isreg() or info.isdir():
        return None
    if info.issym():
        target = info.linkname
        if not target:
            return f"symlink {name!r} has an empty target"
        if target.startswith("/"):
            return f"symlink {name!r} points to the absolute path {target!r}"
        resolved = posixpath.normpath(posixpath.join(posixpath.dirname(name), target))
        if resolved == ".." or resolved.startswith("../"):
            return f"symlink {name!r} points outside the archive ({target!r})"
        return None
    if info.islnk():
        return f"hard link {name!r} is not supported (target {info.linkname!r})"
    if info.ischr() or info.isblk():
        return f"device file {name!r} is not allowed"
    if info.isfifo():
        return f"FIFO {name!r} is not allowed"
    return f"special member {name!r} (tar type {info.type!r}) is not allowed"


def parse_version(text):
    """Return (major, minor, patch) from cudnn_version.h / cudnn.h text, or None when incomplete."""
    found = {}
    for key, value in VERSION_RE.findall(text):
        found.setdefault(key, int(value))
    if all(k in found for k in ("MAJOR", "MINOR", "PATCHLEVEL")):
        return (found["MAJOR"], found["MINOR"], found["PATCHLEVEL"])
    return None


def pin_triplet(pin):
    """'9.3.0.75' -> (9, 3, 0); raise ValueError on a malformed pin."""
    parts = str(pin).strip().split(".")
    if len(parts) < 3 or not all(p.isdigit() for p in parts):
        raise ValueError(f"cuDNN version {pin!r} is not major.minor.patch[.build]")
    return tuple(int(p) for p in parts[:3])


def detect_layout(names):
    """Find the archive layout from its normalized member names.

    Returns {'layout': 'legacy'|'redist', 'top': str, 'include': '<top>/include', 'lib': '<top>/lib[64]'}.
    """
    tops = sorted({n.split("/", 1)[0] for n in names if n.endswith("/include/cudnn.h") and n.count("/") == 2})
    if not tops:
        raise ArchiveError("no include/cudnn.h in the archive: this is not a cuDNN archive")
    if len(tops) > 1:
        raise ArchiveError("several cuDNN trees in one archive: {}".format(", ".join(tops)))
    top = tops[0]
    libs = [d for d in ("lib64", "lib") if any(n.startswith(f"{top}/{d}/") for n in names)]
    if not libs:
        raise ArchiveError(f"no {top}/lib or {top}/lib64 directory in the archive")
    if len(libs) > 1:
        raise ArchiveError(f"both {top}/lib and {top}/lib64 in the archive: ambiguous layout")
    layout = "legacy" if top == "cuda" and libs[0] == "lib64" else "redist"
    return {"layout": layout, "top": top, "include": f"{top}/include", "lib": f"{top}/{libs[0]}"}


def section_of(name, layout):
    """Return (section, relative path) of a member inside include/ or lib/, else (None, None)."""
    for section in SECTIONS:
        prefix = layout[section]
        if name == prefix:
            return section, ""
        if name.startswith(prefix + "/"):
            return section, name[len(prefix) + 1 :]
    return None, None


def file_mode(section, rel):
    """Mode for an installed file: headers 0644, shared libraries 0755, anything else 0644."""
    if section == "lib" and ".so" in posixpath.basename(rel):
        return 0o755
    return 0o644


def _sha256_fileobj(fileobj, limit=None):
    digest = hashlib.sha256()
    kept = []
    size = 0
    while True:
        chunk = fileobj.read(CHUNK)
        if not chunk:
            break
        digest.update(chunk)
        if limit is not None and size < limit:
            kept.append(chunk[: limit - size])
        size += len(chunk)
    return digest.hexdigest(), b"".join(kept), size


def sha256_file(path):
    with open(path, "rb") as handle:
        return _sha256_fileobj(handle)[0]


def inspect_archive(path, pin=None, label=None, host=None):
    """Read the whole archive once (stream mode) and return what would be installed.

    Returns {'layout', 'top', 'version': 'M.m.p', 'version_source', 'entries': [...], 'ignored': [...]}
    where each entry is {'section', 'rel', 'kind': 'file'|'link'|'dir', 'sha256', 'size', 'mode', 'target'}.
    Raises ArchiveError naming the archive (label, default its path) and every problem found. host is
    (e_machine, class, byte order) of the target, default this machine's (gpu_stack_elf.host_machine).
    """
    try:
        return _inspect(path, pin, host)
    except ArchiveError as exc:
        raise ArchiveError(f"archive {label or path}: {exc}") from None


def _inspect(path, pin, host):
    problems = []
    members = []
    texts = {}
    heads = {}
    try:
        with tarfile.open(path, "r|*") as tar:
            for info in tar:
                problem = member_problem(info)
                if problem:
                    problems.append(problem)
                    continue
                name = normalize_name(info.name)
                if not name:
                    continue
                record = {
                    "name": name,
                    "type": "dir" if info.isdir() else "link" if info.issym() else "file",
                    "target": info.linkname if info.issym() else None,
                }
                if info.isreg():
                    fileobj = tar.extractfile(info)
                    base = posixpath.basename(name)
                    limit = MAX_HEADER_BYTES if base in ("cudnn.h", "cudnn_version.h") else 0
                    if SHARED_NAME_RE.search(base):
                        limit = elf.HEAD_BYTES
                    record["sha256"], head, record["size"] = _sha256_fileobj(fileobj, limit)
                    if base in ("cudnn.h", "cudnn_version.h"):
                        texts[name] = head.decode("utf-8", "replace")
                    elif limit:
                        heads[name] = head
                members.append(record)
    except (tarfile.TarError, EOFError, OSError) as exc:
        raise ArchiveError(f"cannot be read as a tar archive ({exc})") from exc
    if problems:
        raise ArchiveError("unsafe, refusing to unpack it: {}".format("; ".join(problems)))
    not_shared = []
    for m in members:
        problem = elf.shared_object_problem(heads[m["name"]], m["size"], host) if m["name"] in heads else None
        if problem:
            not_shared.append("{} {}".format(m["name"], problem))
    if not_shared:
        raise ArchiveError(
            "members named like shared libraries are not ELF shared objects for this host, refusing to "
            "install them: {}".format("; ".join(not_shared))
        )
    names = [m["name"] for m in members]
    seen = set()
    for m in members:
        if m["type"] != "dir" and m["name"] in seen:
            raise ArchiveError("member {!r} appears twice in the archive".format(m["name"]))
        seen.add(m["name"])
    layout = detect_layout(names)
    by_name = dict((m["name"], m) for m in members)
    for m in members:
        parts = m["name"].split("/")
        for i in range(1, len(parts)):
            parent = by_name.get("/".join(parts[:i]))
            if parent is not None and parent["type"] != "dir":
                raise ArchiveError(
                    "member {!r} lies under {!r}, which is not a directory".format(m["name"], parent["name"])
                )

    entries, ignored = [], []
    for m in members:
        section, rel = section_of(m["name"], layout)
        if section is None:
            if m["type"] != "dir" and m["name"] != layout["top"]:
                ignored.append(m["name"])
            continue
        if rel == "":
            continue
        entry = {"section": section, "rel": rel, "kind": m["type"]}
        if m["type"] == "file":
            entry.update(sha256=m["sha256"], size=m["size"], mode=file_mode(section, rel))
        elif m["type"] == "dir":
            entry["mode"] = 0o755
        else:
            target = m["target"]
            resolved = posixpath.normpath(posixpath.join(posixpath.dirname(m["name"]), target))
            if not resolved.startswith(layout[section] + "/"):
                raise ArchiveError(
                    "symlink {!r} points outside {}/ ({!r})".format(m["name"], layout[section], target)
                )
            final = _follow(resolved, by_name)
            if final is None or final["type"] != "file":
                raise ArchiveError(
                    "symlink {!r} points to {!r}, which is not a file in the archive".format(
                        m["name"], target
                    )
                )
            entry["target"] = target
        entries.append(entry)
    # Tar may omit parent directory members: add them so that every file has a planned parent.
    known = set((e["section"], e["rel"]) for e in entries)
    for e in list(entries):
        parts = e["rel"].split("/")
        for i in range(1, len(parts)):
            key = (e["section"], "/".join(parts[:i]))
            if key not in known:
                known.add(key)
                entries.append({"section": key[0], "rel": key[1], "kind": "dir", "mode": 0o755})

    def find(section, base):
        return [e for e in entries if e["section"] == section and e["rel"] == base]

    header = find("include", "cudnn.h")
    if not header or header[0]["kind"] != "file":
        raise ArchiveError("no regular file include/cudnn.h in the archive")
    if not any(
        e["section"] == "lib" and e["kind"] == "file" and LIBCUDNN_RE.match(posixpath.basename(e["rel"]))
        for e in entries
    ):
        raise ArchiveError("no libcudnn.so.* library in {}/ of the archive".format(layout["lib"]))
    version_h = layout["include"] + "/cudnn_version.h"
    main_h = layout["include"] + "/cudnn.h"
    version, source = None, None
    if version_h in texts:
        version, source = parse_version(texts[version_h]), "cudnn_version.h"
    if version is None and main_h in texts:
        version, source = parse_version(texts[main_h]), "cudnn.h"
    if version is None:
        raise ArchiveError(
            "no cudnn_version.h in the archive and cudnn.h defines no CUDNN_MAJOR/MINOR/PATCHLEVEL"
        )
    if version[0] >= 8 and source != "cudnn_version.h":
        raise ArchiveError(f"cuDNN {version[0]} archive without include/cudnn_version.h")
    found = ".".join(str(v) for v in version)
    if pin is not None:
        want = pin_triplet(pin)
        if tuple(version) != want:
            raise ArchiveError(
                f"holds cuDNN {found} but the pin is {pin}: use the "
                f"archive for {pin} or change the pin (cudnn_version / gpu_stack_cudnn_version)"
            )
    return {
        "layout": layout["layout"],
        "top": layout["top"],
        "prefixes": layout,
        "version": found,
        "version_source": source,
        "entries": entries,
        "ignored": ignored,
    }


def _follow(name, by_name, depth=0):
    member = by_name.get(name)
    if member is None or depth > 16:
        return None
    if member["type"] == "link":
        nxt = posixpath.normpath(posixpath.join(posixpath.dirname(name), member["target"]))
        return _follow(nxt, by_name, depth + 1)
    return member


# ----------------------------------------------------------------------------------------------
# Planning against the file system


def resolve_destinations(cuda_home):
    """Real include and lib directories behind <cuda_home>/include and <cuda_home>/lib64."""
    if not os.path.isdir(cuda_home):
        raise ArchiveError(
            f"{cuda_home} does not exist: install the CUDA toolkit first (role cuda) or set cudnn_cuda_home"
        )
    dirs = {}
    for section, sub in (("include", "include"), ("lib", "lib64")):
        logical = os.path.join(cuda_home, sub)
        real = os.path.realpath(logical)
        if not os.path.isdir(real):
            raise ArchiveError(f"{logical} is missing: the CUDA toolkit at {cuda_home} looks incomplete")
        dirs[section] = real
    return dirs


def dest_path(dirs, entry):
    return os.path.join(dirs[entry["section"]], entry["rel"]) if entry["rel"] else dirs[entry["section"]]


def entry_matches(path, record):
    """True when the path on disk is what a manifest record (or planned entry) describes."""
    st = manifests.lstat_or_none(path)
    if st is None:
        return False
    kind = record["kind"]
    if kind == "dir":
        return stat.S_ISDIR(st.st_mode)
    if kind == "link":
        return stat.S_ISLNK(st.st_mode) and os.readlink(path) == record["target"]
    if not stat.S_ISREG(st.st_mode):
        return False
    if stat.S_IMODE(st.st_mode) != record["mode"] or st.st_uid != 0 or st.st_gid != 0:
        return False
    if st.st_size != record.get("size", st.st_size):
        return False
    return sha256_file(path) == record["sha256"]


def plan_install(info, dirs, manifest):
    """Compare the archive's entries with the disk and the previous manifest.

    Returns {'actions': [(entry, path)], 'satisfied': [(entry, path, ours)], 'conflicts': [str],
    'remove': [record], 'records': [record]} where records are the new manifest entries.
    """
    old = dict((r["path"], r) for r in (manifest or {}).get("entries", []))
    actions, satisfied, conflicts, records = [], [], [], []
    wanted = set()
    for entry in info["entries"]:
        path = dest_path(dirs, entry)
        wanted.add(path)
        record = _record(entry, path)
        ours = path in old
        st = manifests.lstat_or_none(path)
        if entry["kind"] == "dir":
            if st is None:
                actions.append((entry, path))
                records.append(record)
            elif not stat.S_ISDIR(st.st_mode):
                conflicts.append(f"{path} exists and is not a directory")
            elif ours:
                records.append(old[path])
            continue
        if st is None:
            actions.append((entry, path))
            records.append(record)
        elif entry_matches(path, record):
            satisfied.append((entry, path, ours))
            if ours:
                records.append(record)
        elif ours and not stat.S_ISDIR(st.st_mode):
            actions.append((entry, path))
            records.append(record)
        else:
            conflicts.append(f"{path} exists and was not installed by this project ({_describe(path, st)})")
    remove = [r for p, r in sorted(old.items(), reverse=True) if p not in wanted]
    return {
        "actions": actions,
        "satisfied": satisfied,
        "conflicts": conflicts,
        "remove": remove,
        "records": records,
    }


def _record(entry, path):
    record = {"path": path, "kind": entry["kind"]}
    if entry["kind"] == "file":
        record.update(sha256=entry["sha256"], size=entry["size"], mode=entry["mode"])
    elif entry["kind"] == "link":
        record["target"] = entry["target"]
    return record


def _describe(path, st):
    if stat.S_ISLNK(st.st_mode):
        return f"a symlink to {os.readlink(path)}"
    if stat.S_ISDIR(st.st_mode):
        return "a directory"
    return f"a file owned by uid {st.st_uid}, mode {stat.S_IMODE(st.st_mode):04o}"


def commit_order(actions):
    """Directories first, then libraries, headers, links; the loader's libcudnn.so.N link last."""

    def key(item):
        entry, path = item
        if entry["kind"] == "dir":
            rank = 0
        elif entry["kind"] == "file":
            rank = 1 if entry["section"] == "lib" else 2
        else:
            rank = 4 if LOADER_NAME_RE.match(posixpath.basename(entry["rel"])) else 3
        return (rank, path.count("/"), path)

    return sorted(actions, key=key)


def _matches(record):
    return entry_matches(record["path"], record)


def manifest_is_current(manifest, sha256, pin, dirs):
    """True when the manifest records this archive, pin and destinations, and every entry is intact."""
    if not manifest or manifest.get("state") != "installed" or not sha256:
        return False
    if manifest.get("archive_sha256") != sha256 or manifest.get("version_pin") != pin:
        return False
    if manifest.get("include_dir") != dirs["include"] or manifest.get("lib_dir") != dirs["lib"]:
        return False
    return all(entry_matches(r["path"], r) for r in manifest["entries"])


# ----------------------------------------------------------------------------------------------
# Writing


def _stage_file(fileobj, staged, mode, expected_sha):
    digest = hashlib.sha256()
    fd = os.open(staged, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as out:
        while True:
            chunk = fileobj.read(CHUNK)
            if not chunk:
                break
            digest.update(chunk)
            out.write(chunk)
        out.flush()
        os.fsync(out.fileno())
    if digest.hexdigest() != expected_sha:
        raise ArchiveError(f"{staged} changed while it was being installed: rerun")
    os.chown(staged, 0, 0)
    os.chmod(staged, mode)


def stale_staging_dirs(dirs):
    found = []
    for real in sorted(set(dirs.values())):
        try:
            names = os.listdir(real)
        except OSError:
            continue
        found.extend(os.path.join(real, n) for n in names if n.startswith(STAGING_PREFIX))
    return sorted(found)


def install(archive, info, dirs, plan, manifest_path, manifest_base):
    """Stage the planned entries, record the manifest, then rename them into place."""
    actions = commit_order(plan["actions"])
    staging = {}
    for section, real in dirs.items():
        staging[section] = os.path.join(real, f"{STAGING_PREFIX}{info['version']}-{os.getpid()}")
    by_name = {}
    for entry, path in actions:
        if entry["kind"] != "dir":
            by_name["{}/{}".format(info["prefixes"][entry["section"]], entry["rel"])] = (entry, path)
    staged = {}
    created_staging = []
    try:
        for section in sorted({e["section"] for e, _ in actions if e["kind"] != "dir"}):
            os.mkdir(staging[section], 0o700)
            created_staging.append(staging[section])
        # Stage: everything is written under the staging directories first.
        if by_name:
            with tarfile.open(archive, "r|*") as tar:
                for member in tar:
                    name = normalize_name(member.name)
                    if name not in by_name:
                        continue
                    entry, path = by_name[name]
                    tmp = os.path.join(staging[entry["section"]], f"{len(staged):06d}")
                    if entry["kind"] == "file":
                        _stage_file(tar.extractfile(member), tmp, entry["mode"], entry["sha256"])
                    else:
                        os.symlink(entry["target"], tmp)
                        os.lchown(tmp, 0, 0)
                    staged[path] = tmp
        missing = [p for e, p in actions if e["kind"] != "dir" and p not in staged]
        if missing:
            raise ArchiveError(
                "archive changed while it was being installed (missing {}): rerun".format(", ".join(missing))
            )
        # Record before the first rename, so that an interrupted run is completed or removed later.
        pending = dict(manifest_base)
        pending["state"] = "installing"
        pending["entries"] = plan["records"] + [r for r in plan["remove"]]
        manifests.write(manifest_path, pending)
        for entry, path in actions:
            if entry["kind"] == "dir":
                if not os.path.isdir(path):
                    os.mkdir(path, 0o755)
                os.chown(path, 0, 0)
                os.chmod(path, 0o755)
            else:
                os.replace(staged[path], path)
    finally:
        for d in created_staging:
            shutil.rmtree(d, ignore_errors=True)
    removed, kept = manifests.remove_records(plan["remove"], _matches)
    final = dict(manifest_base)
    final["state"] = "installed"
    final["entries"] = plan["records"]
    final["created_dirs"] = pending.get("created_dirs", [])
    manifests.write(manifest_path, final)
    return removed, kept


# ----------------------------------------------------------------------------------------------
# Ansible entry point


def _download(module, url, sha256, timeout):
    from ansible.module_utils.urls import fetch_url

    response, info = fetch_url(module, url, timeout=timeout)
    scheme = url.split(":", 1)[0].lower()
    if response is None or (info.get("status") != 200 and scheme not in ("file", "ftp")):
        module.fail_json(msg="cannot download {}: {}".format(url, info.get("msg", info.get("status"))))
    fd, path = tempfile.mkstemp(prefix="cudnn-", suffix=".tar", dir=module.tmpdir)
    digest = hashlib.sha256()
    with os.fdopen(fd, "wb") as out:
        while True:
            chunk = response.read(CHUNK)
            if not chunk:
                break
            digest.update(chunk)
            out.write(chunk)
    if digest.hexdigest() != sha256:
        os.unlink(path)
        module.fail_json(
            msg=f"sha256 mismatch for {url}: expected {sha256}, got {digest.hexdigest()}. Nothing was "
            "written. Check cudnn_archive_sha256 against NVIDIA's published checksum"
        )
    return path


def nothing_changed(manifest):
    """How a refusal begins: what stays on the host ("cuDNN 9.3.0 stays installed, nothing was changed")."""
    if manifest and manifest.get("packages"):
        return "cuDNN {} from RPMs ({}) stays installed, nothing was changed".format(
            manifest.get("version_pin"), ", ".join(manifest["packages"])
        )
    if manifest and manifest.get("entries"):
        version = manifest.get("version") or manifest.get("version_pin")
        if manifest.get("state") == "installed":
            return f"cuDNN {version} stays installed, nothing was changed"
        return (
            f"the interrupted install of cuDNN {version} stays as it is (a successful run completes it), "
            "nothing was changed"
        )
    return "cuDNN not installed, nothing was written"


def _manifest_or_none(path):
    try:
        return manifests.load(path)
    except (manifests.ManifestError, OSError):
        return None


def run_absent(module, manifest_path):
    result = {"changed": False, "installed": [], "removed": [], "kept": [], "manifest": manifest_path}
    removal = manifests.remove_recorded(manifest_path, _matches, module.check_mode, "cuDNN was installed")
    result.update(removal or {})
    return result


def run_present(module, params):
    pin = params["version"]
    try:
        pin_triplet(pin)
    except ValueError as exc:
        module.fail_json(msg=f"{exc}: set cudnn_version like 9.3.0.75")
    manifest_path = params["manifest"]
    sha256 = (params["sha256"] or "").strip().lower() or None
    if sha256 and not re.match(r"^[0-9a-f]{64}$", sha256):
        module.fail_json(msg="sha256 {!r} is not 64 hex digits".format(params["sha256"]))
    if params["url"] and not sha256:
        module.fail_json(
            msg="a URL source needs sha256 (cudnn_archive_sha256): NVIDIA publishes it next to the archive"
        )
    if module.check_mode and not os.path.isdir(params["cuda_home"]):
        # --check on a host where the cuda role has not installed the toolkit yet (it only would have)
        return {
            "changed": True,
            "installed": [],
            "removed": [],
            "kept": [],
            "manifest": manifest_path,
            "warnings": [
                f"{params['cuda_home']} does not exist yet: cuDNN would be installed once the "
                "CUDA toolkit is (the archive was not inspected in this check run)"
            ],
        }
    dirs = resolve_destinations(params["cuda_home"])
    manifest = manifests.load(manifest_path)
    if manifest and manifest.get("packages"):
        module.fail_json(
            msg=f"cuDNN was installed from RPMs by this project ({', '.join(manifest['packages'])}, see "
            f"{manifest_path}): keep cudnn_install_method: rpm, or remove them first with "
            "ansible-playbook playbooks/remove.yml --tags cudnn"
        )
    src = params["src"]  # a path on the host: the action plugin transfers a controller-side archive first
    if src:
        if not os.path.isfile(src):
            module.fail_json(
                msg=f"cuDNN archive {src} not found on the host: copy it there or set cudnn_archive_src"
            )
        actual = sha256_file(src)
        if sha256 and actual != sha256:
            module.fail_json(
                msg=f"sha256 mismatch for {src}: expected {sha256}, got {actual}. Nothing was written. "
                "Download the archive again or fix cudnn_archive_sha256"
            )
        sha256 = actual
    base = {
        "changed": False,
        "include_dir": dirs["include"],
        "lib_dir": dirs["lib"],
        "manifest": manifest_path,
        "archive_sha256": sha256,
        "installed": [],
        "removed": [],
        "kept": [],
    }
    stale = stale_staging_dirs(dirs)
    if not stale and manifest_is_current(manifest, sha256, pin, dirs):
        base.update(version=manifest.get("version"), layout=manifest.get("layout"))
        return base
    if not src and not params["url"]:
        if params["archive_pending"]:
            base["needs_archive"] = True
            return base
        module.fail_json(msg="give src or url (cudnn_archive_src / cudnn_archive_url)")
    archive = src or _download(module, params["url"], sha256, params["timeout"])
    info = inspect_archive(archive, pin, params["archive_name"] or params["url"] or src)
    plan = plan_install(info, dirs, manifest)
    if plan["conflicts"]:
        module.fail_json(
            msg=f"{nothing_changed(manifest)}: {len(plan['conflicts'])} path(s) exist that "
            f"this project did not install: {'; '.join(plan['conflicts'])}. Move them aside (or uninstall "
            "what owns them) and rerun",
            conflicts=plan["conflicts"],
        )
    installed = [p for _, p in plan["actions"]]
    base.update(version=info["version"], layout=info["layout"], ignored=info["ignored"])
    manifest_base = {
        "schema": manifests.SCHEMA,
        "role": "cudnn",
        "version": info["version"],
        "version_pin": pin,
        "layout": info["layout"],
        "archive": params["archive_name"] or os.path.basename(params["url"] or src),
        "archive_sha256": sha256,
        "include_dir": dirs["include"],
        "lib_dir": dirs["lib"],
        "created_dirs": (manifest or {}).get("created_dirs", []),
        "installed_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }
    record_changed = (
        manifest is None
        or manifest.get("state") != "installed"
        or manifest.get("archive_sha256") != sha256
        or manifest.get("version_pin") != pin
        or sorted(r["path"] for r in manifest["entries"]) != sorted(r["path"] for r in plan["records"])
    )
    changed = bool(installed or plan["remove"] or stale or record_changed)
    if module.check_mode:
        removed, kept = manifests.would_remove(plan["remove"], _matches)
        removed.extend(stale)
    else:
        for d in stale:
            shutil.rmtree(d)
        removed, kept = (
            install(archive, info, dirs, plan, manifest_path, manifest_base) if changed else ([], [])
        )
        removed.extend(stale)
    before = [p for _, p, _ in plan["satisfied"]] + removed + kept
    after = [p for _, p, _ in plan["satisfied"]] + installed + kept
    base.update(changed=changed, installed=installed, removed=removed, kept=kept)
    if changed:
        base["diff"] = {
            "before_header": "cuDNN files before",
            "after_header": "cuDNN {} files".format(info["version"]),
            "before": manifests.listing(before),
            "after": manifests.listing(after),
        }
    return base


def main():
    module = AnsibleModule(
        argument_spec=dict(
            state=dict(type="str", choices=["present", "absent"], default="present"),
            src=dict(type="path"),
            remote_src=dict(type="bool", default=False),
            url=dict(type="str"),
            sha256=dict(type="str", no_log=False),
            version=dict(type="str"),
            cuda_home=dict(type="path", default="/usr/local/cuda"),
            manifest=dict(type="path", default="/var/lib/opensuse-gpu-stack/manifest-cudnn.json"),
            timeout=dict(type="int", default=600),
            validate_certs=dict(type="bool", default=True),
            archive_name=dict(type="str"),
            archive_pending=dict(type="bool", default=False),
        ),
        mutually_exclusive=[("src", "url")],
        required_if=[("state", "present", ("version",))],
        supports_check_mode=True,
    )
    params = module.params
    try:
        if params["state"] == "absent":
            result = run_absent(module, params["manifest"])
        else:
            result = run_present(module, params)
    except (ArchiveError, ConflictError, manifests.ManifestError) as exc:
        module.fail_json(msg=f"{nothing_changed(_manifest_or_none(params['manifest']))}: {exc}")
    except OSError as exc:
        module.fail_json(msg=f"cuDNN install failed: {exc}")
    module.exit_json(**result)


if __name__ == "__main__":
    main()
