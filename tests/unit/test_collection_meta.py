"""The collection's metadata agrees with itself and with the controller's pins: galaxy.yml, meta/, the
execution environment, pins.yml and how the roles read it, and the FQCNs the tasks call."""

from __future__ import annotations

import json
import os
import re
from pathlib import Path

import ansible_collections
import pytest
import yaml
from ansible.errors import AnsibleError
from ansible.parsing.dataloader import DataLoader
from ansible.template import Templar
from packaging.specifiers import SpecifierSet

REPO = Path(__file__).resolve().parents[2]
GALAXY = yaml.safe_load((REPO / "galaxy.yml").read_text())
EE = yaml.safe_load((REPO / "execution-environment.yml").read_text())
PINS = yaml.safe_load((REPO / "pins.yml").read_text())
LOOKUP = re.compile(r"lookup\('gpu_stack\.opensuse\.pin', '(\w+)'\)")


def _requirements(path: Path) -> dict[str, str]:
    lines = [line.split("#")[0].strip() for line in path.read_text().splitlines()]
    return dict(line.split("==") for line in lines if line)


def test_namespace_and_name_follow_galaxy_rules() -> None:
    for part in (GALAXY["namespace"], GALAXY["name"]):
        assert re.fullmatch(r"[a-z][a-z0-9]*(_[a-z0-9]+)*", part), part
    assert GALAXY["namespace"] not in ("ansible", "community", "ansible_collections")


def test_execution_environment_installs_the_built_collection() -> None:
    tarball = f"gpu_stack-opensuse-{GALAXY['version']}.tar.gz"
    names = [c["name"] for c in EE["dependencies"]["galaxy"]["collections"]]
    assert f"collections/{tarball}" in names
    assert EE["additional_build_files"] == [{"src": f".cache/collection/{tarball}", "dest": "collections"}]


def test_controller_pins_agree() -> None:
    toolchain = _requirements(REPO / "requirements.txt")
    assert EE["dependencies"]["ansible_core"]["package_pip"] == f"ansible-core=={toolchain['ansible-core']}"
    for name, version in _requirements(REPO / "meta/ee-requirements.txt").items():
        assert toolchain[name] == version, name
    runtime = yaml.safe_load((REPO / "meta/runtime.yml").read_text())
    assert toolchain["ansible-core"] in SpecifierSet(runtime["requires_ansible"])


def test_community_general_is_the_release_the_ansible_package_bundles() -> None:
    bundled = next(Path(p) for p in ansible_collections.__path__ if (Path(p) / "community/general").is_dir())
    manifest = json.loads((bundled / "community/general/MANIFEST.json").read_text())
    pinned = next(c["version"] for c in EE["dependencies"]["galaxy"]["collections"]
                  if c["name"] == "community.general")
    assert pinned == manifest["collection_info"]["version"]
    assert manifest["collection_info"]["version"] in SpecifierSet(GALAXY["dependencies"]["community.general"])


def test_in_checkout_link_is_the_repository_root() -> None:
    link = REPO / "collections/ansible_collections/gpu_stack/opensuse"
    assert link.is_symlink() and os.readlink(link) == "../../.."
    assert link.resolve() == REPO.resolve()


def test_role_defaults_read_the_pins_through_the_lookup() -> None:
    """A role default names a stack pin only through the lookup (an inventory variable alone would leave
    the role without a default outside this repository), and every name it asks for is in pins.yml."""
    for path in [*REPO.glob("roles/*/defaults/main.yml"), *REPO.glob("roles/*/meta/argument_specs.yml")]:
        text = "\n".join(line for line in path.read_text().splitlines() if not line.lstrip().startswith("#"))
        for name in LOOKUP.findall(text):
            assert name in PINS, f"{path}: {name} is not in pins.yml"
        if path.parent.name == "defaults":
            bare = re.findall(r"\bgpu_stack_\w+\b", LOOKUP.sub("", text))
            assert not bare, f"{path}: {bare} read without the pin lookup"


def test_tasks_call_the_collection_plugins_by_fqcn() -> None:
    plugins = {p.stem for p in [*REPO.glob("plugins/modules/*.py"), *REPO.glob("plugins/action/*.py")]}
    short = re.compile(rf"^\s*(?:- )?({'|'.join(sorted(plugins))}):", re.M)
    for path in [*REPO.glob("roles/*/tasks/*.yml"), *REPO.glob("roles/*/handlers/*.yml")]:
        assert not short.findall(path.read_text()), f"{path} calls a collection plugin without its FQCN"


def _pin(name: str, variables: dict) -> object:
    return Templar(loader=DataLoader(), variables=variables).template(
        f"{{{{ lookup('gpu_stack.opensuse.pin', '{name}') }}}}")


def test_pin_lookup_prefers_the_inventory_then_pins_yml() -> None:
    assert _pin("gpu_stack_cuda_version", {}) == PINS["gpu_stack_cuda_version"]
    assert _pin("gpu_stack_tensorflow_build_table", {}) == PINS["gpu_stack_tensorflow_build_table"]
    # an inventory value is templated as the roles would see it
    inventory = {"gpu_stack_cuda_version": "{{ site_cuda }}", "site_cuda": "12.3"}
    assert _pin("gpu_stack_cuda_version", inventory) == "12.3"


def test_pin_lookup_names_the_known_pins_for_a_typo() -> None:
    with pytest.raises(AnsibleError, match="gpu_stack_cuda_vresion is not a stack pin") as exc:
        _pin("gpu_stack_cuda_vresion", {})
    assert "gpu_stack_cuda_version" in str(exc.value)
