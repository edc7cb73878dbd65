"""The validation package's shared output handling: an output that cannot be written is refused before any
work (exit 2 in every tool), even for root, to whom os.access() says yes on nearly everything."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from gpu_stack_validation import common
from gpu_stack_validation.doctor import cli as doctor_cli


@pytest.mark.parametrize(
    ("path", "words"),
    [
        # /proc takes no new files, for root neither: the probe file is really created, not os.access()
        ("/proc/gpu-stack-report.json", "cannot create files in directory /proc"),
        ("/dev/null", "not a regular file"),
    ],
)
def test_unwritable_outputs_are_refused(path: str, words: str) -> None:
    with pytest.raises(common.UsageError, match=words):
        common.check_output_path(path)


def test_missing_directory_and_directory_target(tmp_path: Path) -> None:
    with pytest.raises(common.UsageError, match="does not exist; create it first"):
        common.check_output_path(str(tmp_path / "absent" / "r.json"))
    with pytest.raises(common.UsageError, match="is a directory"):
        common.check_output_path(str(tmp_path))


def test_the_probe_leaves_nothing_behind(tmp_path: Path) -> None:
    common.check_output_path(str(tmp_path / "r.json"))
    assert list(tmp_path.iterdir()) == []


def test_write_goes_through_a_symlink_and_keeps_it(tmp_path: Path) -> None:
    real = tmp_path / "real.json"
    real.write_text("old\n")
    link = tmp_path / "link.json"
    link.symlink_to(real)
    common.check_output_path(str(link))
    common.write_text_file(str(link), "new\n")
    assert link.is_symlink() and real.read_text() == "new\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["link.json", "real.json"]


def test_a_failed_write_is_exit_2_and_leaves_no_temporary_file(tmp_path: Path, monkeypatch) -> None:
    def refuse(src: str, dst: str) -> None:
        raise OSError(28, os.strerror(28))

    monkeypatch.setattr(common.os, "replace", refuse)
    with pytest.raises(common.UsageError, match="cannot write it"):
        common.write_text_file(str(tmp_path / "r.json"), "{}\n")
    assert list(tmp_path.iterdir()) == []


def test_doctor_refuses_an_unwritable_output_before_probing(capsys, monkeypatch) -> None:
    monkeypatch.setattr(doctor_cli, "gather_facts", lambda *a, **k: pytest.fail("the doctor probed"))
    assert doctor_cli.main(["--output", "/proc/gpu-doctor.json"]) == 2
    assert "cannot create files in directory /proc" in capsys.readouterr().err


def test_percentages_over_the_peak_are_called_disturbed() -> None:
    assert common.over_peak_note(99.0, "x") is None and common.over_peak_note(None, "x") is None
    note = common.over_peak_note(265.0, "batched propagation at batch 2048")
    assert note.startswith("batched propagation at batch 2048 measured 265% of the GEMM peak")
    assert "do not read this percentage" in note
