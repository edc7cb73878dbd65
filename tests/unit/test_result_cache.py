"""Unit tests of tests/result_cache.py (a make test stage reused while its inputs are unchanged) and of
the summary line that reports what was reused."""

from __future__ import annotations

import importlib
import json
import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO_ROOT))
rc = importlib.import_module("tests.result_cache")
summary = importlib.import_module("tests.summary")
converge_cache = importlib.import_module("tests.converge_cache")
sc = importlib.import_module("sandbox.sandboxctl")

JUNIT = '<testsuite tests="{n}" failures="0" errors="0" skipped="0"></testsuite>\n'


@pytest.fixture
def cache(tmp_path, monkeypatch):
    """STORE and RESULTS in tmp_path, a digest the test sets, and a stage command that counts its runs."""
    monkeypatch.setattr(rc, "STORE", tmp_path / "store")
    monkeypatch.setattr(rc, "RESULTS", tmp_path / "results")
    monkeypatch.delenv("FRESH", raising=False)
    inputs = {"digest": "aaaa"}
    monkeypatch.setattr(rc, "digest", lambda key="", tree_only=False: inputs["digest"] + key)
    runs = tmp_path / "runs"
    results = tmp_path / "results"
    results.mkdir()

    def command(status: int = 0, tests: int = 3) -> list[str]:
        junit = JUNIT.format(n=tests)
        return ["sh", "-c", f"echo x >> {runs}; printf '{junit}' > {results}/s.xml; exit {status}"]

    def count() -> int:
        return len(runs.read_text().split()) if runs.exists() else 0

    return inputs, command, count, results


def test_a_stage_that_passed_with_the_same_inputs_is_reused(cache, capsys):
    _, command, count, results = cache
    assert rc.run("verify", "h1", ["s.xml"], command()) == 0
    (results / "s.xml").unlink()
    assert rc.run("verify", "h1", ["s.xml"], command()) == 0
    assert count() == 1
    assert (results / "s.xml").read_text() == JUNIT.format(n=3)
    note = json.loads((results / "verify.reused").read_text())
    assert note["stage"] == "verify" and note["junit"] == ["s.xml"] and note["inputs"] == "aaaah1"
    assert "verify: reused" in capsys.readouterr().out


@pytest.mark.parametrize("change", ["digest", "key", "fresh"])
def test_changed_inputs_another_key_or_fresh_rerun_it(cache, monkeypatch, change):
    inputs, command, count, _ = cache
    rc.run("verify", "h1", ["s.xml"], command())
    key = "h1"
    if change == "digest":
        inputs["digest"] = "bbbb"
    elif change == "key":
        key = "h1 h2"
    else:
        monkeypatch.setenv("FRESH", "1")
    rc.run("verify", key, ["s.xml"], command())
    assert count() == 2


def test_a_failed_stage_is_not_kept_and_forgets_the_pass_before(cache):
    inputs, command, count, _ = cache
    rc.run("integration", "", ["s.xml"], command())
    inputs["digest"] = "bbbb"
    assert rc.run("integration", "", ["s.xml"], command(status=3)) == 3
    inputs["digest"] = "aaaa"  # back to the inputs that passed: that pass was forgotten by the failed run
    rc.run("integration", "", ["s.xml"], command())
    assert count() == 3


def test_inputs_that_change_while_the_stage_runs_are_not_kept(cache, monkeypatch):
    _, command, count, _ = cache
    digests = iter(["aaaa", "bbbb", "bbbb", "bbbb"])
    monkeypatch.setattr(rc, "digest", lambda key="", tree_only=False: next(digests))
    rc.run("lint", "", [], command())
    rc.run("lint", "", [], command())
    assert count() == 2


def test_a_missing_junit_file_is_not_kept(cache):
    _, command, count, _ = cache
    rc.run("verify", "", ["other.xml"], command())
    rc.run("verify", "", ["other.xml"], command())
    assert count() == 2


def test_summary_names_what_was_reused(cache, capsys):
    _, command, _, results = cache
    rc.run("integration", "", ["s.xml"], command(tests=5))
    rc.run("integration", "", ["s.xml"], command(tests=5))
    (results / "unit.xml").write_text(JUNIT.format(n=2))
    capsys.readouterr()
    assert summary.main([str(results)]) == 0
    first, second = capsys.readouterr().out.splitlines()
    assert first == "summary: 7 passed, 0 failed, 0 skipped"
    assert second.startswith("summary: 5 of the passed reused, inputs unchanged, from integration (")


def test_digest_follows_every_file_git_sees_and_nothing_it_ignores(tmp_path):
    subprocess.run(["git", "init", "-q", str(tmp_path)], check=True)
    (tmp_path / ".gitignore").write_text("/.cache/\n")
    (tmp_path / "roles").mkdir()
    (tmp_path / "roles" / "a.yml").write_text("a: 1\n")
    layout = sc.Layout(tmp_path)
    before = rc.digest("", layout)
    (tmp_path / ".cache").mkdir()
    (tmp_path / ".cache" / "log").write_text("noise\n")
    assert rc.digest("", layout) == before
    assert rc.digest("other hosts", layout) != before
    (tmp_path / "README.md").write_text("new, untracked\n")
    after_new = rc.digest("", layout)
    assert after_new != before
    (tmp_path / "roles" / "a.yml").write_text("a: 2\n")
    assert rc.digest("", layout) != after_new


def test_a_tree_only_stage_ignores_the_sandbox_being_built(tmp_path):
    subprocess.run(["git", "init", "-q", str(tmp_path)], check=True)
    (tmp_path / ".gitignore").write_text("/.cache/\n")
    (tmp_path / "ruff.toml").write_text("line-length = 110\n")
    layout = sc.Layout(tmp_path)
    full, tree = rc.digest("", layout), rc.digest("", layout, tree_only=True)
    layout.wheelhouse.mkdir(parents=True)
    (layout.wheelhouse / "wheelhouse.json").write_text("{}\n")
    assert rc.digest("", layout, tree_only=True) == tree
    assert rc.digest("", layout) != full
    (tmp_path / "ruff.toml").write_text("line-length = 100\n")
    assert rc.digest("", layout, tree_only=True) != tree


def test_converge_digest_follows_what_hosts_are_built_from_and_links_by_target(tmp_path):
    subprocess.run(["git", "init", "-q", str(tmp_path)], check=True)
    (tmp_path / "roles").mkdir()
    (tmp_path / "roles" / "a.yml").write_text("a: 1\n")
    (tmp_path / "roles" / "b").symlink_to("a.yml")
    layout = sc.Layout(tmp_path)
    before = converge_cache.digest(layout)
    (tmp_path / "README.md").write_text("not an input of the converge\n")
    assert converge_cache.digest(layout) == before
    (tmp_path / "roles" / "b").unlink()
    (tmp_path / "roles" / "b").symlink_to("elsewhere.yml")
    relinked = converge_cache.digest(layout)
    assert relinked != before
    (tmp_path / "roles" / "a.yml").write_text("a: 2\n")
    assert converge_cache.digest(layout) not in (before, relinked)


def make_test_commands() -> list[list[str]]:
    """The result_cache.py command lines `make test` runs, as make prints them (-n)."""
    make = ["make", "-n", "--no-print-directory", "test-lint", "test"]
    out = subprocess.run(make, cwd=REPO_ROOT, capture_output=True, text=True, check=True).stdout
    commands = []
    # without lines make prints for a recipe's comments (a venv to build first prints its "@# ..." lines)
    lines = [line for line in out.replace("\\\n", " ").splitlines() if not line.lstrip().startswith("#")]
    for part in re.split(r"&&|\|\||;|\{|\}|\n", "\n".join(lines)):
        words = shlex.split(part)
        tools = [i for i, w in enumerate(words) if w.endswith("tests/result_cache.py")]
        if tools:
            commands.append(words[tools[0] + 1 :])
    return commands


def test_the_command_lines_of_make_test_parse_and_run_their_stage(cache, monkeypatch):
    commands = make_test_commands()
    stages = [c[1] for c in commands]
    assert stages == ["lint", "idempotence", "check-mode", "verify", "venv-tests", "integration"]
    seen = []
    monkeypatch.setattr(rc, "run", lambda *args: seen.append(args))
    for words in commands:
        rc.main(words)
    verify = next(s for s in seen if s[0] == "verify")
    assert verify[1] == "leap156-1 leap160-1 tumbleweed-1 sles15-1 sles16-1"
    assert verify[2] == [f"testinfra-{h}.xml" for h in verify[1].split()]
    assert [s[3][-1] for s in seen] == stages  # each runs `make ... <stage>`


def test_options_after_the_double_dash_belong_to_the_command(cache):
    assert rc.main(["run", "lint", "--key", "k", "--", "sh", "-c", "exit 0", "--key"]) == 0
    assert rc.main(["run", "lint", "--key", "k"]) == 2
