"""gpu-doctor: is this host a working TensorFlow GPU machine, and if not, what exactly to fix.

Checks, in order (the keys of "checks" in the JSON report): gpu (lspci, /dev/nvidia*, nvidia-smi, NVML),
kernel_module (loaded, and equal to the user-space driver), nouveau, secure_boot, persistenced,
cuda_driver (libcuda, cuInit), driver_version (against the CUDA major), cuda_mode (system or pip CUDA
libraries), libraries (every soname TensorFlow dlopens: present, loadable, of the right major; the fix
names the RPM that owns the path), cuda_runtime, cudnn, tensorflow, compute_capability (the GPU against
TensorFlow's build), device_query (NVIDIA's deviceQuery), dcgm (dcgmi diag -r 1), xid (the kernel log).

Output: a table with a verdict line, or with --json ONE JSON object
  {"tool", "schema", "ok", "exit_code", "verdict", "mode", "cuda_mode", "host", "expected",
   "checks": {<name>: {"status": "ok"|"warn"|"fail"|"skip", "summary", ...}}, "failures", "warnings"}
with each failure and warning as {"check", "message", "fix"}.

Exit codes: 0 every check passed, 1 a check failed, 2 usage or environment error (bad arguments, unreadable
--pins, --python not executable, unwritable --output).
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys

from ..common import EXIT_ENV, UsageError, check_output_path, dump_json, write_text_file
from .facts import gather_facts
from .pins import load_default_pins, load_pins_file
from .report import evaluate, render_table


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="gpu-doctor",
        description="Check that this host can run TensorFlow on its NVIDIA GPU; print each problem, its fix.",
        epilog="Exit codes: 0 ok, 1 a check failed, 2 usage or environment error.",
    )
    p.add_argument("--json", action="store_true", help="print one JSON object instead of the table")
    p.add_argument("--output", metavar="FILE", help="also write the JSON report to FILE")
    p.add_argument(
        "--pins",
        metavar="FILE",
        help="pinned versions (JSON); default: <venv>/share/gpu-stack/validation/pins.json (the "
        "gpu_validation role's), else the checkout's pins.yml",
    )
    p.add_argument(
        "--python",
        default=sys.executable,
        help="interpreter whose TensorFlow is checked (default: this one, %(default)s)",
    )
    p.add_argument(
        "--cuda-home",
        default=os.environ.get("CUDA_HOME") or "/usr/local/cuda",
        help="CUDA toolkit root for headers (default: $CUDA_HOME or /usr/local/cuda)",
    )
    p.add_argument(
        "--cuda-mode",
        choices=("auto", "system", "pip"),
        default="auto",
        help="where TensorFlow's CUDA libraries come from: the system, or NVIDIA's pip wheels in the "
        "virtualenv; auto reads the ml_venv stamp <venv>/gpu-stack-venv.json, else looks for the "
        "wheels (default auto)",
    )
    p.add_argument(
        "--require-gpu", action="store_true", help="no NVIDIA GPU is a failure (default: CPU-only is ok)"
    )
    p.add_argument("--require-tensorflow", action="store_true", help="TensorFlow not installed is a failure")
    p.add_argument("--skip-tensorflow", action="store_true", help="do not import TensorFlow (faster)")
    p.add_argument(
        "--timeout", type=float, default=20.0, help="seconds per system command (default %(default)s)"
    )
    p.add_argument(
        "--tf-timeout",
        type=float,
        default=180.0,
        help="seconds for the TensorFlow import and GPU listing (default %(default)s)",
    )
    p.add_argument(
        "--dcgm-timeout",
        type=float,
        default=300.0,
        help="seconds for dcgmi diag -r 1 when dcgmi is installed (default %(default)s)",
    )
    return p


def main(argv: list[str] | None = None) -> int:
    """Run the doctor; returns the exit code (0 ok, 1 a check failed, 2 usage or environment error)."""
    parser = build_parser()
    try:
        opts = parser.parse_args(argv)
    except SystemExit as exc:  # argparse exits 2 on bad usage, 0 on --help
        return int(exc.code or 0)
    try:
        if opts.timeout <= 0 or opts.tf_timeout <= 0 or opts.dcgm_timeout <= 0:
            raise UsageError("--timeout, --tf-timeout and --dcgm-timeout must be positive")
        check_output_path(opts.output)
        python = opts.python if os.sep in opts.python else (shutil.which(opts.python) or opts.python)
        if not opts.skip_tensorflow and not (os.path.isfile(python) and os.access(python, os.X_OK)):
            raise UsageError(f"--python {opts.python}: not an executable file")
        opts.python = python
        notes: list[str] = []
        pins = load_pins_file(opts.pins) if opts.pins else load_default_pins(notes)
        report = evaluate(gather_facts(opts, pins, notes), opts)
        text = dump_json(report, sort_keys=False)
        if opts.output:
            write_text_file(opts.output, text + "\n")
    except UsageError as exc:
        print(f"gpu-doctor: error: {exc}", file=sys.stderr)
        return EXIT_ENV
    print(text if opts.json else render_table(report))
    return int(report["exit_code"])


if __name__ == "__main__":
    sys.exit(main())
