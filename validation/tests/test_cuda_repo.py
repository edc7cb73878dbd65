"""cuda_repo: NVIDIA's CUDA repository is configured, enabled, refreshable and signature-checked, and its
signing key is trusted with the expected fingerprint.

Expected values come from the inventory (`stack_vars`): cuda_repo_route, cuda_repo_alias,
cuda_repo_baseurl, cuda_repo_gpgkey_fingerprint (else the role's platform defaults).
"""

from __future__ import annotations

import importlib.util
import re
from pathlib import Path

import pytest
import yaml

ROLE = Path(__file__).resolve().parents[2] / "roles" / "cuda_repo"
ZYPPER_REPOS = ROLE.parents[1] / "plugins" / "modules" / "gpu_stack_zypper_repos.py"
_SPEC = importlib.util.spec_from_file_location("zypper_repos", ZYPPER_REPOS)
zr = importlib.util.module_from_spec(_SPEC)
_SPEC.loader.exec_module(zr)
ROLE_VARS = yaml.safe_load((ROLE / "vars" / "main.yml").read_text())
# os-release ID and major -> NVIDIA's repository directory and key (roles/cuda_repo/vars/*.yml)
# (NVIDIA's suse16 serves Leap 16, SLE 16 and Tumbleweed: the default)
DISTS = {("opensuse-leap", "15"): ("opensuse15", "D42D0685"), ("sles", "15"): ("sles15", "D42D0685")}
ARCH_DIRS = {"x86_64": "x86_64", "aarch64": "sbsa"}


@pytest.fixture(scope="module")
def repo(host, stack_vars) -> dict:
    info = host.system_info
    dist, key_id = DISTS.get((info.distribution, (info.release or "").split(".")[0]), ("suse16", "3A8B5622"))
    arch = ARCH_DIRS.get(host.check_output("uname -m"), "x86_64")
    route = stack_vars.get("cuda_repo_route", "network")
    if route == "local_installer":
        installer = Path(stack_vars["cuda_repo_local_installer"]).name
        alias = stack_vars.get("cuda_repo_local_installer_alias") or re.sub(
            r"^cuda-repo-(.*-local)-[0-9].*$", r"cuda-\1", installer)
    else:
        alias = stack_vars.get("cuda_repo_alias", f"cuda-{dist}-{arch}")
    default_fingerprint = ROLE_VARS["__cuda_repo_fingerprints"][key_id]
    fingerprint = stack_vars.get("cuda_repo_gpgkey_fingerprint", default_fingerprint)
    baseurl = stack_vars.get("cuda_repo_baseurl")
    if not baseurl and stack_vars.get("cuda_repo_mirror"):
        baseurl = f"{stack_vars['cuda_repo_mirror'].rstrip('/')}/{dist}/{arch}"
    return {"route": route, "alias": alias, "baseurl": baseurl,
            "fingerprint": fingerprint.replace(" ", "").upper()}


@pytest.fixture(scope="module")
def zypper_repo(host, repo) -> dict:
    repos = [r for r in zr.parse_repos_xml(host.check_output("zypper --non-interactive --xmlout repos"))
             if r["alias"] == repo["alias"]]
    assert len(repos) == 1, f"zypper has no repository {repo['alias']}"
    return repos[0]


def test_repository_enabled(zypper_repo) -> None:
    assert zypper_repo["enabled"]


@pytest.mark.parametrize("flag", ["gpgcheck", "repo_gpgcheck", "pkg_gpgcheck"])
def test_signature_checks_on(repo, zypper_repo, flag: str) -> None:
    if flag != "gpgcheck" and repo["route"] != "network":
        pytest.skip("the local installer's own .repo file sets only gpgcheck")
    assert zypper_repo[flag] is not False, f"{flag} is off for {repo['alias']}"


def test_repository_url(repo, zypper_repo) -> None:
    if repo["route"] != "network" or not repo["baseurl"]:
        pytest.skip("URL set by the local installer / platform default")
    assert zypper_repo["url"].rstrip("/") == repo["baseurl"].rstrip("/")


@pytest.mark.parametrize("option", ["gpgcheck=1", "repo_gpgcheck=1", "pkg_gpgcheck=1"])
def test_repo_file_keeps_checks(host, repo, option: str) -> None:
    if repo["route"] != "network":
        pytest.skip("the local installer's .repo file belongs to its RPM")
    content = host.file(f"/etc/zypp/repos.d/{repo['alias']}.repo").content_string
    assert option in content.splitlines()


def test_repository_refreshes_with_valid_signature(host, repo) -> None:
    res = host.run(f"zypper --non-interactive refresh --repo {repo['alias']}")
    assert res.rc == 0, res.stderr or res.stdout


def test_signing_key_trusted_with_expected_fingerprint(host, repo) -> None:
    # rpm keeps each trusted key's armor in the description of a gpg-pubkey package
    out = host.check_output(
        "rpm -q gpg-pubkey --qf '%{DESCRIPTION}\\n' | GNUPGHOME=$(mktemp -d) gpg --batch --with-colons "
        "--show-keys 2>/dev/null | awk -F: '$1 == \"fpr\" {print $10}'")
    assert repo["fingerprint"] in out.split(), f"no trusted key with fingerprint {repo['fingerprint']}"


def test_local_installer_package_verifies(host, repo) -> None:
    if repo["route"] != "local_installer":
        pytest.skip("network route")
    names = host.check_output("rpm -qa 'cuda-repo-*-local*'").split()
    assert names, "no cuda-repo-*-local package installed"
    res = host.run("rpm -V " + " ".join(names))
    assert res.rc == 0 and not res.stdout.strip(), res.stdout
