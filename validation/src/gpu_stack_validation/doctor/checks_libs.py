"""Checks of the CUDA libraries TensorFlow dlopens: cuda_mode, libraries, cuda_runtime, cudnn.

Mode `system`: the libraries come from the system (loader cache, /usr/local/cuda); a missing or broken one
is fixed with the RPM that owns its path. Mode `pip`: they come from NVIDIA's nvidia-*-cu12 wheels in the
virtualenv (tensorflow[and-cuda]); only the driver comes from the system. Each mode checks its own
libraries only. In both, a soname that resolves to a file of another major version is a failure.
"""

from __future__ import annotations

import os
import re
from typing import Any

from ..common import major_minor, version_tuple
from ..elf import soname_major
from .facts import package_for
from .findings import Findings
from .parsers import cuda_version_str, cudnn_version_str


def check_cuda_mode(facts: dict[str, Any], fx: Findings) -> dict[str, Any]:
    """Which CUDA libraries the virtualenv's TensorFlow uses, and why the doctor thinks so."""
    m = facts["cuda_mode"]
    res: dict[str, Any] = {
        "status": "ok",
        **{k: m[k] for k in ("mode", "source", "requested", "venv", "stamp", "stamp_mode")},
        "wheel_libraries": sorted(m["wheel_libs"]),
        "wheel_distributions": m["wheel_dists"],
    }
    res["summary"] = f"{m['mode']} ({m['source']})"
    if m["stamp_invalid"]:
        res["status"] = "warn"
        fx.warn(
            "cuda_mode",
            f"{m['venv']}/gpu-stack-venv.json has no valid cuda_mode (system or pip)",
            "converge the ml_venv role again (it writes the stamp), or pass --cuda-mode system|pip",
        )
    if m["mode"] == "pip" and m["stamp_mode"] == "pip" and not m["wheel_libs"]:
        res["summary"] += "; no NVIDIA wheels in the virtualenv"
    return res


def _mismatched(lib: dict[str, Any]) -> list[dict[str, Any]]:
    """Resolutions of a soname whose file carries another SONAME: an alias across majors."""
    return [r for r in lib["resolved"] if r["elf_soname"] and r["elf_soname"] != lib["soname"]]


def _install(lib: dict[str, Any], expected: dict[str, Any]) -> tuple[str, str]:
    """(package, exact zypper command) that restores a soname: -f when its RPM is installed."""
    rpm = lib.get("rpm") or {}
    package = rpm.get("package") or package_for(lib["soname"], expected)[0]
    if rpm.get("installed"):
        return package, f"zypper install -f {package}"
    return package, f"zypper install {package}"


def _verify_note(lib: dict[str, Any]) -> str:
    rpm = lib.get("rpm") or {}
    missing = [v["path"] for v in rpm.get("verify") or [] if v["flags"] == "missing"]
    return f" (rpm -V {rpm['package']}: missing {', '.join(missing)})" if missing else ""


def system_problem(lib: dict[str, Any], expected: dict[str, Any]) -> tuple[str, str, str]:
    """(kind, reason, fix) for a soname the system loader cannot give TensorFlow."""
    soname = lib["soname"]
    _package, install = _install(lib, expected)
    versioned = [p for p in lib["candidates"] if os.path.basename(p).startswith(soname + ".")]
    gone = [r for r in lib["resolved"] if not r["exists"]]
    dangling = [r for r in gone if r["link_exists"]]
    missing_link = [r for r in dangling if os.path.basename(r["realpath"]) == soname]
    if missing_link and versioned:
        # links lead to the soname link, which was removed; the library file is still there
        return (
            "no_link",
            f"{missing_link[0]['realpath']} (the soname link) is gone, "
            f"{os.path.basename(versioned[0])} is there{_verify_note(lib)}",
            f"{install} (or ldconfig, which makes the link from the file's SONAME)",
        )
    if dangling:
        link = dangling[0]
        return (
            "deleted",
            f"{link['path']} points to a deleted file ({link['realpath']}){_verify_note(lib)}",
            f"{install} (the RPM that owns {link['path']})",
        )
    if gone and versioned:
        # the loader's cache still lists the soname link, but the link itself was removed
        return (
            "no_link",
            f"{gone[0]['path']} (the soname link) is gone, {os.path.basename(versioned[0])} is there"
            f"{_verify_note(lib)}",
            f"{install} (or ldconfig, which makes the link from the file's SONAME)",
        )
    if lib["ldconfig"]:
        path = lib["ldconfig"][0]
        return (
            "broken",
            f"resolves to {path} but dlopen fails: {lib['dlopen']['error']}",
            f"`ldd {path} | grep 'not found'` names the missing dependency; {install}",
        )
    exact = [p for p in lib["candidates"] if os.path.basename(p) == soname]
    if exact:
        d = os.path.dirname(exact[0])
        conf = f"/etc/ld.so.conf.d/988_cuda-{expected.get('cuda_major') or 'x'}.conf"
        return (
            "not_searched",
            f"exists in {d}, which the loader does not search",
            f"echo {d} > {conf} && ldconfig (or run the cuda_links role)",
        )
    if versioned:
        target = versioned[0]
        note = _verify_note(lib)
        if note:
            return (
                "no_link",
                f"only {os.path.basename(target)} exists, without the {soname} link{note}",
                f"{install} (or ldconfig, which makes the link from the file's SONAME)",
            )
        return (
            "no_link",
            f"only {os.path.basename(target)} exists, without the {soname} link",
            f"ldconfig (it makes the {soname} link from the file's SONAME; or ln -s "
            f"{os.path.basename(target)} {os.path.dirname(target)}/{soname})",
        )
    others = sorted(
        {os.path.basename(p) for p in lib["candidates"] if soname_major(os.path.basename(p))}
        | set(lib["other_sonames"])
    )
    if others:
        # e.g. CUDA 13 installed: its libraries have other sonames, TensorFlow's build cannot use them
        cuda = expected.get("cuda_version")
        fix = f"{install} (or run the {package_for(soname, expected)[1]} role)"
        if package_for(soname, expected)[1] == "cuda":
            fix = (
                f'{install} (the cuda role with gpu_stack_cuda_version: "{cuda}"); it installs beside the '
                "other CUDA release, which TensorFlow cannot use"
            )
        return ("other_version", f"not installed (found instead: {', '.join(others)})", fix)
    note = _verify_note(lib)
    return (
        "missing",
        "not installed" + note,
        f"{install} (or run the {package_for(soname, expected)[1]} role)",
    )


def alias_problem(lib: dict[str, Any], expected: dict[str, Any], mode: str) -> tuple[str, str]:
    """(reason, fix) for a soname that resolves to a library of another major version."""
    bad = _mismatched(lib)
    names = ", ".join(f"{r['path']} -> {r['realpath']} (SONAME {r['elf_soname']})" for r in bad)
    reason = (
        f"resolves across majors: {names}; TensorFlow would load a library of another ABI "
        f"than the {lib['soname']} it was built for"
    )
    if mode == "pip":
        return reason, f"pip install --force-reinstall {pip_requirement(lib, expected)} into the virtualenv"
    # the link to remove is the one that names the file of the other major, however it is reached
    links = " ".join(dict.fromkeys(r.get("last_link") or r["path"] for r in bad))
    _package, install = _install(
        {**lib, "rpm": {**(lib.get("rpm") or {}), "package": package_for(lib["soname"], expected)[0]}},
        expected,
    )
    return (
        reason,
        f"rm {links} && {install} && ldconfig (remove the alias, install the library of the right major)",
    )


def pip_requirement(lib: dict[str, Any], expected: dict[str, Any]) -> str:
    """'nvidia-cublas-cu12==12.5.3.2' as TensorFlow's and-cuda extra pins it, else the bare wheel name."""
    for req in expected.get("tensorflow_nvidia_requires") or []:
        m = re.match(r"^\s*([A-Za-z0-9_.-]+)\s*(==\s*[^;\s]+)?", req)
        if m and m.group(1).lower() == lib["wheel_package"]:
            return m.group(1) + (m.group(2) or "").replace(" ", "")
    return lib["wheel_package"]


def group_message(items: list[tuple[str, str]]) -> str:
    """One message for the sonames sharing a fix: 'a, b: not installed (found instead: a.so.13, b.so.13)'."""
    instead = [r.split("found instead: ", 1)[1].rstrip(")") for _, r in items if "found instead: " in r]
    if instead and all(r.startswith("not installed (found instead") for _, r in items):
        return f"{', '.join(s for s, _ in items)}: not installed (found instead: {', '.join(instead)})"
    by_reason: dict[str, list[str]] = {}
    for soname, reason in items:
        by_reason.setdefault(reason, []).append(soname)
    return "; ".join(f"{', '.join(names)}: {reason}" for reason, names in by_reason.items())


def classify(lib: dict[str, Any], mode: str, ldconfig_available: bool) -> str:
    """ok | env (only through LD_LIBRARY_PATH) | alias | broken | missing."""
    if _mismatched(lib):
        return "alias"
    if lib["dlopen"]["ok"]:
        if mode == "pip":
            return "ok"
        return "ok" if lib["ldconfig"] or not ldconfig_available else "env"
    if mode == "pip":
        return "broken" if lib["wheel"] else "missing"
    return "broken" if lib["ldconfig"] or lib["resolved"] else "missing"


def check_libraries(facts: dict[str, Any], expected: dict[str, Any], fx: Findings) -> dict[str, Any]:
    """Every soname TensorFlow dlopens: present in this mode's place, loadable, of the right major."""
    mode = facts["cuda_mode"]["mode"]
    ld_ok = facts["ldconfig"]["available"]
    expected = {
        **expected,
        "tensorflow_nvidia_requires": facts["cuda_mode"].get("tensorflow_nvidia_requires"),
    }
    rows = []
    env_dirs: dict[str, list[str]] = {}
    for lib in facts["libraries"]:
        state = classify(lib, mode, ld_ok)
        row: dict[str, Any] = {
            "soname": lib["soname"],
            "status": state,
            "ldconfig": lib["ldconfig"],
            "dlopen_ok": lib["dlopen"]["ok"],
            "dlopen_path": lib["dlopen"].get("path"),
            "dlopen_error": lib["dlopen"].get("error"),
            "wheel": lib["wheel"],
            "candidates": lib["candidates"],
            "resolved": lib["resolved"],
            "package": lib.get("wheel_package") if mode == "pip" else package_for(lib["soname"], expected)[0],
            "owners": lib.get("owners") or {},
            "rpm_verify": (lib.get("rpm") or {}).get("verify") or [],
            "rpm_installed": (lib.get("rpm") or {}).get("installed"),
        }
        if state == "alias":
            reason, fix = alias_problem(lib, expected, mode)
            row.update(problem="alias", reason=reason, fix=fix)
        elif state in ("broken", "missing") and mode == "pip":
            venv = facts["cuda_mode"].get("venv") or "the virtualenv"
            req = pip_requirement(lib, expected)
            tf = expected.get("tensorflow_version")
            if state == "missing":
                reason = f"not in {venv} (site-packages/nvidia/*/lib)"
            else:
                reason = f"{lib['wheel']} does not load: {lib['dlopen']['error']}"
            fix = (
                f"{venv}/bin/pip install --force-reinstall '{req}' (tensorflow[and-cuda]"
                + (f"=={tf}" if tf else "")
                + " pins it; or the ml_venv role with ml_venv_cuda_mode: pip)"
            )
            row.update(problem=state, reason=reason, fix=fix)
        elif state in ("broken", "missing"):
            kind, reason, fix = system_problem(lib, expected)
            row.update(problem=kind, reason=reason, fix=fix)
        elif state == "env":
            env_dirs.setdefault(os.path.dirname(lib["dlopen"].get("path") or "") or "?", []).append(
                lib["soname"]
            )
        rows.append(row)
    how = "through LD_LIBRARY_PATH" if facts["host"].get("ld_library_path") else "from a default directory"
    for d, sonames in env_dirs.items():
        conf = f"/etc/ld.so.conf.d/988_cuda-{expected.get('cuda_major') or 'x'}.conf"
        fx.warn(
            "libraries",
            f"{', '.join(sonames)} load from {d} ({how}) but the ldconfig cache does not list "
            "them: services and Jupyter kernels do not inherit LD_LIBRARY_PATH",
            f"echo {d} > {conf} && ldconfig (or run the cuda_links role)",
        )
    # Several CUDA libraries absent and none of their RPMs installed: one meta-package installs them all
    absent = [
        r
        for r in rows
        if mode == "system"
        and r.get("problem") in ("missing", "other_version")
        and package_for(r["soname"], expected)[1] == "cuda"
        and not r["owners"]
        and not r["rpm_installed"]
    ]
    if len(absent) >= 2:
        cuda = expected.get("cuda_version") or ""
        for r in absent:
            r["fix"] = (
                f"zypper install cuda-libraries-{cuda.replace('.', '-')} (the cuda role with "
                f'gpu_stack_cuda_version: "{cuda}")'
            )
    groups: dict[str, list[tuple[str, str]]] = {}  # fix -> [(soname, reason)]: one failure per fix
    for r in rows:
        if "fix" in r:
            groups.setdefault(r["fix"], []).append((r["soname"], r["reason"]))
    for fix, items in groups.items():
        fx.fail("libraries", group_message(items), fix)
    res: dict[str, Any] = {
        "status": "ok",
        "mode": mode,
        "expected_from": expected.get("source"),
        "ldconfig_available": ld_ok,
        "libraries": rows,
    }
    if not ld_ok and mode == "system":
        fx.warn(
            "libraries",
            "ldconfig -p did not run: only dlopen was checked",
            "run the doctor as a user whose PATH has /sbin (or /usr/sbin)",
        )
    for problem in expected.get("problems") or []:
        res["status"] = "fail"
        fx.fail(
            "libraries",
            f"{problem}: TensorFlow supports CUDA 12 at most (pinned CUDA {expected.get('cuda_version')})",
            'set gpu_stack_cuda_version: "12.5" (and gpu_stack_cuda_release: '
            '"12.5.1") in the inventory (the defaults are the collection\'s pins.yml)',
        )
    if not expected.get("sonames"):
        res["status"] = "skip" if res["status"] == "ok" else res["status"]
        res["summary"] = "nothing to check: TensorFlow is not installed and no pins were found"
        if not expected.get("problems"):
            fx.warn(
                "libraries",
                "no expected libraries: TensorFlow is not installed and no pins were given",
                "pass --pins FILE (the gpu_validation role renders it) or run from the repository",
            )
        return res
    bad = [r["soname"] for r in rows if r["status"] in ("broken", "missing", "alias")]
    if bad:
        res["status"] = "fail"
    where = "NVIDIA's wheels in the virtualenv" if mode == "pip" else "the system"
    res["summary"] = (
        f"{len(rows) - len(bad)}/{len(rows)} libraries load from {where} (expected from "
        f"{expected.get('source')}, CUDA {expected.get('cuda_version')}, cuDNN "
        f"{expected.get('cudnn_version')})"
    )
    if bad:
        res["summary"] += "; failing: " + ", ".join(bad)
    return res


def check_cuda_runtime(facts: dict[str, Any], expected: dict[str, Any], fx: Findings) -> dict[str, Any]:
    """cudart at run time (and the toolkit headers in system mode) against the CUDA TensorFlow needs."""
    want = expected.get("cuda_version")
    pip = facts["cuda_mode"]["mode"] == "pip"
    cudart = facts.get("cudart") or {}
    header = facts.get("cuda_header") or {}
    runtime = cuda_version_str(cudart.get("runtime_version"))
    head = cuda_version_str(header.get("version"))
    res: dict[str, Any] = {
        "status": "ok",
        "expected": want,
        "runtime_version": cudart.get("runtime_version"),
        "runtime": runtime,
        "runtime_error": cudart.get("error"),
        "header_path": header.get("path"),
        "header_version": header.get("version"),
        "header": head,
        "toolkits": facts.get("toolkits") or [],
    }
    installed = ", ".join(f"{t['version']} ({t['path']})" for t in res["toolkits"]) or "none under /usr/local"
    if want is None:
        res["status"] = "skip"
        res["summary"] = f"no expected CUDA; toolkits: {installed}"
        return res
    pkg = "nvidia-cuda-runtime-cu12 (pip)" if pip else package_for("libcudart.so", expected)[0]
    parts = []
    if runtime is None:
        res["status"] = "skip"
        parts.append(
            f"libcudart for CUDA {want} not loadable (see libraries)"
            + ("" if pip else f"; toolkits: {installed}")
        )
    else:
        parts.append(f"cudart {runtime} at run time")
        rt, wt = version_tuple(runtime), version_tuple(want)
        if rt and wt and rt[0] != wt[0]:
            res["status"] = "fail"
            fx.fail(
                "cuda_runtime", f"cudart {runtime} loaded, TensorFlow needs CUDA {want}", f"install {pkg}"
            )
        elif rt and wt and rt < wt:
            res["status"] = "warn"
            fx.warn(
                "cuda_runtime",
                f"cudart {runtime} is older than CUDA {want}, TensorFlow's build",
                f"install {pkg}",
            )
    if pip:
        parts.append("headers not used (pip mode)")
    elif head is not None:
        parts.append(f"header {head} ({header.get('path')})")
        if major_minor(head) != major_minor(want):
            res["status"] = "warn" if res["status"] == "ok" else res["status"]
            fx.warn(
                "cuda_runtime",
                f"{header.get('path')} is CUDA {head}, expected {want}",
                f"update-alternatives --set cuda /usr/local/cuda-{want} (install cuda-cudart-devel-"
                f"{want.replace('.', '-')} if it is missing)",
            )
    else:
        parts.append("no CUDA headers")
    res["summary"] = "; ".join(parts) + f" (expected {want})"
    return res


def check_cudnn(facts: dict[str, Any], expected: dict[str, Any], fx: Findings) -> dict[str, Any]:
    """cuDNN at run time: its major (and minor: TensorFlow refuses an older one) and its CUDA."""
    want = expected.get("cudnn_version")
    pip = facts["cuda_mode"]["mode"] == "pip"
    probe = facts.get("cudnn") or {}
    header = facts.get("cudnn_header") or {}
    hv = header.get("version") or {}
    runtime = cudnn_version_str(probe.get("version"))
    built_for = cuda_version_str(probe.get("cudart_version"))
    res: dict[str, Any] = {
        "status": "ok",
        "expected": want,
        "runtime_version": probe.get("version"),
        "runtime": runtime,
        "built_for_cuda": built_for,
        "runtime_error": probe.get("error"),
        "header_path": header.get("path"),
        "header": hv.get("string"),
        "header_version": hv.get("version"),
    }
    if want is None:
        res["status"] = "skip"
        res["summary"] = "no expected cuDNN"
        return res
    pkg = (
        "nvidia-cudnn-cu12 (pip)"
        if pip
        else package_for(f"libcudnn.so.{expected.get('cudnn_major')}", expected)[0]
    )
    parts = []
    if runtime is None:
        res["status"] = "skip"
        parts.append(f"libcudnn.so.{expected.get('cudnn_major')} not loadable (see libraries)")
    else:
        parts.append(f"cuDNN {runtime} at run time" + (f" (built for CUDA {built_for})" if built_for else ""))
        rt, wt = version_tuple(runtime), version_tuple(want)
        if rt and wt and (rt[0] != wt[0] or (len(wt) > 1 and rt[:2] < wt[:2])):
            res["status"] = "fail"
            fx.fail(
                "cudnn",
                f"cuDNN {runtime} loaded, TensorFlow needs {want}",
                f"install {pkg} at {want}" + ("" if pip else " (the cudnn role, cudnn_version)"),
            )
        cuda_major = expected.get("cuda_major")
        bt = version_tuple(built_for)
        if bt and cuda_major and cuda_major.isdigit() and bt[0] != int(cuda_major):
            res["status"] = "fail"
            fx.fail(
                "cudnn",
                f"cuDNN {runtime} is built for CUDA {built_for}, TensorFlow uses {cuda_major}",
                f"install {pkg} (the cuDNN build for CUDA {cuda_major})",
            )
    if pip:
        parts.append("headers not used (pip mode)")
    elif hv:
        parts.append(f"header {hv['string']} ({header.get('path')})")
        if runtime and hv.get("version") != probe.get("version"):
            res["status"] = "warn" if res["status"] == "ok" else res["status"]
            fx.warn(
                "cudnn",
                f"{header.get('path')} is cuDNN {hv['string']} but the library is {runtime}",
                f"install the headers of the same release ({pkg.replace('-cuda', '-devel-cuda')}, "
                "or rerun the cudnn role)",
            )
    else:
        parts.append("no cuDNN header")
    res["summary"] = "; ".join(parts) + f" (expected {want})"
    return res
