"""Role defaults that depend on the host, rendered with Ansible's own templating for hosts the sandbox
cannot be (aarch64 / sbsa): the cuDNN archive NVIDIA publishes for the architecture."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from ansible.parsing.dataloader import DataLoader
from ansible.template import Templar

REPO = Path(__file__).resolve().parents[1].parent
ROLE = REPO / "roles" / "cudnn"
PINS = yaml.safe_load((REPO / "pins.yml").read_text())


def render(name: str, architecture: str) -> str:
    variables = {**PINS, **yaml.safe_load((ROLE / "vars/main.yml").read_text()),
                 **yaml.safe_load((ROLE / "defaults/main.yml").read_text()),
                 "ansible_facts": {"architecture": architecture}}
    return Templar(loader=DataLoader(), variables=variables).template(variables[name])


@pytest.mark.parametrize(("architecture", "redist"), [("x86_64", "x86_64"), ("aarch64", "sbsa")])
def test_cudnn_archive_follows_the_architecture(architecture: str, redist: str) -> None:
    version = PINS["gpu_stack_cudnn_version"]
    name = f"cudnn-linux-{redist}-{version}_cuda12-archive.tar.xz"
    assert render("cudnn_archive_name", architecture) == name
    assert render("cudnn_archive_url", architecture).endswith(f"/redist/cudnn/linux-{redist}/{name}")
