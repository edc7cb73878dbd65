"""GPU generations in preflight: the sysfs scan (gpu_stack_pci_gpus) and the classification
(gpu_stack_gpu_classify, gpu_stack_driver_pin_check) on the fake sysfs trees of tests/pci_fixtures.py,
the GPU lists in roles/preflight/vars/ (NVIDIA's and SUSE's data, their origin) and the tool that
regenerates them (tools/nvidia_gpu_lists.py)."""

from __future__ import annotations

import importlib.util
import json
import re
import sys
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[2]
ROLE = REPO / "roles" / "preflight"
FIXTURES = Path(__file__).parent / "fixtures" / "gpu_lists"


def _load(name: str, path: Path):
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


pf = _load("gpu_stack_preflight", REPO / "plugins" / "filter" / "gpu_stack_preflight.py")
pci = _load("gpu_stack_pci_gpus", REPO / "plugins" / "modules" / "gpu_stack_pci_gpus.py")
lists_tool = _load("nvidia_gpu_lists", REPO / "tools" / "nvidia_gpu_lists.py")
fixtures = _load("pci_fixtures", REPO / "tests" / "pci_fixtures.py")

VARS = yaml.safe_load((ROLE / "vars" / "main.yml").read_text())
OPEN = yaml.safe_load((ROLE / "vars" / "gpu_list_open.yml").read_text())["__preflight_gpu_list_open"]
LEGACY = yaml.safe_load((ROLE / "vars" / "gpu_list_legacy.yml").read_text())["__preflight_gpu_list_legacy"]
PCI_IDS = yaml.safe_load((ROLE / "vars" / "gpu_pci_ids.yml").read_text())["__preflight_gpu_pci_ids"]
DATA = {"open": OPEN, "legacy": LEGACY, "pci_ids": PCI_IDS,
        "architectures": VARS["__preflight_gpu_architectures"],
        "open_only": VARS["__preflight_gpu_open_only"], "routes": VARS["__preflight_gpu_legacy_routes"]}
BRANCHES = VARS["__preflight_driver_generation_branches"]
PINS = yaml.safe_load((REPO / "pins.yml").read_text())
MIN_DRIVER = PINS["gpu_stack_cuda_min_driver"]


def _classify(case: str, tmp_path: Path, override: str = "") -> dict:
    gpus = pci.scan_sysfs(str(fixtures.write_tree(case, tmp_path / case)), "10de")
    return pf.gpu_stack_gpu_classify(gpus, DATA, override)


# --- classification of the fixture hosts


@pytest.mark.parametrize("case", sorted(fixtures.CASES))
def test_fixture_host_is_classified_as_expected(case, tmp_path):
    generation, gpus, stops = fixtures.EXPECTED[case]
    res = _classify(case, tmp_path)
    assert res["generation"] == generation
    got = [(g["slot"], g["product"], g["architecture"], g["open_module"], g["driver_generation"])
           for g in res["gpus"]]
    assert got == gpus
    if stops:
        assert res["problems"] and stops in " ".join(res["problems"])
    else:
        assert res["problems"] == []


def test_only_nvidia_display_controllers_are_classified(tmp_path):
    res = _classify("gtx960", tmp_path)
    assert [(g["device_id"], g["class_id"]) for g in res["gpus"]] == [("1401", "0300")]
    assert res["gpus"][0]["chip"] == "GM206"
    assert res["gpus"][0]["support"] == "legacy"


def test_kepler_stop_names_gpu_reason_and_route(tmp_path):
    (problem,) = _classify("kepler", tmp_path)["problems"]
    assert problem.startswith("0000:01:00.0 10de:1180 GeForce GTX 680 (GK104, Kepler): ")
    assert "nvidia-gfxG05-kmp-default" in problem
    assert "CUDA 12" in problem and "Maxwell or newer" in problem


def test_unknown_id_names_lists_and_override(tmp_path):
    problem, advice = _classify("unknown", tmp_path)["problems"]
    assert problem.startswith("0000:01:00.0 10de:3f00 unknown product: ")
    assert OPEN["origin"]["driver_version"] in problem and LEGACY["origin"]["driver_version"] in problem
    assert "preflight_gpu_driver_generation_override to G07" in advice


@pytest.mark.parametrize("override", ["G07", "G06"])
def test_override_accepts_unknown_gpu_with_a_warning(override, tmp_path):
    res = _classify("unknown", tmp_path, override)
    assert res["generation"] == override
    assert res["problems"] == []
    assert [w for w in res["warnings"] if "override" in w] == []
    assert "3f00" in res["warnings"][0]
    assert res["gpus"][0]["driver_generation"] == ""


def test_mixed_pascal_blackwell_names_both_sides(tmp_path):
    (problem,) = _classify("pascal_blackwell", tmp_path)["problems"]
    assert "GeForce GTX 1080 Ti (GP102, Pascal) need the proprietary 580 kernel module" in problem
    assert "GeForce RTX 5090 (GB202, Blackwell) run only with the open kernel module" in problem


def test_grace_hopper_counts_as_open_only():
    gpus = [{"slot": "0000:01:00.0", "device_id": "1b06"}, {"slot": "0000:02:00.0", "device_id": "2342"}]
    res = pf.gpu_stack_gpu_classify(gpus, DATA)
    assert res["generation"] == ""
    assert "NVIDIA GH200 120GB" in res["problems"][0]


def test_no_gpus_no_generation():
    res = pf.gpu_stack_gpu_classify([], DATA)
    assert res == {"gpus": [], "generation": "", "problems": [], "warnings": []}


def test_lspci_fallback_ids_classify_too():
    rows = pci.parse_lspci_mm('0000:01:00.0 "0300" "10de" "1401" -ra1 -p00 "1043" "8520"\n', numeric=True)
    assert pf.gpu_stack_gpu_classify(rows, DATA)["generation"] == "G06"


# --- driver pin


@pytest.mark.parametrize(
    ("pin", "generation", "cuda", "problem"),
    [
        ("", "G07", "12.5", None),
        ("580.126.18", "G06", "12.5", None),
        ("550.163.01", "G06", "12.5", None),
        ("590.48.01", "G07", "12.5", None),
        ("595.71.05", "G07", "13.0", None),
        ("555.42.06", "G07", "12.5", "555.42.06 is not a G07 driver (G07 is the 590 and newer branches)"),
        ("590.48.01", "G06", "12.5", "driver 590.48.01 is not a G06 driver (G06 is the 550-580 branches)"),
        ("470.256.02", "G06", "12.5", "older than 525.60.13, the minimum for CUDA 12"),
        ("570.86.16", "G06", "13.0", "older than 580.65.06, the minimum for CUDA 13"),
        ("555.42.06", "", "12.5", None),  # no GPU: no generation to hold the pin against
        ("latest", "G07", "12.5", "is not a driver version"),
        ("580", "G06", "12.5", "is not a driver version"),
    ],
)
def test_driver_pin_check(pin, generation, cuda, problem):
    res = pf.gpu_stack_driver_pin_check(pin, generation, cuda, MIN_DRIVER, BRANCHES)
    assert res["ok"] == (problem is None)
    if problem:
        assert problem in " ".join(res["problems"])


def test_the_inventory_pin_is_checked_on_a_g07_host(tmp_path):
    """The pin in pins.yml passes on a Turing+ host only if it is '' or a 590+ driver."""
    pin = str(PINS["gpu_stack_nvidia_driver_version"])
    generation = _classify("rtx4090", tmp_path)["generation"]
    res = pf.gpu_stack_driver_pin_check(pin, generation, PINS["gpu_stack_cuda_version"], MIN_DRIVER, BRANCHES)
    assert res["ok"] == (pin == "" or int(pin.split(".")[0]) >= BRANCHES["G07"]["min"])


# --- the lists and their origin


@pytest.mark.parametrize("data", [OPEN, LEGACY, PCI_IDS], ids=["open", "legacy", "pci_ids"])
def test_list_has_origin_and_well_formed_ids(data):
    assert data["origin"]["url"].startswith("https://")
    assert re.fullmatch(r"\d{4}-\d{2}-\d{2}", data["origin"]["retrieved"])
    assert data["count"] == len(data["devices"])
    assert all(re.fullmatch(r"[0-9A-F]{4}", devid) for devid in data["devices"])
    assert all(data["devices"].values())


def test_lists_name_driver_versions_of_their_generation():
    assert int(OPEN["origin"]["driver_version"].split(".")[0]) >= BRANCHES["G07"]["min"]
    assert int(LEGACY["origin"]["driver_version"].split(".")[0]) == BRANCHES["G06"]["max"]


def test_open_and_legacy_lists_are_disjoint():
    assert not set(OPEN["devices"]) & set(LEGACY["devices"])


@pytest.mark.parametrize(("data", "families"),
                         [(OPEN, {"TU", "GA", "AD", "GH", "GB"}), (LEGACY, {"GM", "GP", "GV"})],
                         ids=["open", "legacy"])
def test_lists_agree_with_pci_ids_codenames(data, families):
    """NVIDIA's lists and pci.ids are independent sources; every listed id has a codename of the
    architectures that list stands for."""
    found = {re.match(r"[A-Z]+", PCI_IDS["devices"][d]).group(0) for d in data["devices"]}
    assert found == families


# --- the generator


def test_legacy_list_regenerates_from_suse_file(tmp_path):
    out = tmp_path / "legacy.yml"
    origin = LEGACY["origin"]
    assert lists_tool.main([
        "legacy-ids", str(FIXTURES / "pci_ids-580.126.18"), "--driver", origin["driver_version"],
        "--commit", origin["commit"], "--url", origin["url"], "--retrieved", origin["retrieved"],
        "--out", str(out)]) == 0
    assert out.read_text() == (ROLE / "vars" / "gpu_list_legacy.yml").read_text()


def test_open_readme_parser_takes_first_name_per_device():
    devices = lists_tool.parse_open_readme((FIXTURES / "README-590.48.01-excerpt.md").read_text())
    assert devices["1E30"] == "Quadro RTX 6000"
    assert devices["1E78"] == "Quadro RTX 8000"  # only subsystem rows
    assert devices["2B85"] == "NVIDIA GeForce RTX 5090"
    assert len(devices) == 9
    assert all(OPEN["devices"][d] == name for d, name in devices.items())


def test_supported_gpus_json_lists():
    data = json.loads((FIXTURES / "supported-gpus-excerpt.json").read_text())
    assert lists_tool.parse_supported_gpus(data, "open") == {"1E82": "NVIDIA GeForce RTX 2080",
                                                             "2684": "NVIDIA GeForce RTX 4090"}
    assert lists_tool.parse_supported_gpus(data, "legacy") == {"1B06": "NVIDIA GeForce GTX 1080 Ti"}
    assert lists_tool.parse_supported_gpus(data, "legacy", "580.xx") == {"1401": "NVIDIA GeForce GTX 960"}


def test_pci_ids_parser_keeps_nvidia_chips_only():
    devices, meta = lists_tool.parse_pci_ids((FIXTURES / "pci.ids-excerpt").read_text())
    assert meta == {"version": "2026.10.24", "date": "2026-10-24 03:15:02"}
    assert devices == {"0FBA": "GM206 High Definition Audio Controller", "1180": "GK104 [GeForce GTX 680]",
                       "1401": "GM206 [GeForce GTX 960]", "2684": "AD102 [GeForce RTX 4090]"}


@pytest.mark.parametrize("text", ["no table here", "## Compatible GPUs\n| a | b |\n"])
def test_open_readme_parser_refuses_garbage(text, tmp_path):
    src = tmp_path / "README.md"
    src.write_text(text)
    assert lists_tool.main(["open-readme", str(src), "--driver", "590.48.01"]) == 2


def test_fixture_tree_cli_writes_sysfs_layout(tmp_path):
    assert fixtures.main(["h100", str(tmp_path / "t")]) == 0
    assert (tmp_path / "t" / "0000:41:00.0" / "device").read_text() == "0x2331\n"
    assert fixtures.main(["nope", str(tmp_path)]) == 2
