"""Unit tests of the GPU doctor (validation/src/gpu_stack_validation/doctor).

Pure parsers on the real tools' output formats (fixtures/doctor/, each named with its origin); whole-doctor
runs with the subprocess helper and the probes replaced by a scripted host (GPU machine, sandbox without
GPU, missing cuDNN, old driver, CUDA 13 without TensorFlow, module/user-space mismatch, cross-major alias,
deleted library, pip-mode CUDA wheels, ...); the TensorFlow probe against a fake `tensorflow` package; smoke
runs of the real doctor on the machine running the tests.
"""

from __future__ import annotations

import copy
import fnmatch
import json
import os
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from gpu_stack_validation import common, elf
from gpu_stack_validation.doctor import cli, facts, parsers, pins, probes, report

REPO = Path(__file__).resolve().parents[2]
FIX = Path(__file__).resolve().parent / "fixtures" / "doctor"
PINS = FIX / "pins.json"

# One namespace over the doctor's modules, as the old single-file script had it
gd = SimpleNamespace()
for _mod in (common, elf, parsers, pins, probes, facts, report, cli):
    gd.__dict__.update({k: v for k, v in vars(_mod).items() if not k.startswith("__")})

TOP_KEYS = {
    "cuda_mode",
    "tool",
    "schema",
    "ok",
    "exit_code",
    "verdict",
    "mode",
    "host",
    "expected",
    "checks",
    "failures",
    "warnings",
}
STATUSES = {"ok", "warn", "fail", "skip"}
L12 = "/usr/local/cuda-12.5/targets/x86_64-linux/lib"
L13 = "/usr/local/cuda-13.0/targets/x86_64-linux/lib"


def fixture(name: str) -> str:
    return (FIX / name).read_text(encoding="utf-8")


# --------------------------------------------------------------------------------------------------
# Parsers


def test_parse_lspci_h100_vm() -> None:
    gpus = gd.parse_lspci(fixture("lspci_h100.txt"))
    assert gpus == [
        {
            "slot": "00:05.0",
            "class": "3D controller",
            "class_id": "0302",
            "pci_id": "10de:2330",
            "description": "NVIDIA Corporation GH100 [H100 SXM5 80GB]",
            "name": "H100 SXM5 80GB",
        }
    ]


def test_parse_lspci_h200_skips_nvswitch() -> None:
    gpus = gd.parse_lspci(fixture("lspci_h200.txt"))
    assert [(g["slot"], g["pci_id"], g["name"]) for g in gpus] == [
        ("0000:18:00.0", "10de:2335", "H200 SXM 141GB"),
        ("0000:2a:00.0", "10de:2335", "H200 SXM 141GB"),
    ]


def test_parse_lspci_workstation_skips_audio_function() -> None:
    gpus = gd.parse_lspci(fixture("lspci_workstation.txt"))
    assert [(g["class_id"], g["pci_id"], g["name"]) for g in gpus] == [
        ("0300", "10de:2204", "GeForce RTX 3090")
    ]


@pytest.mark.parametrize("text", [fixture("lspci_no_nvidia.txt"), "", "garbage line\n"])
def test_parse_lspci_without_nvidia(text: str) -> None:
    assert gd.parse_lspci(text) == []


def test_parse_nvidia_smi_csv_h100() -> None:
    assert gd.parse_nvidia_smi_csv(fixture("nvidia_smi_query_h100.csv")) == [
        {
            "index": 0,
            "name": "NVIDIA H100 80GB HBM3",
            "uuid": "GPU-5f2c1a9e-7b3d-4c1e-9a0f-2d6e8b4c7a11",
            "pci_bus_id": "00000000:00:05.0",
            "memory_total_mib": 81559,
            "driver_version": "580.159.04",
            "compute_capability": "9.0",
        }
    ]


def test_parse_nvidia_smi_csv_two_gpus_and_header_and_na() -> None:
    gpus = gd.parse_nvidia_smi_csv(fixture("nvidia_smi_query_2x_h200.csv"))
    assert [(g["index"], g["name"], g["memory_total_mib"]) for g in gpus] == [
        (0, "NVIDIA H200", 143771),
        (1, "NVIDIA H200", 143771),
    ]
    text = (
        "index, name, uuid, pci.bus_id, memory.total [MiB], driver_version, compute_cap\n"
        "0, Tesla K80, [N/A], 00000000:04:00.0, 11441 MiB, 470.82.01, [N/A]\n"
    )
    (gpu,) = gd.parse_nvidia_smi_csv(text)
    assert gpu["uuid"] is None and gpu["compute_capability"] is None and gpu["memory_total_mib"] == 11441


def test_parse_nvidia_smi_csv_without_compute_cap_field() -> None:
    text = "0, Tesla V100-SXM2-16GB, GPU-1, 00000000:00:1E.0, 16160, 450.80.02\n"
    (gpu,) = gd.parse_nvidia_smi_csv(text, gd.SMI_FIELDS[:-1])
    assert gpu["name"] == "Tesla V100-SXM2-16GB" and gpu["compute_capability"] is None


def test_parse_nvidia_smi_xml_h100() -> None:
    parsed = gd.parse_nvidia_smi_xml(fixture("nvidia_smi_q_h100.xml"))
    assert parsed["driver_version"] == "580.159.04"
    assert parsed["cuda_version"] == "13.0"
    assert parsed["gpus"] == [
        {
            "index": 0,
            "name": "NVIDIA H100 80GB HBM3",
            "uuid": "GPU-5f2c1a9e-7b3d-4c1e-9a0f-2d6e8b4c7a11",
            "pci_bus_id": "00000000:00:05.0",
            "memory_total_mib": 81559,
            "driver_version": "580.159.04",
            "compute_capability": None,
        }
    ]


def test_parse_nvidia_smi_xml_garbage() -> None:
    assert gd.parse_nvidia_smi_xml(fixture("nvidia_smi_no_driver.txt")) == {
        "driver_version": None,
        "cuda_version": None,
        "gpus": [],
    }


@pytest.mark.parametrize(
    ("rc", "text", "kind"),
    [
        (9, fixture("nvidia_smi_no_driver.txt"), "no_driver"),
        (18, fixture("nvidia_smi_version_mismatch.txt"), "version_mismatch"),
        (6, fixture("nvidia_smi_no_devices.txt"), "no_devices"),
        (127, "nvidia-smi: command not found", "not_installed"),
        (124, "", "timeout"),
        (4, "Failed to initialize NVML: Insufficient Permissions", "permission"),
        (1, "something else", "failed"),
    ],
)
def test_classify_nvidia_smi_failure(rc: int, text: str, kind: str) -> None:
    assert gd.classify_nvidia_smi_failure(rc, text) == kind


def test_parse_ldconfig_keeps_this_architecture() -> None:
    libs = gd.parse_ldconfig(fixture("ldconfig_cuda12_cudnn9.txt"))
    assert libs["libcudart.so.12"] == [f"{L12}/libcudart.so.12"]
    assert libs["libcuda.so.1"] == ["/usr/lib64/libcuda.so.1"]  # the 32-bit (libc6) entry is not ours
    assert libs["libc.so.6"] == ["/lib64/libc.so.6"]  # flags with an OS ABI
    assert libs["libcudnn.so.9"] == ["/usr/lib64/libcudnn.so.9"]
    assert "1187" not in "".join(libs)  # the header line is not a library


def test_parse_ldconfig_all_and_i386() -> None:
    text = fixture("ldconfig_cuda12_cudnn9.txt")
    assert gd.parse_ldconfig(text, arch=None)["libcuda.so.1"] == [
        "/usr/lib64/libcuda.so.1",
        "/usr/lib/libcuda.so.1",
    ]
    assert gd.parse_ldconfig(text, arch="i386")["libcuda.so.1"] == ["/usr/lib/libcuda.so.1"]


def test_parse_ldconfig_variants() -> None:
    assert "libcudnn.so.9" not in gd.parse_ldconfig(fixture("ldconfig_cuda12_no_cudnn.txt"))
    cuda13 = gd.parse_ldconfig(fixture("ldconfig_cuda13.txt"))
    assert "libcudart.so.13" in cuda13 and "libcudart.so.12" not in cuda13
    assert gd.parse_ldconfig(fixture("ldconfig_plain.txt"))["libm.so.6"] == [
        "/lib/x86_64-linux-gnu/libm.so.6"
    ]
    assert gd.parse_ldconfig("") == {}


@pytest.mark.parametrize(("machine", "arch"), [("x86_64", "x86-64"), ("aarch64", "AArch64"), ("mips", None)])
def test_ldconfig_arch(machine: str, arch: str | None) -> None:
    assert gd.ldconfig_arch(machine) == arch


@pytest.mark.parametrize(
    ("name", "version"),
    [("cuda_runtime_api_12_5.h", 12050), ("cuda_h_13_0.h", 13000), ("cudnn_version_9_3.h", None)],
)
def test_parse_cuda_version_header(name: str, version: int | None) -> None:
    assert gd.parse_cuda_version_header(fixture(name)) == version


def test_parse_cuda_version_header_prefers_cudart() -> None:
    assert gd.parse_cuda_version_header("#define CUDA_VERSION 13000\n#define CUDART_VERSION 12050\n") == 12050


@pytest.mark.parametrize(
    ("name", "string", "version"),
    [
        ("cudnn_version_9_3.h", "9.3.0", 90300),
        ("cudnn_version_8_9.h", "8.9.7", 8907),
        ("cudnn_h_7_6.h", "7.6.5", 7605),
    ],
)
def test_parse_cudnn_version_header(name: str, string: str, version: int) -> None:
    parsed = gd.parse_cudnn_version_header(fixture(name))
    assert parsed is not None and parsed["string"] == string and parsed["version"] == version
    assert gd.cudnn_version_str(version) == string  # the header's integer reads back like cudnnGetVersion's


def test_parse_cudnn_version_header_incomplete() -> None:
    assert gd.parse_cudnn_version_header("#define CUDNN_MAJOR 9\n#define CUDNN_MINOR 3\n") is None


@pytest.mark.parametrize(
    ("value", "text"),
    [(12050, "12.5"), (13000, "13.0"), (12010, "12.1"), (11080, "11.8"), (None, None), (0, None)],
)
def test_cuda_version_str(value: int | None, text: str | None) -> None:
    assert gd.cuda_version_str(value) == text


@pytest.mark.parametrize(
    ("value", "text"), [(90300, "9.3.0"), (90100, "9.1.0"), (8907, "8.9.7"), (None, None)]
)
def test_cudnn_version_str(value: int | None, text: str | None) -> None:
    assert gd.cudnn_version_str(value) == text


@pytest.mark.parametrize(
    ("have", "need", "ok"),
    [
        ("580.159.04", "525.60.13", True),
        ("525.60.13", "525.60.13", True),
        ("520.61.05", "525.60.13", False),
        ("525.60", "525.60.13", False),
        ("555.42.06", "555.42", True),
        ("1000.1", "580.65.06", True),
        (None, "525.60.13", None),
        ("555.42.06", None, None),
        ("garbage", "1.0", None),
    ],
)
def test_driver_at_least(have: str | None, need: str | None, ok: bool | None) -> None:
    assert gd.driver_at_least(have, need) is ok


@pytest.mark.parametrize(
    ("value", "mm"),
    [("12.5.1", "12.5"), ("9", "9"), ("9.3.0.75", "9.3"), ("2.20.0", "2.20"), (None, None), ("x", None)],
)
def test_major_minor(value: str | None, mm: str | None) -> None:
    assert gd.major_minor(value) == mm


def test_parse_proc_driver_version() -> None:
    assert gd.parse_proc_driver_version(fixture("proc_driver_version.txt")) == "580.159.04"
    old = "NVRM version: NVIDIA UNIX x86_64 Kernel Module  555.42.06  Tue May  7 19:35:13 UTC 2026\n"
    assert gd.parse_proc_driver_version(old) == "555.42.06"
    assert gd.parse_proc_driver_version("") is None


@pytest.mark.parametrize(
    ("path", "version"),
    [
        ("/usr/lib64/libcuda.so.555.42.06", "555.42.06"),
        ("/usr/lib/x86_64-linux-gnu/libcuda.so.580.159.04", "580.159.04"),
        ("/usr/lib64/libcuda.so.1", None),
        (None, None),
    ],
)
def test_library_file_version(path: str | None, version: str | None) -> None:
    assert gd.library_file_version(path) == version


@pytest.mark.parametrize(
    ("soname", "stem", "major"),
    [
        ("libcudart.so.12", "libcudart.so", "12"),
        ("libcublasLt.so.12", "libcublasLt.so", "12"),
        ("libcudart.so.10.0", "libcudart.so", "10.0"),
        ("libcudart.so", "libcudart.so", None),
    ],
)
def test_soname_parts(soname: str, stem: str, major: str | None) -> None:
    assert gd.soname_stem(soname) == stem
    assert gd.soname_major(soname) == major


def test_parse_os_release() -> None:
    text = (
        'NAME="openSUSE Leap"\nVERSION="15.6"\n# comment\n'
        'PRETTY_NAME="openSUSE Leap 15.6"\nID=opensuse-leap\n'
    )
    assert gd.parse_os_release(text) == {
        "NAME": "openSUSE Leap",
        "VERSION": "15.6",
        "PRETTY_NAME": "openSUSE Leap 15.6",
        "ID": "opensuse-leap",
    }


def test_parse_tf_probe_and_log_hints() -> None:
    out = (
        "2026-11-13 I tensorflow/core/util/port.cc:153] oneDNN custom operations are on.\n"
        + gd.TF_MARK
        + json.dumps({"installed": True, "version": "2.20.0"})
        + "\n"
    )
    assert gd.parse_tf_probe(out) == {"installed": True, "version": "2.20.0"}
    assert gd.parse_tf_probe("no marker") is None
    assert gd.parse_tf_probe(gd.TF_MARK + "{not json") is None
    err = (
        "2026-11-13 10:00:01.1 W external/local_xla/xla/stream_executor/cuda/cuda_dnn.cc] Cannot dlopen some "
        "GPU libraries. Please make sure the missing libraries mentioned above are installed properly.\n"
        "unrelated line\n"
        "E external/local_xla/xla/stream_executor/cuda/cuda_driver.cc:152] failed call to cuInit: "
        "INTERNAL: CUDA error: Failed call to cuInit: UNKNOWN ERROR (303)\n"
    )
    hints = gd.tf_log_hints(err)
    assert len(hints) == 2 and "Cannot dlopen" in hints[0] and "cuInit" in hints[1]


# --------------------------------------------------------------------------------------------------
# Pins and expectations


def test_load_pins_file() -> None:
    pins = gd.load_pins_file(str(PINS))
    assert pins["cuda_version"] == "12.5" and pins["cudnn_version"] == "9.3.0.75"
    assert pins["min_driver"]["12"] == "525.60.13"
    assert pins["sonames"][0] == "libcudart.so.12"
    assert pins["source"] == str(PINS)


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("{not json", "not valid JSON"),
        ("[1, 2]", "must be a JSON object"),
        ('{"sonames": "libcudart.so.12"}', "'sonames' must be a list"),
        ('{"min_driver": ["525"]}', "'min_driver' must map"),
        ('{"cuda_version": "{{ gpu_stack_cuda_version }}"}', "unrendered template"),
        ('{"cuda_version": "twelve"}', "is not a version"),
        ('{"cuda_version": ["12.5"]}', "must be a string"),
    ],
)
def test_load_pins_file_rejects_bad_input(tmp_path: Path, content: str, message: str) -> None:
    path = tmp_path / "pins.json"
    path.write_text(content, encoding="utf-8")
    with pytest.raises(gd.UsageError, match=message):
        gd.load_pins_file(str(path))


def test_load_pins_file_missing(tmp_path: Path) -> None:
    with pytest.raises(gd.UsageError, match="cannot read it"):
        gd.load_pins_file(str(tmp_path / "absent.json"))


def test_repository_pins_yml_matches_fallback_tables() -> None:
    yaml = pytest.importorskip("yaml")
    data = yaml.safe_load((REPO / "pins.yml").read_text(encoding="utf-8"))
    # the doctor's fallback tables are copies of the pins: keep them equal
    assert {str(k): v for k, v in data["gpu_stack_tensorflow_sonames"].items()} == gd.DEFAULT_SONAMES
    assert {str(k): v for k, v in data["gpu_stack_cuda_min_driver"].items()} == gd.DEFAULT_MIN_DRIVER
    pins = gd.pins_from_pins_yml(data, "pins.yml")
    assert pins["cuda_version"] == data["gpu_stack_cuda_version"]
    assert pins["sonames"] == data["gpu_stack_tensorflow_sonames"][pins["cuda_version"].split(".")[0]]
    notes: list[str] = []
    assert gd.load_default_pins(notes) is not None and notes == []


def test_derive_expected_from_tensorflow_build_info() -> None:
    tf = {"installed": True, "build_info": json.loads(fixture("tf_build_info_2_20.json"))}
    exp = gd.derive_expected(tf, gd.load_pins_file(str(PINS)))
    assert exp["source"] == "tensorflow"
    assert exp["cuda_version"] == "12.5" and exp["cuda_major"] == "12"
    assert exp["cudnn_version"] == "9" and exp["cudnn_major"] == "9"
    assert exp["sonames"] == [*gd.DEFAULT_SONAMES["12"], "libcudnn.so.9"]
    assert exp["min_driver"] == "525.60.13"
    assert exp["tensorflow_version"] == "2.20.0"  # what is pinned, for the version warning


def test_derive_expected_without_pins_uses_fallback_tables() -> None:
    tf = {
        "installed": True,
        "build_info": {"is_cuda_build": True, "cuda_version": "12.3", "cudnn_version": "8"},
    }
    exp = gd.derive_expected(tf, None)
    assert exp["sonames"][-1] == "libcudnn.so.8" and exp["min_driver"] == "525.60.13"


def test_derive_expected_from_pins_when_tensorflow_is_missing_or_cpu_only() -> None:
    pins = gd.load_pins_file(str(PINS))
    for tf in ({"installed": False}, {"installed": True, "build_info": {"is_cuda_build": False}}, None):
        exp = gd.derive_expected(tf, pins)
        assert exp["source"] == "pins" and exp["cudnn_version"] == "9.3.0.75"
        assert exp["sonames"] == [*pins["sonames"], "libcudnn.so.9"]


def test_derive_expected_nothing_and_unknown_cuda() -> None:
    assert gd.derive_expected(None, None)["sonames"] == []
    exp = gd.derive_expected(None, gd.normalize_pins({"cuda_version": "13.0"}, "x"))
    assert exp["sonames"] == [] and exp["problems"] == ["no TensorFlow soname table for CUDA 13"]
    assert exp["min_driver"] == "580.65.06"
    # what the gpu_validation role renders for a CUDA major without a soname table
    rendered = {"cuda_version": "13.0", "sonames": [], "sonames_by_cuda_major": {"12": ["libcudart.so.12"]}}
    exp = gd.derive_expected(None, gd.normalize_pins(rendered, "x"))
    assert exp["sonames"] == [] and exp["problems"] == ["no TensorFlow soname table for CUDA 13"]


@pytest.mark.parametrize(
    ("soname", "package", "role"),
    [
        ("libcudart.so.12", "cuda-cudart-12-5", "cuda"),
        ("libcublasLt.so.12", "libcublas-12-5", "cuda"),
        ("libcufft.so.11", "libcufft-12-5", "cuda"),
        ("libnvrtc.so.12", "cuda-nvrtc-12-5", "cuda"),
        ("libcudnn.so.9", "libcudnn9-cuda-12", "cudnn"),
        ("libcuda.so.1", "nvidia-compute-G07", "nvidia_driver"),
        ("libnccl.so.2", "libnccl2", "cuda"),
    ],
)
def test_package_for(soname: str, package: str, role: str) -> None:
    expected = {"cuda_version": "12.5", "cuda_major": "12", "cudnn_major": "9"}
    assert gd.package_for(soname, expected) == (package, role)


# --------------------------------------------------------------------------------------------------
# Whole-doctor runs on scripted hosts


@dataclass
class Host:
    """A scripted host: what each command prints and each probe returns."""

    lspci: str | None = None  # None: lspci is not installed
    smi_csv: str | None = None
    smi_xml: str | None = None
    smi_error: tuple[int, str] | None = None  # nvidia-smi fails with (rc, text); all None: not installed
    ldconfig: str = ""
    loadable: dict[str, str] = field(default_factory=dict)  # soname or path -> file dlopen maps
    files: dict[str, str] = field(default_factory=dict)  # path -> text (headers, library files, /dev, /proc)
    links: dict[str, str] = field(default_factory=dict)  # realpath
    elf: dict[str, str | None] = field(default_factory=dict)  # realpath -> SONAME (default: from the name)
    cuda: dict[str, Any] = field(default_factory=dict)
    nvml: dict[str, Any] = field(default_factory=dict)
    cudart: int | None = None
    cudnn: int | None = None
    cudnn_cudart: int | None = None
    tf: dict[str, Any] | None = None  # probe output; None: not installed
    tf_stderr: str = ""
    tools: dict[str, tuple[int, str]] = field(default_factory=dict)  # other commands: name -> (rc, stdout)
    # (dmesg: readable, no Xid)
    rpm_owner: dict[str, str] = field(default_factory=dict)  # path -> package (rpm -qf)
    rpm_installed: dict[str, str] = field(default_factory=dict)  # package -> version (rpm -q)
    rpm_verify: dict[str, str] = field(default_factory=dict)  # package -> rpm -V output
    efivar: bytes | None = None
    device_query: str | None = None  # path of deviceQuery
    calls: list[tuple[str, ...]] = field(default_factory=list)


def _glob(files: dict[str, str], pattern: str) -> list[str]:
    paths = set()
    for f in files:
        parts = f.split("/")
        paths.update("/".join(parts[:i]) for i in range(2, len(parts) + 1))
    want = pattern.split("/")
    return sorted(
        p
        for p in paths
        if len(p.split("/")) == len(want)
        and all(fnmatch.fnmatchcase(a, b) for a, b in zip(p.split("/"), want, strict=True))
    )


def _soname_of(name: str) -> str | None:
    base = os.path.basename(name)
    head, sep, tail = base.partition(".so.")
    return f"{head}.so.{tail.split('.')[0]}" if sep else None


def install(monkeypatch: pytest.MonkeyPatch, host: Host) -> Host:
    """Replace the doctor's subprocess helper and probes with the scripted host."""

    def run_cmd(argv: Any, timeout: float = 20.0, env: Any = None) -> Any:
        argv = tuple(str(a) for a in argv)
        host.calls.append(argv)
        name = os.path.basename(argv[0])
        if name == "lspci":
            return gd.CmdResult(argv, 0, host.lspci) if host.lspci is not None else gd.CmdResult(argv, 127)
        if name == "nvidia-smi":
            if host.smi_error is not None:
                rc, text = host.smi_error
                return gd.CmdResult(argv, rc, text, "")
            if host.smi_csv is None:
                return gd.CmdResult(argv, 127, "", "nvidia-smi: command not found")
            return gd.CmdResult(argv, 0, host.smi_xml if "-x" in argv else host.smi_csv)
        if name == "ldconfig":
            return gd.CmdResult(argv, 0, host.ldconfig)
        if name == "rpm":
            if argv[1] == "-qf":
                owner = host.rpm_owner.get(argv[-1])
                return gd.CmdResult(argv, 0 if owner else 1, f"{owner}\n" if owner else "not owned")
            if argv[1] == "-qa":  # names of the installed packages matching the glob
                names = [n for n in host.rpm_installed if fnmatch.fnmatchcase(n, argv[-1])]
                return gd.CmdResult(argv, 0, "".join(f"{n}\n" for n in names))
            if argv[1] == "-q":
                version = host.rpm_installed.get(argv[-1])
                return gd.CmdResult(argv, 0 if version else 1, f"{version}\n" if version else "")
            if argv[1] == "-V":
                return gd.CmdResult(
                    argv, 1 if host.rpm_verify.get(argv[-1]) else 0, host.rpm_verify.get(argv[-1], "")
                )
        if len(argv) > 2 and argv[1] == "-c":  # the TensorFlow probe
            data = (
                host.tf
                if host.tf is not None
                else {
                    "python": "3.11.9",
                    "executable": argv[0],
                    "installed": False,
                    "wheel_libs": {},
                    "error": "No module named 'tensorflow'",
                }
            )
            return gd.CmdResult(argv, 0, "noise\n" + gd.TF_MARK + json.dumps(data) + "\n", host.tf_stderr)
        if name in host.tools:
            rc, out = host.tools[name]
            return gd.CmdResult(argv, rc, out)
        return gd.CmdResult(argv, 127, "", f"{name}: command not found")

    def probe_dlopen(target: str) -> dict[str, Any]:
        if target in host.loadable:
            return {"ok": True, "path": host.loadable[target], "error": None}
        return {"ok": False, "path": None, "error": f"{target}: cannot open shared object file: No such file"}

    def probe_cuda_driver(library: str = "libcuda.so.1") -> dict[str, Any]:
        base = {
            "library": library,
            "loaded": False,
            "path": None,
            "error": "libcuda.so.1: cannot open",
            "driver_api_version": None,
            "cuinit_rc": None,
            "cuinit_error": None,
            "devices": [],
        }
        base.update(copy.deepcopy(host.cuda))
        return base

    def probe_nvml() -> dict[str, Any]:
        base = {
            "library": "libnvidia-ml.so.1",
            "binding": "pynvml",
            "loaded": False,
            "error": "not found",
            "init_rc": None,
            "init_error": None,
            "driver_version": None,
            "cuda_driver_version": None,
            "gpus": [],
        }
        base.update(copy.deepcopy(host.nvml))
        return base

    def probe_cudart(target: str) -> dict[str, Any]:
        return {"target": target, "loaded": True, "error": None, "runtime_version": host.cudart}

    def probe_cudnn(target: str) -> dict[str, Any]:
        return {
            "target": target,
            "loaded": True,
            "error": None,
            "version": host.cudnn,
            "cudart_version": host.cudnn_cudart,
        }

    def realpath(path: str) -> str:
        return host.links.get(path, path)

    def exists(path: str) -> bool:
        return realpath(path) in host.files or path in host.files

    def read_soname(path: str) -> str | None:
        return host.elf[path] if path in host.elf else (_soname_of(path) if exists(path) else None)

    def find_tool(name: str, extra_dirs: tuple[str, ...] = ()) -> str:
        known = {"lspci", "nvidia-smi", "ldconfig", "rpm", *host.tools}
        return f"/usr/bin/{name}" if name in known else name

    monkeypatch.setattr(facts, "run_cmd", run_cmd)
    monkeypatch.setattr(probes, "run_cmd", run_cmd)
    monkeypatch.setattr(facts, "find_tool", find_tool)
    monkeypatch.setattr(probes, "find_tool", find_tool)
    monkeypatch.setattr(probes, "probe_dlopen", probe_dlopen)
    monkeypatch.setattr(probes, "probe_cuda_driver", probe_cuda_driver)
    monkeypatch.setattr(probes, "probe_nvml", probe_nvml)
    monkeypatch.setattr(probes, "probe_cudart", probe_cudart)
    monkeypatch.setattr(probes, "probe_cudnn", probe_cudnn)
    monkeypatch.setattr(probes, "read_text", lambda path: host.files.get(path))
    monkeypatch.setattr(
        probes, "read_bytes", lambda path, limit=1 << 16: host.efivar if "efivars" in path else None
    )
    monkeypatch.setattr(probes, "glob_paths", lambda pattern: _glob(host.files, pattern))
    monkeypatch.setattr(probes, "realpath", realpath)
    monkeypatch.setattr(probes, "exists", exists)
    monkeypatch.setattr(probes, "lexists", lambda path: path in host.files or path in host.links)
    monkeypatch.setattr(probes, "venv_root", lambda python: "/opt/ml-venv")
    monkeypatch.setattr(probes, "last_link", lambda path: path if path in host.links else None)
    monkeypatch.setattr(probes, "find_device_query", lambda: host.device_query)
    monkeypatch.setattr(facts, "read_soname", read_soname)
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)
    return host


def _loadable(ldconfig_text: str) -> dict[str, str]:
    return {name: paths[0] for name, paths in gd.parse_ldconfig(ldconfig_text).items()}


def _cuda12_files() -> dict[str, str]:
    files = {
        "/usr/local/cuda/include/cuda_runtime_api.h": fixture("cuda_runtime_api_12_5.h"),
        "/usr/local/cuda-12.5/include/cuda_runtime_api.h": fixture("cuda_runtime_api_12_5.h"),
        "/usr/include/cudnn_version.h": fixture("cudnn_version_9_3.h"),
    }
    for name in gd.DEFAULT_SONAMES["12"]:
        files[f"{L12}/{name}"] = ""
    return files


def tf_ok(gpus: int = 1) -> dict[str, Any]:
    return {
        "python": "3.11.9",
        "executable": "/opt/ml-venv/bin/python",
        "installed": True,
        "version": "2.20.0",
        "build_info": json.loads(fixture("tf_build_info_2_20.json")),
        "wheel_libs": {},
        "gpus": [
            {
                "name": f"/physical_device:GPU:{i}",
                "device_name": "NVIDIA H100 80GB HBM3",
                "compute_capability": "9.0",
            }
            for i in range(gpus)
        ],
    }


# The kernel side of a healthy GPU machine: the modules loaded (/proc/modules format), the driver's version
# file, nvidia-persistenced running, nouveau blacklisted (as the driver packages do)
GPU_KERNEL_FILES = {
    "/proc/driver/nvidia/version": fixture("proc_driver_version.txt"),
    "/proc/modules": fixture("proc_modules_nvidia.txt"),
    "/proc/4242/comm": "nvidia-persistenced\n",
    "/usr/lib/modprobe.d/50-nvidia-default.conf": "blacklist nouveau\n",
}


DMESG_OK = (
    "[    0.000000] Linux version 6.4.0-150600.23.25-default\n"
    "[    5.100000] nvidia: loading out-of-tree module\n"
)


def gpu_host(**changes: Any) -> Host:
    """An H100 machine with driver 580, CUDA 12.5, cuDNN 9.3 and TensorFlow 2.20 that sees the GPU."""
    ld = fixture("ldconfig_cuda12_cudnn9.txt")
    host = Host(
        lspci=fixture("lspci_h100.txt"),
        smi_csv=fixture("nvidia_smi_query_h100.csv"),
        smi_xml=fixture("nvidia_smi_q_h100.xml"),
        ldconfig=ld,
        loadable=_loadable(ld),
        files={
            **_cuda12_files(),
            "/dev/nvidia0": "",
            "/dev/nvidiactl": "",
            "/dev/nvidia-uvm": "",
            **GPU_KERNEL_FILES,
        },
        links={"/usr/lib64/libcuda.so.1": "/usr/lib64/libcuda.so.580.159.04"},
        cuda={
            "loaded": True,
            "path": "/usr/lib64/libcuda.so.580.159.04",
            "error": None,
            "driver_api_version": 13000,
            "cuinit_rc": 0,
            "cuinit_error": "CUDA_SUCCESS",
            "devices": [
                {
                    "index": 0,
                    "name": "NVIDIA H100 80GB HBM3",
                    "memory_total_mib": 81559,
                    "compute_capability": "9.0",
                }
            ],
        },
        nvml={
            "loaded": True,
            "error": None,
            "init_rc": 0,
            "driver_version": "580.159.04",
            "cuda_driver_version": 13000,
            "gpus": [
                {
                    "index": 0,
                    "name": "NVIDIA H100 80GB HBM3",
                    "uuid": "GPU-5f2c",
                    "memory_total_mib": 81559,
                    "compute_capability": "9.0",
                }
            ],
        },
        cudart=12050,
        cudnn=90300,
        cudnn_cudart=12050,
        tf=tf_ok(),
        tools={"dmesg": (0, DMESG_OK)},
    )
    for key, value in changes.items():
        setattr(host, key, value)
    return host


def sandbox_host(**changes: Any) -> Host:
    """The sandbox: stub CUDA 12.5 + cuDNN 9.3 + driver 555.42.06 packages, no GPU, no TensorFlow."""
    ld = fixture("ldconfig_cuda12_cudnn9.txt")
    host = Host(
        lspci=fixture("lspci_no_nvidia.txt"),
        smi_error=(9, fixture("nvidia_smi_no_driver.txt")),
        ldconfig=ld,
        loadable=_loadable(ld),
        files=_cuda12_files(),
        links={"/usr/lib64/libcuda.so.1": "/usr/lib64/libcuda.so.555.42.06"},
        cuda={
            "loaded": True,
            "path": "/usr/lib64/libcuda.so.555.42.06",
            "error": None,
            "driver_api_version": 12050,
            "cuinit_rc": 100,
            "cuinit_error": "CUDA_ERROR_NO_DEVICE",
        },
        nvml={"loaded": True, "error": None, "init_rc": 9, "init_error": "Driver Not Loaded"},
        cudart=12050,
        cudnn=90300,
        cudnn_cudart=12050,
        tf=None,
    )
    for key, value in changes.items():
        setattr(host, key, value)
    return host


def bare_host(**changes: Any) -> Host:
    """A laptop without GPU, driver, CUDA or TensorFlow."""
    host = Host(lspci=fixture("lspci_no_nvidia.txt"), ldconfig=fixture("ldconfig_plain.txt"))
    for key, value in changes.items():
        setattr(host, key, value)
    return host


def doctor(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], host: Host, *args: str
) -> tuple[int, dict[str, Any]]:
    install(monkeypatch, host)
    rc = gd.main(
        ["--json", "--pins", str(PINS), "--python", sys.executable, "--cuda-home", "/usr/local/cuda", *args]
    )
    report = json.loads(capsys.readouterr().out)
    assert_schema(report)
    assert report["exit_code"] == rc
    return rc, report


def assert_schema(report: dict[str, Any]) -> None:
    assert set(report) == TOP_KEYS
    assert report["tool"] == "gpu_doctor" and report["schema"] == 1
    assert list(report["checks"]) == list(gd.CHECKS)
    for name, check in report["checks"].items():
        assert check["status"] in STATUSES, name
        assert isinstance(check.get("summary"), str) and check["summary"], name
    for item in report["failures"] + report["warnings"]:
        assert set(item) == {"check", "message", "fix"} and item["fix"]
    assert report["ok"] is (not report["failures"])
    assert report["verdict"].startswith("OK" if report["ok"] else "FAIL")
    assert {c["check"] for c in report["failures"]} <= {
        n for n, c in report["checks"].items() if c["status"] == "fail"
    }


def failures(report: dict[str, Any], check: str) -> list[dict[str, str]]:
    return [f for f in report["failures"] if f["check"] == check]


def test_gpu_machine_all_ok(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    rc, report = doctor(monkeypatch, capsys, gpu_host())
    assert rc == 0 and report["ok"] and report["failures"] == []
    assert report["mode"] == "gpu"
    # deviceQuery and dcgmi are not installed there: skipped, not failed; TensorFlow 2.20's wheel carries
    # sm_60..sm_89 and compute_90 PTX only, so an H100 (9.0) JIT-compiles its kernels: a warning
    assert {n: c["status"] for n, c in report["checks"].items() if c["status"] != "ok"} == {
        "device_query": "skip",
        "dcgm": "skip",
        "compute_capability": "warn",
    }
    assert [w["check"] for w in report["warnings"]] == ["compute_capability"]
    gpu = report["checks"]["gpu"]
    assert gpu["gpus"][0] | {} == {
        "name": "NVIDIA H100 80GB HBM3",
        "memory_total_mib": 81559,
        "compute_capability": "9.0",
        "uuid": "GPU-5f2c1a9e-7b3d-4c1e-9a0f-2d6e8b4c7a11",
        "pci_bus_id": "0000:00:05.0",  # normalized: nvidia-smi prints 00000000:00:05.0
        "index": 0,
        "source": "nvidia-smi",
    }
    assert "driver 580.159.04" in gpu["summary"]
    assert report["expected"]["source"] == "tensorflow"
    drv = report["checks"]["driver_version"]
    assert (
        drv["version"] == "580.159.04" and drv["required_min"] == "525.60.13" and drv["driver_api"] == "13.0"
    )
    libs = report["checks"]["libraries"]
    assert [r["soname"] for r in libs["libraries"]][-1] == "libcudnn.so.9"
    assert libs["summary"].startswith("8/8 libraries load")
    assert report["checks"]["cuda_runtime"]["runtime"] == "12.5"
    assert report["checks"]["cudnn"]["runtime"] == "9.3.0"
    assert report["checks"]["tensorflow"]["gpus"][0]["device_name"] == "NVIDIA H100 80GB HBM3"
    assert (
        report["verdict"] == "OK: 1 GPU (NVIDIA H100 80GB HBM3); TensorFlow 2.20.0 sees 1 GPU (1 warning(s))"
    )


def test_sandbox_without_gpu_is_cpu_only_and_ok(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    rc, report = doctor(monkeypatch, capsys, sandbox_host())
    assert rc == 0 and report["ok"]
    assert report["mode"] == "cpu-only"
    checks = report["checks"]
    assert checks["gpu"]["summary"].startswith("no NVIDIA GPU: CPU-only")
    assert checks["gpu"]["nvidia_smi"]["error_kind"] == "no_driver"
    assert (
        checks["cuda_driver"]["cuinit_rc"] == 100
        and "CUDA_ERROR_NO_DEVICE" in checks["cuda_driver"]["summary"]
    )
    assert checks["cuda_driver"]["driver_api"] == "12.5"
    assert checks["driver_version"]["version"] == "555.42.06"
    assert checks["driver_version"]["source"] == "libcuda file name"
    assert checks["cuda_runtime"]["runtime_version"] == 12050 and checks["cuda_runtime"]["header"] == "12.5"
    assert checks["cudnn"]["runtime_version"] == 90300 and checks["cudnn"]["header"] == "9.3.0"
    assert checks["tensorflow"]["status"] == "skip" and not checks["tensorflow"]["installed"]
    assert report["expected"]["source"] == "pins"
    assert report["verdict"] == "OK: no GPU: CPU-only; TensorFlow not installed"


def test_require_gpu_on_cpu_only_host_fails(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    rc, report = doctor(monkeypatch, capsys, sandbox_host(), "--require-gpu")
    assert rc == 1
    (fail,) = report["failures"]
    assert fail["check"] == "gpu" and "--require-gpu" in fail["message"]


def test_require_tensorflow_when_missing_fails(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    rc, report = doctor(monkeypatch, capsys, sandbox_host(), "--require-tensorflow")
    assert rc == 1
    (fail,) = report["failures"]
    assert fail["check"] == "tensorflow" and "tensorflow==2.20.0" in fail["fix"]


def test_missing_cudnn(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    ld = fixture("ldconfig_cuda12_no_cudnn.txt")
    tf = tf_ok(gpus=0)
    host = gpu_host(
        ldconfig=ld,
        loadable=_loadable(ld),
        tf=tf,
        cudnn=None,
        tf_stderr="W cuda_dnn.cc] Cannot dlopen some GPU libraries. Skipping registering GPU devices...",
    )
    host.files.pop("/usr/include/cudnn_version.h")
    rc, report = doctor(monkeypatch, capsys, host)
    assert rc == 1
    (lib_fail,) = failures(report, "libraries")
    assert lib_fail["message"] == "libcudnn.so.9: not installed"
    assert lib_fail["fix"] == "zypper install libcudnn9-cuda-12 (or run the cudnn role)"
    (tf_fail,) = failures(report, "tensorflow")
    assert "Cannot dlopen some GPU libraries" in tf_fail["message"]
    assert report["checks"]["cudnn"]["status"] == "skip"
    assert report["checks"]["gpu"]["status"] == "ok"
    assert report["verdict"].startswith("FAIL: 1 GPU (NVIDIA H100 80GB HBM3); TensorFlow 2.20.0 sees 0 GPU")


def test_driver_too_old(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    host = gpu_host(
        smi_csv=fixture("nvidia_smi_query_h100.csv").replace("580.159.04", "520.61.05"),
        smi_xml=fixture("nvidia_smi_q_h100.xml")
        .replace("580.159.04", "520.61.05")
        .replace("<cuda_version>13.0", "<cuda_version>11.8"),
    )
    host.cuda["driver_api_version"] = 11080
    host.files.pop("/proc/driver/nvidia/version")
    host.links = {}
    rc, report = doctor(monkeypatch, capsys, host)
    assert rc == 1
    fails = failures(report, "driver_version")
    assert [f["message"] for f in fails] == [
        "driver 520.61.05 is older than 525.60.13, the minimum for CUDA 12",
        "the driver supports CUDA 11.8, TensorFlow needs CUDA 12.5",
    ]
    assert ">= 525.60.13" in fails[0]["fix"] and "nvidia_driver role" in fails[0]["fix"]
    assert {f["check"] for f in report["failures"]} == {"driver_version"}
    assert report["checks"]["kernel_module"]["status"] == "ok"


def test_cuda13_gpu_machine_without_tensorflow(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """(c) an H100 with driver 580 and CUDA 13 only: the GPU is found, TF's CUDA 12 libraries are missing."""
    ld = fixture("ldconfig_cuda13.txt")
    files = {
        "/usr/local/cuda/include/cuda.h": fixture("cuda_h_13_0.h"),
        "/usr/local/cuda-13.0/include/cuda_runtime_api.h": "#define CUDART_VERSION 13000\n",
        "/dev/nvidia0": "",
        "/dev/nvidiactl": "",
    }
    for name in gd.parse_ldconfig(ld):
        if name.startswith("libcu") and name != "libcuda.so.1":
            files[f"{L13}/{name}"] = ""
    host = gpu_host(ldconfig=ld, loadable=_loadable(ld), files=files, tf=None, cudart=None, cudnn=None)
    rc, report = doctor(monkeypatch, capsys, host)
    assert rc == 1
    assert report["mode"] == "gpu"
    gpu = report["checks"]["gpu"]
    assert (
        gpu["status"] == "ok"
        and gpu["found"]
        and "NVIDIA H100 80GB HBM3, 81559 MiB, cc 9.0" in gpu["summary"]
    )
    assert report["checks"]["driver_version"]["status"] == "ok"
    cuda_fail, cudnn_fail = failures(report, "libraries")
    # CUDA 13 keeps some sonames (libcusparse.so.12, libcurand.so.10): those load, the others do not
    assert cuda_fail["message"] == (
        "libcudart.so.12, libcublas.so.12, libcublasLt.so.12, libcufft.so.11, libcusolver.so.11: "
        "not installed (found instead: libcudart.so.13, libcublas.so.13, libcublasLt.so.13, "
        "libcufft.so.12, libcusolver.so.12)"
    )
    assert (
        'zypper install cuda-libraries-12-5 (the cuda role with gpu_stack_cuda_version: "12.5")'
        in cuda_fail["fix"]
    )
    assert cudnn_fail["message"] == "libcudnn.so.9: not installed"
    runtime = report["checks"]["cuda_runtime"]
    assert runtime["header"] == "13.0" and runtime["toolkits"] == [
        {"path": "/usr/local/cuda-13.0", "version": "13.0"}
    ]
    assert any("is CUDA 13.0, expected 12.5" in w["message"] for w in report["warnings"])
    assert report["checks"]["tensorflow"]["status"] == "skip"
    assert report["verdict"].startswith("FAIL: 1 GPU (NVIDIA H100 80GB HBM3); TensorFlow not installed")


def test_gpu_present_but_driver_not_loaded(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    host = gpu_host(
        smi_error=(9, fixture("nvidia_smi_no_driver.txt")),
        tf=None,
        nvml={"loaded": True, "init_rc": 9, "init_error": "Driver Not Loaded"},
    )
    host.cuda.update({"cuinit_rc": 100, "cuinit_error": "CUDA_ERROR_NO_DEVICE", "devices": []})
    for node in ("/dev/nvidia0", "/dev/nvidiactl", "/dev/nvidia-uvm", "/proc/driver/nvidia/version"):
        host.files.pop(node)
    rc, report = doctor(monkeypatch, capsys, host)
    assert rc == 1
    (gpu_fail,) = failures(report, "gpu")
    assert gpu_fail["message"].startswith(
        "H100 SXM5 80GB present (lspci) but the NVIDIA driver is not loaded"
    )
    assert "couldn't communicate with the NVIDIA driver" in gpu_fail["message"]
    assert "nvidia-open-driver-G07-signed-cuda-kmp-default" in gpu_fail["fix"] and "reboot" in gpu_fail["fix"]
    (cu_fail,) = failures(report, "cuda_driver")
    assert "cuInit returned 100" in cu_fail["message"]
    assert report["checks"]["gpu"]["gpus"][0]["source"] == "lspci"


def test_driver_library_version_mismatch(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """The classic state after a driver update without a reboot: the loaded module is the old driver."""
    host = gpu_host(links={"/usr/lib64/libcuda.so.1": "/usr/lib64/libcuda.so.580.95.05"})
    host.cuda["path"] = None
    rc, report = doctor(monkeypatch, capsys, host)
    assert rc == 1
    (fail,) = report["failures"]
    assert fail == {
        "check": "kernel_module",
        "message": "the loaded nvidia kernel module is 580.159.04 but the user-space driver is 580.95.05 "
        "(libcuda.so file name): the driver was updated without a reboot",
        "fix": "reboot (or stop every CUDA program and nvidia-persistenced, then "
        "rmmod nvidia_uvm nvidia_drm nvidia_modeset nvidia && modprobe nvidia nvidia_uvm)",
    }
    km = report["checks"]["kernel_module"]
    assert (km["version"], km["userspace_version"], km["flavour"]) == ("580.159.04", "580.95.05", "open")
    assert report["checks"]["driver_version"]["module_matches_library"] is False


def test_library_link_fixes(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    """A library in a directory ldconfig does not search, and one without its soname link."""
    ld = "\n".join(
        line
        for line in fixture("ldconfig_cuda12_cudnn9.txt").splitlines()
        if "libcurand" not in line and "libcublas.so" not in line
    )
    files = _cuda12_files()
    del files[f"{L12}/libcublas.so.12"]
    files[f"{L12}/libcublas.so.12.5.3.2"] = ""
    host = gpu_host(ldconfig=ld, loadable=_loadable(ld), files=files, tf=None)
    rc, report = doctor(monkeypatch, capsys, host)
    assert rc == 1
    by_msg = {f["message"]: f["fix"] for f in failures(report, "libraries")}
    assert by_msg == {
        "libcublas.so.12: only libcublas.so.12.5.3.2 exists, without the libcublas.so.12 link": (
            "ldconfig (it makes the libcublas.so.12 link from the file's SONAME; or ln -s "
            f"libcublas.so.12.5.3.2 {L12}/libcublas.so.12)"
        ),
        f"libcurand.so.10: exists in {L12}, which the loader does not search": (
            f"echo {L12} > /etc/ld.so.conf.d/988_cuda-12.conf && ldconfig (or run the cuda_links role)"
        ),
    }


def test_library_resolved_but_dlopen_fails(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    host = gpu_host(tf=None)
    del host.loadable["libcusolver.so.11"]
    rc, report = doctor(monkeypatch, capsys, host)
    assert rc == 1
    (fail,) = report["failures"]
    assert fail["message"].startswith(
        f"libcusolver.so.11: resolves to {L12}/libcusolver.so.11 but dlopen fails"
    )
    assert fail["fix"].startswith(f"`ldd {L12}/libcusolver.so.11 | grep 'not found'`")


def test_library_only_through_ld_library_path_warns(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    ld = "\n".join(
        line for line in fixture("ldconfig_cuda12_cudnn9.txt").splitlines() if "libcufft" not in line
    )
    monkeypatch.setenv("LD_LIBRARY_PATH", L12)
    rc, report = doctor(monkeypatch, capsys, gpu_host(ldconfig=ld))
    assert rc == 0
    assert [w for w in report["warnings"] if w["check"] != "compute_capability"] == [
        {
            "check": "libraries",
            "message": f"libcufft.so.11 load from {L12} (through LD_LIBRARY_PATH) but the ldconfig cache "
            "does not list them: services and Jupyter kernels do not inherit LD_LIBRARY_PATH",
            "fix": f"echo {L12} > /etc/ld.so.conf.d/988_cuda-12.conf && ldconfig "
            "(or run the cuda_links role)",
        }
    ]
    assert report["checks"]["libraries"]["status"] == "ok"


def test_forward_compat_libcuda_is_a_warning(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    host = gpu_host()
    host.cuda["path"] = "/usr/local/cuda-12.5/compat/libcuda.so.555.42.06"
    host.files["/proc/driver/nvidia/version"] = fixture("proc_driver_version.txt").replace(
        "580.159.04", "535.183.01"
    )
    host.smi_csv = host.smi_csv.replace("580.159.04", "535.183.01")
    host.smi_xml = host.smi_xml.replace("580.159.04", "535.183.01")
    rc, report = doctor(monkeypatch, capsys, host)
    assert rc == 0
    assert "CUDA forward compatibility" in report["warnings"][0]["message"]
    assert report["checks"]["kernel_module"]["status"] == "warn"


def test_libraries_from_tensorflow_wheels_are_ok(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """tensorflow[and-cuda] without a stamp: the nvidia-*-cu12 wheels beside TensorFlow mean pip mode; the
    system has no CUDA at all, and that is no failure there."""
    tf = tf_ok()
    site = "/opt/ml-venv/lib/python3.11/site-packages/nvidia"
    tf["wheel_libs"] = {
        s: f"{site}/{s.split('.')[0][3:]}/lib/{s}" for s in [*gd.DEFAULT_SONAMES["12"], "libcudnn.so.9"]
    }
    ld = fixture("ldconfig_plain.txt")
    files = {"/dev/nvidia0": "", **GPU_KERNEL_FILES, **{p: "" for p in tf["wheel_libs"].values()}}
    loadable = {**_loadable(ld), **{p: p for p in tf["wheel_libs"].values()}}
    host = gpu_host(ldconfig=ld, loadable=loadable, tf=tf, files=files)
    rc, report = doctor(monkeypatch, capsys, host)
    assert rc == 0, report["failures"]
    assert report["cuda_mode"] == "pip"
    assert report["checks"]["cuda_mode"]["source"].startswith("detected: NVIDIA's CUDA wheels")
    assert {r["status"] for r in report["checks"]["libraries"]["libraries"]} == {"ok"}
    assert report["checks"]["libraries"]["summary"].startswith("8/8 libraries load from NVIDIA's wheels")
    assert report["checks"]["cuda_runtime"]["runtime"] == "12.5"
    assert "headers not used (pip mode)" in report["checks"]["cuda_runtime"]["summary"]


def test_cpu_only_tensorflow_build_on_gpu_host(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    tf = tf_ok(gpus=0)
    tf["build_info"] = {"is_cuda_build": False}
    rc, report = doctor(monkeypatch, capsys, gpu_host(tf=tf))
    assert rc == 1
    (fail,) = report["failures"]
    assert (
        fail["check"] == "tensorflow"
        and "without GPU support (is_cuda_build false) on a GPU host" in fail["message"]
    )
    assert report["expected"]["source"] == "pins"


def test_tensorflow_version_and_python_differ_from_pins(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    tf = tf_ok()
    tf.update(version="2.19.1", python="3.12.4")
    rc, report = doctor(monkeypatch, capsys, gpu_host(tf=tf))
    assert rc == 0
    assert [w["message"] for w in report["warnings"] if w["check"] == "tensorflow"] == [
        "TensorFlow 2.19.1 installed, pinned 2.20.0",
        "Python 3.12.4 runs TensorFlow, pinned 3.11",
    ]
    assert report["checks"]["tensorflow"]["status"] == "warn"


def test_tensorflow_probe_failure_is_a_failure(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    host = install(monkeypatch, sandbox_host())
    real = probes.run_cmd

    def run_cmd(argv: Any, timeout: float = 20.0, env: Any = None) -> Any:
        if len(argv) > 2 and argv[1] == "-c":
            return gd.CmdResult(tuple(argv), 124, "", "timed out after 180s")
        return real(argv, timeout, env)

    monkeypatch.setattr(probes, "run_cmd", run_cmd)
    rc = gd.main(["--json", "--pins", str(PINS), "--python", sys.executable])
    report = json.loads(capsys.readouterr().out)
    assert rc == 1 and host.calls
    (fail,) = report["failures"]
    assert fail["check"] == "tensorflow" and "timed out" in fail["message"] and "--tf-timeout" in fail["fix"]


def test_bare_laptop_fails_on_pinned_libraries(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    rc, report = doctor(monkeypatch, capsys, bare_host())
    assert rc == 1 and report["mode"] == "cpu-only"
    assert {f["check"] for f in report["failures"]} == {"libraries"}
    assert [f["fix"] for f in report["failures"]] == [
        'zypper install cuda-libraries-12-5 (the cuda role with gpu_stack_cuda_version: "12.5")',
        "zypper install libcudnn9-cuda-12 (or run the cudnn role)",
    ]
    assert report["checks"]["cuda_driver"]["status"] == "warn"
    assert report["checks"]["driver_version"]["status"] == "skip"


def test_bare_laptop_without_pins_or_tensorflow_is_ok(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    pins = tmp_path / "pins.json"
    pins.write_text("{}", encoding="utf-8")
    rc, report = doctor(monkeypatch, capsys, bare_host(), "--pins", str(pins))
    assert rc == 0
    assert report["checks"]["libraries"]["status"] == "skip"
    assert "no expected libraries" in " ".join(w["message"] for w in report["warnings"])


def test_pins_for_cuda13_name_the_variable(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    pins = json.loads(PINS.read_text(encoding="utf-8"))
    pins.update(cuda_version="13.0", sonames=[])
    path = tmp_path / "pins.json"
    path.write_text(json.dumps(pins), encoding="utf-8")
    rc, report = doctor(monkeypatch, capsys, sandbox_host(), "--pins", str(path))
    assert rc == 1
    (fail,) = failures(report, "libraries")
    assert fail["message"].startswith("no TensorFlow soname table for CUDA 13")
    # the sandbox's 555 driver and cuDNN for CUDA 12 do not fit the (wrong) pin either
    assert {f["check"] for f in report["failures"]} == {"libraries", "driver_version", "cudnn"}
    assert 'gpu_stack_cuda_version: "12.5"' in fail["fix"] and "pins.yml" in fail["fix"]


def test_lspci_missing_is_a_warning(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    rc, report = doctor(monkeypatch, capsys, sandbox_host(lspci=None))
    assert rc == 0
    assert report["warnings"][0] == {
        "check": "gpu",
        "message": "lspci is not installed: a GPU whose driver is missing cannot be seen",
        "fix": "zypper install pciutils",
    }


def test_skip_tensorflow_runs_no_python(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    host = install(monkeypatch, sandbox_host())
    rc = gd.main(["--json", "--pins", str(PINS), "--skip-tensorflow", "--python", "/nonexistent/python"])
    report = json.loads(capsys.readouterr().out)
    assert rc == 0 and report["checks"]["tensorflow"]["status"] == "skip"
    assert not [c for c in host.calls if "-c" in c]
    assert report["verdict"] == "OK: no GPU: CPU-only; TensorFlow not probed"


def test_table_output_and_output_file(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    install(monkeypatch, bare_host())
    out = tmp_path / "doctor.json"
    rc = gd.main(["--pins", str(PINS), "--python", sys.executable, "--output", str(out)])
    text = capsys.readouterr().out
    assert rc == 1
    for name in gd.CHECKS:
        assert f"\n{name} " in text
    assert "Failures:\n  - [libraries]" in text and "      fix: zypper install cuda-libraries-12-5" in text
    assert text.rstrip().splitlines()[-1].startswith("Verdict: FAIL: no GPU: CPU-only")
    assert json.loads(out.read_text(encoding="utf-8"))["exit_code"] == 1


@pytest.mark.parametrize(
    "args",
    [
        ["--bogus"],
        ["--python", "/nonexistent/python"],
        ["--pins", "/nonexistent/pins.json"],
        ["--timeout", "0"],
        ["--output", "/nonexistent/dir/report.json"],
    ],
)
def test_usage_errors_exit_2(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], args: list[str]
) -> None:
    install(monkeypatch, bare_host())
    assert (
        gd.main(["--json", "--skip-tensorflow", *args] if "--python" not in args else ["--json", *args]) == 2
    )
    assert "error" in capsys.readouterr().err


def test_help_exits_0(capsys: pytest.CaptureFixture[str]) -> None:
    assert gd.main(["--help"]) == 0
    assert "Exit codes: 0 ok, 1 a check failed, 2 usage" in capsys.readouterr().out


# --------------------------------------------------------------------------------------------------
# The real subprocess helper, probes and TensorFlow probe


def test_run_cmd_never_raises(tmp_path: Path) -> None:
    assert gd.run_cmd([sys.executable, "-c", "print('hi')"]).stdout.strip() == "hi"
    assert gd.run_cmd([sys.executable, "-c", "import sys; sys.exit(3)"]).rc == 3
    missing = gd.run_cmd(["/nonexistent/tool", "-x"])
    assert missing.rc == gd.RC_NOT_FOUND and "not found" in missing.stderr
    plain = tmp_path / "not-executable"
    plain.write_text("#!/bin/sh\n", encoding="utf-8")
    assert gd.run_cmd([str(plain)]).rc == gd.RC_NOT_EXECUTABLE
    slow = gd.run_cmd(
        [sys.executable, "-c", "import time; print('x', flush=True); time.sleep(30)"], timeout=1
    )
    assert slow.rc == gd.RC_TIMEOUT and "timed out after 1s" in slow.stderr


def test_real_ctypes_probes_do_not_raise() -> None:
    libc = gd.probe_dlopen("libc.so.6")
    assert libc["ok"] and libc["path"] and os.path.basename(libc["path"]).startswith("libc.so")
    assert gd.probe_dlopen("libgpu-doctor-absent.so.1")["ok"] is False
    cuda = gd.probe_cuda_driver()
    assert set(cuda) >= {"loaded", "driver_api_version", "cuinit_rc", "devices"}
    assert set(gd.probe_nvml()) >= {"loaded", "init_rc", "gpus", "driver_version"}
    assert gd.probe_cudart("libc.so.6")["loaded"] is False  # no cudaRuntimeGetVersion in libc
    assert gd.probe_cudnn("libgpu-doctor-absent.so.9")["loaded"] is False


FAKE_TF = """
import sys
__version__ = "2.20.0"
sys.stderr.write("W cuda_dnn.cc] Cannot dlopen some GPU libraries. Skipping registering GPU devices...\\n")
class _Dev:
    name = "/physical_device:GPU:0"
class sysconfig:
    @staticmethod
    def get_build_info():
        return {"cuda_version": "12.5.1", "cudnn_version": "9", "is_cuda_build": True,
                "cuda_compute_capabilities": ["sm_60", "compute_90"], "cpu_compiler": "clang"}
class config:
    @staticmethod
    def list_physical_devices(kind):
        return [_Dev()] if kind == "GPU" else []
    class experimental:
        @staticmethod
        def get_device_details(dev):
            return {"device_name": "NVIDIA H200", "compute_capability": (9, 0)}
"""


def test_tensorflow_probe_with_fake_tensorflow(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "tensorflow").mkdir()
    (tmp_path / "tensorflow" / "__init__.py").write_text(FAKE_TF, encoding="utf-8")
    lib = tmp_path / "nvidia" / "cudnn" / "lib"
    lib.mkdir(parents=True)
    (lib / "libcudnn.so.9").write_text("", encoding="utf-8")
    monkeypatch.setenv("PYTHONPATH", str(tmp_path))
    data = gd.probe_tensorflow(sys.executable, timeout=60)
    assert data["installed"] is True and data["version"] == "2.20.0"
    assert data["build_info"]["cuda_version"] == "12.5.1"
    assert data["build_info"]["cuda_compute_capabilities"] == ["sm_60", "compute_90"]
    assert data["gpus"] == [
        {"name": "/physical_device:GPU:0", "device_name": "NVIDIA H200", "compute_capability": "9.0"}
    ]
    assert data["wheel_libs"] == {"libcudnn.so.9": str(lib / "libcudnn.so.9")}
    assert data["log_hints"] and "Cannot dlopen" in data["log_hints"][0]


def test_tensorflow_probe_without_and_with_broken_tensorflow(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PYTHONPATH", str(tmp_path))
    data = gd.probe_tensorflow(sys.executable, timeout=60)
    assert data["installed"] is False and "tensorflow" in data["error"]
    (tmp_path / "tensorflow").mkdir()
    (tmp_path / "tensorflow" / "__init__.py").write_text(
        "import numpy_that_is_not_there_gpu_doctor\n", encoding="utf-8"
    )
    data = gd.probe_tensorflow(sys.executable, timeout=60)
    assert data["installed"] is True and "ModuleNotFoundError" in data["import_error"]
    (tmp_path / "tensorflow" / "__init__.py").write_text("import time\ntime.sleep(30)\n", encoding="utf-8")
    data = gd.probe_tensorflow(sys.executable, timeout=1)
    assert data["installed"] is None and data["probe_error"].startswith("timed out")


# --------------------------------------------------------------------------------------------------
# Smoke runs of the real script on this machine


DOCTOR = [sys.executable, "-m", "gpu_stack_validation.doctor.cli"]
SRC_ENV = dict(os.environ, PYTHONPATH=str(REPO / "validation" / "src"))


def _run_script(*args: str) -> tuple[int, dict[str, Any]]:
    proc = subprocess.run(
        [*DOCTOR, "--json", *args],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
        env=SRC_ENV,
    )
    assert proc.returncode in (0, 1), proc.stderr
    report = json.loads(proc.stdout)
    assert_schema(report)
    assert report["exit_code"] == proc.returncode
    return proc.returncode, report


HAS_GPU = os.path.exists("/dev/nvidia0")


def test_smoke_real_host_with_repository_pins() -> None:
    rc, report = _run_script("--skip-tensorflow")
    assert report["expected"]["pins"] and report["expected"]["pins"].endswith("pins.yml")
    ldconfig = gd.run_cmd([gd.find_tool("ldconfig"), "-p"]).stdout
    if "libcudart.so.12 " not in ldconfig:
        # the stack promises the pinned CUDA libraries: without them the doctor fails, naming the fix
        assert rc == 1
        fail = failures(report, "libraries")[0]
        assert "libcudart.so.12" in fail["message"] and "cuda-libraries-12-5" in fail["fix"]
    if not HAS_GPU:
        assert report["mode"] == "cpu-only"
        assert "CPU-only" in report["checks"]["gpu"]["summary"]
        assert {f["check"] for f in report["failures"]} <= {
            "libraries",
            "cuda_runtime",
            "cudnn",
            "driver_version",
        }


@pytest.mark.skipif(HAS_GPU, reason="asserts the CPU-only verdict")
def test_smoke_real_host_cpu_only_with_available_libraries(tmp_path: Path) -> None:
    pins = tmp_path / "pins.json"
    pins.write_text(
        json.dumps({"cuda_version": "12.5", "sonames": ["libc.so.6", "libm.so.6"]}), encoding="utf-8"
    )
    rc, report = _run_script("--pins", str(pins))
    assert rc == 0, report["failures"]
    assert report["mode"] == "cpu-only"
    assert report["verdict"].startswith("OK: no GPU: CPU-only")
    libs = report["checks"]["libraries"]["libraries"]
    assert [(r["soname"], r["status"]) for r in libs] == [("libc.so.6", "ok"), ("libm.so.6", "ok")]
    assert libs[0]["ldconfig"] and libs[0]["dlopen_path"]
    rc, report = _run_script("--pins", str(pins), "--require-gpu", "--skip-tensorflow")
    assert rc == 1 and failures(report, "gpu")
