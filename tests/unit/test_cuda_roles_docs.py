"""The inputs of the preflight, cuda_repo, nvidia_driver and cuda roles agree in defaults/main.yml,
meta/argument_specs.yml (the reference) and README.md."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

ROLES = Path(__file__).resolve().parents[2] / "roles"
NAMES = ["preflight", "cuda_repo", "nvidia_driver", "cuda"]


def _spec(role: str) -> dict:
    specs = yaml.safe_load((ROLES / role / "meta" / "argument_specs.yml").read_text())
    return specs["argument_specs"]["main"]


@pytest.mark.parametrize("role", NAMES)
def test_defaults_match_argument_specs(role: str) -> None:
    defaults = yaml.safe_load((ROLES / role / "defaults" / "main.yml").read_text())
    assert set(defaults) == set(_spec(role)["options"])


@pytest.mark.parametrize("role", NAMES)
def test_literal_defaults_match_spec_defaults(role: str) -> None:
    defaults = yaml.safe_load((ROLES / role / "defaults" / "main.yml").read_text())
    for name, option in _spec(role)["options"].items():
        if "default" in option:
            assert defaults[name] == option["default"], name
        else:
            # no spec default: the role default is a template (pin or platform value)
            assert "{{" in str(defaults[name]), name


@pytest.mark.parametrize("role", NAMES)
def test_every_input_documented_with_prefix(role: str) -> None:
    readme = (ROLES / role / "README.md").read_text()
    for name in _spec(role)["options"]:
        assert name.startswith(role + "_"), name
        assert f"`{name}`" in readme, f"{name} missing from roles/{role}/README.md"


@pytest.mark.parametrize("role", NAMES)
def test_every_default_has_a_comment(role: str) -> None:
    lines = (ROLES / role / "defaults" / "main.yml").read_text().splitlines()
    commented = False
    for line in lines:
        if line.startswith("#"):
            commented = True
        elif line and not line.startswith((" ", "-")):
            # a comment may cover a run of consecutive inputs (e.g. the pins preflight checks)
            assert commented, f"{role}: no comment above {line}"
        elif not line:
            commented = False
