"""Unit tests of sandbox/sandboxctl.py's pure parts (no root, no mounts, no network)."""

from __future__ import annotations

import importlib
import sys
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO_ROOT))
sc = importlib.import_module("sandbox.sandboxctl")


@pytest.mark.parametrize("name", ["leap156-1", "h1test", "a", "x_y-z9", "0abc"])
def test_valid_host_names(name):
    assert sc.validate_host_name(name) == name


@pytest.mark.parametrize("name", ["", "-x", "A", "a/b", "..", "a.b", "a b", "x" * 64, "é"])
def test_invalid_host_names(name):
    with pytest.raises(sc.EnvironmentProblem, match="invalid host name"):
        sc.validate_host_name(name)


def test_expand_host_names_count_and_dedup():
    assert sc.expand_host_names(["b", "leap156-2"], 3) == ["b", "leap156-2", "leap156-1", "leap156-3"]
    assert sc.expand_host_names([], 2, prefix="lab") == ["lab-1", "lab-2"]
    assert sc.expand_host_names(["x"], None) == ["x"]
    with pytest.raises(sc.EnvironmentProblem, match="--count"):
        sc.expand_host_names([], 0)


MOUNTINFO = """\
22 27 0:21 / /proc rw,relatime - proc proc rw
27 1 254:0 / / rw,relatime - ext4 /dev/vda rw
90 27 0:50 / /c/hosts/h1/merged rw,relatime - overlay overlay rw,lowerdir=/c/base/rootfs
91 90 0:51 / /c/hosts/h1/merged/proc rw - proc proc rw
92 90 0:6 / /c/hosts/h1/merged/dev rw - devtmpfs devtmpfs rw
93 92 0:24 / /c/hosts/h1/merged/dev/pts rw - devpts devpts rw
94 27 0:52 / /c/hosts/h10/merged rw - overlay overlay rw
95 27 0:53 / /mnt/with\\040space rw - tmpfs tmpfs rw
"""


def test_parse_mountinfo_unescapes_and_keeps_order():
    points = sc.parse_mountinfo(MOUNTINFO)
    assert points[0] == "/proc"
    assert points[-1] == "/mnt/with space"
    assert points.index("/c/hosts/h1/merged") < points.index("/c/hosts/h1/merged/dev/pts")


def test_mounts_under_is_innermost_first_and_exact_on_prefix():
    points = sc.parse_mountinfo(MOUNTINFO)
    # h10 shares the prefix "h1" but is not below /c/hosts/h1
    assert sc.mounts_under("/c/hosts/h1", points) == [
        "/c/hosts/h1/merged/dev/pts",
        "/c/hosts/h1/merged/dev",
        "/c/hosts/h1/merged/proc",
        "/c/hosts/h1/merged",
    ]
    assert sc.mounts_under("/c/hosts/h1/", points)[-1] == "/c/hosts/h1/merged"
    assert sc.mounts_under("/c/hosts/none", points) == []


def test_render_inventory_hosts():
    text = sc.render_inventory({"b": "/r/b/merged", "a": Path("/r/a/merged")}, "test")
    lines = text.splitlines()
    assert lines[:2] == ["---", "# test"] and lines[3] == "sandbox:"
    assert text.index("    a:") < text.index("    b:")
    assert '      ansible_host: "/r/a/merged"' in text
    assert text.count("ansible_connection: community.general.chroot") == 2
    assert text.count("ansible_python_interpreter: /usr/bin/python3") == 2
    assert text.count("ansible_become: false") == 2


def test_render_inventory_empty_is_valid_group():
    assert sc.render_inventory({}, "none").endswith("sandbox:\n  hosts: {}\n")


def test_render_inventory_is_yaml():
    yaml = pytest.importorskip("yaml")
    data = yaml.safe_load(sc.render_inventory({"h": "/p/h/merged"}, "t"))
    assert data == {"sandbox": {"hosts": {"h": {
        "ansible_connection": "community.general.chroot", "ansible_host": "/p/h/merged",
        "ansible_python_interpreter": "/usr/bin/python3", "ansible_become": False,
    }}}}


def test_host_mount_plan_order_and_modes(tmp_path):
    layout = sc.Layout(tmp_path)
    lower = tmp_path / ".cache/sandbox/base-x/rootfs"
    plan = sc.host_mount_plan(layout, "h1", lower)
    merged = layout.host_dir("h1") / "merged"
    targets = [argv[-1] for argv in plan]
    assert targets[0] == str(merged)
    assert targets[1:] == [str(merged / p) for p in
                           ("proc", "sys", "dev", "dev/pts", "srv/sandbox-repos", "var/cache/sandbox-pip")]
    overlay = plan[0]
    assert overlay[:4] == ["mount", "-t", "overlay", "overlay"]
    assert f"lowerdir={lower}" in overlay[5] and "upperdir=" in overlay[5] and "workdir=" in overlay[5]
    repos = plan[5]
    assert "bind,ro" in repos and str(layout.repos) in repos
    sysfs = plan[2]
    assert any(a.startswith("ro,") for a in sysfs)
    # no recursive binds: unmounting must never take the host's own submounts along
    assert all("--rbind" not in argv and "rbind" not in ",".join(argv) for argv in plan)


def test_host_mount_plan_rejects_overlay_separators(tmp_path):
    layout = sc.Layout(tmp_path / "a,b")
    with pytest.raises(sc.EnvironmentProblem, match="overlayfs"):
        sc.host_mount_plan(layout, "h1", tmp_path / "base")


def test_layout_paths(tmp_path):
    layout = sc.Layout(tmp_path)
    assert layout.cache == tmp_path / ".cache/sandbox"
    assert layout.base_dir("ab" * 32).name == "base-" + "ab" * 8
    assert layout.host_inventory("h1") == tmp_path / "inventory/.sandbox-h1.yml"
    assert layout.inventory_file == tmp_path / "inventory/sandbox.yml"
    assert layout.pip_cache == tmp_path / ".cache/pip"


def test_digest_changes_with_each_input():
    files = [("etc/os-release", 0o644, b"x")]
    base = sc.digest_inputs("recipe", files, b"key", ["a", "b"])
    assert base == sc.digest_inputs("recipe", list(reversed(files)), b"key", ["b", "a", "a"])
    assert base != sc.digest_inputs("recipe2", files, b"key", ["a", "b"])
    assert base != sc.digest_inputs("recipe", [("etc/os-release", 0o755, b"x")], b"key", ["a", "b"])
    assert base != sc.digest_inputs("recipe", [("etc/os-release", 0o644, b"y")], b"key", ["a", "b"])
    assert base != sc.digest_inputs("recipe", files, b"key2", ["a", "b"])
    assert base != sc.digest_inputs("recipe", files, b"key", ["a", "b", "c"])


def test_recipe_source_is_the_marked_part():
    text = Path(sc.__file__).read_text()
    recipe = sc.recipe_source(text)
    assert "BASE_PACKAGES" in recipe and "def configure_rootfs" in recipe
    assert "def host_up" not in recipe  # editing host handling must not invalidate the base


def test_provides_spec():
    spec = sc.provides_spec(["libc.so.6()(64bit)", "/bin/sh", "/bin/sh", "python(abi) = 3.11"])
    assert "Name: sandbox-dpkg-provides\n" in spec
    assert "AutoReqProv: no" in spec
    assert spec.count("Provides: /bin/sh\n") == 1
    assert "Provides: python(abi) = 3.11\n" in spec
    assert "%{nil}" in spec
    assert spec.rstrip().endswith("%files")


def test_file_capabilities_merged_usr(tmp_path):
    (tmp_path / "usr/bin").mkdir(parents=True)
    (tmp_path / "usr/sbin").mkdir(parents=True)
    (tmp_path / "bin").symlink_to("usr/bin")
    for name in ("sh", "[", "python3.11"):
        (tmp_path / "usr/bin" / name).touch()
    (tmp_path / "usr/sbin/ldconfig").touch()
    caps = set(sc.file_capabilities(tmp_path))
    assert {"/usr/bin/sh", "/bin/sh", "/usr/bin/python3.11", "/bin/python3.11", "/usr/sbin/ldconfig"} <= caps
    assert "/usr/bin/[" not in caps  # not a name rpm's spec parser takes
    assert "/sbin/ldconfig" not in caps  # no /sbin symlink in this tree


def test_shared_objects_only_elf(tmp_path):
    libdir = tmp_path / "usr/lib/x86_64-linux-gnu"
    libdir.mkdir(parents=True)
    (libdir / "libc.so.6").write_bytes(b"\x7fELF rest")
    (libdir / "libc.so").write_text("/* GNU ld script */")
    (libdir / "libz.so.1").symlink_to("libc.so.6")
    (libdir / "notalib.txt").write_bytes(b"\x7fELF")
    assert sc.shared_objects(tmp_path) == ["/usr/lib/x86_64-linux-gnu/libc.so.6"]


def test_run_cmd_never_raises():
    assert sc.run_cmd(["/nonexistent/command"]).returncode == 127
    assert sc.run_cmd([sys.executable, "-c", "import time; time.sleep(5)"], timeout=0.2).returncode == 124
    res = sc.run_cmd([sys.executable, "-c", "print('hi')"])
    assert (res.returncode, res.stdout) == (0, "hi\n")


def test_must_raises_with_context():
    with pytest.raises(sc.SandboxError, match=r"probing failed \(rc 3\)"):
        sc.must([sys.executable, "-c", "import sys; sys.exit(3)"], "probing")


def test_owner_alive():
    import os

    me = os.getpid()
    assert sc.owner_alive({"owner_pid": me, "owner_start": sc.pid_start_time(me)})
    assert not sc.owner_alive({"owner_pid": me, "owner_start": "0"})  # pid reused by another process
    assert sc.owner_alive({"owner_pid": None})  # CLI hosts have no owner


def test_cli_usage_errors_exit_2(capsys):
    with pytest.raises(SystemExit) as exc:
        sc.main(["frobnicate"])
    assert exc.value.code == 2
    assert sc.main(["up", "Bad/Name"], layout=sc.Layout(Path("/nonexistent"))) == 2
    assert "invalid host name" in capsys.readouterr().err


def test_status_on_empty_layout(tmp_path, capsys):
    assert sc.main(["status", "--json"], layout=sc.Layout(tmp_path)) == 0
    out = capsys.readouterr().out
    assert '"base": null' in out and '"hosts": []' in out
