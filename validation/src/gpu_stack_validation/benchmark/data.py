"""The benchmark's data: real MNIST from Keras' cache (sha256 checked), or learnable synthetic data."""

from __future__ import annotations

import hashlib
import os
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any

from .core import CLASSES, INPUT_DIM

MNIST_SHA256 = "731c5ac602752760c8e48fbffcf8c3b850d9dc2a2aedcf2cc48468fc17b673d1"
MNIST_URL = "https://storage.googleapis.com/tensorflow/tf-keras-datasets/mnist.npz"
DATA_CHOICES = ("auto", "mnist", "synthetic")


class EnvProblem(Exception):
    """An environment error: exit 2 with this message."""


def sha256_file(path: str | Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def keras_datasets_dir(environ: dict[str, str] | None = None) -> Path:
    """Where Keras caches datasets: $KERAS_HOME/datasets, default ~/.keras/datasets."""
    environ = dict(os.environ) if environ is None else environ
    home = environ.get("KERAS_HOME") or os.path.join(os.path.expanduser("~"), ".keras")
    return Path(home) / "datasets"


def _download(url: str, dest: Path, timeout: float) -> None:
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = dest.with_suffix(".part")
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response, open(tmp, "wb") as out:
            while block := response.read(1 << 20):
                out.write(block)
        tmp.replace(dest)
    finally:
        tmp.unlink(missing_ok=True)


def resolve_mnist(
    datasets_dir: Path,
    allow_download: bool = True,
    fetch: Callable[[str, Path, float], None] | None = None,
    timeout: float = 30.0,
) -> dict[str, Any]:
    """Find (or fetch, as Keras' load_data does) mnist.npz and verify its sha256.

    Raises EnvProblem with the fix in the message when it is missing or wrong.
    """
    fetch = fetch or _download
    path = datasets_dir / "mnist.npz"
    downloaded = False
    if not path.exists():
        if not allow_download:
            raise EnvProblem(
                f"MNIST is not in Keras' cache ({path}) and --no-download was given; "
                "pre-seed that file or use --data synthetic"
            )
        try:
            fetch(MNIST_URL, path, timeout)
            downloaded = True
        except Exception as exc:  # any network/file error is an env problem
            raise EnvProblem(
                f"MNIST is not in Keras' cache ({path}) and the download from {MNIST_URL} "
                f"failed ({type(exc).__name__}: {exc}); offline? copy mnist.npz there "
                f"(sha256 {MNIST_SHA256}) or run with --data synthetic"
            ) from exc
    digest = sha256_file(path)
    if digest != MNIST_SHA256:
        raise EnvProblem(
            f"{path} has sha256 {digest}, expected {MNIST_SHA256}: remove the "
            "file so it is downloaded again, or use --data synthetic"
        )
    return {"path": str(path), "sha256": digest, "downloaded": downloaded}


def choose_data(
    request: str,
    datasets_dir: Path,
    allow_download: bool = True,
    fetch: Callable[[str, Path, float], None] | None = None,
) -> tuple[str, dict[str, Any], str | None]:
    """(data, data_source, note) for --data auto|mnist|synthetic.

    auto: real MNIST when Keras' cache holds a verified copy, else synthetic (never downloads).
    """
    none = {"path": None, "sha256": None, "downloaded": False}
    if request == "synthetic":
        return "synthetic", none, None
    if request == "mnist":
        return "mnist", resolve_mnist(datasets_dir, allow_download, fetch), None
    path = datasets_dir / "mnist.npz"
    if path.exists():
        digest = sha256_file(path)
        if digest == MNIST_SHA256:
            return "mnist", {"path": str(path), "sha256": digest, "downloaded": False}, None
        return "synthetic", none, f"{path} has sha256 {digest}, not MNIST's: timed SYNTHETIC data instead"
    return (
        "synthetic",
        none,
        f"no MNIST in Keras' cache ({path}): timed SYNTHETIC data (--data mnist downloads it)",
    )


def load_data(np: Any, config: dict[str, Any]) -> tuple[Any, Any]:
    """x (N, 784) float32 in [0, 1] and y one-hot (N, 10) float32, as the article prepared them.

    Synthetic: each class has a fixed sparse pattern of lit pixels (about 19% lit, as MNIST digits);
    a sample is its class's pattern with a quarter of the pixels flipped and random intensities, so the
    label is learnable from the pixels and the loss and accuracy mean something.
    """
    n = config["samples"]
    if config["data"] == "mnist":
        with np.load(config["mnist_path"]) as archive:
            x, labels = archive["x_train"][:n], archive["y_train"][:n]
        x = x.reshape(len(x), INPUT_DIM).astype("float32") / 255.0
    else:
        rng = np.random.default_rng(config["seed"])
        patterns = rng.random((CLASSES, INPUT_DIM)) < 0.19
        labels = rng.integers(0, CLASSES, n)
        flip = rng.random((n, INPUT_DIM), dtype=np.float32) < 0.25
        lit = patterns[labels] ^ (flip & (rng.random((n, INPUT_DIM), dtype=np.float32) < 0.3))
        x = (lit * rng.uniform(0.4, 1.0, (n, INPUT_DIM))).astype(np.float32)
    y = np.eye(CLASSES, dtype="float32")[labels]
    return np.ascontiguousarray(x), y
