"""Keep converged sandbox hosts as snapshots, and reuse them while nothing they were built from changed.

    converge_cache.py digest                 print the digest of the converge's inputs
    converge_cache.py restore HOST...        bring each HOST up from its snapshot converged-HOST; exit 1
                                             (nothing brought up) unless every one is current
    converge_cache.py save HOST...           turn each HOST into snapshot converged-HOST (the host goes down);
                                             a host already running on its current snapshot is just taken down

The inputs are every file of the roles, playbooks, inventory, pins, collection metadata, plugins,
validation package and Ansible configuration (tracked or not, as they are in the working tree), the
wheelhouse manifest, the stub repositories' stamp, and the sandbox layers under each host (a rebuilt
platform layer makes its snapshots unusable). Integration scenarios start from these snapshots instead
of converging again (tests/integration/conftest.py: converged_host).
"""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from sandbox import sandboxctl as sc  # noqa: E402

INPUTS = (
    "roles",
    "playbooks",
    "inventory/group_vars",
    "pins.yml",
    "meta",
    "plugins",
    "validation",
    "site.yml",
    "ansible.cfg",
    "requirements.txt",
)
PREFIX = "converged-"


def hash_inputs(
    layout: sc.Layout, pathspecs: tuple[str, ...] = (), seed: bytes = b"", built: bool = True
) -> hashlib._Hash:
    """sha256 over `seed`, every file git sees under `pathspecs` (all of the tree when empty; tracked, or
    untracked and not ignored; a symlink by its target) and, when `built`, the wheelhouse manifest and the
    stub repositories' stamp (it hashes their inputs): what the hosts are built from. Also used by
    tests/result_cache.py."""
    files = subprocess.run(
        ["git", "ls-files", "--cached", "--others", "--exclude-standard", "-z", "--", *pathspecs],
        cwd=layout.repo_root,
        capture_output=True,
        check=True,
    ).stdout.split(b"\0")
    h = hashlib.sha256(seed)
    for rel in sorted(f for f in files if f):
        path = layout.repo_root / rel.decode()
        if path.is_symlink():
            h.update(rel + b"\0link\0" + os.readlink(path).encode())
        elif path.is_file():
            h.update(rel + b"\0" + hashlib.sha256(path.read_bytes()).digest())
    for name, path in (
        ("wheelhouse", layout.wheelhouse / "wheelhouse.json"),
        ("repos", layout.repos / ".stamp.json"),
    ) if built else ():
        h.update(name.encode() + b"\0" + (path.read_bytes() if path.is_file() else b""))
    return h


def digest(layout: sc.Layout = sc.DEFAULT_LAYOUT) -> str:
    return hash_inputs(layout, INPUTS).hexdigest()[:16]


def snapshot_name(host: str) -> str:
    return f"{PREFIX}{host}"


def current(layout: sc.Layout, host: str, inputs: str) -> bool:
    """The snapshot of `host` exists, was taken with these inputs, and its layers are the current ones."""
    try:
        stamp = sc.read_snapshot(layout, snapshot_name(host))
        platform = sc.load_platforms()[stamp["platform"]]
        layers = sc.current_layers(layout, platform)
    except (sc.EnvironmentProblem, KeyError):
        return False
    return stamp.get("label") == inputs and stamp["lowers"] == [str(p) for p in layers.lowers]


def restore(hosts: list[str], layout: sc.Layout = sc.DEFAULT_LAYOUT) -> int:
    inputs = digest(layout)
    stale = [h for h in hosts if not current(layout, h, inputs)]
    if stale:
        print(f"converge_cache: no current snapshot for {', '.join(stale)} (inputs {inputs}): converging")
        return 1
    for host in hosts:
        sc.host_down(layout, host)
        sc.host_up(layout, host, snapshot=snapshot_name(host))
    print(f"converge_cache: {len(hosts)} host(s) restored from the converge with the same inputs ({inputs})")
    return 0


def save(hosts: list[str], layout: sc.Layout = sc.DEFAULT_LAYOUT) -> int:
    inputs = digest(layout)
    for host in hosts:
        info = sc.host_infos(layout).get(host, {})
        if info.get("snapshot") == snapshot_name(host) and current(layout, host, inputs):
            sc.host_down(layout, host)  # restored from it: the snapshot already holds this converge
            continue
        sc.snapshot_host(layout, host, snapshot_name(host), label=inputs)
    print(f"converge_cache: {len(hosts)} snapshot(s) current (inputs {inputs})")
    return 0


def main(argv: list[str]) -> int:
    if argv[:1] == ["digest"]:
        print(digest())
        return 0
    if len(argv) >= 2 and argv[0] in ("restore", "save"):
        try:
            return (restore if argv[0] == "restore" else save)(argv[1:])
        except sc.SandboxError as exc:
            print(f"converge_cache: {exc}", file=sys.stderr)
            return exc.exit_code
    print(__doc__, file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
