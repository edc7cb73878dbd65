#!/usr/bin/python
"""Keep the dynamic loader's view of the CUDA libraries as desired state, not as a handler's side effect.

The pure functions (ld.so.conf and `ldconfig -p` parsing, expectations, evaluation) are imported by
tests/unit/test_gpu_stack_loader_cache.py; `main()` is the Ansible entry point.
"""

import glob
import os
import re

from ansible.module_utils.basic import AnsibleModule
from ansible_collections.gpu_stack.opensuse.plugins.module_utils import gpu_stack_elf as elf
from ansible_collections.gpu_stack.opensuse.plugins.module_utils import gpu_stack_manifest as manifests

DOCUMENTATION = r"""
---
module: gpu_stack_loader_cache
short_description: Make the dynamic loader cache resolve the given libraries, refreshing it when it does not
description:
  - Optionally owns one ld.so.conf.d file (O(conf)) listing the O(conf_dirs) that no other loader
    configuration lists (compared by real path, so NVIDIA's C(000_cuda.conf) and
    C(98x_cuda-<major>.conf) are never duplicated). The file is removed when it has nothing to list,
    and a file at that path that this project did not write is never overwritten.
  - Reads C(ldconfig -p) and checks every library it is given (O(paths), the entries of O(manifests), the
    libraries in O(dirs), the sonames in O(names)). A library is resolved when the first cache entry of its
    SONAME for its architecture leads to the file that the SONAME names in the library's own directory,
    and, when ldconfig scans that directory, that directory's entry is in the cache too.
  - When a library is not resolved, a cache entry points to a file that no longer exists, or the
    configuration file changed, runs C(ldconfig) and reports a change, whether or not a handler
    ran before (an interrupted run is repaired by the next one). In check mode it only reports.
  - Fails, after the refresh, when a library still does not resolve, naming it and why.
options:
  conf:
    description: The ld.so.conf.d file this project owns; omit to leave the loader configuration alone.
    type: path
  conf_dirs:
    description: Directories the loader must search; those no other configuration lists go into O(conf).
    type: list
    elements: path
    default: []
  marker:
    description: Text in the first line of O(conf) that marks it as this project's.
    type: str
    default: Managed by opensuse-gpu-stack
  paths:
    description: Library paths (shell globs allowed) that must resolve.
    type: list
    elements: str
    default: []
  manifests:
    description:
      - The project's manifests (JSON, C(entries[].path)) whose libraries must resolve (missing ones skipped).
    type: list
    elements: path
    default: []
  dirs:
    description: Directories whose shared libraries (C(lib*.so*), directly inside) must all resolve.
    type: list
    elements: path
    default: []
  names:
    description:
      - Sonames that must resolve to the library of that name in the first of O(dirs) holding it. Names
        no directory holds are returned in RV(missing); names that are aliases (the file's SONAME differs)
        cannot be in the cache and are returned in RV(aliases).
    type: list
    elements: str
    default: []
  hint:
    description: Added to the failure message (what the user can change).
    type: str
    default: ""
  ld_so_conf:
    description: The loader's main configuration file.
    type: path
    default: /etc/ld.so.conf
author:
  - opensuse-gpu-stack
"""

EXAMPLES = r"""
- name: Make the loader cache resolve cuDNN
  gpu_stack_loader_cache:
    manifests: [/var/lib/opensuse-gpu-stack/manifest-cudnn.json]

- name: Register the CUDA library directory unless NVIDIA's configuration does, and check the cache
  gpu_stack_loader_cache:
    conf: /etc/ld.so.conf.d/opensuse-gpu-stack-cuda.conf
    conf_dirs: [/usr/local/cuda/targets/x86_64-linux/lib]
    dirs: [/usr/local/cuda/lib64]
"""

RETURN = r"""
conf_dirs:
  description: Directories O(conf) lists (empty when the file is not needed).
  type: list
  elements: str
  returned: always
refreshed:
  description: ldconfig ran (false in check mode).
  type: bool
  returned: always
stale:
  description:
    - What made the cache stale, one line each (a library not resolved, a vanished file, the configuration).
  type: list
  elements: str
  returned: always
libraries:
  description: Number of libraries checked.
  type: int
  returned: always
missing:
  description: O(names) that no directory in O(dirs) holds.
  type: list
  elements: str
  returned: always
aliases:
  description: O(names) that are aliases of another soname (found by dlopen in the default directories only).
  type: list
  elements: str
  returned: always
"""

ENTRY_RE = re.compile(r"^\s*(\S+) \((.*)\) => (/.*)$")
SCANNED_RE = re.compile(r"^(/[^:]*):(?: \(from (.*):\d+\))?")
LIB_NAME_RE = re.compile(r"^lib.*\.so(\.|$)")
# `ldconfig -p` flag of 64-bit libraries per e_machine (glibc's elf/cache.c print_entry)
ARCH_FLAGS = {62: "x86-64", 183: "AArch64"}


class LoaderError(Exception):
    """The loader configuration cannot be managed or the cache cannot be made to resolve a library."""


# ----------------------------------------------------------------------------------------------
# Parsing


def parse_cache(text):
    """`ldconfig -p` -> [(name, [flags], path)] in cache order."""
    out = []
    for line in text.splitlines():
        m = ENTRY_RE.match(line)
        if m:
            out.append((m.group(1), [f.strip() for f in m.group(2).split(",")], m.group(3).strip()))
    return out


def parse_scanned(text):
    """`ldconfig -v -N -X` -> ({real dir}, {real dir of ldconfig's built-in trusted directories})."""
    scanned, builtin = set(), set()
    for line in text.splitlines():
        m = SCANNED_RE.match(line)
        if not m:
            continue
        real = os.path.realpath(m.group(1))
        scanned.add(real)
        if m.group(2) == "<builtin>":
            builtin.add(real)
    return scanned, builtin


def conf_dirs_listed(path, exclude=(), _seen=None):
    """Real paths of the directories an ld.so.conf lists, following `include` globs (not `exclude` files)."""
    seen = set() if _seen is None else _seen
    real_conf = os.path.realpath(path)
    if real_conf in seen or real_conf in {os.path.realpath(e) for e in exclude}:
        return set()
    seen.add(real_conf)
    try:
        with open(path, errors="replace") as handle:
            lines = handle.read().splitlines()
    except OSError:
        return set()
    dirs = set()
    for line in lines:
        line = line.split("#", 1)[0].strip()
        if not line or line.startswith("hwcap "):
            continue
        if line.startswith("include "):
            for pattern in line.split()[1:]:
                if not os.path.isabs(pattern):
                    pattern = os.path.join(os.path.dirname(path), pattern)
                for inc in sorted(glob.glob(pattern)):
                    dirs |= conf_dirs_listed(inc, exclude, seen)
            continue
        for item in re.split(r"[\s,:]+", line):
            if item.startswith("/"):
                dirs.add(os.path.realpath(item.split("=", 1)[0]))
    return dirs


def conf_text(marker, dirs):
    return f"# {marker}: directories no other loader configuration lists\n" + "".join(d + "\n" for d in dirs)


# ----------------------------------------------------------------------------------------------
# Expectations


def expectation(path):
    """What the cache must say about one library path, or None when it is not an ELF shared library.

    {'name': SONAME, 'files': real files the SONAME may lead to, 'dir': real directory of the path,
    'listed': whether ldconfig lists that directory's SONAME entry, 'machine', 'source': path}. The SONAME
    may lead to the library itself or to the library the SONAME names in its directory (the newest of
    several versions). A file of that name that is not a library of that SONAME (someone else's, left
    alone by soname_links) is not one: ldconfig ignores it.
    """
    if not os.path.lexists(path):
        return None
    real = os.path.realpath(path)
    if not os.path.isfile(real):
        return None
    soname = elf.read_soname(real)
    if not soname:
        return None
    directory = os.path.dirname(path)
    soname_path = os.path.join(directory, soname)
    listed = os.path.exists(soname_path) and elf.read_soname(soname_path) == soname
    return {
        "name": soname,
        "files": {real, os.path.realpath(soname_path)} if listed else {real},
        "dir": os.path.realpath(directory),
        "listed": listed,
        "machine": elf.read_machine(real),
        "source": path,
    }


def collect(params):
    """(expectations, missing names, alias names) from paths, manifests, dirs and names."""
    sources = []
    for pattern in params.get("paths") or []:
        sources.extend(sorted(glob.glob(pattern)) if glob.has_magic(pattern) else [pattern])
    for path in params.get("manifests") or []:
        data = manifests.load(path)
        for record in (data or {}).get("entries", []):
            if record.get("kind") != "dir" and LIB_NAME_RE.match(os.path.basename(record["path"])):
                sources.append(record["path"])
    dirs = [d for d in params.get("dirs") or [] if os.path.isdir(d)]
    for d in dirs:
        sources.extend(os.path.join(d, n) for n in sorted(os.listdir(d)) if LIB_NAME_RE.match(n))
    missing, aliases = [], []
    for name in params.get("names") or []:
        holder = next((d for d in dirs if os.path.exists(os.path.join(d, name))), None)
        if holder is None:
            missing.append(name)
            continue
        if elf.read_soname(os.path.join(holder, name)) != name:
            aliases.append(name)
            continue
        sources.append(os.path.join(holder, name))
    found, keys = [], set()
    for path in sources:
        e = expectation(path)
        if e and (e["name"], e["dir"]) not in keys:
            keys.add((e["name"], e["dir"]))
            found.append(e)
    return found, missing, aliases


def _arch_ok(flags, machine):
    wanted = ARCH_FLAGS.get(machine)
    if wanted is None:
        return True
    return wanted in flags


def evaluate(expected, cache, scanned):
    """Lines describing each expectation the cache does not meet ([] when it meets them all)."""
    problems = []
    for e in expected:
        entries = [c for c in cache if c[0] == e["name"] and _arch_ok(c[1], e["machine"])]
        if not entries:
            problems.append(f"{e['name']} ({e['source']}) is not in the loader cache")
            continue
        first = os.path.realpath(entries[0][2])
        if first not in e["files"]:
            wanted = " or ".join(sorted(e["files"]))
            problems.append(f"{e['name']} resolves to {entries[0][2]} ({first}), not to {wanted}")
        elif (
            e["listed"]
            and e["dir"] in scanned
            and not any(os.path.realpath(os.path.dirname(c[2])) == e["dir"] for c in entries)
        ):
            problems.append(f"{os.path.join(e['dir'], e['name'])} is not in the loader cache")
    return problems


def vanished(cache):
    """Cache entries whose file no longer exists."""
    return [f"{path} ({name}) no longer exists" for name, _flags, path in cache if not os.path.exists(path)]


# ----------------------------------------------------------------------------------------------
# Running


def _read(path):
    try:
        with open(path) as handle:
            return handle.read()
    except FileNotFoundError:
        return None


def plan_conf(params, builtin):
    """(text the file should have or None for no file, current text or None, dirs listed)."""
    conf = params.get("conf")
    if not conf:
        return None, None, []
    covered = conf_dirs_listed(params["ld_so_conf"], exclude=[conf]) | builtin
    wanted = []
    for d in params.get("conf_dirs") or []:
        if os.path.realpath(d) not in covered and d not in wanted:
            wanted.append(d)
    current = _read(conf)
    if current is not None and params["marker"] not in current.split("\n", 1)[0]:
        if wanted:
            raise LoaderError(
                f"{conf} exists and was not written by this project, so it is not overwritten and "
                f"{', '.join(wanted)} stay unregistered: move it aside (or list them there yourself)"
            )
        return None, None, []  # someone else's file with nothing to add: left alone
    return (conf_text(params["marker"], wanted) if wanted else None), current, wanted


def write_conf(path, text):
    if text is None:
        os.unlink(path)
        return
    tmp = path + ".gpu-stack-tmp"
    with open(tmp, "w") as handle:
        handle.write(text)
    os.chmod(tmp, 0o644)
    os.replace(tmp, path)


def run(params, check_mode, command):
    """command(argv) -> stdout, raising LoaderError on failure. Returns the module result."""

    def state():
        cache = parse_cache(command(["ldconfig", "-p"]))
        scanned, builtin = parse_scanned(command(["ldconfig", "-v", "-N", "-X"]))
        return cache, scanned, builtin

    cache, scanned, builtin = state()
    want, current, listed = plan_conf(params, builtin)
    expected, missing, aliases = collect(params)
    stale = []
    diff = None
    if want != current:
        stale.append(
            f"{params['conf']} {'would be ' if check_mode else ''}{'written' if want else 'removed'}"
        )
        diff = {
            "before_header": params["conf"],
            "after_header": params["conf"],
            "before": current or "",
            "after": want or "",
        }
    stale += evaluate(expected, cache, scanned) + vanished(cache)
    result = {
        "changed": bool(stale),
        "conf_dirs": listed,
        "refreshed": False,
        "stale": stale,
        "libraries": len(expected),
        "missing": missing,
        "aliases": aliases,
    }
    if diff:
        result["diff"] = diff
    if not stale:
        result["msg"] = f"the loader cache resolves all {len(expected)} libraries"
        return result
    if check_mode:
        result["msg"] = "ldconfig would run: " + "; ".join(stale)
        return result
    if want != current:
        write_conf(params["conf"], want)
    command(["ldconfig"])
    cache, scanned, _ = state()
    left = evaluate(expected, cache, scanned)
    if left:
        raise LoaderError(_unresolved_text(left, expected, scanned, params.get("hint")))
    result.update(refreshed=True, msg="ldconfig refreshed the loader cache: " + "; ".join(stale))
    return result


def _unresolved_text(left, expected, scanned, hint):
    unsearched = sorted({e["dir"] for e in expected if e["dir"] not in scanned})
    text = "the loader cache still does not resolve these libraries after ldconfig: " + "; ".join(left)
    if unsearched:
        text += (
            f". The loader does not search {', '.join(unsearched)} (no entry in /etc/ld.so.conf or "
            "/etc/ld.so.conf.d)"
        )
    text += ". TensorFlow would not load them, or load other files of the same name"
    return text + (f". {hint}" if hint else "")


def main():
    module = AnsibleModule(
        argument_spec=dict(
            conf=dict(type="path"),
            conf_dirs=dict(type="list", elements="path", default=[]),
            marker=dict(type="str", default="Managed by opensuse-gpu-stack"),
            paths=dict(type="list", elements="str", default=[]),
            manifests=dict(type="list", elements="path", default=[]),
            dirs=dict(type="list", elements="path", default=[]),
            names=dict(type="list", elements="str", default=[]),
            hint=dict(type="str", default=""),
            ld_so_conf=dict(type="path", default="/etc/ld.so.conf"),
        ),
        supports_check_mode=True,
    )
    ldconfig = module.get_bin_path("ldconfig", required=True, opt_dirs=["/sbin", "/usr/sbin"])

    def command(argv):
        rc, out, err = module.run_command([ldconfig, *argv[1:]], environ_update={"LC_ALL": "C"})
        if rc != 0:
            raise LoaderError(f"{' '.join(argv)} failed (exit {rc}): {err.strip() or out.strip()}")
        return out

    try:
        result = run(module.params, module.check_mode, command)
    except (LoaderError, manifests.ManifestError) as exc:
        module.fail_json(msg=str(exc))
    except OSError as exc:
        module.fail_json(msg=f"changing the loader configuration failed: {exc}")
    module.exit_json(**result)


if __name__ == "__main__":
    main()
