#!/usr/bin/env python3
"""Build the validation package's wheel on the controller, offline and reproducibly, into a cache directory.

    build_wheel.py SOURCE_DIR OUTPUT_DIR

Runs `pip wheel --no-build-isolation --no-deps --no-index` (the build backend, flit_core, comes from the
controller's requirements.txt, so nothing is downloaded) with SOURCE_DATE_EPOCH fixed, so the same sources
give the same bytes. The wheel replaces the cached one only when its bytes differ. Prints one JSON object:
{"changed": bool, "wheel": path, "name": file name, "sha256": hex}. Exit 0, or 2 with the reason on stderr.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

EPOCH = "315532800"  # 1980-01-01, the earliest time a zip file can hold


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def main(argv: list[str]) -> int:
    if len(argv) != 2:
        print("usage: build_wheel.py SOURCE_DIR OUTPUT_DIR", file=sys.stderr)
        return 2
    source, out = Path(argv[0]), Path(argv[1])
    if not (source / "pyproject.toml").is_file():
        print(f"build_wheel.py: {source}/pyproject.toml is missing: point gpu_validation_package_src at the "
              "project's validation/ directory", file=sys.stderr)
        return 2
    try:
        import flit_core  # noqa: F401  (the backend must be importable here: no download during the build)
    except ImportError:
        print(f"build_wheel.py: the build backend flit_core is not installed in {sys.executable}: "
              "install the controller requirements (pip install -r requirements.txt, or make venv)",
              file=sys.stderr)
        return 2
    out.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=out, prefix=".build-") as tmp:
        env = dict(os.environ, SOURCE_DATE_EPOCH=EPOCH, PIP_DISABLE_PIP_VERSION_CHECK="1")
        proc = subprocess.run(
            [sys.executable, "-m", "pip", "wheel", "--quiet", "--no-build-isolation", "--no-deps",
             "--no-index", "--wheel-dir", tmp, str(source.resolve())],
            env=env, capture_output=True, text=True, check=False,
        )
        built = sorted(Path(tmp).glob("*.whl"))
        if proc.returncode != 0 or len(built) != 1:
            print(f"build_wheel.py: pip wheel {source} failed (exit {proc.returncode}): "
                  f"{(proc.stderr or proc.stdout).strip()[-2000:]}", file=sys.stderr)
            return 2
        new = built[0]
        digest = sha256(new)
        target = out / new.name
        changed = not target.is_file() or sha256(target) != digest
        if changed:
            shutil.move(str(new), target)
        dist = new.name.split("-")[0]
        for stale in out.glob(f"{dist}-*.whl"):  # older versions of the same distribution
            if stale.name != target.name:
                stale.unlink()
                changed = True
    print(json.dumps({"changed": changed, "wheel": str(target), "name": target.name, "sha256": digest}))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
