"""numeric_libs: OpenBLAS, HDF5 and the compilers, installed under their openSUSE package names.

Expected package names come from the role's platform vars (roles/numeric_libs/vars/<platform>.yml), with
inventory overrides (`stack_vars`) taking precedence, exactly as the role resolves them.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import yaml
from stack_defaults import role_defaults

ROLE = Path(__file__).resolve().parents[2] / "roles" / "numeric_libs"
JINJA_VAR = re.compile(r"\{\{\s*(\w+)\s*\}\}")

# A tiny C program: one BLAS call through OpenBLAS' CBLAS interface (declared here, so no header path
# differences between distributions matter). ddot([1,2,3],[4,5,6]) = 32.
CBLAS_PROGRAM = r"""
#include <stdio.h>
double cblas_ddot(const int n, const double *x, const int incx, const double *y, const int incy);
int main(void) {
    double x[] = {1, 2, 3}, y[] = {4, 5, 6};
    printf("%.1f\n", cblas_ddot(3, x, 1, y, 1));
    return 0;
}
"""


def _platform_file(host) -> str:
    """The vars file the role's first_found picks for this host."""
    info = host.system_info
    dist = (info.distribution or "").lower()
    major = (info.release or "").split(".")[0]
    if dist == "opensuse-tumbleweed":
        return "openSUSE_Tumbleweed.yml"
    return f"Suse-{major}.yml"


def _render(value, variables: dict):
    """Substitute the plain `{{ var }}` references used in the role's vars files."""
    if isinstance(value, list):
        return [_render(v, variables) for v in value]
    if isinstance(value, str):
        return JINJA_VAR.sub(lambda m: str(variables[m.group(1)]), value)
    return value


@pytest.fixture(scope="module")
def role_vars(host, stack_vars) -> dict:
    """Inputs of the role as it resolved them: defaults < platform vars < inventory."""
    defaults = role_defaults("numeric_libs")
    platform = yaml.safe_load((ROLE / "vars" / _platform_file(host)).read_text())
    merged = {k: v for k, v in defaults.items() if "{{" not in str(v)}
    merged.update({k: stack_vars[k] for k in defaults if k in stack_vars})
    resolved = {
        "numeric_libs_openblas_packages": "__numeric_libs_openblas_packages",
        "numeric_libs_hdf5_packages": "__numeric_libs_hdf5_packages",
        "numeric_libs_build_packages": "__numeric_libs_build_packages",
    }
    for name, internal in resolved.items():
        value = stack_vars.get(name, platform[internal])
        merged[name] = _render(value, merged)
    return merged


def _missing(host, packages: list[str]) -> list[str]:
    return [p for p in packages if not host.package(p).is_installed]


@pytest.mark.parametrize("group", ["openblas", "hdf5", "build"])
def test_packages_installed(host, role_vars, group: str) -> None:
    if group == "build" and not role_vars["numeric_libs_build_tools_enabled"]:
        pytest.skip("numeric_libs_build_tools_enabled is false")
    packages = role_vars[f"numeric_libs_{group}_packages"]
    assert packages, f"no {group} packages configured"
    assert _missing(host, packages) == [], f"not installed: {_missing(host, packages)}"


def test_extra_packages_installed(host, role_vars) -> None:
    extra = role_vars.get("numeric_libs_extra_packages") or []
    assert _missing(host, extra) == []


def test_openblas_runtime_and_flavour(host, role_vars) -> None:
    flavour = role_vars["numeric_libs_openblas_flavour"]
    assert host.package(f"libopenblas_{flavour}0").is_installed
    # The loader resolves OpenBLAS' soname (libopenblas.so.0) through its cache
    assert re.search(r"^\s*libopenblas\.so\.0 ", host.check_output("ldconfig -p"), re.M)


def test_hdf5_runtime_resolves(host) -> None:
    assert re.search(r"^\s*libhdf5(_serial)?\.so\.\d+ ", host.check_output("ldconfig -p"), re.M)


@pytest.mark.parametrize("tool", ["gcc", "g++", "make"])
def test_build_tool_runs(host, role_vars, tool: str) -> None:
    if not role_vars["numeric_libs_build_tools_enabled"]:
        pytest.skip("numeric_libs_build_tools_enabled is false")
    assert host.run(f"{tool} --version").rc == 0


def test_c_program_links_against_openblas(host, role_vars) -> None:
    if not role_vars["numeric_libs_build_tools_enabled"]:
        pytest.skip("numeric_libs_build_tools_enabled is false")
    program = _shell_quote(CBLAS_PROGRAM)
    out = host.run(
        f"d=$(mktemp -d) && printf '%s' {program} > $d/t.c && gcc -O0 -o $d/t $d/t.c -lopenblas && $d/t; "
        "rc=$?; rm -rf $d; exit $rc"
    )
    assert out.rc == 0, out.stderr
    assert out.stdout.strip() == "32.0"


def test_hdf5_compiler_wrapper_reports_version(host) -> None:
    out = host.run("h5cc -showconfig")
    assert out.rc == 0, out.stderr
    assert re.search(r"HDF5 Version:\s*\d+\.\d+\.\d+", out.stdout)


def _shell_quote(text: str) -> str:
    return "'" + text.replace("'", "'\"'\"'") + "'"
