"""Validation tools of opensuse-gpu-stack: the GPU doctor, the MNIST CPU/GPU benchmark, numpy batch
propagation and the fleet report.

Commands (console entry points): gpu-doctor, mnist-benchmark, gpu-propagation, gpu-fleet-report.
Each prints a table, or one JSON object with --json (stable keys, "ok" and "failures"), and exits
0 (ok), 1 (a check failed) or 2 (usage or environment error).
"""

__version__ = "1.0.0"
