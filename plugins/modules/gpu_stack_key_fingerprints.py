#!/usr/bin/python
"""Read the fingerprints of an OpenPGP public key file with gpg, changing nothing.

The pure parser of gpg's colon listing is imported by tests/unit/test_gpu_stack_modules.py; `main()`
is the Ansible entry point.
"""

import os
import shutil
import tempfile

from ansible.module_utils.basic import AnsibleModule
from ansible.module_utils.urls import fetch_url

DOCUMENTATION = r"""
---
module: gpu_stack_key_fingerprints
short_description: Read the fingerprints of an OpenPGP public key file
description:
  - Lists the full fingerprints (40 hex digits, upper case, no spaces) of the primary keys and subkeys
    in a key file on the host or at a URL, so that a role can compare them with the one it expects
    before trusting the key, whatever rpm already trusts.
  - Uses gpg (gpg2 on SUSE, which zypper needs anyway) with C(--import-options show-only) in a private,
    temporary home directory, so no keyring of the host is read or written.
options:
  src:
    description: Key file on the host, or an http(s)/ftp/file URL.
    type: str
    required: true
  timeout:
    description: Download timeout in seconds (URLs only).
    type: int
    default: 60
author:
  - opensuse-gpu-stack
"""

EXAMPLES = r"""
- name: Read the signing key's fingerprints
  gpu_stack_key_fingerprints:
    src: https://developer.download.nvidia.com/compute/cuda/repos/opensuse15/x86_64/D42D0685.pub
  register: key
"""

RETURN = r"""
fingerprints:
  description: Fingerprints of every key in the file, primary keys first.
  type: list
  elements: str
  returned: always
primary:
  description: Fingerprints of the primary keys only.
  type: list
  elements: str
  returned: always
"""


def parse_colons(text):
    """gpg --with-colons output -> (all fingerprints, primary fingerprints), in the file's order."""
    every, primary = [], []
    record = None
    for line in text.splitlines():
        fields = line.split(":")
        if fields[0] in ("pub", "sub", "sec", "ssb"):
            record = fields[0]
        elif fields[0] == "fpr" and len(fields) > 9 and record:
            fpr = fields[9].upper()
            if fpr and fpr not in every:
                every.append(fpr)
                if record in ("pub", "sec"):
                    primary.append(fpr)
            record = None
    return primary + [f for f in every if f not in primary], primary


def main():
    module = AnsibleModule(
        argument_spec=dict(src=dict(type="str", required=True), timeout=dict(type="int", default=60)),
        supports_check_mode=True,
    )
    src = module.params["src"]
    gpg = module.get_bin_path("gpg2") or module.get_bin_path("gpg", required=True)
    home = tempfile.mkdtemp(prefix="gpu-stack-gnupg-", dir=module.tmpdir)
    try:
        path = src
        if "://" in src and not src.startswith("file://"):
            response, info = fetch_url(module, src, timeout=module.params["timeout"])
            if response is None or info.get("status") != 200:
                module.fail_json(msg=f"cannot download the key {src}: {info.get('msg', info.get('status'))}")
            path = os.path.join(home, "key")
            with open(path, "wb") as handle:
                handle.write(response.read())
        elif src.startswith("file://"):
            path = src[len("file://") :]
        if not os.path.isfile(path):
            module.fail_json(msg=f"key file {path} not found on the host")
        argv = [
            gpg,
            "--batch",
            "--no-options",
            "--no-autostart",
            "--homedir",
            home,
            "--with-colons",
            "--fixed-list-mode",
            "--import-options",
            "show-only",
            "--import",
            path,
        ]
        rc, out, err = module.run_command(argv, environ_update={"LC_ALL": "C"})
        fingerprints, primary = parse_colons(out)
        if rc != 0 or not primary:
            module.fail_json(
                msg=f"{src} is not an OpenPGP public key gpg can read: {err.strip() or out.strip()}"
            )
    finally:
        shutil.rmtree(home, ignore_errors=True)
    module.exit_json(changed=False, fingerprints=fingerprints, primary=primary)


if __name__ == "__main__":
    main()
