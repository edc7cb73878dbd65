"""Shared setup of the unit tests.

The modules import their module_utils as ansible_collections.gpu_stack.opensuse.plugins.module_utils.<name>
(Ansible ships those files with each module). The unit tests import the modules directly and render role
defaults that call the collection's lookup, so Ansible's collection loader is set up first, with the
checkout's collections/ directory (ansible_collections/gpu_stack/opensuse links back to the repository
root) as the collections path, as ansible.cfg has it. `build` compiles real shared libraries with gcc.
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest
from ansible.plugins.loader import init_plugin_loader

init_plugin_loader([str(Path(__file__).resolve().parents[2] / "collections")])


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
