"""What every tool shares: the subprocess helper that never raises, output files, version strings."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Any

EXIT_OK, EXIT_FAIL, EXIT_ENV = 0, 1, 2
RC_TIMEOUT = 124
RC_NOT_EXECUTABLE = 126
RC_NOT_FOUND = 127


class UsageError(Exception):
    """Bad arguments or an unusable environment: exit code 2 with this message."""


@dataclass(frozen=True)
class CmdResult:
    """Outcome of one command; rc 124 = timeout, 126 = not executable, 127 = not found."""

    argv: tuple[str, ...]
    rc: int
    stdout: str = ""
    stderr: str = ""

    @property
    def ok(self) -> bool:
        return self.rc == 0

    @property
    def output(self) -> str:
        return (self.stdout + "\n" + self.stderr).strip()


def _text(data: Any) -> str:
    if data is None:
        return ""
    if isinstance(data, bytes):
        return data.decode("utf-8", "replace")
    return str(data)


def run_cmd(
    argv: list[str] | tuple[str, ...], timeout: float = 20.0, env: dict[str, str] | None = None
) -> CmdResult:
    """Run argv without a shell; timeouts and missing commands become return codes, never exceptions."""
    args = tuple(str(a) for a in argv)
    try:
        proc = subprocess.run(
            list(args),
            capture_output=True,
            text=True,
            errors="replace",
            timeout=timeout,
            env=env,
            check=False,
        )
    except FileNotFoundError as exc:
        return CmdResult(args, RC_NOT_FOUND, "", f"{args[0]}: command not found ({exc.strerror})")
    except PermissionError as exc:
        return CmdResult(args, RC_NOT_EXECUTABLE, "", f"{args[0]}: not executable ({exc.strerror})")
    except subprocess.TimeoutExpired as exc:
        err = _text(exc.stderr) + f"\ntimed out after {timeout:g}s"
        return CmdResult(args, RC_TIMEOUT, _text(exc.stdout), err)
    except OSError as exc:
        return CmdResult(args, RC_NOT_EXECUTABLE, "", f"{args[0]}: {exc}")
    return CmdResult(args, proc.returncode, proc.stdout or "", proc.stderr or "")


def find_tool(name: str, extra_dirs: tuple[str, ...] = ()) -> str:
    """Absolute path of a system tool (sbin dirs included, they are not on every PATH), else the bare name."""
    found = shutil.which(name)
    if found:
        return found
    for d in ("/usr/sbin", "/sbin", "/usr/bin", "/bin", *extra_dirs):
        candidate = os.path.join(d, name)
        if os.access(candidate, os.X_OK):
            return candidate
    return name


def _real_target(path: str) -> Path:
    """The file a write lands in: a symlink's target, so the link itself is never replaced."""
    target = Path(path)
    return target.resolve() if target.is_symlink() else target


def check_output_path(path: str | None, option: str = "--output") -> None:
    """Refuse, before any work, an output file that cannot be written (UsageError names the problem).

    os.access() says yes to root on nearly everything, so the directory is probed for real: a file is
    created there and removed (read-only mounts, /proc, /sys and full disks are caught here, not after an
    hour of benchmarking).
    """
    if not path:
        return
    target = _real_target(path)
    parent = target.parent if str(target.parent) else Path(".")
    if target.is_dir():
        raise UsageError(f"{option} {path}: is a directory; give a file name")
    if target.exists() and not target.is_file():
        raise UsageError(
            f"{option} {path}: not a regular file (a device, socket or pipe); give a file name "
            "(--json prints the report on stdout)"
        )
    if not parent.is_dir():
        raise UsageError(f"{option} {path}: directory {parent} does not exist; create it first")
    if target.exists() and not os.access(target, os.W_OK):
        raise UsageError(f"{option} {path}: the file is not writable")
    probe = parent / f".{target.name}.probe-{os.getpid()}"
    try:
        fd = os.open(probe, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except OSError as exc:
        raise UsageError(
            f"{option} {path}: cannot create files in directory {parent} ({exc.strerror or exc}); "
            "choose a writable directory"
        ) from exc
    os.close(fd)
    probe.unlink(missing_ok=True)


def write_text_file(path: str, text: str, option: str = "--output") -> None:
    """Write an output file atomically (a temporary file renamed over it); UsageError (exit 2) on failure."""
    target = _real_target(path)
    tmp = target.with_name(f".{target.name}.tmp-{os.getpid()}")
    try:
        tmp.write_text(text, encoding="utf-8")
        os.replace(tmp, target)
    except OSError as exc:
        tmp.unlink(missing_ok=True)
        raise UsageError(f"{option} {path}: cannot write it ({exc.strerror or exc})") from exc


def load_average() -> list[float] | None:
    """The 1, 5 and 15 minute load averages, None where the system has none."""
    try:
        return [round(v, 2) for v in os.getloadavg()]
    except OSError:
        return None


def busy_note(loads: list[list[float] | None], cpus: int | None, what: str) -> str | None:
    """A note when the 1-minute load exceeded the CPU count before timing: other jobs then share the cores,
    and a peak measured at a busier moment than the run makes its percentages unreliable (even > 100%)."""
    high = max((v[0] for v in loads if v), default=None)
    if high is None or not cpus or high <= cpus:
        return None
    return (
        f"the machine was busy while {what} ran (load average up to {high:g} on {cpus} CPUs): "
        "other jobs shared the cores, so the percentages of the GEMM peak are unreliable; measure again "
        "when it is idle"
    )


OVER_PEAK_PCT = 110.0


def over_peak_note(pct: float | None, what: str) -> str | None:
    """A note for a percentage of a same-run peak that is not physically meaningful (well over 100%)."""
    if pct is None or pct <= OVER_PEAK_PCT:
        return None
    return (
        f"{what} measured {pct:.0f}% of the GEMM peak of the same run: more than the peak, so the timings "
        "(or the peak's) were disturbed; do not read this percentage"
    )


def dump_json(report: dict[str, Any], sort_keys: bool = True) -> str:
    return json.dumps(report, indent=2, sort_keys=sort_keys)


def version_tuple(value: str | None) -> tuple[int, ...] | None:
    """'525.60.13' -> (525, 60, 13); None when not a dotted number."""
    if value is None:
        return None
    m = re.match(r"^\s*(\d+(?:\.\d+)*)", str(value))
    return tuple(int(p) for p in m.group(1).split(".")) if m else None


def major_minor(value: str | None) -> str | None:
    """'12.5.1' -> '12.5'; '9' -> '9'."""
    t = version_tuple(value)
    if t is None:
        return None
    return ".".join(str(p) for p in t[:2])


def fmt(value: Any, spec: str) -> str:
    """A number formatted for a table, '-' when missing."""
    return "-" if value is None else format(value, spec)
