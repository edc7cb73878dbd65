"""Test-only callback: interrupt ansible-playbook at a named point, as Ctrl-C in its terminal would.

    GPU_STACK_INTERRUPT_AT="end:tarball | Install cuDNN into the CUDA tree"   (or "start:<task name>")
    GPU_STACK_INTERRUPT_MARK=/path/of/a/file                                   (written when it fires)

`start` fires when the strategy announces the task, before it hands the task to any worker (so no module
has run, however fast the connection: a worker's own start event would race the module); `end` fires when
the task's result arrived, before any later task or handler runs. The callback then
sends SIGINT to ansible-playbook's process group, so ansible-playbook must lead its own group (started
with start_new_session=True) and take SIGINT by default (a shell without job control starts background jobs
with SIGINT ignored); otherwise it refuses instead of interrupting whoever started it, or nothing. Task names
match with or without the "role : " prefix (a role named by FQCN too).

Enabled by tests/integration/test_faults_links.py only (ANSIBLE_CALLBACK_PLUGINS, ANSIBLE_CALLBACKS_ENABLED).
"""

from __future__ import annotations

import os
import signal
from pathlib import Path

from ansible.errors import AnsibleError
from ansible.plugins.callback import CallbackBase

DOCUMENTATION = r"""
name: interrupt_at
type: aggregate
short_description: Send SIGINT to ansible-playbook's process group when a named task starts or ends
description: Test-only, reads GPU_STACK_INTERRUPT_AT (start:<task>, end:<task>) and GPU_STACK_INTERRUPT_MARK.
requirements: [ansible-playbook leads its own process group]
"""


class CallbackModule(CallbackBase):
    CALLBACK_VERSION = 2.0
    CALLBACK_TYPE = "aggregate"
    CALLBACK_NAME = "interrupt_at"
    CALLBACK_NEEDS_ENABLED = True

    def __init__(self) -> None:
        super().__init__()
        when, _, name = os.environ.get("GPU_STACK_INTERRUPT_AT", "").partition(":")
        if when not in ("start", "end") or not name:
            raise AnsibleError("interrupt_at: set GPU_STACK_INTERRUPT_AT to start:<task> or end:<task>")
        if os.getpgrp() != os.getpid():
            raise AnsibleError("interrupt_at: ansible-playbook must lead its process group (new session)")
        # Inherited from a background job of a shell without job control: the SIGINT would be lost
        if signal.getsignal(signal.SIGINT) is not signal.default_int_handler:
            raise AnsibleError("interrupt_at: ansible-playbook does not take SIGINT as Ctrl-C (it started "
                               "with SIGINT ignored): start it with SIGINT's default action")
        self.when, self.name = when, name.strip()
        self.mark = os.environ.get("GPU_STACK_INTERRUPT_MARK")
        self.fired = False

    def _matches(self, task) -> bool:
        name = task.get_name().strip()
        # "role : name" also matches the FQCN "gpu_stack.opensuse.role : name"
        return name == self.name or name.endswith((" : " + self.name, "." + self.name))

    def _interrupt(self, task) -> None:
        if self.fired:
            return
        self.fired = True
        if self.mark:
            Path(self.mark).write_text(f"{self.when}:{task.get_name().strip()}\n")
        os.killpg(os.getpgrp(), signal.SIGINT)

    def v2_playbook_on_task_start(self, task, is_conditional) -> None:
        if self.when == "start" and self._matches(task):
            self._interrupt(task)

    def v2_runner_on_ok(self, result) -> None:
        if self.when == "end" and self._matches(result._task):
            self._interrupt(result._task)
