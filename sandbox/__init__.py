"""Sandbox tooling: sandboxctl.py (hosts) and build_repos.py (stub repos); importable for tests."""
