"""Manifests of what the project's modules created: one JSON file per role under /var/lib/opensuse-gpu-stack.

A manifest is {"schema": 1, "role": ..., "state": ..., "entries": [record], "created_dirs": [...], ...};
each record has at least "path" and "kind" ("file", "link" or "dir"). Removal takes away only records
that are still as created, which each module decides with its own `matches(record)`.

Shared by the cudnn_archive and soname_links modules, imported as
ansible_collections.gpu_stack.opensuse.plugins.module_utils.gpu_stack_manifest. Standard library only:
it runs on the managed host.
"""

import errno
import json
import os
import stat
import tempfile

SCHEMA = 1


class ManifestError(Exception):
    """A manifest that is not valid JSON or has an unknown format."""


def lstat_or_none(path):
    """os.lstat, or None when the path (or a parent) does not exist."""
    try:
        return os.lstat(path)
    except OSError as exc:
        if exc.errno in (errno.ENOENT, errno.ENOTDIR):
            return None
        raise


def load(path):
    """The manifest at path, None when there is none; ManifestError when it cannot be used."""
    try:
        with open(path) as handle:
            data = json.load(handle)
    except OSError as exc:
        if exc.errno == errno.ENOENT:
            return None
        raise
    except ValueError as exc:
        raise ManifestError(f"manifest {path} is not valid JSON ({exc}): move it aside and rerun") from exc
    if (
        not isinstance(data, dict)
        or data.get("schema") != SCHEMA
        or not isinstance(data.get("entries"), list)
    ):
        raise ManifestError(f"manifest {path} has an unknown format: move it aside and rerun")
    return data


def write(path, data):
    """Write the manifest atomically (fsync, rename), 0644.

    Missing parent directories are created (0755) and added to data["created_dirs"], so that removing
    everything also removes them.
    """
    parent = os.path.dirname(path)
    missing = []
    cur = parent
    while cur and not os.path.isdir(cur):
        missing.append(cur)
        cur = os.path.dirname(cur)
    for d in reversed(missing):
        os.mkdir(d, 0o755)
        os.chmod(d, 0o755)
    data["created_dirs"] = sorted(set(data.get("created_dirs", [])) | set(missing))
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
    return data


def _removal_order(records):
    """Files and links first, then directories, deepest first."""
    files = [r for r in records if r["kind"] != "dir"]
    dirs = sorted((r for r in records if r["kind"] == "dir"), key=lambda r: r["path"], reverse=True)
    return files + dirs


def remove_records(records, matches):
    """Remove the records still as created (directories only when empty); return (removed, kept).

    matches(record) says whether a file or link record is still as created. Paths already gone are
    neither removed nor kept.
    """
    removed, kept = [], []
    for record in _removal_order(records):
        path = record["path"]
        st = lstat_or_none(path)
        if st is None:
            continue
        if record["kind"] == "dir":
            if stat.S_ISDIR(st.st_mode) and not os.listdir(path):
                os.rmdir(path)
                removed.append(path)
            else:
                kept.append(path)
        elif matches(record):
            os.unlink(path)
            removed.append(path)
        else:
            kept.append(path)
    return removed, kept


def would_remove(records, matches):
    """What remove_records would do (check mode): (removed, kept)."""
    removed, kept = [], []
    for record in _removal_order(records):
        st = lstat_or_none(record["path"])
        if st is None:
            continue
        if (record["kind"] == "dir" and stat.S_ISDIR(st.st_mode)) or (
            record["kind"] != "dir" and matches(record)
        ):
            removed.append(record["path"])
        else:
            kept.append(record["path"])
    return removed, kept


def listing(paths):
    """Sorted paths, one per line: the before/after text of a diff."""
    return "".join(p + "\n" for p in sorted(paths))


def remove_recorded(manifest_path, matches, check_mode, changed_since):
    """Remove what the manifest records (its entries, then the directories it created) and the manifest
    itself; a record changed since it was created (matches(record) false) is kept and warned about, ending
    "changed since <changed_since>". None when there is no manifest, else the result keys changed,
    removed, kept, diff (and warnings)."""
    manifest = load(manifest_path)
    if manifest is None:
        return None
    records = manifest["entries"]
    if check_mode:
        removed, kept = would_remove(records, matches)
        removed.append(manifest_path)
    else:
        removed, kept = remove_records(records, matches)
        os.unlink(manifest_path)
        removed.append(manifest_path)
        created_dirs = [{"path": d, "kind": "dir"} for d in manifest.get("created_dirs", [])]
        more, _ = remove_records(created_dirs, matches)
        removed.extend(more)
    result = {
        "changed": True,
        "removed": removed,
        "kept": kept,
        "diff": {"before": listing(removed + kept), "after": listing(kept)},
    }
    if kept:
        result["warnings"] = [
            "left in place because they changed since {}: {}".format(changed_since, ", ".join(kept))
        ]
    return result
