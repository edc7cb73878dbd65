#!/usr/bin/env python3
"""Download the ML virtualenv's exact pinned requirements into one wheelhouse, for offline installs.

    tools/wheelhouse.py --out DIR [--python 3.11 --python 3.13] [--cuda-mode both|system|pip]
                        [--tensorflow 2.21.0] [--platform manylinux_2_28_x86_64] [--json]

Reads the pins the ml_venv role installs (roles/ml_venv/vars/main.yml: the tested package set of the
TensorFlow release; pins.yml for the release) and runs
`pip download --only-binary=:all:` once per target Python with that Python's and platform's tags, so a
controller of any Python can fill a wheelhouse for the hosts' Pythons (Leap/SLE 15: 3.11; Leap 16,
SLE 16, Tumbleweed: 3.13). `--cuda-mode pip` (or `both`, the default) adds TensorFlow's [and-cuda] wheels
(NVIDIA's CUDA and cuDNN libraries, about 2.5 GB). Files already in DIR are kept (pip skips them), so a
second run only fetches what changed.

Writes DIR/SHA256SUMS (sha256sum format) and DIR/wheelhouse.json: the TensorFlow release, each target's
Python, platform tags, CUDA mode and requirement lines, and every file with its sha256. The ml_venv role
installs from DIR with `--no-index` when ml_venv_wheelhouse is set, and checks that DIR holds every pin
first. Exit codes: 0 done, 1 a download failed, 2 usage error (unknown TensorFlow release ...).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[1]
PIN_SETS = REPO / "roles" / "ml_venv" / "vars" / "main.yml"
VERSIONS = REPO / "pins.yml"
# manylinux tags a host of the supported platforms takes (glibc 2.28 and newer), newest first: TensorFlow
# 2.21 ships manylinux_2_27, numpy manylinux_2_28, most others manylinux2014 (2_17)
DEFAULT_PLATFORMS = (
    "manylinux_2_28_x86_64",
    "manylinux_2_27_x86_64",
    "manylinux_2_17_x86_64",
    "manylinux2014_x86_64",
)
DEFAULT_PYTHONS = ("3.11", "3.13")
MANIFEST = "wheelhouse.json"


class UsageError(Exception):
    """Bad input (exit 2)."""


def pin_set(tensorflow: str, path: Path = PIN_SETS) -> dict:
    """The ml_venv role's tested set for a TensorFlow release: {'packages': [...], 'constraints': [...]}."""
    sets = yaml.safe_load(path.read_text())["__ml_venv_pin_sets"]
    if tensorflow not in sets:
        raise UsageError(
            f"no pinned package set for TensorFlow {tensorflow} in {path} (known: {', '.join(sets)})"
        )
    return sets[tensorflow]


def requirement_lines(tensorflow: str, pins: dict, cuda_mode: str) -> tuple[list[str], list[str]]:
    """(requirements, constraints) exactly as the ml_venv role renders them for a CUDA mode."""
    extra = "[and-cuda]" if cuda_mode == "pip" else ""
    requirements = [f"tensorflow{extra}=={tensorflow}", *pins["packages"]]
    return requirements, list(pins["constraints"])


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def pip_download(
    out: Path,
    python: str,
    platforms: list[str],
    requirements: list[str],
    constraints: list[str],
    find_links: Path | None = None,
) -> int:
    """`pip download` of the pinned set for one target Python into `out`; returns pip's exit code. With
    `find_links`, only from that directory (no index, no network): a subset of an existing wheelhouse."""
    with tempfile.TemporaryDirectory() as tmp:
        req = Path(tmp) / "requirements.txt"
        con = Path(tmp) / "constraints.txt"
        req.write_text("\n".join(requirements) + "\n")
        con.write_text("\n".join(constraints) + "\n")
        cmd = [
            sys.executable,
            "-m",
            "pip",
            "download",
            "--quiet",
            "--disable-pip-version-check",
            "--only-binary=:all:",
            "--implementation",
            "cp",
            "--python-version",
            python,
            "--abi",
            f"cp{python.replace('.', '')}",
            "--dest",
            str(out),
            "-r",
            str(req),
            "-c",
            str(con),
        ]
        for tag in platforms:
            cmd += ["--platform", tag]
        if find_links is not None:
            cmd += ["--no-index", "--find-links", str(find_links)]
        return subprocess.run(cmd, check=False).returncode


def write_manifest(out: Path, tensorflow: str, targets: list[dict]) -> dict:
    files = {p.name: sha256_file(p) for p in sorted(out.glob("*.whl"))}
    (out / "SHA256SUMS").write_text("".join(f"{digest}  {name}\n" for name, digest in files.items()))
    manifest = {
        "tensorflow": tensorflow,
        "targets": targets,
        "files": files,
        "written_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    }
    tmp = out / f".{MANIFEST}.tmp-{os.getpid()}"
    tmp.write_text(json.dumps(manifest, indent=2, sort_keys=True) + "\n")
    os.replace(tmp, out / MANIFEST)
    return manifest


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, required=True, help="wheelhouse directory (created)")
    ap.add_argument(
        "--python", action="append", help=f"target Python X.Y (default: {', '.join(DEFAULT_PYTHONS)})"
    )
    ap.add_argument("--platform", action="append", help="pip platform tag (default: manylinux x86_64 tags)")
    ap.add_argument(
        "--cuda-mode",
        choices=["both", "system", "pip"],
        default="both",
        help="system: TensorFlow only; pip: with its CUDA wheels; both (default)",
    )
    ap.add_argument("--tensorflow", help="TensorFlow release (default: gpu_stack_tensorflow_version)")
    ap.add_argument("--find-links", type=Path, help="take the wheels from this directory only (no network)")
    ap.add_argument("--json", action="store_true", help="print the manifest's summary as JSON")
    args = ap.parse_args(argv)
    try:
        tensorflow = args.tensorflow or str(
            yaml.safe_load(VERSIONS.read_text())["gpu_stack_tensorflow_version"]
        )
        pins = pin_set(tensorflow)
    except UsageError as exc:
        print(f"wheelhouse: {exc}", file=sys.stderr)
        return 2
    out = args.out.resolve()
    out.mkdir(parents=True, exist_ok=True)
    modes = ["system", "pip"] if args.cuda_mode == "both" else [args.cuda_mode]
    platforms = list(args.platform or DEFAULT_PLATFORMS)
    targets = []
    t0 = time.monotonic()
    for python in args.python or DEFAULT_PYTHONS:
        for mode in modes:
            requirements, constraints = requirement_lines(tensorflow, pins, mode)
            rc = pip_download(out, python, platforms, requirements, constraints, args.find_links)
            if rc != 0:
                print(
                    f"wheelhouse: pip download for Python {python}, CUDA mode {mode} failed (rc {rc})",
                    file=sys.stderr,
                )
                return 1
            targets.append(
                {
                    "python": python,
                    "platforms": platforms,
                    "cuda_mode": mode,
                    "requirements": requirements,
                    "constraints": constraints,
                }
            )
    manifest = write_manifest(out, tensorflow, targets)
    size = sum((out / name).stat().st_size for name in manifest["files"])
    summary = {
        "ok": True,
        "out": str(out),
        "tensorflow": tensorflow,
        "files": len(manifest["files"]),
        "bytes": size,
        "seconds": round(time.monotonic() - t0, 1),
        "targets": [f"{t['python']}/{t['cuda_mode']}" for t in targets],
    }
    if args.json:
        print(json.dumps(summary, sort_keys=True))
    else:
        print(
            f"wheelhouse: {summary['files']} wheels, {size / 1e9:.2f} GB in {out} "
            f"({', '.join(summary['targets'])}) in {summary['seconds']} s"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
