"""Every custom module of the project returns result keys that Ansible does not read in another meaning.

Ansible interprets some keys of a module's result: `skipped` (truthy: the task shows "skipping", its
change is not counted, its handlers do not run), `failed`, `changed`, `msg`, `warnings` (shown as
warnings), `diff`, `results` (loop results), `ansible_facts` (set as host facts), and sets others itself
(`invocation`, `exception`, `skip_reason` ...). See "Return Values" in Ansible's reference
(docs.ansible.com, reference_appendices/common_return_values). Three checks per module, for every module
in plugins/modules (and the action plugins in plugins/action):

1. its RETURN documentation parses and documents no reserved key in another type;
2. its source uses no key that only Ansible may set, nor `skipped`/`results`, as a result key anywhere;
3. it runs (main(), with the commands it calls faked) through scenarios that reach its warning, failure and
   change paths, and every reserved key in the results has Ansible's meaning.

A module without scenarios fails check 3: add them to SCENARIOS.
"""

from __future__ import annotations

import ast
import importlib.util
import io
import json
import os
import shutil
import tarfile
from pathlib import Path

import pytest
import yaml
from ansible.module_utils import basic
from ansible.module_utils.common import warnings as ansible_warnings
from ansible.module_utils.common.text.converters import to_bytes
from elf_samples import synthetic_elf

REPO = Path(__file__).resolve().parents[2]
MODULES = sorted(REPO.glob("plugins/modules/*.py"))
ACTIONS = sorted(REPO.glob("plugins/action/*.py"))

# Keys Ansible reads in module results, with the type that meaning has
TYPED = {
    "changed": bool,
    "failed": bool,
    "msg": str,
    "warnings": list,
    "deprecations": list,
    "diff": (dict, list),
    "rc": int,
    "stdout": str,
    "stderr": str,
    "stdout_lines": list,
    "stderr_lines": list,
    "backup_file": str,
    "ansible_facts": dict,
}
# Keys Ansible sets itself or reads as a task outcome; a custom module never returns them
FORBIDDEN = {
    "skipped", "skip_reason", "results", "invocation", "exception", "unreachable", "item", "module_stdout",
    "module_stderr", "failed_when_result", "changed_when_result", "ansible_loop_var", "ansible_index_var",
    "ansible_loop", "checksum",
}  # fmt: skip
RESULT_CALLS = {"exit_json", "fail_json"}


def _forbidden(key: str) -> bool:
    return (
        key in FORBIDDEN
        or key.startswith("_ansible")
        or (key.startswith("ansible_") and key != "ansible_facts")
    )


def _rel(path: Path) -> str:
    return str(path.relative_to(REPO))


# --- 1. documentation


def _doc_strings(path: Path) -> dict[str, str]:
    out = {}
    for node in ast.parse(path.read_text()).body:
        target = node.targets[0] if isinstance(node, ast.Assign) and len(node.targets) == 1 else None
        if isinstance(target, ast.Name) and target.id in ("DOCUMENTATION", "RETURN", "EXAMPLES"):
            out[target.id] = node.value.value
    return out


@pytest.mark.parametrize("path", MODULES, ids=_rel)
def test_documentation_parses_and_return_keys_keep_their_meaning(path):
    docs = _doc_strings(path)
    assert {"DOCUMENTATION", "RETURN"} <= set(docs), f"{_rel(path)} lacks DOCUMENTATION or RETURN"
    parsed = {name: yaml.safe_load(text) for name, text in docs.items()}
    assert parsed["DOCUMENTATION"]["module"] == path.stem
    yaml_types = {"bool": bool, "str": str, "list": list, "dict": dict, "int": int, "complex": dict}
    for key, spec in (parsed["RETURN"] or {}).items():
        assert not _forbidden(key), f"{_rel(path)} documents the result key {key!r}, which Ansible interprets"
        if key in TYPED:
            documented = yaml_types.get(spec.get("type"))
            assert documented is not None and (
                documented in TYPED[key] if isinstance(TYPED[key], tuple) else documented is TYPED[key]
            ), f"{_rel(path)} documents {key!r} as {spec.get('type')}, Ansible reads it as {TYPED[key]}"


# --- 2. source


def _result_keys(path: Path) -> list[tuple[str, int]]:
    """String keys of dict literals, dict(...)/.update(...)/exit_json/fail_json keywords and d["k"] = ..."""
    found = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Dict):
            found += [
                (k.value, k.lineno)
                for k in node.keys
                if isinstance(k, ast.Constant) and isinstance(k.value, str)
            ]
        elif isinstance(node, ast.Call):
            name = node.func.attr if isinstance(node.func, ast.Attribute) else getattr(node.func, "id", "")
            if name in RESULT_CALLS | {"dict", "update"}:
                found += [(kw.arg, node.lineno) for kw in node.keywords if kw.arg]
        elif isinstance(node, ast.Assign):
            for target in node.targets:
                key = target.slice if isinstance(target, ast.Subscript) else None
                if isinstance(key, ast.Constant) and isinstance(key.value, str):
                    found.append((key.value, node.lineno))
    return found


@pytest.mark.parametrize("path", MODULES + ACTIONS, ids=_rel)
def test_source_uses_no_key_that_only_ansible_may_set(path):
    bad = [f"{_rel(path)}:{line}: {key!r}" for key, line in _result_keys(path) if _forbidden(key)]
    assert bad == [], "keys Ansible reads as task outcomes or sets itself: " + ", ".join(bad)


def test_the_source_check_catches_the_old_skipped_key(tmp_path):
    old = tmp_path / "old_module.py"
    old.write_text('result = {"changed": True, "skipped": [{"path": "/usr/lib64/libcudnn.so.9"}]}\n')
    assert ("skipped", 1) in _result_keys(old) and _forbidden("skipped")


# --- 3. results of real runs


def check_result(result: dict) -> list[str]:
    """Reserved keys used with another meaning in one result ([] when there are none)."""
    problems = [f"{k!r} is set by Ansible or read as a task outcome" for k in result if _forbidden(k)]
    for key, kind in TYPED.items():
        if key in result and not isinstance(result[key], kind):
            problems.append(f"{key!r} is {type(result[key]).__name__}, Ansible reads it as {kind}")
    if isinstance(result.get("warnings"), list):
        problems += [f"warning {w!r} is not a string" for w in result["warnings"] if not isinstance(w, str)]
    diffs = result.get("diff")
    for d in diffs if isinstance(diffs, list) else [diffs] if diffs else []:
        if not isinstance(d, dict) or not ({"before", "after"} <= set(d) or "prepared" in d):
            problems.append(f"diff {d!r} has no before/after")
    return problems


def test_check_result_flags_the_issue_s_result():
    assert check_result({"changed": True, "skipped": [{"path": "/usr/lib64/x"}]}) == [
        "'skipped' is set by Ansible or read as a task outcome"
    ]
    assert check_result({"changed": "yes", "warnings": ["a", 3], "msg": ["x"]}) == [
        "'changed' is str, Ansible reads it as <class 'bool'>",
        "'msg' is list, Ansible reads it as <class 'str'>",
        "warning 3 is not a string",
    ]
    assert check_result({"changed": False, "warnings": ["w"], "diff": {"before": "", "after": "x"}}) == []


class Done(Exception):
    def __init__(self, result):
        Exception.__init__(self, "module exited")
        self.result = result


def _load(path: Path):
    spec = importlib.util.spec_from_file_location(f"module_under_test_{path.stem}", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def run_module(path: Path, args: dict, monkeypatch, tmp_path: Path, commands=None, check_mode=False) -> dict:
    """Run the module's main() as Ansible would, with run_command answered from `commands`.

    commands maps the first argument's base name (e.g. "ldconfig") to a function argv -> (rc, out, err).
    """
    commands = commands or {}
    tmpdir = tmp_path / "module-tmp"
    tmpdir.mkdir(exist_ok=True)
    payload = dict(
        args,
        _ansible_check_mode=check_mode,
        _ansible_tmpdir=str(tmpdir),
        _ansible_remote_tmp=str(tmpdir),
        _ansible_keep_remote_files=False,
    )
    monkeypatch.setattr(basic, "_ANSIBLE_ARGS", to_bytes(json.dumps({"ANSIBLE_MODULE_ARGS": payload})))
    monkeypatch.setattr(ansible_warnings, "_global_warnings", [])  # module.warn() collects here

    def exit_json(self, **kwargs):
        result = dict(kwargs)
        if ansible_warnings.get_warning_messages():
            result.setdefault("warnings", []).extend(ansible_warnings.get_warning_messages())
        result.setdefault("changed", False)
        raise Done(result)

    def fail_json(self, msg, **kwargs):
        raise Done(dict(kwargs, failed=True, msg=msg))

    def run_command(self, argv, **_kwargs):
        name = os.path.basename(argv[0])
        assert name in commands, f"unexpected command {argv}"
        return commands[name](argv)

    monkeypatch.setattr(basic.AnsibleModule, "exit_json", exit_json)
    monkeypatch.setattr(basic.AnsibleModule, "fail_json", fail_json)
    monkeypatch.setattr(basic.AnsibleModule, "run_command", run_command)
    monkeypatch.setattr(basic.AnsibleModule, "get_bin_path", lambda self, name, *a, **k: f"/usr/bin/{name}")
    module = _load(path)
    with pytest.raises(Done) as done:
        module.main()
    return done.value.result


# --- scenarios: each returns [(args, commands, check_mode)] and asserts nothing itself


def _cuda_tree(root: Path, build) -> dict:
    lib = root / "usr/local/cuda-12.5/targets/x86_64-linux/lib"
    inc = root / "usr/local/cuda-12.5/targets/x86_64-linux/include"
    lib.mkdir(parents=True)
    inc.mkdir()
    (inc / "cuda_runtime.h").write_text("// h\n")
    os.symlink("targets/x86_64-linux/lib", root / "usr/local/cuda-12.5/lib64")
    os.symlink("targets/x86_64-linux/include", root / "usr/local/cuda-12.5/include")
    os.symlink("cuda-12.5", root / "usr/local/cuda")
    shutil.copy(build("libcudnn.so.9"), lib / "libcudnn.so.9.3.0")
    shutil.copy(build("libcufft.so.10"), lib / "libcufft.so.10.1.2")
    for d in ("usr/include", "usr/lib64"):
        (root / d).mkdir(parents=True)
    return {"home": str(root / "usr/local/cuda"), "lib": lib, "inc": inc}


def soname_links_scenarios(tmp_path, build):
    tree = _cuda_tree(tmp_path / "root", build)
    (tmp_path / "root/usr/lib64/libcudnn.so.9").write_bytes(b"a user's own library\n")  # the issue's case
    home = tree["home"]
    base = {
        "lib_dirs": [f"{home}/lib64"],
        "expected_sonames": ["libcudnn.so.9", "libcufft.so.11", "libcurand.so.10"],
        "mirrors": [
            {"src": f"{home}/include", "dest": str(tmp_path / "root/usr/include"), "recurse": True},
            {"src": f"{home}/lib64", "dest": str(tmp_path / "root/usr/lib64"), "patterns": ["*.so*"]},
        ],
        "manifest": str(tmp_path / "root/var/lib/opensuse-gpu-stack/manifest-cuda_links.json"),
    }
    return [
        (dict(base), None, True),
        (dict(base), None, False),
        (dict(base), None, False),
        (dict(base, strict=True), None, False),
        (dict(base, expected_aliases=True), None, False),
        (dict(base, aliases=[{"name": "libcufft.so.11", "target": "libcufft.so.10"}]), None, False),
        ({"state": "absent", "manifest": base["manifest"]}, None, False),
    ]


def cudnn_archive_scenarios(tmp_path, build):
    tree = _cuda_tree(tmp_path / "root", build)
    archive = tmp_path / "cudnn.tar.xz"
    top = "cudnn-linux-x86_64-9.3.0.75_cuda12-archive"
    files = {
        f"{top}/include/cudnn.h": b'#include "cudnn_version.h"\n',
        f"{top}/include/cudnn_version.h": b"#define CUDNN_MAJOR 9\n#define CUDNN_MINOR 3\n"
        b"#define CUDNN_PATCHLEVEL 0\n",
        f"{top}/lib/libcudnn.so.9.3.0": synthetic_elf(2, "<", "libcudnn.so.9"),
    }
    with tarfile.open(archive, "w:xz") as tar:
        for name, data in files.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    fake = tmp_path / "fake.tar.xz"
    with tarfile.open(fake, "w:xz") as tar:
        for name, data in {**files, f"{top}/lib/libcudnn.so.9.3.0": b"\x7fELF"}.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    base = {
        "src": str(archive),
        "remote_src": True,
        "version": "9.3.0.75",
        "cuda_home": tree["home"],
        "manifest": str(tmp_path / "root/var/lib/opensuse-gpu-stack/manifest-cudnn.json"),
    }
    (tree["inc"] / "cudnn.h").write_text("// a user's header\n")
    return [
        (dict(base), None, False),  # conflict: refused
        (dict(base, src=str(fake)), None, False),  # a 4-byte "library": refused
        (dict(base), None, True),
        ({"state": "absent", "manifest": base["manifest"]}, None, False),
    ]


def _ldconfig(tmp_path, build):
    lib = tmp_path / "lib"
    lib.mkdir()
    shutil.copy(build("libcudnn.so.9"), lib / "libcudnn.so.9")
    state = {"fresh": False}

    def ldconfig(argv):
        if argv[1:] == ["-p"]:
            entry = f"\tlibcudnn.so.9 (libc6,x86-64) => {lib}/libcudnn.so.9\n" if state["fresh"] else ""
            return 0, "1 libs found in cache `/etc/ld.so.cache'\n" + entry, ""
        if argv[1:] == ["-v", "-N", "-X"]:
            return 0, f"{lib}: (from /etc/ld.so.conf.d/x.conf:1)\n/lib64: (from <builtin>:0)\n", ""
        state["fresh"] = True
        return 0, "", ""

    return lib, ldconfig


def gpu_stack_loader_cache_scenarios(tmp_path, build):
    lib, ldconfig = _ldconfig(tmp_path, build)
    conf = tmp_path / "etc/ld.so.conf.d/opensuse-gpu-stack-cuda.conf"
    conf.parent.mkdir(parents=True)
    (tmp_path / "etc/ld.so.conf").write_text("include ld.so.conf.d/*.conf\n")
    base = {
        "dirs": [str(lib)],
        "names": ["libcudnn.so.9", "libnccl.so.2"],
        "ld_so_conf": str(tmp_path / "etc/ld.so.conf"),
    }
    unsearched = tmp_path / "unsearched"
    unsearched.mkdir()
    shutil.copy(build("libnccl.so.2"), unsearched / "libnccl.so.2")
    return [
        (dict(base, conf=str(conf), conf_dirs=[str(lib)]), {"ldconfig": ldconfig}, True),
        (dict(base, conf=str(conf), conf_dirs=[str(lib)]), {"ldconfig": ldconfig}, False),
        (dict(base), {"ldconfig": ldconfig}, False),
        (dict(base, dirs=[str(unsearched)]), {"ldconfig": ldconfig}, False),  # fails: not searched
    ]


GPG_COLONS = """pub:-:3072:1:91AD8E865D0297AF:1700000000:::-:::scESC::::::23::0:
fpr:::::::::EAF843F3D788E462FC3AEFD791AD8E865D0297AF:
uid:-::::1700000000::0::Sandbox NVIDIA test key::::::::::0:
sub:-:3072:1:0123456789ABCDEF:1700000000::::::e::::::23:
fpr:::::::::0A1B2C3D4E5F60718293A4B5C6D7E8F901234567:
"""


def gpu_stack_key_fingerprints_scenarios(tmp_path, build):
    key = tmp_path / "key.pub"
    key.write_text("-----BEGIN PGP PUBLIC KEY BLOCK-----\n...\n")
    good = {"gpg2": lambda argv: (0, GPG_COLONS, "")}
    bad = {"gpg2": lambda argv: (2, "", "gpg: no valid OpenPGP data found.")}
    return [
        ({"src": str(key)}, good, True),
        ({"src": str(key)}, bad, False),
        ({"src": str(tmp_path / "nope.pub")}, good, False),
    ]


ZYPPER_XML = """<?xml version='1.0'?>
<stream><repo-list>
<repo alias="cuda-opensuse15-x86_64" name="cuda" type="rpm-md" priority="99" enabled="1" gpgcheck="1">
<url>file:/srv/sandbox-repos/cuda/opensuse15/x86_64</url></repo>
</repo-list></stream>
"""


def gpu_stack_zypper_repos_scenarios(tmp_path, build):
    return [
        ({}, {"zypper": lambda argv: (0, ZYPPER_XML, "")}, True),
        ({"alias": "other"}, {"zypper": lambda argv: (0, ZYPPER_XML, "")}, False),
        ({}, {"zypper": lambda argv: (0, "<not xml", "")}, False),
        ({}, {"zypper": lambda argv: (7, "", "System management is locked")}, False),
    ]


def gpu_stack_pci_gpus_scenarios(tmp_path, build):
    dev = tmp_path / "sys/0000:01:00.0"
    dev.mkdir(parents=True)
    for name, value in (("vendor", "0x10de"), ("device", "0x2684"), ("class", "0x030000")):
        (dev / name).write_text(value + "\n")
    lspci = {
        "lspci": lambda argv: (
            0,
            '0000:01:00.0 "VGA compatible controller" "NVIDIA Corporation" "AD102"\n',
            "",
        )
    }
    return [
        ({"sysfs_path": str(tmp_path / "sys")}, lspci, True),
        ({"sysfs_path": str(tmp_path / "missing")}, {"lspci": lambda argv: (1, "", "no")}, False),
    ]


SCENARIOS = {
    "soname_links": soname_links_scenarios,
    "cudnn_archive": cudnn_archive_scenarios,
    "gpu_stack_loader_cache": gpu_stack_loader_cache_scenarios,
    "gpu_stack_key_fingerprints": gpu_stack_key_fingerprints_scenarios,
    "gpu_stack_zypper_repos": gpu_stack_zypper_repos_scenarios,
    "gpu_stack_pci_gpus": gpu_stack_pci_gpus_scenarios,
}


def test_every_module_has_scenarios():
    assert sorted(p.stem for p in MODULES) == sorted(SCENARIOS)


@pytest.mark.parametrize("path", MODULES, ids=_rel)
def test_results_of_real_runs_keep_the_reserved_keys_meaning(path, tmp_path, monkeypatch, build):
    if path.stem not in SCENARIOS:
        pytest.fail(f"{_rel(path)} has no scenarios in SCENARIOS")
    outcomes = set()
    for i, (args, commands, check_mode) in enumerate(SCENARIOS[path.stem](tmp_path, build)):
        result = run_module(path, args, monkeypatch, tmp_path, commands, check_mode)
        assert check_result(result) == [], (
            f"{path.stem} scenario {i} ({args}): {check_result(result)}\n{result}"
        )
        outcomes.add("failed" if result.get("failed") else "changed" if result["changed"] else "ok")
        if result.get("warnings"):
            outcomes.add("warned")
    # the scenarios reach the paths that matter for the keys: a failure (where the module can fail) and a
    # result that is not one
    assert outcomes & {"changed", "warned", "ok"}, outcomes
    if "fail_json" in path.read_text():
        assert "failed" in outcomes, outcomes


def test_the_issue_s_case_is_a_change_with_a_warning(tmp_path, monkeypatch, build):
    """A foreign /usr/lib64/libcudnn.so.9: the links are made (changed), the foreign path is a warning."""
    path = REPO / "plugins/modules/soname_links.py"
    args = soname_links_scenarios(tmp_path, build)[1][0]
    result = run_module(path, args, monkeypatch, tmp_path)
    assert result["changed"] is True and "skipped" not in result
    assert [f["path"] for f in result["foreign"]] == [str(tmp_path / "root/usr/lib64/libcudnn.so.9")]
    assert any("left alone 1 path(s) this project did not create" in w for w in result["warnings"])
