#!/usr/bin/env bash
# Download the wheels the GPU machine lacks for the device check (it has numpy, jax, torch, cupy,
# h5py, ml-dtypes, rich, absl-py, but no keras, namex, optree or nvidia-ml-py, and no network), for its Python
# 3.12 on x86-64. They go to an ignored folder that the device call carries; never commit them.
# Usage: tests/device/fetch_wheels.sh [DEST]   (default: .cache/device-wheels)
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
DEST="${1:-$ROOT/.cache/device-wheels}"
PIP="${PIP:-python3 -m pip}"
# keras as in the project's wheelhouse (TF 2.20's Keras 3); namex and optree are its two pure deps
# missing there. optree is compiled: fetch the cp312 manylinux build.
KERAS_VERSION=3.15.1
NAMEX_VERSION=0.1.0
OPTREE_VERSION=0.20.0
# NVIDIA's NVML binding, the validation package's dependency (pure Python), as pinned in ml_venv's set
NVML_VERSION=13.615.71
mkdir -p "$DEST"
# shellcheck disable=SC2086  # PIP may be "python3 -m pip"
$PIP download --quiet --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
    --platform manylinux_2_28_x86_64 --platform manylinux_2_27_x86_64 \
    --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 \
    -d "$DEST" "keras==$KERAS_VERSION" "namex==$NAMEX_VERSION" "optree==$OPTREE_VERSION" \
    "nvidia-ml-py==$NVML_VERSION"
ls -l "$DEST"
