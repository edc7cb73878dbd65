"""Action plugin: show a message as an Ansible warning (no module, no change, no connection).

`ansible.builtin.debug` output is easy to miss; a warning is repeated in the run's output and
collected by callbacks. Shared by the preflight, cuda_repo, nvidia_driver and cuda roles
(gpu_stack.opensuse.gpu_stack_warn).
"""

from __future__ import annotations

from ansible.plugins.action import ActionBase

DOCUMENTATION = r"""
---
module: gpu_stack_warn
short_description: Show a message as a warning
description: Adds I(msg) to the task's warnings and returns it; changes nothing.
options:
  msg:
    description: The warning text.
    type: str
    required: true
"""


class ActionModule(ActionBase):
    """Return the message as a warning."""

    TRANSFERS_FILES = False
    _requires_connection = False

    def run(self, tmp=None, task_vars=None):
        result = super().run(tmp, task_vars)
        msg = self._task.args.get("msg")
        if not msg:
            result.update(failed=True, msg="gpu_stack_warn needs msg")
            return result
        result.update(changed=False, msg=str(msg), warnings=[str(msg)])
        return result
