"""Unit tests for the small read-only modules and the warning action of the preflight, cuda_repo and
nvidia_driver roles: gpu_stack_pci_gpus (sysfs and lspci parsing), gpu_stack_zypper_repos (zypper's
XML) and gpu_stack_warn (an action plugin), the last two shared from plugins/."""

from __future__ import annotations

import importlib.util
from pathlib import Path
from types import SimpleNamespace

REPO = Path(__file__).resolve().parents[2]


def _load(name: str, path: str):
    spec = importlib.util.spec_from_file_location(name, REPO / path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


pci = _load("gpu_stack_pci_gpus", "plugins/modules/gpu_stack_pci_gpus.py")
repos = _load("gpu_stack_zypper_repos", "plugins/modules/gpu_stack_zypper_repos.py")
warn = _load("gpu_stack_warn", "plugins/action/gpu_stack_warn.py")


# --- gpu_stack_pci_gpus


def _device(root: Path, slot: str, vendor: str, device: str, pci_class: str) -> None:
    d = root / slot
    d.mkdir(parents=True)
    (d / "vendor").write_text(f"0x{vendor}\n")
    (d / "device").write_text(f"0x{device}\n")
    (d / "class").write_text(f"0x{pci_class}\n")


def test_sysfs_finds_nvidia_display_controllers_only(tmp_path):
    _device(tmp_path, "0000:00:02.0", "8086", "46a6", "030000")  # Intel iGPU
    _device(tmp_path, "0000:01:00.0", "10de", "2684", "030000")  # NVIDIA VGA
    _device(tmp_path, "0000:01:00.1", "10de", "22ba", "040300")  # NVIDIA HDMI audio
    _device(tmp_path, "0000:41:00.0", "10de", "2330", "030200")  # NVIDIA 3D controller (H100)
    gpus = pci.scan_sysfs(str(tmp_path), "10de")
    assert [(g["slot"], g["device_id"], g["class_id"]) for g in gpus] == [
        ("0000:01:00.0", "2684", "0300"), ("0000:41:00.0", "2330", "0302")]


def test_sysfs_without_gpu_and_unreadable(tmp_path):
    _device(tmp_path, "0000:00:01.0", "1af4", "1000", "020000")
    (tmp_path / "0000:00:09.0").mkdir()  # a device without readable files is skipped
    assert pci.scan_sysfs(str(tmp_path), "10de") == []
    assert pci.scan_sysfs(str(tmp_path / "missing"), "10de") is None


LSPCI_N = """0000:00:02.0 "0300" "8086" "46a6" -r0c -p00 "1043" "1a13"
0000:01:00.0 "0300" "10de" "2684" -ra1 -p00 "1458" "4104"
0000:01:00.1 "0403" "10de" "22ba" -ra1 "1458" "4104"
"""
LSPCI_NAMES = ('0000:01:00.0 "VGA compatible controller" "NVIDIA Corporation" "AD102 [GeForce RTX 4090]" '
               '-ra1 -p00 "Gigabyte Technology Co., Ltd" "Device 4104"\n')


def test_parse_lspci_numeric():
    rows = pci.parse_lspci_mm(LSPCI_N, numeric=True)
    assert rows[1] == {"slot": "0000:01:00.0", "vendor_id": "10de", "device_id": "2684", "class_id": "0300",
                       "name": ""}
    assert len(rows) == 3


def test_parse_lspci_names_and_garbage():
    rows = pci.parse_lspci_mm(LSPCI_NAMES + 'broken "quote\n\n', numeric=False)
    assert rows == [{"slot": "0000:01:00.0", "name": "NVIDIA Corporation AD102 [GeForce RTX 4090]"}]


# --- gpu_stack_zypper_repos

ZYPPER_REPOS = """<?xml version='1.0'?>
<stream>
<repo-list>
<repo alias="cuda-opensuse15-x86_64" name="cuda-opensuse15-x86_64" type="rpm-md" priority="99" enabled="1" \
autorefresh="1" gpgcheck="1" repo_gpgcheck="1" pkg_gpgcheck="1" gpgkey="file:/srv/x/5D0297AF.pub">
<url>file:/srv/sandbox-repos/cuda/opensuse15/x86_64</url>
</repo>
<repo alias="cuda-opensuse15-12-5-local" name="cuda-opensuse15-12-5-local" type="rpm-md" priority="99" \
enabled="1" autorefresh="0" gpgcheck="1" repo_gpgcheck="1" pkg_gpgcheck="0">
<url>file:/var/cuda-repo-opensuse15-12-5-local</url>
</repo>
<repo alias="old" name="old zypper" type="rpm-md" enabled="0" autorefresh="0" gpgcheck="0">
<url>http://example.invalid/repo</url>
</repo>
</repo-list>
</stream>
"""


def test_parse_repos_xml():
    parsed = repos.parse_repos_xml(ZYPPER_REPOS)
    assert [r["alias"] for r in parsed] == ["cuda-opensuse15-x86_64", "cuda-opensuse15-12-5-local", "old"]
    assert parsed[0] == {
        "alias": "cuda-opensuse15-x86_64", "name": "cuda-opensuse15-x86_64",
        "url": "file:/srv/sandbox-repos/cuda/opensuse15/x86_64", "enabled": True, "autorefresh": True,
        "gpgcheck": True, "repo_gpgcheck": True, "pkg_gpgcheck": True, "priority": 99}
    assert parsed[1]["pkg_gpgcheck"] is False and parsed[1]["autorefresh"] is False
    # flags an old zypper does not report stay None, never a silent False
    assert parsed[2]["repo_gpgcheck"] is None
    assert parsed[2]["gpgcheck"] is False and parsed[2]["priority"] is None


def test_parse_empty_repo_list():
    assert repos.parse_repos_xml("<?xml version='1.0'?><stream><repo-list/></stream>") == []


# --- gpu_stack_warn


def _action(args: dict):
    action = warn.ActionModule.__new__(warn.ActionModule)
    action._task = SimpleNamespace(args=args, async_val=0, check_mode=False, diff=False)
    return action


def test_warn_returns_the_message_as_warning(monkeypatch):
    monkeypatch.setattr(warn.ActionBase, "run", lambda self, tmp=None, task_vars=None: {})
    res = _action({"msg": "No NVIDIA GPU"}).run(task_vars={})
    assert res == {"changed": False, "msg": "No NVIDIA GPU", "warnings": ["No NVIDIA GPU"]}


def test_warn_without_message_fails(monkeypatch):
    monkeypatch.setattr(warn.ActionBase, "run", lambda self, tmp=None, task_vars=None: {})
    assert _action({}).run(task_vars={})["failed"]


# --- gpu_stack_key_fingerprints

keys = _load("gpu_stack_key_fingerprints", "plugins/modules/gpu_stack_key_fingerprints.py")

# gpg --with-colons --fixed-list-mode --import-options show-only --import, two keys in one file
GPG_SHOW = """pub:-:4096:1:9CD0A493D42D0685:1649973841:::-:::scESC::::::23::0:
fpr:::::::::610C7B14E068A878070DA4E99CD0A493D42D0685:
uid:-::::1649973841::5A6B00A1E5C2C1E1B7D1E9A4C4C0D2A1B3D0F0E1::cudatools <cudatools@nvidia.com>::::::::::0:
pub:-:3072:1:91AD8E865D0297AF:1700000000:::-:::scESC::::::23::0:
fpr:::::::::eaf843f3d788e462fc3aefd791ad8e865d0297af:
sub:-:3072:1:0123456789ABCDEF:1700000000::::::e::::::23:
fpr:::::::::0A1B2C3D4E5F60718293A4B5C6D7E8F901234567:
"""


def test_parse_colons_lists_primary_keys_then_subkeys_in_upper_case():
    every, primary = keys.parse_colons(GPG_SHOW)
    assert primary == ["610C7B14E068A878070DA4E99CD0A493D42D0685", "EAF843F3D788E462FC3AEFD791AD8E865D0297AF"]
    assert every == [*primary, "0A1B2C3D4E5F60718293A4B5C6D7E8F901234567"]


def test_parse_colons_of_nothing():
    assert keys.parse_colons("gpg: no valid OpenPGP data found.\n") == ([], [])
