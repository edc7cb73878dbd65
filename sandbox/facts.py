"""Load sandbox/stubs/facts.yml: the sourced facts the sandbox platforms and stub repositories are built from.

Every mapping in the file that carries `source:` must name an entry of the top-level `sources:` map;
`load()` refuses a file where one does not (a stub may only model a fact that has a public source).
"""

from __future__ import annotations

import functools
from collections.abc import Iterator
from pathlib import Path
from typing import Any

FACTS_FILE = Path(__file__).resolve().parent / "stubs" / "facts.yml"


class FactsError(Exception):
    """facts.yml is missing, unreadable or inconsistent."""


def _walk(node: Any, path: str) -> Iterator[tuple[str, dict]]:
    """Every mapping below `node` with its dotted path."""
    if isinstance(node, dict):
        yield path, node
        for key, value in node.items():
            yield from _walk(value, f"{path}.{key}" if path else str(key))
    elif isinstance(node, list):
        for index, value in enumerate(node):
            yield from _walk(value, f"{path}[{index}]")


def check_sources(data: dict) -> list[str]:
    """Problems with `source:` references (unknown ids, sources without url); [] when consistent."""
    sources = data.get("sources")
    if not isinstance(sources, dict) or not sources:
        return ["no `sources:` map at the top level"]
    problems = [
        f"sources.{sid} has neither url nor located_by"
        for sid, entry in sources.items()
        if not isinstance(entry, dict)
        or not (entry.get("url") or entry.get("located_by") or sid == "unconfirmed")
    ]
    for path, mapping in _walk({k: v for k, v in data.items() if k != "sources"}, ""):
        refs = mapping.get("source")
        for ref in refs if isinstance(refs, list) else [refs] if refs is not None else []:
            if ref not in sources:
                problems.append(f"{path}: source {ref!r} is not in `sources:`")
    return problems


@functools.cache
def load(path: Path = FACTS_FILE) -> dict:
    """The parsed facts file (cached); FactsError when it is unreadable or a source reference is broken."""
    import yaml  # here, not at the top: sandboxctl's host commands (shell, root, status) run without PyYAML

    try:
        data = yaml.safe_load(Path(path).read_text())
    except (OSError, yaml.YAMLError) as exc:
        raise FactsError(f"cannot read {path}: {exc}") from exc
    if not isinstance(data, dict):
        raise FactsError(f"{path}: not a mapping")
    problems = check_sources(data)
    if problems:
        raise FactsError(f"{path}: " + "; ".join(problems[:10]))
    return data


def platforms(path: Path = FACTS_FILE) -> dict[str, dict]:
    """platform id -> its facts (leap156, leap160, tumbleweed, sles15, sles16)."""
    return dict(load(path).get("platforms") or {})


# The sandbox's Debian suites and their real Python (Debian's facts, not openSUSE's): the interpreter a
# platform's virtualenv runs must be real, so each platform sits on the suite that has it.
SUITE_PYTHON = {"bookworm": "3.11", "trixie": "3.13"}
# The lowest Python ansible-core 2.18 runs modules with (its documented managed-node range is 3.8-3.13)
ANSIBLE_MIN_PYTHON = (3, 8)


def _xy(version: object) -> str:
    return ".".join(str(version).split(".")[:2])


# Keys of a fact mapping that describe the fact instead of being part of it
META_KEYS = frozenset({"source", "confidence", "seen", "model", "note", "located_by"})


def values(mapping: dict) -> dict:
    """A fact mapping without its metadata (source, confidence, seen, model, note)."""
    return {k: v for k, v in mapping.items() if k not in META_KEYS}


def system_python(pf: dict) -> dict:
    """{'version': 'X.Y', 'package': name} of a platform's system python3."""
    return pf["python"]["system"]


def python_too_old(pf: dict) -> bool:
    """The platform's system python3 cannot run ansible-core's modules (Leap/SLE 15: 3.6)."""
    return tuple(int(p) for p in _xy(system_python(pf)["version"]).split(".")) < ANSIBLE_MIN_PYTHON


def venv_python(pf: dict) -> str:
    """X.Y of the Python the platform's TensorFlow virtualenv uses: the system python3 where ansible-core
    and TensorFlow can use it, else the newest packaged python3XX the sandbox can run (python311 on 15.x)."""
    system = _xy(system_python(pf)["version"])
    if not python_too_old(pf) and system in SUITE_PYTHON.values():
        return system
    packaged = [p for p in pf["python"].get("packaged") or [] if str(p.get("model", "")) != "not available"]
    for version in sorted((_xy(p["version"]) for p in packaged), reverse=True):
        if version in SUITE_PYTHON.values():
            return version
    raise FactsError(
        f"{pf.get('name')}: no Python the sandbox can provide among its system Python {system}"
        f" and packaged {[p.get('package') for p in packaged]}"
    )


def suite_for(pf: dict) -> str:
    """The Debian suite a platform's sandbox host is built on (the one whose Python is venv_python)."""
    wanted = venv_python(pf)
    return next(suite for suite, python in SUITE_PYTHON.items() if python == wanted)
