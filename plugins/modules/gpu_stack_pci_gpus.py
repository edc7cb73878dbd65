#!/usr/bin/python
"""Ansible module: list NVIDIA display controllers on the PCI bus (read-only)."""

from __future__ import annotations

import os
import shlex

from ansible.module_utils.basic import AnsibleModule

DOCUMENTATION = r"""
---
module: gpu_stack_pci_gpus
short_description: List NVIDIA GPUs on the PCI bus
description:
  - Reads the PCI devices the kernel exposes in sysfs (the data C(lspci) shows) and returns the
    display controllers (class 03xx) of one vendor, NVIDIA (10de) by default.
  - When C(lspci) is installed its names are added; without sysfs, C(lspci -Dnmm) is parsed instead.
  - Changes nothing; supports check mode.
options:
  sysfs_path:
    description: Directory with one subdirectory per PCI device (vendor, device and class files).
    type: path
    default: /sys/bus/pci/devices
  vendor_id:
    description: PCI vendor ID, hex without 0x.
    type: str
    default: 10de
author: opensuse-gpu-stack
"""

EXAMPLES = r"""
- name: Find NVIDIA GPUs
  gpu_stack_pci_gpus:
  register: gpus
"""

RETURN = r"""
gpus:
  description: One item per matching device, sorted by slot.
  returned: always
  type: list
  elements: dict
  sample: [{slot: "0000:01:00.0", vendor_id: "10de", device_id: "2684", class_id: "0300",
            name: "NVIDIA Corporation AD102 [GeForce RTX 4090]"}]
present:
  description: Whether at least one matching device was found.
  returned: always
  type: bool
source:
  description: Where the device list came from (sysfs, lspci, or none when neither was readable).
  returned: always
  type: str
"""


def _hex(value: str) -> str:
    """'0x10de\\n' -> '10de'."""
    value = value.strip().lower()
    return value[2:] if value.startswith("0x") else value


def scan_sysfs(path: str, vendor_id: str) -> list[dict] | None:
    """Display controllers of `vendor_id` under a sysfs PCI devices directory; None if unreadable."""
    try:
        slots = sorted(os.listdir(path))
    except OSError:
        return None
    found = []
    for slot in slots:
        try:
            with open(os.path.join(path, slot, "vendor")) as fh:
                vendor = _hex(fh.read())
            with open(os.path.join(path, slot, "class")) as fh:
                pci_class = _hex(fh.read())
            with open(os.path.join(path, slot, "device")) as fh:
                device = _hex(fh.read())
        except OSError:
            continue
        if vendor == vendor_id and pci_class.zfill(6).startswith("03"):
            found.append({"slot": slot, "vendor_id": vendor, "device_id": device,
                          "class_id": pci_class.zfill(6)[:4], "name": ""})
    return found


def parse_lspci_mm(text: str, numeric: bool) -> list[dict]:
    """Parse `lspci -D -mm` (numeric=False, names) or `lspci -D -n -mm` (numeric=True, IDs) output."""
    rows = []
    for line in text.splitlines():
        try:
            fields = shlex.split(line)
        except ValueError:
            continue
        # slot, class, vendor, device, then optional -rXX / -pXX flags and subsystem fields
        if len(fields) < 4:
            continue
        slot, pci_class, vendor, device = fields[:4]
        if numeric:
            rows.append({"slot": slot, "vendor_id": vendor.lower(), "device_id": device.lower(),
                         "class_id": pci_class.lower(), "name": ""})
        else:
            rows.append({"slot": slot, "name": f"{vendor} {device}".strip()})
    return rows


def main() -> None:
    module = AnsibleModule(
        argument_spec={
            "sysfs_path": {"type": "path", "default": "/sys/bus/pci/devices"},
            "vendor_id": {"type": "str", "default": "10de"},
        },
        supports_check_mode=True,
    )
    vendor_id = _hex(module.params["vendor_id"])
    lspci = module.get_bin_path("lspci")
    gpus = scan_sysfs(module.params["sysfs_path"], vendor_id)
    source = "sysfs"
    if gpus is None and lspci:
        rc, out, _err = module.run_command([lspci, "-D", "-n", "-mm"])
        gpus = [g for g in parse_lspci_mm(out, numeric=True)
                if g["vendor_id"] == vendor_id and g["class_id"].startswith("03")] if rc == 0 else None
        source = "lspci"
    if gpus is None:
        path = module.params["sysfs_path"]
        module.warn(f"Could not read PCI devices from {path} and lspci is not installed")
        module.exit_json(changed=False, gpus=[], present=False, source="none")
    if gpus and lspci:
        rc, out, _err = module.run_command([lspci, "-D", "-mm", "-d", vendor_id + ":"])
        if rc == 0:
            names = {row["slot"]: row["name"] for row in parse_lspci_mm(out, numeric=False)}
            for gpu in gpus:
                gpu["name"] = names.get(gpu["slot"], "")
    module.exit_json(changed=False, gpus=gpus, present=bool(gpus), source=source)


if __name__ == "__main__":
    main()
