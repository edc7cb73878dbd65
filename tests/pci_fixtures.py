"""Fake sysfs PCI trees (the layout of /sys/bus/pci/devices) for the GPU-generation cases.

The cases are a small table here; `write_tree(case, root)` writes one as <root>/<slot>/{vendor,device,
class,subsystem_vendor,subsystem_device}, which the preflight role reads with
`preflight_pci_devices_path: <root>`. Unit tests import it; sandbox scenarios can write a tree into a host:

    python3 tests/pci_fixtures.py gtx960 HOST_ROOT/srv/fake-pci  # -e preflight_pci_devices_path=/srv/fake-pci
    python3 tests/pci_fixtures.py --list

Device ids are real (NVIDIA's lists and pci.ids name them) except `unknown` (10de:3f00, in neither);
EXPECTED says what preflight must decide for each case.
"""

from __future__ import annotations

import sys
from pathlib import Path

NVIDIA = "10de"
VGA, THREE_D, AUDIO = "030000", "030200", "040300"
# An Intel iGPU: a display controller of another vendor that preflight must ignore
INTEL_IGPU = ("0000:00:02.0", "8086", "46a6", VGA, "1043", "1a13")

# case -> devices: (slot, vendor, device, class, subsystem vendor, subsystem device)
CASES: dict[str, list[tuple[str, str, str, str, str, str]]] = {
    # The original article's card: Maxwell GM206, with its HDMI audio function
    "gtx960": [INTEL_IGPU,
               ("0000:01:00.0", NVIDIA, "1401", VGA, "1043", "8520"),
               ("0000:01:00.1", NVIDIA, "0fba", AUDIO, "1043", "8520")],
    "gtx1080ti": [("0000:01:00.0", NVIDIA, "1b06", VGA, "10de", "120f"),
                  ("0000:01:00.1", NVIDIA, "10ef", AUDIO, "10de", "120f")],
    "v100": [("0000:3b:00.0", NVIDIA, "1db4", THREE_D, "10de", "1214")],
    "rtx2080": [("0000:01:00.0", NVIDIA, "1e82", VGA, "10de", "12b0"),
                ("0000:01:00.1", NVIDIA, "10f8", AUDIO, "10de", "12b0")],
    "rtx4090": [INTEL_IGPU,
                ("0000:01:00.0", NVIDIA, "2684", VGA, "1458", "4104"),
                ("0000:01:00.1", NVIDIA, "22ba", AUDIO, "1458", "4104")],
    "h100": [("0000:41:00.0", NVIDIA, "2331", THREE_D, "10de", "1626")],
    # Kepler GK104: older than any driver this project installs
    "kepler": [("0000:01:00.0", NVIDIA, "1180", VGA, "10de", "0969"),
               ("0000:01:00.1", NVIDIA, "0e0a", AUDIO, "10de", "0969")],
    # A PCI id neither NVIDIA's lists nor pci.ids know (a GPU newer than the lists)
    "unknown": [("0000:01:00.0", NVIDIA, "3f00", VGA, "10de", "0000")],
    # Pascal + Ampere: the 580 proprietary driver drives both
    "mixed": [("0000:01:00.0", NVIDIA, "1b06", VGA, "10de", "120f"),
              ("0000:02:00.0", NVIDIA, "2204", VGA, "10de", "147d"),
              ("0000:02:00.1", NVIDIA, "1aef", AUDIO, "10de", "147d")],
    # Pascal + Blackwell: Blackwell needs the open module, Pascal the proprietary one
    "pascal_blackwell": [("0000:01:00.0", NVIDIA, "1b06", VGA, "10de", "120f"),
                         ("0000:02:00.0", NVIDIA, "2b85", VGA, "10de", "0000"),
                         ("0000:02:00.1", NVIDIA, "22e8", AUDIO, "10de", "0000")],
    "no_gpu": [INTEL_IGPU],
}

# case -> (host driver generation, [(slot, product, architecture, open module, GPU's generation)],
#          stops: text the failure names, '' when preflight goes on)
EXPECTED: dict[str, tuple[str, list[tuple[str, str, str, bool, str]], str]] = {
    "gtx960": ("G06", [("0000:01:00.0", "NVIDIA GeForce GTX 960", "Maxwell", False, "G06")], ""),
    "gtx1080ti": ("G06", [("0000:01:00.0", "NVIDIA GeForce GTX 1080 Ti", "Pascal", False, "G06")], ""),
    "v100": ("G06", [("0000:3b:00.0", "Tesla V100-PCIE-16GB-LS", "Volta", False, "G06")], ""),
    "rtx2080": ("G07", [("0000:01:00.0", "NVIDIA GeForce RTX 2080", "Turing", True, "G07")], ""),
    "rtx4090": ("G07", [("0000:01:00.0", "NVIDIA GeForce RTX 4090", "Ada Lovelace", True, "G07")], ""),
    "h100": ("G07", [("0000:41:00.0", "NVIDIA H100 PCIe", "Hopper", True, "G07")], ""),
    "kepler": ("", [("0000:01:00.0", "GeForce GTX 680", "Kepler", False, "")], "470 branch"),
    "unknown": ("", [("0000:01:00.0", "", "", False, "")], "preflight_gpu_driver_generation_override"),
    "mixed": ("G06", [("0000:01:00.0", "NVIDIA GeForce GTX 1080 Ti", "Pascal", False, "G06"),
                      ("0000:02:00.0", "NVIDIA GeForce RTX 3090", "Ampere", True, "G07")], ""),
    "pascal_blackwell": ("", [("0000:01:00.0", "NVIDIA GeForce GTX 1080 Ti", "Pascal", False, "G06"),
                              ("0000:02:00.0", "NVIDIA GeForce RTX 5090", "Blackwell", True, "G07")],
                         "no one driver drives all GPUs"),
    "no_gpu": ("", [], ""),
}


def write_tree(case: str, root: Path) -> Path:
    """Write the fake sysfs tree of `case` under `root` (created) and return `root`."""
    root = Path(root)
    for slot, vendor, device, pci_class, sub_vendor, sub_device in CASES[case]:
        d = root / slot
        d.mkdir(parents=True, exist_ok=True)
        for name, value in (("vendor", vendor), ("device", device), ("class", pci_class),
                            ("subsystem_vendor", sub_vendor), ("subsystem_device", sub_device)):
            (d / name).write_text(f"0x{value}\n")
    return root


def main(argv: list[str]) -> int:
    if argv[:1] == ["--list"]:
        print("\n".join(CASES))
        return 0
    if len(argv) != 2 or argv[0] not in CASES:
        print(f"usage: pci_fixtures.py CASE DIR | --list  (cases: {', '.join(CASES)})", file=sys.stderr)
        return 2
    print(write_tree(argv[0], Path(argv[1])))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
