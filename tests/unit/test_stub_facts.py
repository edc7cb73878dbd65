"""sandbox/stubs/facts.yml, the facts the stub repositories are built from: every fact names a source
that exists and says what it shows; an unconfirmed fact says what was seen and what to model."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import yaml

FACTS = yaml.safe_load((Path(__file__).resolve().parents[2] / "sandbox/stubs/facts.yml").read_text())
SOURCES = FACTS["sources"]
SECTIONS = ["platforms", "cuda_repos", "gfx_repos", "driver_generations", "cuda_toolkits", "tensorflow",
            "stub_model"]
PLATFORMS = ["leap156", "leap160", "tumbleweed", "sles15", "sles16"]


def _facts(node, path=""):
    """(path, mapping) for every mapping under node."""
    if isinstance(node, dict):
        yield path, node
        for key, value in node.items():
            yield from _facts(value, f"{path}/{key}")
    elif isinstance(node, list):
        for i, value in enumerate(node):
            yield from _facts(value, f"{path}[{i}]")


FACT_NODES = [(f"{section}{path}", node) for section in SECTIONS for path, node in _facts(FACTS[section])]


@pytest.mark.parametrize("sid", sorted(SOURCES))
def test_source_is_complete(sid):
    src = SOURCES[sid]
    assert {"url", "title", "checked", "shows"} <= set(src)
    assert re.fullmatch(r"\d{4}-\d{2}-\d{2}", str(src["checked"]))
    assert src["url"].startswith("https://") or src.get("located_by") or sid == "unconfirmed"


def test_every_source_reference_resolves_and_every_source_is_used():
    used = set()
    for path, node in FACT_NODES:
        refs = node.get("source", [])
        for ref in [refs] if isinstance(refs, str) else refs:
            assert ref in SOURCES, f"{path}: unknown source {ref}"
            used.add(ref)
    assert used == set(SOURCES)


def _unsourced(node, path, sourced):
    """Paths of mappings holding values with no source on them or above them."""
    if isinstance(node, list):
        for i, value in enumerate(node):
            yield from _unsourced(value, f"{path}[{i}]", sourced)
        return
    if not isinstance(node, dict):
        return
    sourced = sourced or "source" in node
    labels = {"name", "why_sp6", "note"}
    if not sourced and any(not isinstance(v, dict | list) for k, v in node.items() if k not in labels):
        yield path
    for key, value in node.items():
        yield from _unsourced(value, f"{path}/{key}", sourced)


def test_every_fact_reaches_a_source():
    """A fact is sourced itself or by the nearest enclosing mapping."""
    missing = [p for section in SECTIONS for p in _unsourced(FACTS[section], section, False)]
    assert missing == []


@pytest.mark.parametrize(("path", "node"), [(p, n) for p, n in FACT_NODES if n.get("confidence") == "low"],
                         ids=lambda v: v if isinstance(v, str) else "")
def test_unconfirmed_fact_says_what_was_seen_and_what_to_model(path, node):
    assert node.get("seen"), f"{path}: low confidence without 'seen'"
    assert node.get("model"), f"{path}: low confidence without 'model'"


def test_all_claimed_platforms_are_present():
    assert list(FACTS["platforms"]) == PLATFORMS
    for name in PLATFORMS:
        platform = FACTS["platforms"][name]
        assert {"os_release", "baseproduct", "kernel", "python", "cuda_repo", "gfx_repo"} <= set(platform)
        assert platform["cuda_repo"]["dist"] in FACTS["cuda_repos"]
        assert platform["gfx_repo"]["path"].rstrip("/") in FACTS["gfx_repos"]


def test_tensorflow_pins_are_ranges_below_the_next_major():
    pins = {k: v for k, v in FACTS["tensorflow"]["2.21.0"]["and_cuda"].items() if k != "source"}
    assert len(pins) == 12
    for spec in pins.values():
        assert re.fullmatch(r">=[\d.]+,<[\d.]+", spec)
