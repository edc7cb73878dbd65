"""ml_venv: the TensorFlow virtualenv on a supported Python.

Observable outcomes only: the link and its build, owner, interpreter, pinned versions, `pip check`, numpy's
BLAS, an h5py round trip, TensorFlow's build info against the pinned CUDA/cuDNN, and (CUDA mode `system`)
TensorFlow loading the system CUDA libraries through the loader configuration and falling back to the CPU
when there is no GPU. Expected values: inventory (`stack_vars`) over the role's defaults and pin sets.
"""

from __future__ import annotations

import json
import re
import shlex
from pathlib import Path

import pytest
import yaml
from stack_defaults import role_defaults

ROLE = Path(__file__).resolve().parents[2] / "roles" / "ml_venv"
SIMPLE_REF = re.compile(r"^\{\{\s*(\w+)\s*\}\}$")
STAMP = "gpu-stack-venv.json"
# Environment for Python in the venv: quiet TF, no display, no stray loader path (system mode must work
# through the loader configuration alone).
PY_ENV = "env -u LD_LIBRARY_PATH TF_CPP_MIN_LOG_LEVEL=2 MPLBACKEND=Agg"


def _resolve(value, variables: dict):
    """Resolve defaults of the form "{{ var }}" and "/usr/bin/python{{ var }}" from the inventory."""
    if isinstance(value, str):
        match = SIMPLE_REF.match(value.strip())
        if match:
            name = match.group(1)
            return _resolve(variables[name], variables) if name in variables else value
        def sub(m: re.Match) -> str:
            name = m.group(1)
            return str(_resolve(variables[name], variables)) if name in variables else m.group(0)

        return re.sub(r"\{\{\s*(\w+)\s*\}\}", sub, value)
    return value


@pytest.fixture(scope="module")
def cfg(stack_vars, platform_python, cuda_mode) -> dict:
    """The role's inputs as this host got them (defaults < inventory), plus the tested pin set. A Python pin
    of '' means the platform's Python, a CUDA mode of auto what the host's repositories offer."""
    defaults = role_defaults("ml_venv")
    internal = yaml.safe_load((ROLE / "vars" / "main.yml").read_text())
    derived = {"ml_venv_python_version": str(stack_vars.get("gpu_stack_python_version") or platform_python),
               "ml_venv_cuda_mode": cuda_mode}
    merged: dict = {}
    for name, default in defaults.items():
        value = stack_vars.get(name, derived.get(name, default))
        if name in ("ml_venv_packages", "ml_venv_constraints") and name not in stack_vars:
            continue  # computed from the pin set below
        merged[name] = value
    variables = {**stack_vars, **merged}
    cfg = {k: _resolve(v, variables) for k, v in merged.items()}
    pin_set = internal["__ml_venv_pin_sets"].get(cfg["ml_venv_tensorflow_version"], {})
    cfg.setdefault("ml_venv_packages", stack_vars.get("ml_venv_packages", pin_set.get("packages", [])))
    cfg["gpu_stack_cuda_version"] = stack_vars["gpu_stack_cuda_version"]
    cfg["gpu_stack_cudnn_version"] = stack_vars["gpu_stack_cudnn_version"]
    cfg["gpu_stack_tensorflow_sonames"] = stack_vars["gpu_stack_tensorflow_sonames"]
    return cfg


@pytest.fixture(scope="module")
def venv(host, cfg) -> str:
    path = cfg["ml_venv_path"]
    assert host.file(path).exists, f"{path} does not exist"
    return path


@pytest.fixture(scope="module")
def stamp(host, venv) -> dict:
    return json.loads(host.file(f"{venv}/{STAMP}").content_string)


def _py(host, venv: str, code: str):
    return host.run(f"{PY_ENV} {venv}/bin/python -c {shlex.quote(code)}")


def _primary_group(host, user: str) -> str:
    return host.user(user).group


# --------------------------------------------------------------------------- interpreter


def test_interpreter_has_requested_version(host, cfg) -> None:
    interp = cfg["ml_venv_python_interpreter"]
    out = host.check_output(f"{interp} -c 'import sys; print(\"%d.%d\" % sys.version_info[:2])'")
    assert out == cfg["ml_venv_python_version"]


def test_system_python3_untouched(host, venv) -> None:
    """The system python3 stays the distribution's own (on Leap/SLE 15 the 3.6 that ansible-core cannot use)
    and is not the venv's."""
    assert host.run("/usr/bin/python3 --version").rc == 0
    python3 = host.file("/usr/bin/python3")
    assert not (python3.is_symlink and python3.linked_to.startswith(venv))
    assert host.check_output("rpm -qf /usr/bin/python3") != "", "no package owns /usr/bin/python3"


def test_interpreter_still_owned_by_root(host, cfg) -> None:
    """Handing the venv to its owner must not follow bin/python into the system interpreter."""
    real = host.file(cfg["ml_venv_python_interpreter"]).linked_to
    assert (host.file(real).user, host.file(real).group) == ("root", "root")


# --------------------------------------------------------------------------- layout and ownership


def test_venv_path_links_to_a_build(host, cfg, venv) -> None:
    link = host.file(venv)
    assert link.is_symlink
    assert re.fullmatch(re.escape(venv) + r"-[0-9a-f]{12}", link.linked_to)
    assert host.file(link.linked_to).is_directory


def test_venv_built_from_requested_interpreter(host, cfg, venv) -> None:
    pyvenv = host.file(f"{venv}/pyvenv.cfg").content_string
    home = re.search(r"^home\s*=\s*(.+)$", pyvenv, re.M).group(1).strip()
    assert home == str(Path(cfg["ml_venv_python_interpreter"]).parent)
    assert re.search(rf"^version(_info)?\s*=\s*{re.escape(cfg['ml_venv_python_version'])}\.", pyvenv, re.M)


@pytest.mark.parametrize("rel", [".", "bin/python", "requirements.txt", STAMP, "lib"])
def test_venv_owned_by_owner(host, cfg, venv, rel: str) -> None:
    target = host.file(f"{host.file(venv).linked_to}/{rel}")
    owner = cfg["ml_venv_owner"]
    group = cfg["ml_venv_group"] or _primary_group(host, owner)
    assert (target.user, target.group) == (owner, group)


def test_tensorflow_package_owned_by_owner(host, cfg, venv) -> None:
    code = "import sysconfig; print(sysconfig.get_paths()['purelib'])"
    site = host.check_output(f"{venv}/bin/python -c {shlex.quote(code)}")
    assert host.file(f"{site}/tensorflow").user == cfg["ml_venv_owner"]


def test_stamp_matches_inputs(stamp, cfg) -> None:
    assert stamp["tensorflow"] == cfg["ml_venv_tensorflow_version"]
    assert stamp["cuda_mode"] == cfg["ml_venv_cuda_mode"]
    assert stamp["python_version"] == cfg["ml_venv_python_version"]
    assert stamp["python_interpreter"] == cfg["ml_venv_python_interpreter"]


# --------------------------------------------------------------------------- pins


def test_requirements_file_is_pinned(host, cfg, venv) -> None:
    lines = [
        ln.strip() for ln in host.file(f"{venv}/requirements.txt").content_string.splitlines()
        if ln.strip() and not ln.lstrip().startswith("#")
    ]
    extra = "[and-cuda]" if cfg["ml_venv_cuda_mode"] == "pip" else ""
    assert lines[0] == f"tensorflow{extra}=={cfg['ml_venv_tensorflow_version']}"
    assert [ln for ln in lines if "==" not in ln] == []


PINNED = ["tensorflow", "keras", "numpy", "h5py", "matplotlib", "pytest", "pytest-testinfra"]


@pytest.mark.parametrize("dist", PINNED)
def test_installed_version_matches_pin(host, cfg, venv, dist: str) -> None:
    pins = {p.split("==")[0].lower(): p.split("==")[1] for p in cfg["ml_venv_packages"] if "==" in p}
    pins["tensorflow"] = cfg["ml_venv_tensorflow_version"]
    if dist not in pins:
        pytest.skip(f"{dist} is not pinned in ml_venv_packages")
    got = _py(host, venv, f"import importlib.metadata as m; print(m.version({dist!r}))")
    assert got.rc == 0, got.stderr
    assert got.stdout.strip() == pins[dist]


def test_pip_check_clean(host, venv) -> None:
    out = host.run(f"{venv}/bin/python -m pip check")
    assert out.rc == 0, out.stdout + out.stderr


# --------------------------------------------------------------------------- numeric stack


def test_numpy_reports_openblas_and_computes(host, venv) -> None:
    code = (
        "import json, numpy as np\n"
        "cfg = np.show_config(mode='dicts')\n"
        "blas = cfg['Build Dependencies']['blas']\n"
        "a = np.arange(9.0).reshape(3, 3)\n"
        "print(json.dumps({'blas': blas['name'], 'found': blas.get('found'), 'dot': (a @ a).trace()}))"
    )
    out = _py(host, venv, code)
    assert out.rc == 0, out.stderr
    info = json.loads(out.stdout)
    assert "openblas" in info["blas"].lower()
    assert info["found"] is True
    assert info["dot"] == 180.0


def test_h5py_write_read_round_trip(host, venv) -> None:
    code = (
        "import os, tempfile, h5py, numpy as np\n"
        "d = tempfile.mkdtemp(); p = os.path.join(d, 't.h5')\n"
        "data = np.arange(12, dtype='float32').reshape(3, 4)\n"
        "with h5py.File(p, 'w') as f:\n"
        "    f.create_dataset('x', data=data, compression='gzip'); f.attrs['k'] = 'v'\n"
        "with h5py.File(p, 'r') as f: ok = bool((f['x'][()] == data).all()) and f.attrs['k'] == 'v'\n"
        "os.remove(p); os.rmdir(d)\n"
        "print(ok, h5py.version.hdf5_version)"
    )
    out = _py(host, venv, code)
    assert out.rc == 0, out.stderr
    assert out.stdout.split()[0] == "True"


# --------------------------------------------------------------------------- TensorFlow


@pytest.fixture(scope="module")
def tf_report(host, venv) -> dict:
    """Import TensorFlow once (slow): build info, visible GPUs, a small op, libraries it mapped."""
    code = (
        "import json, tensorflow as tf\n"
        "info = dict(tf.sysconfig.get_build_info())\n"
        "gpus = [d.name for d in tf.config.list_physical_devices('GPU')]\n"
        "val = float(tf.reduce_sum(tf.ones((4, 4))).numpy())\n"
        "maps = open('/proc/self/maps').read().split()\n"
        "libs = sorted({m for m in maps if '/lib' in m and ('cuda' in m or 'cudnn' in m or 'nvidia' in m)})\n"
        "print(json.dumps({'info': info, 'gpus': gpus, 'val': val, 'libs': libs, 'version': tf.__version__}))"
    )
    out = _py(host, venv, code)
    assert out.rc == 0, f"import tensorflow failed (rc {out.rc}): {out.stderr[-2000:]}"
    return json.loads(out.stdout.strip().splitlines()[-1])


def test_tensorflow_version(tf_report, cfg) -> None:
    assert tf_report["version"] == cfg["ml_venv_tensorflow_version"]


def test_tensorflow_build_matches_pinned_cuda(tf_report, cfg) -> None:
    info = tf_report["info"]
    assert info["is_cuda_build"] is True
    # TF reports the full CUDA release (12.5.1) and the cuDNN major ("9")
    assert (info["cuda_version"] + ".").startswith(cfg["gpu_stack_cuda_version"] + ".")
    assert cfg["gpu_stack_cudnn_version"].split(".")[0] == str(info["cudnn_version"]).split(".")[0]


def test_tensorflow_computes_on_cpu_without_gpu(host, tf_report) -> None:
    if host.file("/dev/nvidia0").exists:
        pytest.skip("this host has an NVIDIA device")
    assert tf_report["gpus"] == []
    assert tf_report["val"] == 16.0


@pytest.mark.gpu
def test_tensorflow_sees_gpu(tf_report) -> None:
    assert tf_report["gpus"], "TensorFlow lists no GPU"


def _cuda_mode(cfg) -> str:
    return cfg["ml_venv_cuda_mode"]


def test_system_mode_loader_resolves_cuda_sonames(host, cfg, venv) -> None:
    """In `system` mode the venv's Python loads the sonames TF needs from the system, no LD_LIBRARY_PATH."""
    if _cuda_mode(cfg) != "system":
        pytest.skip("cuda mode is not system")
    major = cfg["gpu_stack_cuda_version"].split(".")[0]
    cudnn_major = cfg["gpu_stack_cudnn_version"].split(".")[0]
    sonames = [*cfg["gpu_stack_tensorflow_sonames"][major], f"libcudnn.so.{cudnn_major}"]
    code = (
        "import ctypes, json, sys\n"
        "bad = {}\n"
        f"for s in {sonames!r}:\n"
        "    try: ctypes.CDLL(s)\n"
        "    except OSError as e: bad[s] = str(e)\n"
        "print(json.dumps(bad))"
    )
    out = _py(host, venv, code)
    assert out.rc == 0, out.stderr
    assert json.loads(out.stdout) == {}


def test_system_mode_tensorflow_uses_system_cuda(cfg, tf_report) -> None:
    """TF dlopened the system libcudart/libcudnn (not wheels) while probing for GPUs, and survived."""
    if _cuda_mode(cfg) != "system":
        pytest.skip("cuda mode is not system")
    libs = tf_report["libs"]
    assert [lib for lib in libs if "site-packages/nvidia" in lib] == []
    major = cfg["gpu_stack_cuda_version"].split(".")[0]
    assert any(re.search(rf"/libcudart\.so\.{major}", lib) for lib in libs), libs


def test_system_mode_has_no_cuda_wheels(host, cfg, venv) -> None:
    if _cuda_mode(cfg) != "system":
        pytest.skip("cuda mode is not system")
    out = host.check_output(f"{venv}/bin/python -m pip list --format=json")
    # NVIDIA's CUDA wheels are named nvidia-<component>-cu<major>; nvidia-ml-py (NVML's binding) is not one
    cuda_wheels = [p["name"] for p in json.loads(out) if re.match(r"nvidia-.+-cu\d+$", p["name"])]
    assert cuda_wheels == []


def test_pip_mode_has_cudnn_wheel(host, cfg, venv) -> None:
    if _cuda_mode(cfg) != "pip":
        pytest.skip("cuda mode is not pip")
    out = _py(host, venv, "import importlib.metadata as m; print(m.version('nvidia-cudnn-cu12'))")
    assert out.rc == 0, out.stderr


# --------------------------------------------------------------------------- login hint


def test_profile_hint(host, cfg) -> None:
    hint = host.file(cfg["ml_venv_profile_hint_path"])
    if not cfg["ml_venv_profile_hint_enabled"]:
        assert not hint.exists
        return
    assert hint.exists
    assert (hint.user, hint.mode) == ("root", 0o644)
    assert f". {cfg['ml_venv_path']}/bin/activate" in hint.content_string


def test_login_shell_shows_hint(host, cfg) -> None:
    if not cfg["ml_venv_profile_hint_enabled"] or cfg["ml_venv_owner"] != "root":
        pytest.skip("hint disabled, or shown to the venv owner only")
    out = host.run("bash -lic true </dev/null")
    assert f"{cfg['ml_venv_path']}/bin/activate" in out.stdout + out.stderr
