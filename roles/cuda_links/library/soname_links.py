#!/usr/bin/python
"""Create the CUDA/cuDNN library links TensorFlow needs, from ELF SONAMEs, and keep a manifest of them.

The pure functions (ELF parsing, version sorting, planning) are imported by tests/unit/test_soname_links.py;
`main()` is the Ansible entry point.
"""

import errno
import fnmatch
import hashlib
import json
import os
import stat
import struct
import subprocess
import tempfile

try:
    from ansible.module_utils.basic import AnsibleModule
except ImportError:  # pragma: no cover - unit tests import the pure functions without Ansible
    AnsibleModule = None

DOCUMENTATION = r"""
---
module: soname_links
short_description: Ensure SONAME, development, compatibility and system-directory links for CUDA libraries
description:
  - Reads the ELF C(DT_SONAME) of every shared library in O(lib_dirs) (the dynamic section is parsed
    with Python's struct; file names are never used to guess it) and makes sure the SONAME link
    (C(libcudnn.so.9 -> libcudnn.so.9.3.0)) and the unversioned development link
    (C(libcudnn.so -> libcudnn.so.9)) exist.
  - Creates declared compatibility aliases (O(aliases)) and, for each name in O(expected_sonames) that
    is missing while another version of the same library is present, an alias to that version.
  - Mirrors entries of a source directory into a system directory as absolute symlinks (O(mirrors)),
    as the original procedure did with C(ln -s /usr/local/cuda/include/* /usr/include/).
  - Writes an ld.so.conf.d file listing O(loader_dirs) (run ldconfig afterwards, e.g. from a handler).
  - Never replaces a path it did not create (a package's file, a user's library): such paths are
    skipped and listed in RV(skipped); with O(strict=true) the module fails before writing anything.
  - Every link and file it creates is recorded in a JSON manifest; O(state=absent) removes exactly those
    entries that are still as created.
options:
  state:
    description: C(present) creates the links, C(absent) removes what the manifest lists.
    type: str
    choices: [present, absent]
    default: present
  lib_dirs:
    description: Directories whose shared libraries get SONAME and development links (symlinks are resolved).
    type: list
    elements: path
    default: [/usr/local/cuda/lib64]
  dev_links:
    description: Create the unversioned development link C(libX.so -> SONAME).
    type: bool
    default: true
  aliases:
    description:
      - Declared compatibility aliases, created in the first of O(lib_dirs) when their target exists there.
      - Each item has C(name) (the alias) and C(target) (an existing name in the same directory).
    type: list
    elements: dict
    default: []
  expected_sonames:
    description: Sonames TensorFlow loads; a missing one gets an alias to another installed version.
    type: list
    elements: str
    default: []
  expected_aliases:
    description: Create the aliases for missing O(expected_sonames); when false they are only reported.
    type: bool
    default: true
  mirrors:
    description:
      - Link entries of C(src) into C(dest) as C(dest/name -> src/name).
      - Each item has C(src), C(dest), C(patterns) (fnmatch patterns, default C(*)) and C(dirs)
        (also link directories, default false).
    type: list
    elements: dict
    default: []
  loader_conf:
    description: ld.so.conf.d file to write with O(loader_dirs); omit to leave the loader configuration alone.
    type: path
  loader_dirs:
    description: Directories listed in O(loader_conf).
    type: list
    elements: path
    default: []
  manifest:
    description: JSON manifest of the links and files this module created.
    type: path
    default: /var/lib/opensuse-gpu-stack/manifest-cuda_links.json
  strict:
    description: Fail (before writing anything) instead of skipping paths the project did not create.
    type: bool
    default: false
author:
  - opensuse-gpu-stack
"""

EXAMPLES = r"""
- name: Link CUDA headers and libraries like the original procedure, plus missing SONAME links
  soname_links:
    lib_dirs: [/usr/local/cuda/lib64]
    aliases:
      - {name: libcublas.so.10.0, target: libcublas.so.10}
    expected_sonames: [libcudart.so.12, libcublas.so.12]
    mirrors:
      - {src: /usr/local/cuda/include, dest: /usr/include, dirs: true}
      - {src: /usr/local/cuda/lib64, dest: /usr/lib64, patterns: ["*.so*"]}
    loader_conf: /etc/ld.so.conf.d/opensuse-gpu-stack-cuda-links.conf
    loader_dirs: [/usr/local/cuda/lib64]

- name: Remove what the manifest lists
  soname_links:
    state: absent
"""

RETURN = r"""
created:
  description: Paths created or updated (would be, in check mode).
  type: list
  elements: str
  returned: always
removed:
  description: Paths removed (would be, in check mode).
  type: list
  elements: str
  returned: always
skipped:
  description: Paths left alone because this project did not create them, each with C(path) and C(reason).
  type: list
  elements: dict
  returned: always
aliases:
  description: Compatibility aliases created or present, each with C(path), C(target) and C(reason).
  type: list
  elements: dict
  returned: always
missing_sonames:
  description: Expected sonames with no library of that name nor another version to alias.
  type: list
  elements: str
  returned: always
libraries:
  description: Real library files found, mapped to their SONAME.
  type: dict
  returned: state=present
"""


MANIFEST_SCHEMA = 1
PT_LOAD, PT_DYNAMIC = 1, 2
DT_NULL, DT_NEEDED, DT_STRTAB, DT_STRSZ, DT_SONAME = 0, 1, 5, 10, 14
TMP_SUFFIX = ".gpu-stack-tmp"


class ElfError(Exception):
    """Not an ELF file, or a malformed one."""


# ----------------------------------------------------------------------------------------------
# ELF


def read_elf_dynamic(path):
    """Return {'class': 32|64, 'soname': str|None, 'needed': [str]} from an ELF file's dynamic section.

    Follows what the loader does: program headers -> PT_DYNAMIC -> DT_STRTAB (a virtual address, mapped
    to a file offset through the PT_LOAD segments) -> DT_SONAME / DT_NEEDED strings.
    Raises ElfError for anything that is not a well-formed ELF file.
    """
    with open(path, "rb") as handle:
        return parse_elf_dynamic(handle)


def parse_elf_dynamic(handle):
    handle.seek(0, os.SEEK_END)
    size = handle.tell()
    handle.seek(0)
    ident = handle.read(16)
    if len(ident) < 16 or ident[:4] != b"\x7fELF":
        raise ElfError("not an ELF file")
    cls, data = ident[4], ident[5]
    if cls not in (1, 2) or data not in (1, 2):
        raise ElfError(f"unknown ELF class {cls!r} or byte order {data!r}")
    order = "<" if data == 1 else ">"
    if cls == 2:
        header = struct.Struct(order + "HHIQQQIHHHHHH")
        phdr = struct.Struct(order + "IIQQQQQQ")
        dyn = struct.Struct(order + "qQ")
    else:
        header = struct.Struct(order + "HHIIIIIHHHHHH")
        phdr = struct.Struct(order + "IIIIIIII")
        dyn = struct.Struct(order + "iI")
    raw = handle.read(header.size)
    if len(raw) < header.size:
        raise ElfError("truncated ELF header")
    fields = header.unpack(raw)
    phoff, phentsize, phnum = fields[4], fields[8], fields[9]
    if phnum == 0 or phentsize < phdr.size or phoff + phnum * phentsize > size:
        return {"class": 64 if cls == 2 else 32, "soname": None, "needed": []}
    loads, dynamic = [], None
    for i in range(phnum):
        handle.seek(phoff + i * phentsize)
        values = phdr.unpack(handle.read(phdr.size))
        if cls == 2:
            p_type, _flags, p_offset, p_vaddr, _paddr, p_filesz = values[:6]
        else:
            p_type, p_offset, p_vaddr, _paddr, p_filesz = values[:5]
        if p_type == PT_LOAD:
            loads.append((p_vaddr, p_offset, p_filesz))
        elif p_type == PT_DYNAMIC:
            dynamic = (p_offset, p_filesz)
    result = {"class": 64 if cls == 2 else 32, "soname": None, "needed": []}
    if dynamic is None:
        return result
    offset, length = dynamic
    if offset + length > size:
        raise ElfError("dynamic section beyond the end of the file")
    handle.seek(offset)
    blob = handle.read(length)
    tags = {}
    needed = []
    for pos in range(0, len(blob) - dyn.size + 1, dyn.size):
        tag, value = dyn.unpack_from(blob, pos)
        if tag == DT_NULL:
            break
        if tag == DT_NEEDED:
            needed.append(value)
        else:
            tags.setdefault(tag, value)
    if DT_STRTAB not in tags:
        return result
    strtab = _vaddr_to_offset(tags[DT_STRTAB], loads)
    if strtab is None:
        raise ElfError("DT_STRTAB is outside every PT_LOAD segment")
    strsz = tags.get(DT_STRSZ, size - strtab)

    def string(index):
        if index >= strsz or strtab + index >= size:
            raise ElfError(f"string index {index} beyond the string table")
        handle.seek(strtab + index)
        chunk = handle.read(min(4096, strsz - index))
        end = chunk.find(b"\0")
        if end < 0:
            raise ElfError("unterminated string in the string table")
        return chunk[:end].decode("utf-8", "replace")

    if DT_SONAME in tags:
        result["soname"] = string(tags[DT_SONAME])
    result["needed"] = [string(i) for i in needed]
    return result


def _vaddr_to_offset(vaddr, loads):
    for p_vaddr, p_offset, p_filesz in loads:
        if p_vaddr <= vaddr < p_vaddr + p_filesz:
            return vaddr - p_vaddr + p_offset
    return None


def read_soname(path):
    """SONAME of an ELF shared library, or None for non-ELF files and ELF files without one."""
    try:
        return read_elf_dynamic(path)["soname"]
    except (ElfError, struct.error, OSError):
        return None


# ----------------------------------------------------------------------------------------------
# Names


def version_key(name):
    """Sort key: the numeric parts after '.so.' (libcudnn.so.9.10.0 > libcudnn.so.9.3.0)."""
    _, _, tail = name.partition(".so")
    return tuple(int(p) if p.isdigit() else -1 for p in tail.strip(".").split(".") if p)


def dev_name(soname):
    """libcudnn.so.9 -> libcudnn.so; None when the soname has no version (is already the dev name)."""
    head, sep, tail = soname.partition(".so")
    if not sep or not tail:
        return None
    return head + ".so"


def stem_of(soname):
    """libcufft.so.11 -> libcufft"""
    return soname.partition(".so")[0]


# ----------------------------------------------------------------------------------------------
# Planning


def _lstat(path):
    try:
        return os.lstat(path)
    except OSError as exc:
        if exc.errno in (errno.ENOENT, errno.ENOTDIR):
            return None
        raise


def scan_libraries(lib_dir):
    """{real file name: soname} for the ELF shared libraries (regular files) directly in lib_dir."""
    found = {}
    for name in sorted(os.listdir(lib_dir)):
        if ".so" not in name or name.endswith(TMP_SUFFIX):
            continue
        path = os.path.join(lib_dir, name)
        st = _lstat(path)
        if st is None or not stat.S_ISREG(st.st_mode):
            continue
        soname = read_soname(path)
        if soname:
            found[name] = soname
    return found


def content_sha(text):
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def loader_conf_text(dirs):
    return "# Managed by opensuse-gpu-stack (role cuda_links); removed by playbooks/remove.yml\n" + "".join(
        d + "\n" for d in dirs
    )


def plan(params, old_manifest):
    """Compute the desired entries and what to do with each; read-only.

    Returns {'desired': [entry], 'create': [entry], 'skipped': [{'path', 'reason'}], 'remove': [record],
    'forget': [record], 'aliases': [...], 'missing_sonames': [...], 'libraries': {...}, 'records': [...]}
    where an entry is {'path', 'kind': 'link'|'file', 'target' | 'content', 'reason'}.
    """
    old = dict((r["path"], r) for r in (old_manifest or {}).get("entries", []))
    desired = []
    planned = {}  # real dir -> set of names that will exist there
    libraries = {}
    aliases, missing = [], []

    lib_dirs = []
    for d in params["lib_dirs"]:
        real = os.path.realpath(d)
        if not os.path.isdir(real):
            raise ElfError(f"library directory {d} does not exist: install the CUDA toolkit first")
        if real not in lib_dirs:
            lib_dirs.append(real)
    sonames_by_dir = {}
    for real in lib_dirs:
        names = set(os.listdir(real))
        planned[real] = names
        libs = scan_libraries(real)
        libraries.update((os.path.join(real, n), s) for n, s in libs.items())
        best = {}
        for name, soname in libs.items():
            if soname not in best or version_key(name) > version_key(best[soname]):
                best[soname] = name
        sonames_by_dir[real] = best
        for soname in sorted(best):
            if soname != best[soname]:
                desired.append(
                    {
                        "path": os.path.join(real, soname),
                        "kind": "link",
                        "target": best[soname],
                        "reason": "soname",
                        "soname": soname,
                    }
                )
                names.add(soname)
            dev = dev_name(soname)
            if params["dev_links"] and dev and dev != soname:
                desired.append(
                    {
                        "path": os.path.join(real, dev),
                        "kind": "link",
                        "target": soname,
                        "reason": "dev",
                        "soname": soname,
                    }
                )
                names.add(dev)

    first = lib_dirs[0] if lib_dirs else None
    for alias in params["aliases"] or []:
        name, target = alias.get("name"), alias.get("target")
        if not name or not target or "/" in name:
            raise ElfError(f"alias {alias!r} needs a plain 'name' and a 'target'")
        if first is None or (
            target.split("/")[-1] not in planned[first] and not os.path.exists(os.path.join(first, target))
        ):
            aliases.append(
                {
                    "path": os.path.join(first or "", name),
                    "target": target,
                    "reason": "declared",
                    "created": False,
                    "note": f"target {target} not present: alias not needed",
                }
            )
            continue
        desired.append(
            {"path": os.path.join(first, name), "kind": "link", "target": target, "reason": "alias"}
        )
        planned[first].add(name)
        aliases.append(
            {"path": os.path.join(first, name), "target": target, "reason": "declared", "created": True}
        )

    # Our own earlier expected-aliases do not count as the library being present.
    own_aliases = set(path for path, r in old.items() if r.get("reason") == "expected-alias")
    for soname in params["expected_sonames"] or []:
        if any(soname in planned[d] and os.path.join(d, soname) not in own_aliases for d in lib_dirs):
            continue
        candidates = []
        for real in lib_dirs:
            for other in sonames_by_dir[real]:
                if stem_of(other) == stem_of(soname) and other != soname:
                    candidates.append((version_key(other), real, other))
        if not candidates:
            missing.append(soname)
            continue
        _, real, other = max(candidates)
        note = (
            f"{soname} is missing; {other} is installed (ABI may differ: install the matching CUDA version)"
        )
        if params["expected_aliases"]:
            desired.append(
                {
                    "path": os.path.join(real, soname),
                    "kind": "link",
                    "target": other,
                    "reason": "expected-alias",
                }
            )
            planned[real].add(soname)
        aliases.append(
            {
                "path": os.path.join(real, soname),
                "target": other,
                "reason": "expected",
                "created": bool(params["expected_aliases"]),
                "note": note,
            }
        )

    for mirror in params["mirrors"] or []:
        src, dest = mirror.get("src"), mirror.get("dest")
        if not src or not dest:
            raise ElfError(f"mirror {mirror!r} needs 'src' and 'dest'")
        patterns = mirror.get("patterns") or ["*"]
        real_src = os.path.realpath(src)
        if not os.path.isdir(real_src):
            raise ElfError(f"mirror source {src} does not exist")
        if not os.path.isdir(dest):
            raise ElfError(f"mirror destination {dest} does not exist")
        on_disk = set(os.listdir(real_src))
        names = on_disk | planned.get(real_src, set())
        for name in sorted(names):
            if name.startswith(".") or name.endswith(TMP_SUFFIX):
                continue
            if not any(fnmatch.fnmatchcase(name, p) for p in patterns):
                continue
            src_path = os.path.join(real_src, name)
            if name not in planned.get(real_src, set()) - on_disk and not os.path.exists(src_path):
                continue  # dangling in the source (e.g. a library that went away): nothing to mirror
            if os.path.isdir(src_path) and not mirror.get("dirs"):
                continue
            desired.append(
                {
                    "path": os.path.join(dest, name),
                    "kind": "link",
                    "target": os.path.join(src, name),
                    "reason": "mirror",
                }
            )

    if params.get("loader_conf"):
        desired.append(
            {
                "path": params["loader_conf"],
                "kind": "file",
                "content": loader_conf_text(params["loader_dirs"] or []),
                "reason": "loader",
            }
        )

    create, skipped, records, satisfied = [], [], [], []
    seen = set()
    for entry in desired:
        path = entry["path"]
        if path in seen:
            continue
        seen.add(path)
        status = assess(entry, old.get(path))
        if status in ("ok-ours",):
            records.append(record_of(entry))
        elif status in ("create", "update"):
            create.append(entry)
            records.append(record_of(entry))
        elif status == "ok-foreign":
            satisfied.append(path)
        else:
            skipped.append({"path": path, "reason": status, "wanted": entry.get("target") or "file"})
    remove, forget = [], []
    for path, record in sorted(old.items()):
        if path in seen:
            if not any(r["path"] == path for r in records):
                forget.append(record)
            continue
        if record_matches(record):
            remove.append(record)
        else:
            forget.append(record)
    return {
        "desired": desired,
        "create": create,
        "skipped": skipped,
        "remove": remove,
        "forget": forget,
        "aliases": aliases,
        "missing_sonames": missing,
        "libraries": libraries,
        "records": records,
        "satisfied": satisfied,
    }


def record_of(entry):
    record = {"path": entry["path"], "kind": entry["kind"], "reason": entry["reason"]}
    if entry["kind"] == "link":
        record["target"] = entry["target"]
    else:
        record["sha256"] = content_sha(entry["content"])
    return record


def record_matches(record):
    """True when the path is still exactly what the manifest says was created."""
    st = _lstat(record["path"])
    if st is None:
        return False
    if record["kind"] == "link":
        return stat.S_ISLNK(st.st_mode) and os.readlink(record["path"]) == record["target"]
    if record["kind"] == "dir":
        return stat.S_ISDIR(st.st_mode)
    if not stat.S_ISREG(st.st_mode):
        return False
    with open(record["path"], "rb") as handle:
        return hashlib.sha256(handle.read()).hexdigest() == record["sha256"]


def assess(entry, old_record):
    """create | update | ok-ours | ok-foreign | a reason string for a path we must not touch."""
    path = entry["path"]
    st = _lstat(path)
    wanted = record_of(entry)
    if st is None:
        return "create"
    if old_record is not None:
        if record_matches(old_record):
            return "ok-ours" if _same_record(old_record, wanted) else "update"
        return f"changed since this project created it ({describe(path, st)})"
    if satisfied(entry, st):
        return "ok-foreign"
    return f"exists and was not created by this project ({describe(path, st)})"


def _same_record(a, b):
    return (
        a["kind"] == b["kind"] and a.get("target") == b.get("target") and a.get("sha256") == b.get("sha256")
    )


def satisfied(entry, st):
    """An existing path we did not create that already does the job (so nothing to do, nothing to record)."""
    path = entry["path"]
    if entry["kind"] == "file":
        if not stat.S_ISREG(st.st_mode):
            return False
        with open(path, "rb") as handle:
            return handle.read() == entry["content"].encode("utf-8")
    if stat.S_ISLNK(st.st_mode) and os.readlink(path) == entry["target"]:
        return True
    target = (
        entry["target"]
        if os.path.isabs(entry["target"])
        else os.path.join(os.path.dirname(path), entry["target"])
    )
    try:
        if os.path.samefile(path, target):
            return True
    except OSError:
        return False
    if entry["reason"] in ("soname", "dev") and stat.S_ISLNK(st.st_mode):
        real = os.path.realpath(path)
        return os.path.isfile(real) and read_soname(real) == entry["soname"]
    return False


def describe(path, st):
    if stat.S_ISLNK(st.st_mode):
        return f"a symlink to {os.readlink(path)}"
    if stat.S_ISDIR(st.st_mode):
        return "a directory"
    return "a regular file"


# ----------------------------------------------------------------------------------------------
# Writing


def load_manifest(path):
    try:
        with open(path) as handle:
            data = json.load(handle)
    except OSError as exc:
        if exc.errno == errno.ENOENT:
            return None
        raise
    except ValueError as exc:
        raise ElfError(f"manifest {path} is not valid JSON ({exc}): move it aside and rerun") from exc
    if (
        not isinstance(data, dict)
        or data.get("schema") != MANIFEST_SCHEMA
        or not isinstance(data.get("entries"), list)
    ):
        raise ElfError(f"manifest {path} has an unknown format: move it aside and rerun")
    return data


def write_manifest(path, data):
    """Write the manifest atomically, creating (and recording) missing parent directories."""
    parent = os.path.dirname(path)
    created = []
    cur = parent
    while cur and not os.path.isdir(cur):
        created.append(cur)
        cur = os.path.dirname(cur)
    for d in reversed(created):
        os.mkdir(d, 0o755)
        os.chmod(d, 0o755)
    data["created_dirs"] = sorted(set(data.get("created_dirs", []) + created))
    fd, tmp = tempfile.mkstemp(prefix=".manifest-", dir=parent)
    try:
        with os.fdopen(fd, "w") as handle:
            json.dump(data, handle, indent=2, sort_keys=True)
            handle.write("\n")
            handle.flush()
            os.fsync(handle.fileno())
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def apply_entry(entry):
    path = entry["path"]
    tmp = os.path.join(os.path.dirname(path), "." + os.path.basename(path) + TMP_SUFFIX)
    if _lstat(tmp) is not None:
        os.unlink(tmp)
    if entry["kind"] == "link":
        os.symlink(entry["target"], tmp)
    else:
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
        with os.fdopen(fd, "w") as handle:
            handle.write(entry["content"])
        os.chmod(tmp, 0o644)
    os.replace(tmp, path)


def remove_records(records):
    removed, kept = [], []
    for record in records:
        if _lstat(record["path"]) is None:
            continue
        if record_matches(record):
            os.unlink(record["path"])
            removed.append(record["path"])
        else:
            kept.append(record["path"])
    return removed, kept


def rpm_owner(path):
    """'package X' when rpm knows the path, else None (never raises)."""
    try:
        out = subprocess.run(
            ["rpm", "-qf", "--queryformat", "%{NAME}\n", path],
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            timeout=30,
            check=False,
        )
    except (OSError, subprocess.SubprocessError):
        return None
    if out.returncode == 0 and out.stdout.strip():
        return "package " + out.stdout.decode("utf-8", "replace").split()[0]
    return None


# ----------------------------------------------------------------------------------------------
# Ansible entry point


def _listing(paths):
    return "".join(p + "\n" for p in sorted(paths))


def run_present(params, check_mode, owner=rpm_owner):
    manifest_path = params["manifest"]
    old = load_manifest(manifest_path)
    p = plan(params, old)
    for item in p["skipped"]:
        who = owner(item["path"]) if owner else None
        if who:
            item["owner"] = who
    result = {
        "changed": False,
        "created": [e["path"] for e in p["create"]],
        "removed": [],
        "kept": [],
        "skipped": p["skipped"],
        "aliases": p["aliases"],
        "missing_sonames": p["missing_sonames"],
        "libraries": p["libraries"],
        "manifest": manifest_path,
    }
    if p["skipped"] and params["strict"]:
        raise StrictError(
            f"cuda_links_strict is set and {len(p['skipped'])} path(s) exist that this project did not "
            f"create, so nothing was written: {_skips_text(p['skipped'])}. Move them aside (or set "
            "cuda_links_strict: false to skip them)",
            p["skipped"],
        )
    old_paths = sorted(r["path"] for r in (old or {}).get("entries", []))
    new_paths = sorted(r["path"] for r in p["records"])
    changed = bool(
        p["create"]
        or p["remove"]
        or p["forget"]
        or old_paths != new_paths
        or (old or {}).get("state", "applied") != "applied"
    )
    if check_mode:
        result["removed"] = [r["path"] for r in p["remove"]]
    elif changed:
        base = {
            "schema": MANIFEST_SCHEMA,
            "role": "cuda_links",
            "created_dirs": (old or {}).get("created_dirs", []),
        }
        pending = dict(base, state="applying", entries=p["records"] + p["remove"])
        write_manifest(manifest_path, pending)
        for entry in p["create"]:
            apply_entry(entry)
        removed, kept = remove_records(p["remove"])
        result["removed"], result["kept"] = removed, kept
        write_manifest(
            manifest_path,
            dict(base, state="applied", entries=p["records"], created_dirs=pending["created_dirs"]),
        )
    result["changed"] = changed
    if changed:
        result["diff"] = {
            "before_header": manifest_path + " (entries)",
            "after_header": manifest_path + " (entries)",
            "before": _listing(old_paths),
            "after": _listing(new_paths),
        }
    warnings = []
    if p["skipped"]:
        warnings.append(
            f"skipped {len(p['skipped'])} path(s) this project did not create: {_skips_text(p['skipped'])}"
        )
    for alias in p["aliases"]:
        if alias["reason"] == "expected":
            warnings.append(
                "compatibility alias {} -> {}: {}".format(alias["path"], alias["target"], alias["note"])
            )
    if warnings:
        result["warnings"] = warnings
    return result


def _skips_text(skipped):
    return "; ".join(
        "{} {}{}".format(s["path"], s["reason"], " [{}]".format(s["owner"]) if s.get("owner") else "")
        for s in skipped
    )


class StrictError(Exception):
    def __init__(self, msg, skipped):
        Exception.__init__(self, msg)
        self.skipped = skipped


def run_absent(params, check_mode):
    manifest_path = params["manifest"]
    manifest = load_manifest(manifest_path)
    result = {
        "changed": False,
        "created": [],
        "removed": [],
        "kept": [],
        "skipped": [],
        "aliases": [],
        "missing_sonames": [],
        "manifest": manifest_path,
    }
    if manifest is None:
        return result
    records = manifest["entries"]
    if check_mode:
        removed = [r["path"] for r in records if record_matches(r)]
        kept = [r["path"] for r in records if _lstat(r["path"]) is not None and not record_matches(r)]
        removed.append(manifest_path)
    else:
        removed, kept = remove_records(records)
        os.unlink(manifest_path)
        removed.append(manifest_path)
        for d in sorted(manifest.get("created_dirs", []), reverse=True):
            try:
                os.rmdir(d)
                removed.append(d)
            except OSError:
                pass
    result.update(
        changed=True,
        removed=removed,
        kept=kept,
        diff={"before": _listing(removed + kept), "after": _listing(kept)},
    )
    if kept:
        result["warnings"] = [
            "left in place because they changed since they were created: {}".format(", ".join(kept))
        ]
    return result


def main():
    module = AnsibleModule(
        argument_spec=dict(
            state=dict(type="str", choices=["present", "absent"], default="present"),
            lib_dirs=dict(type="list", elements="path", default=["/usr/local/cuda/lib64"]),
            dev_links=dict(type="bool", default=True),
            aliases=dict(type="list", elements="dict", default=[]),
            expected_sonames=dict(type="list", elements="str", default=[]),
            expected_aliases=dict(type="bool", default=True),
            mirrors=dict(type="list", elements="dict", default=[]),
            loader_conf=dict(type="path"),
            loader_dirs=dict(type="list", elements="path", default=[]),
            manifest=dict(type="path", default="/var/lib/opensuse-gpu-stack/manifest-cuda_links.json"),
            strict=dict(type="bool", default=False),
        ),
        supports_check_mode=True,
    )
    params = module.params
    try:
        if params["state"] == "absent":
            result = run_absent(params, module.check_mode)
        else:
            result = run_present(params, module.check_mode)
    except StrictError as exc:
        module.fail_json(msg=str(exc), skipped=exc.skipped)
    except ElfError as exc:
        module.fail_json(msg=f"links not changed, nothing was written: {exc}")
    except OSError as exc:
        module.fail_json(msg=f"creating links failed: {exc}")
    module.exit_json(**result)


if __name__ == "__main__":
    main()
