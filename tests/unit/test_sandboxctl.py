"""Unit tests of sandbox/sandboxctl.py's pure parts (no root, no mounts, no network)."""

from __future__ import annotations

import importlib
import os
import stat
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
    text = sc.render_inventory(
        {"b": ("/r/b/merged", "leap160"), "a": (Path("/r/a/merged"), "leap156")}, "test"
    )
    lines = text.splitlines()
    assert lines[:2] == ["---", "# test"] and lines[3] == "sandbox:"
    assert text.index("    a:") < text.index("    b:")
    assert '      ansible_host: "/r/a/merged"' in text
    assert text.count("ansible_connection: community.general.chroot") == 2
    # like a real host: the python_bootstrap role finds or installs the interpreter
    assert "ansible_python_interpreter" not in text
    assert text.count("ansible_become: false") == 2


def test_render_inventory_empty_is_valid_group():
    assert sc.render_inventory({}, "none").endswith("sandbox:\n  hosts: {}\n")


def test_render_inventory_is_yaml_with_a_group_per_platform():
    yaml = pytest.importorskip("yaml")
    data = yaml.safe_load(sc.render_inventory({"h": ("/p/h/merged", "sles16"), "g": ("/p/g", "sles16")}, "t"))
    assert data["sandbox"]["hosts"]["h"] == {
        "ansible_connection": "community.general.chroot",
        "ansible_host": "/p/h/merged",
        "ansible_become": False,
        "sandbox_platform": "sles16",
    }
    assert data["sandbox"]["children"] == {"sandbox_sles16": {"hosts": {"g": {}, "h": {}}}}


def test_host_mount_plan_order_and_modes(tmp_path):
    layout = sc.Layout(tmp_path)
    lowers = [tmp_path / ".cache/sandbox/platform-x/layer", tmp_path / ".cache/sandbox/suite-y/rootfs"]
    plan = sc.host_mount_plan(layout, "h1", lowers)
    merged = layout.host_dir("h1") / "merged"
    targets = [argv[-1] for argv in plan]
    assert targets[0] == str(merged)
    assert targets[1:] == [
        str(merged / p)
        for p in ("proc", "sys", "dev", "dev/pts", "dev/shm", "srv/sandbox-repos", "var/cache/sandbox-pip",
                  "srv/sandbox-wheelhouse")
    ]
    overlay = plan[0]
    assert overlay[:4] == ["mount", "-t", "overlay", "overlay"]
    assert f"lowerdir={lowers[0]}:{lowers[1]}," in overlay[5] and "upperdir=" in overlay[5]
    repos = plan[6]
    assert "bind,ro" in repos and str(layout.repos) in repos
    sysfs = plan[2]
    assert any(a.startswith("ro,") for a in sysfs)
    # a private /dev: nothing of the machine's /dev is bound into a host
    assert plan[3][:3] == ["mount", "-t", "tmpfs"] and "newinstance" in ",".join(plan[4])
    assert not any(a == "/dev" for argv in plan for a in argv)
    # no recursive binds: unmounting must never take the machine's own submounts along
    assert all("--rbind" not in argv and "rbind" not in ",".join(argv) for argv in plan)


@pytest.mark.skipif(os.geteuid() != 0, reason="mknod needs root")
def test_populate_dev_makes_only_the_usual_nodes(tmp_path):
    sc.populate_dev(tmp_path)
    null = (tmp_path / "null").lstat()
    assert stat.S_ISCHR(null.st_mode) and os.major(null.st_rdev) == 1 and os.minor(null.st_rdev) == 3
    assert stat.S_IMODE(null.st_mode) == 0o666
    assert os.readlink(tmp_path / "fd") == "/proc/self/fd" and os.readlink(tmp_path / "ptmx") == "pts/ptmx"
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(
        [n for n, _, _ in sc.DEV_NODES] + [n for n, _ in sc.DEV_LINKS] + ["pts", "shm"]
    )
    # no block device, nothing of the machine's disks
    assert not any(stat.S_ISBLK(p.lstat().st_mode) for p in tmp_path.iterdir())


def test_host_mount_plan_rejects_overlay_separators(tmp_path):
    layout = sc.Layout(tmp_path / "a,b")
    with pytest.raises(sc.EnvironmentProblem, match="overlayfs"):
        sc.host_mount_plan(layout, "h1", [tmp_path / "base"])


def test_layout_paths(tmp_path):
    layout = sc.Layout(tmp_path)
    assert layout.cache == tmp_path / ".cache/sandbox"
    assert layout.suite_dir("trixie", "ab" * 32).name == "suite-trixie-" + "ab" * 8
    assert layout.platform_dir("leap160", "cd" * 32).name == "platform-leap160-" + "cd" * 8
    assert layout.host_inventory("h1") == tmp_path / "inventory/.sandbox-h1.yml"
    assert layout.inventory_file == tmp_path / "inventory/sandbox.yml"
    assert layout.pip_cache == tmp_path / ".cache/pip"


def test_digest_changes_with_each_input():
    files = [("etc/os-release", 0o644, b"x")]
    parts = [("key", b"k"), ("packages", b"a b")]
    base = sc.digest_inputs("recipe", files, parts)
    assert base == sc.digest_inputs("recipe", list(reversed(files)), list(reversed(parts)))
    assert base != sc.digest_inputs("recipe2", files, parts)
    assert base != sc.digest_inputs("recipe", [("etc/os-release", 0o755, b"x")], parts)
    assert base != sc.digest_inputs("recipe", [("etc/os-release", 0o644, b"y")], parts)
    assert base != sc.digest_inputs("recipe", files, [("key", b"k2"), ("packages", b"a b")])
    assert base != sc.digest_inputs("recipe", files, [*parts, ("suite", b"d")])


def test_recipe_sources_are_the_marked_parts():
    text = Path(sc.__file__).read_text()
    suite = sc.recipe_source(text, "SUITE")
    platform = sc.recipe_source(text, "PLATFORM")
    assert "'SUITE_PACKAGES'" in suite and "name='bootstrap_suite'" in suite
    assert "name='configure_platform'" in platform and "name='configure_platform'" not in suite
    assert "name='host_up'" not in suite + platform  # editing host handling must not invalidate the layers
    # a comment or a reformatted line changes nothing the recipe does, so it keeps the cached layers
    commented = text.replace("# >>> SUITE RECIPE START", "# >>> SUITE RECIPE START\n# a new comment", 1)
    assert sc.recipe_source(commented, "SUITE") == suite


DEB822 = """\
Types: deb
# http://snapshot.debian.org/archive/debian/20250520T000000Z
URIs: http://mirror.example/debian
Suites: bookworm bookworm-updates
Components: main

Types: deb
URIs: http://security.example/debian-security
Suites: bookworm-security
"""


def test_apt_sources_parse_both_formats():
    one_line = (
        "deb [arch=amd64 signed-by=/k.gpg] https://deb.nodesource.com/node_20.x nodistro main\n"
        "# deb http://old.example/debian sid main\ndeb http://one.example/debian trixie main\n"
    )
    uris = sc.apt_source_uris([DEB822, one_line])
    assert ("http://mirror.example/debian", ["bookworm", "bookworm-updates"]) in uris
    assert ("https://deb.nodesource.com/node_20.x", ["nodistro"]) in uris
    assert ("http://one.example/debian", ["trixie"]) in uris
    assert not any("old.example" in u for u, _ in uris)


def test_machine_mirror_prefers_the_environment(monkeypatch, tmp_path):
    assert sc.machine_mirror({"SANDBOX_MIRROR": "http://m.example/debian/"}) == "http://m.example/debian"
    sources = tmp_path / "sources.list.d"
    sources.mkdir()
    (sources / "debian.sources").write_text(DEB822)
    (sources / "node.list").write_text("deb https://deb.nodesource.com/node_20.x nodistro main\n")
    monkeypatch.setattr(sc, "APT_SOURCES", (tmp_path / "sources.list", sources))
    assert sc.machine_mirror({}) == "http://mirror.example/debian"
    (sources / "debian.sources").unlink()
    with pytest.raises(sc.EnvironmentProblem, match="SANDBOX_MIRROR"):
        sc.machine_mirror({})


def test_platforms_come_from_the_facts_file():
    platforms = sc.load_platforms()
    assert {"leap156", "leap160", "tumbleweed", "sles15", "sles16"} <= set(platforms)
    assert platforms["leap156"].suite == "bookworm" and platforms["leap160"].suite == "trixie"
    assert sc.platform_for_host("tumbleweed-2", None, platforms).name == "tumbleweed"
    assert sc.platform_for_host("lab-1", None, platforms).name == sc.DEFAULT_PLATFORM
    assert sc.platform_for_host("x", "sles16", platforms).name == "sles16"
    with pytest.raises(sc.EnvironmentProblem, match="unknown platform"):
        sc.platform_for_host("x", "debian", platforms)


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
    assert '"hosts": []' in out and '"current": false' in out
