"""What differs between Keras backends in the worker: device checks, the GPU's PCI bus id, the fp32 GEMM
peak measured in the same process on the same device, placing data on the device."""

from __future__ import annotations

import re
import time
from collections.abc import Callable
from typing import Any

from .core import GEMM_SHAPE, gemm_flops
from .data import EnvProblem


class Backend:
    """What differs between backends: device checks, GEMM timing, the resident step."""

    def __init__(self, name: str, device: str) -> None:
        self.name, self.device = name, device
        import keras

        self.keras = keras
        if keras.backend.backend() != name:
            raise EnvProblem(f"KERAS_BACKEND={name} but keras uses {keras.backend.backend()}")
        self.mod: Any = None
        self.pci_bus_id: str | None = None  # of the GPU the backend uses, for the NVML sampler
        self.no_gpu: str | None = None
        getattr(self, f"_setup_{name}")()

    # -- tensorflow ----------------------------------------------------------
    def _setup_tensorflow(self) -> None:
        import tensorflow as tf

        self.mod, self.version = tf, tf.__version__
        tf.config.experimental.enable_tensor_float_32_execution(False)
        gpus = tf.config.list_physical_devices("GPU")
        self.gpu_count = len(gpus)
        self.tf_device = "/GPU:0" if self.device == "gpu" else "/CPU:0"
        self.device_name = None
        if gpus and self.device == "gpu":
            details = tf.config.experimental.get_device_details(gpus[0])
            self.device_name = details.get("device_name")
            try:  # "device: 0, name: NVIDIA H100 80GB HBM3, pci bus id: 0000:18:00.0, ..."
                from tensorflow.python.client import device_lib

                desc = next(
                    d.physical_device_desc for d in device_lib.list_local_devices() if d.device_type == "GPU"
                )
                self.pci_bus_id = re.search(r"pci bus id: ([0-9a-fA-F:.]+)", desc).group(1)
            except Exception:  # internal API: the NVML sampler falls back to the CUDA order
                pass
        if self.device == "gpu" and not gpus:
            info = tf.sysconfig.get_build_info()
            self.no_gpu = (
                f"tf.config.list_physical_devices('GPU') is empty (TensorFlow "
                f"{tf.__version__}, CUDA build: {info.get('is_cuda_build')}, built for "
                f"CUDA {info.get('cuda_version')} / cuDNN {info.get('cudnn_version')})"
            )

    def _tf_gemm(self) -> tuple[Callable[[], Any], Callable[[Any], None], Any]:
        tf = self.mod
        with tf.device(self.tf_device):
            a = tf.random.uniform(GEMM_SHAPE[:2])
            b = tf.random.uniform(GEMM_SHAPE[1:])
        # Both TF's own kernels and XLA: the peak is the better of the two.
        variants = [
            tf.function(lambda p, q: tf.linalg.matmul(p, q), jit_compile=jit) for jit in (False, True)
        ]
        return [
            ((lambda mm=mm: mm(a, b)), (lambda c: c[0, 0].numpy()), (lambda c: c.device)) for mm in variants
        ]

    # -- jax -----------------------------------------------------------------
    def _setup_jax(self) -> None:
        import jax

        self.mod, self.version = jax, jax.__version__
        jax.config.update("jax_default_matmul_precision", "highest")  # true fp32, no TF32
        platform_name = jax.default_backend()
        self.gpu_count = len(jax.devices()) if platform_name in ("gpu", "cuda", "rocm") else 0
        self.jax_device = jax.devices()[0]
        self.device_name = self.jax_device.device_kind if self.device == "gpu" else None
        self.pci_bus_id = getattr(self.jax_device, "pci_bus_id", None) if self.gpu_count else None
        if self.device == "gpu" and not self.gpu_count:
            self.no_gpu = f"jax default backend is {platform_name!r} (jax {jax.__version__})"

    def _jax_gemm(self) -> tuple[Callable[[], Any], Callable[[Any], None], Any]:
        jax = self.mod
        key = jax.random.PRNGKey(0)
        a = jax.device_put(jax.random.uniform(key, GEMM_SHAPE[:2]), self.jax_device)
        b = jax.device_put(jax.random.uniform(key, GEMM_SHAPE[1:]), self.jax_device)
        mm = jax.jit(lambda p, q: p @ q)
        return [
            ((lambda: mm(a, b)), (lambda c: c.block_until_ready()), (lambda c: str(next(iter(c.devices())))))
        ]

    # -- torch ---------------------------------------------------------------
    def _setup_torch(self) -> None:
        import torch

        self.mod, self.version = torch, torch.__version__
        torch.backends.cuda.matmul.allow_tf32 = False
        torch.backends.cudnn.allow_tf32 = False
        self.gpu_count = torch.cuda.device_count() if torch.cuda.is_available() else 0
        self.torch_device = torch.device("cuda" if self.device == "gpu" else "cpu")
        self.device_name = torch.cuda.get_device_name(0) if self.gpu_count and self.device == "gpu" else None
        if self.gpu_count and self.device == "gpu":
            props = torch.cuda.get_device_properties(0)
            if getattr(props, "pci_bus_id", None) is not None:
                self.pci_bus_id = (
                    f"{getattr(props, 'pci_domain_id', 0):04x}:{props.pci_bus_id:02x}:"
                    f"{getattr(props, 'pci_device_id', 0):02x}.0"
                )
        if self.device == "gpu" and not self.gpu_count:
            self.no_gpu = (
                f"torch.cuda.is_available() is False (torch {torch.__version__}, "
                f"built for CUDA {torch.version.cuda})"
            )

    def _torch_gemm(self) -> tuple[Callable[[], Any], Callable[[Any], None], Any]:
        torch = self.mod
        a = torch.rand(GEMM_SHAPE[:2], device=self.torch_device)
        b = torch.rand(GEMM_SHAPE[1:], device=self.torch_device)

        def sync(_: Any) -> None:
            if self.device == "gpu":
                torch.cuda.synchronize()

        return [((lambda: torch.matmul(a, b)), sync, (lambda c: str(c.device)))]

    # -- common --------------------------------------------------------------
    def gemm_peak(self) -> dict[str, Any]:
        """Best fp32 TFLOP/s of the 30000x784 @ 784x512 matmul in this backend and device."""
        variants = getattr(self, f"_{'tf' if self.name == 'tensorflow' else self.name}_gemm")()
        best, device, reps = float("inf"), None, 0
        for call, block, where in variants:
            block(call())
            block(call())  # compile and warm up
            t0 = time.perf_counter()
            block(call())
            one = max(time.perf_counter() - t0, 1e-6)
            reps = max(1, min(200, int(0.25 / one)))
            best = min(best, one)
            for _ in range(5):
                t0 = time.perf_counter()
                for _ in range(reps):
                    result = call()
                block(result)
                best = min(best, (time.perf_counter() - t0) / reps)
            device = where(result)
        return {
            "shape": list(GEMM_SHAPE),
            "seconds": best,
            "tflops": gemm_flops(*GEMM_SHAPE) / best / 1e12,
            "device": device,
            "repetitions": reps,
        }

    def variable_device(self, model: Any) -> str:
        value = model.trainable_variables[0].value
        if self.name == "jax":
            return str(next(iter(value.devices())))
        return str(value.device)

    def to_device(self, array: Any) -> Any:
        if self.name == "tensorflow":
            with self.mod.device(self.tf_device):
                return self.mod.identity(self.mod.constant(array))
        if self.name == "jax":
            return self.mod.device_put(array, self.jax_device)
        return self.mod.as_tensor(array, device=self.torch_device)

    def data_device(self, array: Any) -> str:
        if self.name == "jax":
            return str(next(iter(array.devices())))
        return str(array.device)
