"""Unit tests for plugins/filter/gpu_stack_preflight.py (pure functions) and for the
version pins kept in pins.yml, which the preflight role checks."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[2]
SPEC = importlib.util.spec_from_file_location(
    "gpu_stack_preflight", REPO / "plugins/filter/gpu_stack_preflight.py")
pf = importlib.util.module_from_spec(SPEC)
SPEC.loader.exec_module(pf)

PREFLIGHT_VARS = yaml.safe_load((REPO / "roles/preflight/vars/main.yml").read_text())
PLATFORMS = PREFLIGHT_VARS["__preflight_supported_platforms"]
PINS = yaml.safe_load((REPO / "pins.yml").read_text())
TABLE = PINS["gpu_stack_tensorflow_build_table"]
MIN_DRIVER = PINS["gpu_stack_cuda_min_driver"]


# --- platform


@pytest.mark.parametrize(
    ("dist", "major", "arch"),
    [
        ("openSUSE Leap", "15", "x86_64"),
        ("openSUSE Leap", "16", "aarch64"),
        ("openSUSE Tumbleweed", "20260101", "x86_64"),
        ("SLES", "15", "aarch64"),
        ("SLES", "16", "x86_64"),
    ],
)
def test_supported_platforms(dist, major, arch):
    assert pf.gpu_stack_platform_match(PLATFORMS, dist, major, arch)["supported"]


def test_debian_is_unsupported_and_message_lists_supported():
    res = pf.gpu_stack_platform_match(PLATFORMS, "Debian", "12", "x86_64")
    assert not res["supported"]
    assert res["reason"] == "Debian 12 is not a supported distribution"
    assert "openSUSE Leap 15 (x86_64)" in res["supported_list"]
    assert "openSUSE Tumbleweed (x86_64, aarch64)" in res["supported_list"]


def test_leap15_aarch64_has_no_nvidia_repo():
    res = pf.gpu_stack_platform_match(PLATFORMS, "openSUSE Leap", "15", "aarch64")
    assert not res["supported"]
    assert "no CUDA repository for openSUSE Leap 15 on aarch64" in res["reason"]


def test_unknown_major_of_known_distribution():
    assert not pf.gpu_stack_platform_match(PLATFORMS, "SLES", "12", "x86_64")["supported"]


# --- free space


MOUNTS = [
    {"mount": "/", "size_available": 10},
    {"mount": "/usr", "size_available": 20},
    {"mount": "/usr/local", "size_available": 30},
    {"mount": "/usr/localx", "size_available": 40},
]


@pytest.mark.parametrize(
    ("path", "mount"),
    [("/usr/local", "/usr/local"), ("/usr/local/cuda-12.5", "/usr/local"), ("/usr/lib", "/usr"),
     ("/opt", "/"), ("/usr/localx/y", "/usr/localx"), ("usr/local/", "/usr/local")],
)
def test_mount_for_picks_longest_prefix(path, mount):
    assert pf.gpu_stack_mount_for(MOUNTS, path)["mount"] == mount


def test_mount_for_without_mounts():
    assert pf.gpu_stack_mount_for([], "/usr/local") == {}
    assert pf.gpu_stack_mount_for(None, "/usr/local") == {}


def test_df_mount_parses_posix_output():
    out = ("Filesystem     1024-blocks     Used Available Capacity Mounted on\n"
           "overlay          264211496 47867784 202544216      20% /\n")
    expected = {"device": "overlay", "mount": "/", "size_available": 202544216 * 1024}
    assert pf.gpu_stack_df_mount(out) == expected


def test_df_mount_keeps_spaces_in_mount_point():
    out = "Filesystem 1024-blocks Used Available Capacity Mounted on\n/dev/sda1 100 50 50 50% /mnt/my disk\n"
    assert pf.gpu_stack_df_mount(out)["mount"] == "/mnt/my disk"


@pytest.mark.parametrize("out", ["", "df: /nope: No such file or directory\n", "a\nb c d e f g\n"])
def test_df_mount_unparsable(out):
    assert pf.gpu_stack_df_mount(out) == {}


# --- versions


def test_repository_pins_fit_the_table():
    res = pf.gpu_stack_build_check(
        TABLE, PINS["gpu_stack_tensorflow_version"], PINS["gpu_stack_cuda_version"],
        PINS["gpu_stack_cudnn_version"], PINS["gpu_stack_python_version"],
        PINS["gpu_stack_nvidia_driver_version"], MIN_DRIVER)
    assert res["ok"], res["problems"]
    assert res["row"]["cuda"] == PINS["gpu_stack_cuda_version"]


def test_pins_are_strings_not_floats():
    # 12.10 written unquoted would become the float 12.1
    for key in ("gpu_stack_cuda_version", "gpu_stack_python_version", "gpu_stack_cudnn_version"):
        assert isinstance(PINS[key], str), key


def test_wrong_cuda_names_the_versions_that_fit():
    res = pf.gpu_stack_build_check(TABLE, "2.20.0", "12.3", "9.3.0.75", "3.11")
    assert not res["ok"]
    assert res["problems"] == ["CUDA 12.3 does not match TensorFlow 2.20 (built for CUDA 12.5)"]
    assert res["fits"] == "TensorFlow 2.20 fits CUDA 12.5, cuDNN 9.3.x and Python 3.9-3.13"


def test_wrong_cudnn_and_python():
    res = pf.gpu_stack_build_check(TABLE, "2.17.1", "12.3", "9.3.0.75", "3.13")
    assert res["problems"] == [
        "cuDNN 9.3.0.75 does not match TensorFlow 2.17 (built for cuDNN 8.9)",
        "Python 3.13 is outside TensorFlow 2.17's range 3.9-3.12",
    ]


@pytest.mark.parametrize("python", ["3.9", "3.13", "3.11.7"])
def test_python_range_is_inclusive(python):
    assert pf.gpu_stack_build_check(TABLE, "2.20.0", "12.5", "9.3.0.75", python)["ok"]


def test_python_compares_numerically_not_as_text():
    # "3.10" < "3.9" as text; as versions it is inside 3.9-3.13
    assert pf.gpu_stack_build_check(TABLE, "2.20.0", "12.5", "9.3.0.75", "3.10")["ok"]


def test_unknown_tensorflow_lists_known_releases_and_cuda_match():
    res = pf.gpu_stack_build_check(TABLE, "2.99.0", "12.5", "9.3.0.75", "3.11")
    assert res["problems"] == ["TensorFlow 2.99 is not in the build table"]
    assert "2.21" in res["fits"] and "1.13" in res["fits"]
    assert "CUDA 12.5 fits TensorFlow 2.18, 2.19, 2.20, 2.21" in res["fits"]


def test_original_procedure_pins():
    # The original procedure: TF 1.13 with CUDA 10.0 and cuDNN 7.4 is a valid row
    assert pf.gpu_stack_build_check(TABLE, "1.13.1", "10.0", "7.4.2.24", "3.6")["ok"]


@pytest.mark.parametrize(
    ("driver", "ok"), [("525.60.13", True), ("555.42.06", True), ("470.57.02", False), ("525.60.9", False)])
def test_driver_minimum_for_cuda_major(driver, ok):
    res = pf.gpu_stack_build_check(TABLE, "2.20.0", "12.5", "9.3.0.75", "3.11", driver, MIN_DRIVER)
    assert res["ok"] is ok
    if not ok:
        assert res["problems"] == [f"NVIDIA driver {driver} is older than 525.60.13, the minimum for CUDA 12"]


def test_filters_are_registered():
    assert set(pf.FilterModule().filters()) == {
        "gpu_stack_platform_match", "gpu_stack_mount_for", "gpu_stack_df_mount", "gpu_stack_build_check",
        "gpu_stack_gpu_classify", "gpu_stack_driver_pin_check"}
