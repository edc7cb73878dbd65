#!/usr/bin/python
"""Ansible module: list zypper repositories as zypper itself sees them (read-only)."""

from __future__ import annotations

import xml.etree.ElementTree as ET

from ansible.module_utils.basic import AnsibleModule

DOCUMENTATION = r"""
---
module: gpu_stack_zypper_repos
short_description: List zypper repositories with their signature-check settings
description:
  - Runs C(zypper --xmlout repos) and returns one item per repository, including the effective
    gpgcheck, repo_gpgcheck and pkg_gpgcheck flags zypper reports (libzypp 17.x).
  - Changes nothing; supports check mode.
options:
  alias:
    description: Return only the repository with this alias (an empty list when there is none).
    type: str
author: opensuse-gpu-stack
"""

EXAMPLES = r"""
- name: Read the configured repositories
  gpu_stack_zypper_repos:
  register: repos
"""

RETURN = r"""
repos:
  description: Repositories in zypper's order.
  returned: always
  type: list
  elements: dict
  sample: [{alias: cuda-opensuse15-x86_64, name: cuda-opensuse15-x86_64, url: "https://...",
            enabled: true, autorefresh: true, gpgcheck: true, repo_gpgcheck: true, pkg_gpgcheck: true,
            priority: 99}]
aliases:
  description: The aliases of the repositories returned.
  returned: always
  type: list
  elements: str
"""


# zypper exit code when no repository is defined
ZYPPER_EXIT_NO_REPOS = 6
_FLAGS = ("enabled", "autorefresh", "gpgcheck", "repo_gpgcheck", "pkg_gpgcheck")


def parse_repos_xml(text: str) -> list[dict]:
    """Parse `zypper --xmlout repos` output into dicts; flags become bools (None when not reported)."""
    root = ET.fromstring(text)
    repos = []
    for repo in root.iter("repo"):
        item: dict = {"alias": repo.get("alias", ""), "name": repo.get("name", "")}
        url = repo.find("url")
        item["url"] = (url.text or "").strip() if url is not None else repo.get("metalink", "")
        for flag in _FLAGS:
            value = repo.get(flag)
            item[flag] = None if value is None else value == "1"
        priority = repo.get("priority")
        item["priority"] = int(priority) if priority and priority.isdigit() else None
        repos.append(item)
    return repos


def main() -> None:
    module = AnsibleModule(argument_spec={"alias": {"type": "str"}}, supports_check_mode=True)
    zypper = module.get_bin_path("zypper", required=True)
    # LC_ALL=C keeps messages stable; the XML itself is locale-independent
    rc, out, err = module.run_command([zypper, "--non-interactive", "--xmlout", "repos"],
                                      environ_update={"LC_ALL": "C"})
    if rc == ZYPPER_EXIT_NO_REPOS:
        repos: list[dict] = []
    elif rc != 0:
        module.fail_json(msg=f"zypper repos failed (rc {rc}): {(err or out).strip()}")
    else:
        try:
            repos = parse_repos_xml(out)
        except ET.ParseError as exc:
            module.fail_json(msg=f"Cannot parse zypper's XML output: {exc}", stdout=out)
    if module.params["alias"]:
        repos = [r for r in repos if r["alias"] == module.params["alias"]]
    module.exit_json(changed=False, repos=repos, aliases=[r["alias"] for r in repos])


if __name__ == "__main__":
    main()
