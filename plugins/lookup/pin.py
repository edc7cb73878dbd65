"""Lookup plugin: a stack pin, as the inventory sets it or as the collection's pins.yml gives it.

Role defaults read every shared pin through it, so a role called by FQCN from a playbook outside this
repository, with an inventory of its own, still has its documented defaults, and an inventory (or -e)
that sets the variable of the same name overrides the file.
"""

from __future__ import annotations

from pathlib import Path

import yaml
from ansible.errors import AnsibleLookupError
from ansible.plugins.lookup import LookupBase

DOCUMENTATION = r"""
---
name: pin
short_description: A gpu_stack_* pin, from the inventory when it sets one, else from the collection's pins.yml
description:
  - For each term, a variable name such as C(gpu_stack_cuda_version), returns that variable when it is
    defined (inventory, play vars, extra vars), templated, else the value the collection's C(pins.yml)
    gives it.
  - An unknown name fails and lists the names pins.yml has.
options:
  _terms:
    description: Pin names (the variables of pins.yml).
    required: true
    type: list
    elements: str
"""

EXAMPLES = r"""
- name: Show the CUDA X.Y the roles install
  ansible.builtin.debug:
    msg: "{{ lookup('gpu_stack.opensuse.pin', 'gpu_stack_cuda_version') }}"
"""

RETURN = r"""
_raw:
  description: The value of each pin (a string, list or dict, as in pins.yml).
  type: list
  elements: raw
"""

# plugins/lookup/pin.py -> the collection's root (also through the in-checkout collections/ link)
PINS_FILE = Path(__file__).resolve().parents[2] / "pins.yml"


def load_pins(path: Path = PINS_FILE) -> dict:
    """The pins file as a dict; an unreadable or malformed file is an error naming it."""
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (OSError, yaml.YAMLError) as exc:
        raise AnsibleLookupError(f"cannot read the stack pins {path}: {exc}") from exc
    if not isinstance(data, dict):
        raise AnsibleLookupError(f"the stack pins {path} are not a mapping of variable names to values")
    return data


class LookupModule(LookupBase):
    """Inventory variable when set, else pins.yml."""

    def run(self, terms, variables=None, **kwargs):
        self.set_options(var_options=variables, direct=kwargs)
        variables = variables or {}
        pins = None
        values = []
        for term in terms:
            name = str(term)
            if name in variables:
                values.append(self._templar.template(variables[name]))
                continue
            if pins is None:
                pins = load_pins()
            if name not in pins:
                raise AnsibleLookupError(
                    f"{name} is not a stack pin; {PINS_FILE} has: {', '.join(sorted(pins))}"
                )
            values.append(pins[name])
        return values
