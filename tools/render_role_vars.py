"""Render the README's role-variable table from each role's meta/argument_specs.yml.

Usage: render_role_vars.py [--check] [README]
Rewrites the block between the ROLE VARIABLES markers; --check exits 1 when it is out of date.
Argument specs are the one source of truth for role inputs; this keeps the README in step.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[1]
BEGIN = "<!-- BEGIN ROLE VARIABLES (tools/render_role_vars.py) -->"
END = "<!-- END ROLE VARIABLES -->"
ROLE_ORDER = ["preflight", "cuda_repo", "nvidia_driver", "cuda", "cudnn", "cuda_links",
              "numeric_libs", "ml_venv", "gpu_validation"]


def _cell(value: object) -> str:
    text = " ".join(str(value).split())
    return text.replace("|", "\\|") or " "


def _default(spec: dict, defaults: dict, name: str) -> str:
    if spec.get("required"):
        return "*required*"
    value = defaults.get(name, spec.get("default"))
    return f"`{value}`" if value not in (None, "") else " "


def role_rows(role_dir: Path) -> list[str]:
    specs_file = role_dir / "meta" / "argument_specs.yml"
    if not specs_file.exists():
        return []
    specs = yaml.safe_load(specs_file.read_text()) or {}
    options = specs.get("argument_specs", {}).get("main", {}).get("options", {}) or {}
    defaults_file = role_dir / "defaults" / "main.yml"
    defaults = (yaml.safe_load(defaults_file.read_text()) or {}) if defaults_file.exists() else {}
    rows = []
    for name, spec in options.items():
        desc = spec.get("description", "")
        if isinstance(desc, list):
            desc = " ".join(desc)
        kind = spec.get("type", "str")
        if spec.get("choices"):
            kind += " (" + ", ".join(str(c) for c in spec["choices"]) + ")"
        rows.append(f"| {role_dir.name} | `{name}` | {_cell(kind)} | {_cell(_default(spec, defaults, name))} "
                    f"| {_cell(desc)} |")
    return rows


def render(roles_dir: Path) -> str:
    names = [r for r in ROLE_ORDER if (roles_dir / r).is_dir()]
    names += sorted(p.name for p in roles_dir.iterdir() if p.is_dir() and p.name not in names)
    lines = ["| role | variable | type | default | description |", "|---|---|---|---|---|"]
    for name in names:
        lines += role_rows(roles_dir / name)
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("readme", nargs="?", type=Path, default=REPO / "README.md")
    ap.add_argument("--check", action="store_true", help="exit 1 if the table is out of date")
    args = ap.parse_args(argv)
    text = args.readme.read_text()
    if BEGIN not in text or END not in text:
        print(f"render_role_vars: markers missing in {args.readme}", file=sys.stderr)
        return 2
    head, rest = text.split(BEGIN, 1)
    _, tail = rest.split(END, 1)
    new = f"{head}{BEGIN}\n{render(REPO / 'roles')}\n{END}{tail}"
    if args.check:
        if new != text:
            print("render_role_vars: README role table is out of date: run `make readme`", file=sys.stderr)
            return 1
        return 0
    args.readme.write_text(new)
    return 0


if __name__ == "__main__":
    sys.exit(main())
