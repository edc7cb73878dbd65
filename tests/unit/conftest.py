"""Shared setup of the unit tests.

ansible.cfg points `module_utils` at plugins/module_utils; Ansible then ships those files with each module
as ansible.module_utils.<name>. The unit tests import the modules directly, so the same package path is
extended here before any test module is imported. `build` compiles real shared libraries with gcc.
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import ansible.module_utils
import pytest

MODULE_UTILS = str(Path(__file__).resolve().parents[2] / "plugins" / "module_utils")
if MODULE_UTILS not in ansible.module_utils.__path__:
    ansible.module_utils.__path__.append(MODULE_UTILS)


GCC = shutil.which("gcc")


@pytest.fixture(scope="session")
def build(tmp_path_factory):
    """build(soname) -> a real shared library with that DT_SONAME, built with gcc (cached per soname)."""
    if GCC is None:
        pytest.skip("gcc is needed to build test libraries")
    out = tmp_path_factory.mktemp("elf")
    src = out / "stub.c"
    src.write_text('#include <stdio.h>\nint stub_version(void) { puts("stub"); return 90300; }\n')
    cache = {}

    def _build(soname: str | None) -> Path:
        if soname not in cache:
            target = out / f"lib_{len(cache)}.so"
            cmd = [GCC, "-shared", "-fPIC", "-o", str(target), str(src)]
            if soname:
                cmd.insert(3, "-Wl,-soname," + soname)
            subprocess.run(cmd, check=True, capture_output=True)
            cache[soname] = target
        return cache[soname]

    return _build
