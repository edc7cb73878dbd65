#!/usr/bin/env python3
"""Write an offline bundle: everything a site without internet needs to run site.yml, in one folder.

    tools/offline_bundle.py --out DIR --cudnn-archive FILE
        [--cuda-local-installer FILE | --cuda-mirror URL] [--python 3.11 ...] [--cuda-mode system|pip|both]
        [--wheels-from DIR] [--mnist FILE] [--tarball]

DIR gets:
  wheelhouse/       the ML virtualenv's exact pinned wheels for the target Pythons and CUDA modes
                    (tools/wheelhouse.py; with --wheels-from taken from an existing wheelhouse, no network)
  cudnn/            the cuDNN archive (NVIDIA's license does not allow the project to ship it: bring your own)
  cuda/             NVIDIA's CUDA local-installer RPM, when given (else MIRROR.md says how to mirror the
                    CUDA repository and point cuda_repo_mirror at it)
  validation/       the validation package's wheel (the gpu_validation role builds the same from the sources
                    it ships with; this copy is for hosts that install it by hand)
  mnist/            Keras' mnist.npz, when given (sha256-checked against Keras' published one)
  offline.yml       variables for the inventory (group_vars/all/offline.yml, or -e @DIR/offline.yml) that
                    point the roles at the bundle on the controller, with every file's sha256
  SHA256SUMS        every file of the bundle
and, with --tarball, DIR.tar beside it. Exit codes: 0 written, 1 a step failed, 2 usage error.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tarfile
import tempfile
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tools"))
import wheelhouse  # noqa: E402  (tools/wheelhouse.py, beside this file)

# Keras' mnist.npz (keras.datasets.mnist.load_data: file_hash)
MNIST_SHA256 = "731c5ac602752760c8e48fbffcf8c3b850d9dc2a2aedcf2cc48468fc17b673d1"
MIRROR_NOTE = """# Mirroring NVIDIA's CUDA repository

Without a local-installer RPM, mirror NVIDIA's repository directory for your platform (opensuse15,
sles15 or suse16; x86_64 or sbsa) on a machine with internet, copy it to a web server or a directory
the hosts can read, and point the cuda_repo role at it; the key fingerprint stays NVIDIA's:

    wget --mirror --no-parent --no-host-directories --cut-dirs=4 \\
        https://developer.download.nvidia.com/compute/cuda/repos/opensuse15/x86_64/

    cuda_repo_mirror: https://mirror.example.org/cuda/repos   # the role appends <dist>/<arch>

The repository's metadata stays signed by NVIDIA's key, so GPG checks stay on.
"""


class UsageError(Exception):
    """Bad input (exit 2)."""


def sha256_file(path: Path) -> str:
    return wheelhouse.sha256_file(path)


def copy_into(src: Path, dest_dir: Path) -> Path:
    if not src.is_file():
        raise UsageError(f"{src} does not exist or is not a file")
    dest_dir.mkdir(parents=True, exist_ok=True)
    dest = dest_dir / src.name
    try:
        if dest.exists():
            dest.unlink()
        os.link(src, dest)  # same filesystem: no second copy of a multi-GB archive
    except OSError:
        shutil.copy2(src, dest)
    return dest


def fill_wheelhouse(out: Path, pythons: list[str], cuda_mode: str, wheels_from: Path | None) -> None:
    args = ["--out", str(out), "--cuda-mode", cuda_mode]
    for python in pythons:
        args += ["--python", python]
    if wheels_from is not None:
        args += ["--find-links", str(wheels_from)]
    if wheelhouse.main(args) != 0:
        raise RuntimeError("filling the wheelhouse failed")


def build_validation_wheel(out: Path) -> Path:
    out.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        res = subprocess.run(
            [
                sys.executable,
                "-m",
                "pip",
                "wheel",
                "--quiet",
                "--no-deps",
                "--no-build-isolation",
                "--wheel-dir",
                tmp,
                str(REPO / "validation"),
            ],
            check=False,
        )
        wheels = sorted(Path(tmp).glob("*.whl"))
        if res.returncode != 0 or len(wheels) != 1:
            raise RuntimeError(f"building the validation package's wheel failed (rc {res.returncode})")
        return Path(shutil.copy2(wheels[0], out / wheels[0].name))


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, required=True, help="bundle directory (created)")
    ap.add_argument("--cudnn-archive", type=Path, required=True, help="NVIDIA's cuDNN archive")
    route = ap.add_mutually_exclusive_group()
    route.add_argument("--cuda-local-installer", type=Path, help="NVIDIA's cuda-repo-<dist>-X-Y-local RPM")
    route.add_argument("--cuda-mirror", help="URL of a mirror of NVIDIA's CUDA repository tree")
    ap.add_argument("--python", action="append", help="target Python X.Y (default: 3.11 and 3.13)")
    ap.add_argument("--cuda-mode", choices=["both", "system", "pip"], default="both")
    ap.add_argument("--wheels-from", type=Path, help="take the wheels from this wheelhouse (no network)")
    ap.add_argument("--mnist", type=Path, help="Keras' mnist.npz, for benchmarks on the real data")
    ap.add_argument("--tarball", action="store_true", help="also write DIR.tar")
    args = ap.parse_args(argv)
    out = args.out.resolve()
    try:
        if out.exists() and any(out.iterdir()):
            raise UsageError(f"{out} exists and is not empty: give a new directory")
        out.mkdir(parents=True, exist_ok=True)
        fill_wheelhouse(
            out / "wheelhouse",
            args.python or list(wheelhouse.DEFAULT_PYTHONS),
            args.cuda_mode,
            args.wheels_from,
        )
        cudnn = copy_into(args.cudnn_archive, out / "cudnn")
        offline: dict = {
            "ml_venv_wheelhouse": str(out / "wheelhouse"),
            "ml_venv_wheelhouse_remote_src": False,
            "cudnn_source": "controller",
            "cudnn_archive_src": str(cudnn),
            "cudnn_archive_sha256": sha256_file(cudnn),
        }
        # The gpu_validation role builds the package from its sources on the controller; the wheel is kept
        # here for hosts that install it by hand (pip install --no-index DIR/validation/*.whl)
        build_validation_wheel(out / "validation")
        if args.cuda_local_installer:
            rpm = copy_into(args.cuda_local_installer, out / "cuda")
            offline.update(
                cuda_repo_route="local_installer",
                cuda_repo_local_installer=str(rpm),
                cuda_repo_local_installer_remote_src=False,
                cuda_repo_local_installer_sha256=sha256_file(rpm),
            )
        else:
            (out / "cuda").mkdir()
            (out / "cuda" / "MIRROR.md").write_text(MIRROR_NOTE)
            if args.cuda_mirror:
                offline["cuda_repo_mirror"] = args.cuda_mirror
        if args.mnist:
            digest = sha256_file(args.mnist)
            if digest != MNIST_SHA256:
                raise UsageError(f"{args.mnist} has sha256 {digest}, not Keras' mnist.npz ({MNIST_SHA256})")
            mnist = copy_into(args.mnist, out / "mnist")
            offline.update(gpu_validation_mnist_src=str(mnist))
        (out / "offline.yml").write_text(
            "---\n# Written by tools/offline_bundle.py: points the roles at this bundle on the controller.\n"
            + yaml.safe_dump(offline, sort_keys=True, width=110)
        )
        files = sorted(p for p in out.rglob("*") if p.is_file() and p.name != "SHA256SUMS")
        (out / "SHA256SUMS").write_text("".join(f"{sha256_file(p)}  {p.relative_to(out)}\n" for p in files))
        if args.tarball:
            with tarfile.open(out.with_suffix(".tar"), "w") as tar:
                tar.add(out, arcname=out.name)
    except UsageError as exc:
        print(f"offline_bundle: {exc}", file=sys.stderr)
        return 2
    except (RuntimeError, OSError) as exc:
        print(f"offline_bundle: {exc}", file=sys.stderr)
        return 1
    size = sum(p.stat().st_size for p in out.rglob("*") if p.is_file())
    print(f"offline_bundle: {out} ({size / 1e9:.2f} GB); use it with -e @{out / 'offline.yml'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
