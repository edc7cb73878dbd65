"""Action plugin for cudnn_archive: verify a controller-side archive, transfer it only when needed.

With remote_src=false (the default) the archive lives on the controller. It is hashed here and
compared with `sha256` before anything reaches the host; the module is then asked whether the
manifest already records this archive intact. Only when it does not is the archive copied into the
task's remote temporary directory (removed afterwards) and installed from there.
"""

from __future__ import annotations

import hashlib
import os

from ansible.errors import AnsibleAction, AnsibleActionFail, AnsibleError
from ansible.module_utils.common.text.converters import to_text
from ansible.module_utils.parsing.convert_bool import boolean
from ansible.plugins.action import ActionBase

REDIST = "https://developer.download.nvidia.com/compute/cudnn/redist/cudnn/linux-x86_64/"
MODULE = "gpu_stack.opensuse.cudnn_archive"


def sha256_of(path: str) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(1024 * 1024), b""):
            digest.update(chunk)
    return digest.hexdigest()


class ActionModule(ActionBase):
    TRANSFERS_FILES = True

    def run(self, tmp=None, task_vars=None):
        if task_vars is None:
            task_vars = {}
        result = super().run(tmp, task_vars)
        del tmp  # the shared shell tmpdir is used instead
        args = dict(self._task.args)
        try:
            remote_src = boolean(args.get("remote_src", False), strict=False)
            src = args.get("src")
            if args.get("state", "present") == "absent" or remote_src or not src:
                if src:
                    args["remote_src"] = True
                result.update(self._execute_module(module_name=MODULE, module_args=args, task_vars=task_vars))
                return result
            try:
                local = self._loader.get_real_file(self._find_needle("files", src), decrypt=False)
            except AnsibleError as exc:
                reason = to_text(exc).splitlines()[0]
                raise AnsibleActionFail(
                    f"cuDNN archive {src} not found on the controller ({reason}). Nothing was written. "
                    f"Download it from {REDIST} and set cudnn_archive_src to its path, or use "
                    "cudnn_source: url with cudnn_archive_sha256"
                ) from exc
            actual = sha256_of(local)
            expected = (args.get("sha256") or "").strip().lower()
            if expected and expected != actual:
                raise AnsibleActionFail(
                    f"sha256 mismatch for {local}: expected {expected}, got {actual}. Nothing was written. "
                    "Download the archive again or fix cudnn_archive_sha256"
                )
            probe_args = dict(args, sha256=actual, archive_pending=True, archive_name=os.path.basename(local))
            probe_args.pop("src", None)
            probe_args.pop("remote_src", None)
            probe = self._execute_module(module_name=MODULE, module_args=probe_args, task_vars=task_vars)
            if probe.get("failed") or not probe.get("needs_archive"):
                result.update(probe)
                return result
            tmpdir = self._connection._shell.tmpdir
            if tmpdir is None:
                tmpdir = self._make_tmp_path()
            remote = self._connection._shell.join_path(tmpdir, "cudnn-archive")
            self._transfer_file(local, remote)
            self._fixup_perms2((tmpdir, remote))
            install_args = dict(probe_args, src=remote, remote_src=True)
            install_args.pop("archive_pending", None)
            result.update(
                self._execute_module(module_name=MODULE, module_args=install_args, task_vars=task_vars)
            )
        except AnsibleAction as exc:
            result.update(exc.result)
        finally:
            self._remove_tmp_path(self._connection._shell.tmpdir)
        return result
