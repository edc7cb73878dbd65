"""Action plugin: check the inputs of every role in the play before the first change.

Each role checks its own arguments when it starts (meta/argument_specs.yml), but by then the roles
before it have already changed the host, and a failure prints the whole spec. This plugin runs in
preflight: it resolves each role's options as the role will see them, validates them against that
role's argument spec and against the version formats given in `formats`, and fails once, with one
line per problem, naming the variable a value came from.
"""

from __future__ import annotations

import re
from pathlib import Path

import yaml
from ansible.errors import AnsibleError
from ansible.module_utils.common.arg_spec import ArgumentSpecValidator
from ansible.plugins.action import ActionBase

DOCUMENTATION = r"""
---
module: gpu_stack_check_inputs
short_description: Validate the inputs of the roles in the play before anything changes
description:
  - For each role in I(roles), loads I(roles_dir)/<role>/meta/argument_specs.yml, resolves the options
    the role will see (inventory, extra vars, role defaults) and validates them (type, choices, elements).
  - Checks the variables named in I(formats) against a regular expression each.
  - Changes nothing; fails with one message listing every problem.
options:
  roles:
    description: Role names to check (usually ansible_play_role_names), short or fully qualified.
    type: list
    elements: str
    required: true
  roles_dir:
    description: Directory holding the roles.
    type: path
    required: true
  formats:
    description: Items with name (a variable), pattern (a Python regular expression) and expect (what a
      valid value looks like, for the message). Variables that are not defined are skipped.
    type: list
    elements: dict
    default: []
"""

_PIN_RE = re.compile(r"\b(gpu_stack_\w+)\b")


class ActionModule(ActionBase):
    """Validate role inputs and pin formats; fail with one readable message."""

    TRANSFERS_FILES = False
    _requires_connection = False

    def _resolve(self, name: str, task_vars: dict) -> tuple[bool, object]:
        """(known, value) of a variable as the role will see it; templating errors count as unknown."""
        if name not in task_vars:
            return False, None
        try:
            return True, self._templar.template(task_vars[name])
        except AnsibleError:
            return False, None  # depends on what a role loads later (vars/ files): the role checks it

    @staticmethod
    def _origin(name: str, raw: object) -> str:
        """' (from gpu_stack_x)' when the value is a role default that reads a stack pin."""
        pins = _PIN_RE.findall(raw) if isinstance(raw, str) else []
        return f" (from {', '.join(dict.fromkeys(pins))})" if pins and name not in pins else ""

    def run(self, tmp=None, task_vars=None):
        result = super().run(tmp, task_vars)
        task_vars = task_vars or {}
        args = self._task.args
        roles_dir = Path(str(args.get("roles_dir") or ""))
        problems: list[str] = []
        checked = 0
        # a play that names roles by FQCN lists them as gpu_stack.opensuse.<role>
        for role in dict.fromkeys(str(r).rsplit(".", 1)[-1] for r in args.get("roles") or []):
            spec_file = roles_dir / role / "meta" / "argument_specs.yml"
            if not spec_file.is_file():
                continue
            try:
                options = yaml.safe_load(spec_file.read_text())["argument_specs"]["main"].get("options") or {}
            except (OSError, yaml.YAMLError, KeyError, TypeError) as exc:
                problems.append(f"{role}: cannot read {spec_file}: {exc}")
                continue
            values = {}
            for name in options:
                known, value = self._resolve(name, task_vars)
                if known:
                    values[name] = value
            checked += len(values)
            outcome = ArgumentSpecValidator(options).validate(values)
            for error in outcome.errors:
                text = str(error)
                name = next((n for n in values if re.search(rf"\b{re.escape(n)}\b", text)), "")
                problems.append(f"{text}{self._origin(name, task_vars.get(name))} (role {role})")
        for rule in args.get("formats") or []:
            name = str(rule["name"])
            known, value = self._resolve(name, task_vars)
            if known and not re.fullmatch(str(rule["pattern"]), str(value)):
                problems.append(
                    f"{name} is {value!r}{self._origin(name, task_vars.get(name))}: expected {rule['expect']}"
                )
        if problems:
            result.update(
                failed=True,
                problems=problems,
                msg="Found before any change, nothing was changed: "
                + "; ".join(problems)
                + ". Fix these variables (inventory, group_vars or -e) and run again.",
            )
            return result
        result.update(
            changed=False, msg=f"{checked} inputs of {len(args.get('roles') or [])} roles are valid"
        )
        return result
