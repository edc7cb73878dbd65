#!/usr/bin/python
"""Create the CUDA/cuDNN library links TensorFlow needs, from ELF SONAMEs, and keep a manifest of them.

The pure functions (version sorting, planning) are imported by tests/unit/test_soname_links.py;
`main()` is the Ansible entry point.
"""

import fnmatch
import hashlib
import os
import stat
import subprocess

from ansible.module_utils.basic import AnsibleModule
from ansible_collections.gpu_stack.opensuse.plugins.module_utils import gpu_stack_elf as elf
from ansible_collections.gpu_stack.opensuse.plugins.module_utils import gpu_stack_manifest as manifests

DOCUMENTATION = r"""
---
module: soname_links
short_description: Ensure SONAME, development, compatibility and system-directory links for CUDA libraries
description:
  - Reads the ELF C(DT_SONAME) of every shared library in O(lib_dirs) (the dynamic section is parsed
    with Python's struct; file names are never used to guess it) and makes sure the SONAME link
    (C(libcudnn.so.9 -> libcudnn.so.9.3.0)) and the unversioned development link
    (C(libcudnn.so -> libcudnn.so.9)) exist.
  - Creates declared compatibility aliases (O(aliases)). An alias from one major version to another
    (a different ABI) is refused unless the item says C(cross_major=true); such an alias is then a
    warning on every run.
  - For each name in O(expected_sonames) that is missing while another version of the same library is
    present, warns on every run; with O(expected_aliases=true) also links the name to that version.
  - Mirrors the files of a source directory into a system directory as absolute symlinks (O(mirrors)),
    as the original procedure did with C(ln -s /usr/local/cuda/include/* /usr/include/). Only files are
    linked; a source subdirectory becomes a real directory (with O(mirrors[].recurse)), never a
    directory link, so a package that later owns it neither collides with it nor writes through it.
  - Never replaces a path it did not create (a package's file, a user's library); such paths are
    left alone, listed in RV(foreign) and warned about; with O(strict=true) the module fails before
    writing anything.
  - Every link and directory it creates is recorded in a JSON manifest; O(state=absent) removes exactly
    those entries that are still as created. Refresh the loader cache afterwards (gpu_stack_loader_cache).
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
      - Each item has C(name) (the alias), C(target) (an existing name in the same directory) and
        C(cross_major) (default false; true allows an alias between major versions).
    type: list
    elements: dict
    default: []
  expected_sonames:
    description: Sonames TensorFlow loads; a missing one with another installed version is warned about.
    type: list
    elements: str
    default: []
  expected_aliases:
    description:
      - Link a missing O(expected_sonames) entry to another installed version (warned about on every run).
    type: bool
    default: false
  mirrors:
    description:
      - Link the files of C(src) into C(dest) as C(dest/name -> src/name).
      - Each item has C(src), C(dest), C(patterns) (fnmatch patterns of the top-level names, default C(*))
        and C(recurse) (mirror subdirectories as real directories holding file links, default false;
        without it subdirectories are left out).
    type: list
    elements: dict
    default: []
  manifest:
    description: JSON manifest of the links and directories this module created.
    type: path
    default: /var/lib/opensuse-gpu-stack/manifest-cuda_links.json
  strict:
    description: Fail (before writing anything) instead of leaving alone paths the project did not create.
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
      - {src: /usr/local/cuda/include, dest: /usr/include, recurse: true}
      - {src: /usr/local/cuda/lib64, dest: /usr/lib64, patterns: ["*.so*"]}

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
kept:
  description: Manifest paths left in place because they changed since they were created.
  type: list
  elements: str
  returned: always
foreign:
  description:
    - Paths left alone because this project did not create them, each with C(path), C(reason),
      C(wanted) and C(owner) (the RPM, when rpm knows it).
  type: list
  elements: dict
  returned: always
aliases:
  description:
    - Compatibility aliases made, present or refused, each with C(path), C(target), C(reason), C(created),
      C(cross_major) and C(note).
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


TMP_SUFFIX = ".gpu-stack-tmp"
MIRROR_KEYS = {"src", "dest", "patterns", "recurse"}
ALIAS_KEYS = {"name", "target", "cross_major"}


class PlanError(Exception):
    """Bad input or a state the links cannot be planned from; nothing was written."""


class StrictError(Exception):
    def __init__(self, msg, foreign):
        Exception.__init__(self, msg)
        self.foreign = foreign


# ----------------------------------------------------------------------------------------------
# Names


def version_key(name):
    """Sort key: the numeric parts after '.so' (libcudnn.so.9.10.0 > libcudnn.so.9.3.0)."""
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


def major_of(name):
    """The major version in a library name: libcufft.so.11 -> 11, libcublas.so.10.0 -> 10, libx.so -> None."""
    _, sep, tail = name.partition(".so.")
    first = tail.split(".")[0] if sep else ""
    return int(first) if first.isdigit() else None


def crosses_major(name, target):
    """True when name and target carry different major versions (a different ABI)."""
    a, b = major_of(name), major_of(target)
    return a is not None and b is not None and a != b


# ----------------------------------------------------------------------------------------------
# Planning


def scan_libraries(lib_dir):
    """{real file name: soname} for the ELF shared libraries (regular files) directly in lib_dir."""
    found = {}
    for name in sorted(os.listdir(lib_dir)):
        if ".so" not in name or name.endswith(TMP_SUFFIX):
            continue
        path = os.path.join(lib_dir, name)
        st = manifests.lstat_or_none(path)
        if st is None or not stat.S_ISREG(st.st_mode):
            continue
        soname = elf.read_soname(path)
        if soname:
            found[name] = soname
    return found


def _alias_target_name(directory, target):
    """What an alias target really is: the SONAME of the file it resolves to, else its own name."""
    return elf.read_soname(os.path.join(directory, target)) or target.split("/")[-1]


def _plan_declared_aliases(params, first, planned, desired, aliases):
    for alias in params["aliases"] or []:
        name, target = alias.get("name"), alias.get("target")
        unknown = sorted(set(alias) - ALIAS_KEYS)
        if not name or not target or "/" in name or unknown:
            raise PlanError(
                f"alias {alias!r} needs a plain file name 'name' and a 'target' (and optionally "
                f"'cross_major'){'; unknown keys ' + ', '.join(unknown) if unknown else ''}"
            )
        exists = first is not None and (
            target.split("/")[-1] in planned[first] or os.path.exists(os.path.join(first, target))
        )
        real_target = _alias_target_name(first, target) if exists else target.split("/")[-1]
        cross = crosses_major(name, real_target)
        if cross and not alias.get("cross_major"):
            raise PlanError(
                f"alias {name} -> {target} links major {major_of(name)} to a library of major "
                f"{major_of(real_target)} ({real_target}): a different major is a different ABI, and "
                f"TensorFlow would load an incompatible library. Install the CUDA version that provides "
                f"{name}, or add cross_major: true to this cuda_links_aliases item to make it anyway "
                "(it is then a warning on every run)"
            )
        record = {
            "path": os.path.join(first or "", name),
            "target": target,
            "reason": "declared",
            "cross_major": cross,
        }
        if not exists:
            aliases.append(dict(record, created=False, note=f"target {target} not present: alias not needed"))
            continue
        desired.append(
            {"path": os.path.join(first, name), "kind": "link", "target": target, "reason": "alias"}
        )
        planned[first].add(name)
        note = (
            (
                f"a declared alias across majors ({major_of(name)} -> {major_of(real_target)}): a different "
                "ABI, kept because the alias says cross_major: true"
            )
            if cross
            else "declared"
        )
        aliases.append(dict(record, created=True, note=note))


def _plan_expected_aliases(params, lib_dirs, sonames_by_dir, planned, old, desired, aliases, missing):
    # Our own earlier expected-aliases do not count as the library being present.
    own_aliases = set(p for p, r in old.items() if r.get("reason") == "expected-alias" and record_matches(r))
    for d in lib_dirs:
        planned[d] -= set(os.path.basename(p) for p in own_aliases if os.path.dirname(p) == d)
    for soname in params["expected_sonames"] or []:
        if any(soname in planned[d] for d in lib_dirs):
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
        cross = crosses_major(soname, other)
        abi = (
            f"{other} has major {major_of(other)}, a different ABI than the {major_of(soname)} TensorFlow "
            "was built for"
            if cross
            else f"{other} has the same major, only the rest of the soname differs"
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
            note = (
                f"{soname} is missing and was linked to {other} (cuda_links_expected_aliases_enabled): "
                f"{abi}. Install the CUDA version TensorFlow was built for and turn the alias off"
            )
        elif cross:
            note = (
                f"{soname} is missing: {abi}, so no alias was made. Install the CUDA version TensorFlow "
                "was built for (the gpu_stack_* pins)"
            )
        else:
            note = (
                f"{soname} is missing: {abi}. If only the soname changed, declare "
                f"{{name: {soname}, target: {other}}} in cuda_links_aliases"
            )
        aliases.append(
            {
                "path": os.path.join(real, soname),
                "target": other,
                "reason": "expected",
                "created": bool(params["expected_aliases"]),
                "cross_major": cross,
                "note": note,
            }
        )


def _plan_mirror(mirror, planned, desired):
    src, dest = mirror.get("src"), mirror.get("dest")
    unknown = sorted(set(mirror) - MIRROR_KEYS)
    if not src or not dest or unknown:
        raise PlanError(
            f"mirror {mirror!r} needs 'src' and 'dest' (and optionally 'patterns', 'recurse')"
            f"{'; unknown keys ' + ', '.join(unknown) if unknown else ''}"
        )
    patterns = mirror.get("patterns") or ["*"]
    real_src = os.path.realpath(src)
    if not os.path.isdir(real_src):
        raise PlanError(f"mirror source {src} does not exist")
    if not os.path.isdir(dest):
        raise PlanError(f"mirror destination {dest} does not exist")
    visited = set()

    def walk(real_dir, logical_dir, dest_dir, top):
        visited.add(real_dir)
        on_disk = set(os.listdir(real_dir))
        # A library directory: what will be there once its own links are made (and stale aliases gone)
        names = planned.get(real_dir, on_disk)
        pending = names - on_disk
        for name in sorted(names):
            if name.startswith(".") or name.endswith(TMP_SUFFIX):
                continue
            if top and not any(fnmatch.fnmatchcase(name, p) for p in patterns):
                continue
            src_path = os.path.join(real_dir, name)
            if name not in pending and not os.path.exists(src_path):
                continue  # dangling in the source (e.g. a library that went away): nothing to mirror
            path = os.path.join(dest_dir, name)
            if name not in pending and os.path.isdir(src_path):
                inner = os.path.realpath(src_path)
                if not mirror.get("recurse") or inner in visited:
                    continue
                desired.append({"path": path, "kind": "dir", "reason": "mirror"})
                walk(inner, os.path.join(logical_dir, name), path, False)
                continue
            desired.append(
                {"path": path, "kind": "link", "target": os.path.join(logical_dir, name), "reason": "mirror"}
            )

    walk(real_src, src, dest, True)


def plan(params, old_manifest):
    """Compute the desired entries and what to do with each; read-only.

    Returns {'desired': [entry], 'create': [entry], 'foreign': [{'path', 'reason', 'wanted'}],
    'remove': [record], 'forget': [record], 'aliases': [...], 'missing_sonames': [...], 'libraries': {...},
    'records': [...]} where an entry is {'path', 'kind': 'link'|'dir', 'target', 'reason'}.
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
            raise PlanError(f"library directory {d} does not exist: install the CUDA toolkit first")
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
    _plan_declared_aliases(params, first, planned, desired, aliases)
    _plan_expected_aliases(params, lib_dirs, sonames_by_dir, planned, old, desired, aliases, missing)
    for mirror in params["mirrors"] or []:
        _plan_mirror(mirror, planned, desired)

    create, foreign, records = [], [], []
    seen = set()
    fresh_dirs, blocked_dirs = set(), set()  # directories to be made; foreign paths where one should be
    for entry in desired:
        path = entry["path"]
        if path in seen:
            continue
        seen.add(path)
        parent = os.path.dirname(path)
        if parent in blocked_dirs:
            if entry["kind"] == "dir":
                blocked_dirs.add(path)
            continue
        # Under a directory still to be made, nothing exists yet (lstat would look through an old link)
        status = "create" if parent in fresh_dirs else assess(entry, old.get(path))
        if status in ("create", "update"):
            create.append(entry)
            records.append(record_of(entry))
            if entry["kind"] == "dir":
                fresh_dirs.add(path)
        elif status == "ok-ours":
            records.append(record_of(entry))
        elif status != "ok-foreign":
            foreign.append({"path": path, "reason": status, "wanted": entry.get("target") or "a directory"})
            if entry["kind"] == "dir":
                blocked_dirs.add(path)
    recorded = set(r["path"] for r in records)
    remove, forget = [], []
    for path, record in sorted(old.items()):
        if path in seen:
            if path not in recorded:
                forget.append(record)
            continue
        if record_matches(record):
            remove.append(record)
        else:
            forget.append(record)
    return {
        "desired": desired,
        "create": create,
        "foreign": foreign,
        "remove": remove,
        "forget": forget,
        "aliases": aliases,
        "missing_sonames": missing,
        "libraries": libraries,
        "records": records,
    }


def record_of(entry):
    record = {"path": entry["path"], "kind": entry["kind"], "reason": entry["reason"]}
    if entry["kind"] == "link":
        record["target"] = entry["target"]
    return record


def record_matches(record):
    """True when the path is still exactly what the manifest says was created."""
    st = manifests.lstat_or_none(record["path"])
    if st is None:
        return False
    if record["kind"] == "link":
        return stat.S_ISLNK(st.st_mode) and os.readlink(record["path"]) == record["target"]
    if record["kind"] == "dir":
        return stat.S_ISDIR(st.st_mode)
    # "file": the loader configuration earlier versions wrote (removed now, if unchanged)
    if not stat.S_ISREG(st.st_mode):
        return False
    with open(record["path"], "rb") as handle:
        return hashlib.sha256(handle.read()).hexdigest() == record["sha256"]


def assess(entry, old_record):
    """create | update | ok-ours | ok-foreign | a reason string for a path we must not touch."""
    path = entry["path"]
    st = manifests.lstat_or_none(path)
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
    return a["kind"] == b["kind"] and a.get("target") == b.get("target")


def satisfied(entry, st):
    """An existing path we did not create that already does the job (so nothing to do, nothing to record)."""
    path = entry["path"]
    if entry["kind"] == "dir":
        return stat.S_ISDIR(st.st_mode)
    if stat.S_ISLNK(st.st_mode) and os.readlink(path) == entry["target"]:
        return True
    target = (
        entry["target"]
        if os.path.isabs(entry["target"])
        else os.path.join(os.path.dirname(path), entry["target"])
    )
    try:
        if os.path.samefile(path, target) and not os.path.isdir(path):
            return True
    except OSError:
        return False
    if entry["reason"] in ("soname", "dev") and stat.S_ISLNK(st.st_mode):
        real = os.path.realpath(path)
        return os.path.isfile(real) and elf.read_soname(real) == entry["soname"]
    return False


def describe(path, st):
    if stat.S_ISLNK(st.st_mode):
        return f"a symlink to {os.readlink(path)}"
    if stat.S_ISDIR(st.st_mode):
        return "a directory"
    return "a regular file"


# ----------------------------------------------------------------------------------------------
# Writing


def apply_entry(entry):
    path = entry["path"]
    if entry["kind"] == "dir":
        st = manifests.lstat_or_none(path)
        if st is not None and not stat.S_ISDIR(st.st_mode):
            os.unlink(path)  # our own earlier link to the source directory (plan() checked the manifest)
            st = None
        if st is None:
            os.mkdir(path, 0o755)
        os.chmod(path, 0o755)
        return
    tmp = os.path.join(os.path.dirname(path), "." + os.path.basename(path) + TMP_SUFFIX)
    if manifests.lstat_or_none(tmp) is not None:
        os.unlink(tmp)
    os.symlink(entry["target"], tmp)
    os.replace(tmp, path)


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


def _empty_result(manifest_path):
    return {
        "changed": False,
        "created": [],
        "removed": [],
        "kept": [],
        "foreign": [],
        "aliases": [],
        "missing_sonames": [],
        "manifest": manifest_path,
    }


def run_present(params, check_mode, owner=rpm_owner):
    manifest_path = params["manifest"]
    old = manifests.load(manifest_path)
    p = plan(params, old)
    for item in p["foreign"]:
        who = owner(item["path"]) if owner else None
        if who:
            item["owner"] = who
    result = dict(
        _empty_result(manifest_path),
        created=[e["path"] for e in p["create"]],
        foreign=p["foreign"],
        aliases=p["aliases"],
        missing_sonames=p["missing_sonames"],
        libraries=p["libraries"],
    )
    if p["foreign"] and params["strict"]:
        raise StrictError(
            f"cuda_links_strict is set and {len(p['foreign'])} path(s) exist that this project did not "
            f"create, so nothing was written: {_foreign_text(p['foreign'])}. Move them aside (or set "
            "cuda_links_strict: false to leave them alone)",
            p["foreign"],
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
        result["removed"] = manifests.would_remove(p["remove"], record_matches)[0]
    elif changed:
        base = {
            "schema": manifests.SCHEMA,
            "role": "cuda_links",
            "created_dirs": (old or {}).get("created_dirs", []),
        }
        pending = manifests.write(
            manifest_path, dict(base, state="applying", entries=p["records"] + p["remove"])
        )
        for entry in p["create"]:
            apply_entry(entry)
        result["removed"], result["kept"] = manifests.remove_records(p["remove"], record_matches)
        manifests.write(
            manifest_path,
            dict(base, state="applied", entries=p["records"], created_dirs=pending["created_dirs"]),
        )
    result["changed"] = changed
    if changed:
        result["diff"] = {
            "before_header": manifest_path + " (entries)",
            "after_header": manifest_path + " (entries)",
            "before": manifests.listing(old_paths),
            "after": manifests.listing(new_paths),
        }
    warnings = []
    if p["foreign"]:
        text = _foreign_text(p["foreign"])
        warnings.append(f"left alone {len(p['foreign'])} path(s) this project did not create: {text}")
    for alias in p["aliases"]:
        if alias["reason"] == "expected" or alias["cross_major"]:
            warnings.append(
                "compatibility alias {} -> {}: {}".format(alias["path"], alias["target"], alias["note"])
            )
    if warnings:
        result["warnings"] = warnings
    return result


def _foreign_text(foreign):
    return "; ".join(
        "{} {}{}".format(s["path"], s["reason"], " [{}]".format(s["owner"]) if s.get("owner") else "")
        for s in foreign
    )


def run_absent(params, check_mode):
    manifest_path = params["manifest"]
    result = _empty_result(manifest_path)
    removal = manifests.remove_recorded(manifest_path, record_matches, check_mode, "they were created")
    result.update(removal or {})
    return result


def main():
    module = AnsibleModule(
        argument_spec=dict(
            state=dict(type="str", choices=["present", "absent"], default="present"),
            lib_dirs=dict(type="list", elements="path", default=["/usr/local/cuda/lib64"]),
            dev_links=dict(type="bool", default=True),
            aliases=dict(type="list", elements="dict", default=[]),
            expected_sonames=dict(type="list", elements="str", default=[]),
            expected_aliases=dict(type="bool", default=False),
            mirrors=dict(type="list", elements="dict", default=[]),
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
        module.fail_json(msg=str(exc), foreign=exc.foreign)
    except (PlanError, manifests.ManifestError, elf.ElfError) as exc:
        module.fail_json(msg=f"links not changed, nothing was written: {exc}")
    except OSError as exc:
        module.fail_json(msg=f"creating links failed: {exc}")
    module.exit_json(**result)


if __name__ == "__main__":
    main()
