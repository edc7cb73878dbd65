"""Role defaults as the testinfra suite reads them (imported by the test modules, not a test itself)."""

from __future__ import annotations

import re
from pathlib import Path

import yaml

ROLES = Path(__file__).resolve().parents[2] / "roles"
# A role default that reads a stack pin: "{{ lookup('gpu_stack.opensuse.pin', 'gpu_stack_x') }}"
PIN_LOOKUP = re.compile(r"""lookup\(\s*['"]gpu_stack\.opensuse\.pin['"]\s*,\s*['"](\w+)['"]\s*\)""")


def role_defaults(role: str) -> dict:
    """A role's defaults/main.yml with each pin lookup written as the plain reference `{{ gpu_stack_x }}`
    it stands for, so that the tests resolve it from `stack_vars` (pins.yml under the inventory)."""
    defaults = yaml.safe_load((ROLES / role / "defaults" / "main.yml").read_text())
    return {k: PIN_LOOKUP.sub(r"\1", v) if isinstance(v, str) else v for k, v in defaults.items()}
