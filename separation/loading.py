"""From a model file to a ready backend: which runtime runs it, at which precision, and why.

``--backend auto`` (the default) picks by a rule, not a measurement at every start-up:

* a checkpoint (``.ckpt``/``.pt``) runs on eager PyTorch, the only runtime that reads it;
* a TorchScript file (``.ts``) on TorchScript;
* an ONNX file on ONNX Runtime's CUDA provider when an NVIDIA GPU and onnxruntime-gpu are present,
  else on its architecture's CPU runtime (``Architecture.cpu_runtime``): OpenVINO's CPU plugin
  when ``openvino`` is importable and keeps the architecture's parity criteria, else ONNX Runtime.

OpenVINO before ONNX Runtime on the CPU is a measured choice per architecture (README, "Speed"):
on the same LightSAFT artifact it separated 60 s 1.40x faster than ONNX Runtime (1.32x for the
whole command, start-up included), with stems within 3e-7 of the checkpoint's. LaSAFT v1 stays on
ONNX Runtime (OpenVINO 2.2x slower, 3x the memory), and so does LASAFT-Net-v2 (OpenVINO's float32
rounding moves it past its criteria on the export check's test signal).
"""
from __future__ import annotations

import dataclasses
import importlib.util
import os
from pathlib import Path

from models.formats import baseline_format

from .backends import (PRECISIONS, OnnxArtifact, OnnxBackend, OpenVinoBackend, available_cpus, has_nvidia_gpu,
                       openvino_capabilities)
from .engine import Separator

#: File endings and the backend each implies when ``--backend`` is not given.
BACKEND_BY_SUFFIX = {".ckpt": "torch", ".pt": "torch", ".pth": "torch", ".th": "torch", ".ts": "torchscript",
                     ".onnx": "onnx"}
#: Backends by name, and the file kind each reads.
BACKENDS = ("torch", "torchscript", "onnx", "openvino")
BACKEND_CHOICES = ("auto", *BACKENDS)
_READS = {"torch": "checkpoint", "torchscript": "torchscript", "onnx": "onnx", "openvino": "onnx"}
_KIND_BY_SUFFIX = {suffix: _READS[backend] for suffix, backend in BACKEND_BY_SUFFIX.items()}
#: Backends that can run each reduced precision.
_PRECISION_BACKENDS = {"fp32": BACKENDS, "bf16": ("openvino",), "int8": ()}


@dataclasses.dataclass(frozen=True)
class BackendChoice:
    """What will run a model file: ``backend`` at ``precision``, and the reasons in words."""

    backend: str
    precision: str
    reason: str
    notes: tuple[str, ...] = ()

    def describe(self) -> str:
        return "; ".join((self.reason, *self.notes))


def _file_kind(path: str | os.PathLike[str]) -> str | None:
    if baseline_format(path) is not None:
        return "checkpoint"  # the packages' own formats, read on eager PyTorch
    return _KIND_BY_SUFFIX.get(Path(path).suffix.lower())


def backend_for_path(path: str | os.PathLike[str]) -> str:
    """The backend a model file implies by its ending (the runtime that reads it in the base install)."""
    suffix = Path(path).suffix.lower()
    if suffix not in BACKEND_BY_SUFFIX:
        known = ", ".join(sorted(BACKEND_BY_SUFFIX))
        raise ValueError(f"cannot tell the backend of {path}: expected one of {known}, or pass --backend")
    return BACKEND_BY_SUFFIX[suffix]


def openvino_available() -> bool:
    return importlib.util.find_spec("openvino") is not None


def _onnxruntime_cuda() -> bool:
    if not has_nvidia_gpu():
        return False
    import onnxruntime as ort

    return "CUDAExecutionProvider" in ort.get_available_providers()


def _native_bf16() -> bool:
    return openvino_available() and "BF16" in openvino_capabilities("CPU")


def choose_backend(model_path: str | os.PathLike[str], requested: str | None = None,
                   precision: str = "fp32", cpu_runtime: str = "openvino") -> BackendChoice:
    """The backend and precision that will run ``model_path``; raises ValueError for impossible asks.

    ``cpu_runtime``: the runtime the file's architecture prefers for ONNX on a CPU
    (``Architecture.cpu_runtime``).

    A reduced precision the machine cannot run natively falls back to exact fp32 and says so in
    ``notes``; whether an approximate precision is allowed at all is the quality gate's call
    (:mod:`separation.precision`), not this function's.
    """
    if precision not in PRECISIONS:
        raise ValueError(f"unknown precision {precision!r}; choose one of {', '.join(PRECISIONS)}")
    kind = _file_kind(model_path)
    if kind is None and requested in (None, "auto"):
        backend_for_path(model_path)  # raises the "cannot tell" error
    requested = None if requested in (None, "auto") else requested
    if requested is not None and requested not in BACKENDS:
        raise ValueError(f"unknown backend {requested!r}; choose one of {', '.join(BACKEND_CHOICES)}")
    if requested is not None:
        if kind is not None and _READS[requested] != kind:
            raise ValueError(f"the {requested} backend runs {_READS[requested]} files, and {model_path} is a {kind} "
                             f"file; use --backend auto, or export the checkpoint with `python -m export`")
        if requested == "openvino" and not openvino_available():
            raise ValueError("the openvino backend needs the `openvino` package (pip install -r requirements.txt)")
        backend, reason = requested, f"{requested}, as asked"
    elif baseline_format(model_path) is not None:
        backend, reason = "torch", "torch: the package's own model format runs on eager PyTorch"
    elif kind == "checkpoint":
        backend, reason = "torch", ("torch: a checkpoint runs on eager PyTorch (export it with `python -m export` "
                                    "for the faster ONNX/OpenVINO path)")
    elif kind == "torchscript":
        backend, reason = "torchscript", "torchscript: the file is a TorchScript module"
    elif _onnxruntime_cuda():
        backend, reason = "onnx", "onnx: ONNX Runtime's CUDA provider on the NVIDIA GPU"
    elif cpu_runtime == "onnx":
        backend, reason = "onnx", "onnx: ONNX Runtime, the CPU runtime that keeps this architecture's criteria"
    elif openvino_available():
        backend, reason = "openvino", "openvino: the fastest exact CPU runtime for ONNX files (README, Speed)"
    else:
        backend, reason = "onnx", "onnx: ONNX Runtime on the CPU (openvino is not installed)"

    notes: list[str] = []
    if precision != "fp32":
        if backend not in _PRECISION_BACKENDS[precision]:
            notes.append(f"{precision} asked, but the {backend} backend runs it exactly only in fp32 here: "
                         "running exact fp32")
            precision = "fp32"
        elif precision == "bf16" and not _native_bf16():
            notes.append("bf16 asked, but this CPU has no native bf16 (no AVX512_BF16 or AMX; OpenVINO reports "
                         f"{', '.join(openvino_capabilities('CPU'))}): running exact fp32")
            precision = "fp32"
    return BackendChoice(backend, precision, reason, tuple(notes))


def load_backend(model_path: str | os.PathLike[str], backend: str | None = None,
                 threads: int | None = None, fold_bn: bool = True, precision: str = "fp32",
                 choice: BackendChoice | None = None, compile_cache: str | os.PathLike[str] | None = None,
                 profile_prefix: str | None = None):
    """Load a model file into a backend; returns ``(backend, stft_window)``.

    ``backend`` is a name of :data:`BACKEND_CHOICES` (None or ``auto``: :func:`choose_backend`
    picks); ``threads`` sets intra-op threads (default: the CPUs this process may use);
    ``compile_cache`` is OpenVINO's folder of compiled models; ``profile_prefix`` turns on the ONNX
    runtimes' own profilers (ONNX Runtime writes ``<prefix>_*.json``; OpenVINO keeps performance
    counters). The backend object carries its :class:`BackendChoice` as ``.choice``.

    Torch is imported only for the backends that run on it (checkpoints, TorchScript): the ONNX
    runtimes start without it.
    """
    artifact = OnnxArtifact(model_path) if _KIND_BY_SUFFIX.get(Path(model_path).suffix.lower()) == "onnx" else None
    if choice is None:
        cpu_runtime = artifact.architecture.cpu_runtime if artifact is not None else "openvino"
        choice = choose_backend(model_path, backend, precision, cpu_runtime)
    threads = threads or available_cpus()
    if choice.backend in ("torch", "torchscript"):
        model, window = _load_torch_backend(model_path, choice.backend, threads, fold_bn)
    elif choice.backend == "openvino":
        model = OpenVinoBackend(artifact or model_path, threads=threads, precision=choice.precision,
                                cache_dir=compile_cache, profile=profile_prefix is not None)
        window = model.window
    else:
        model = OnnxBackend(artifact or model_path, threads=threads, profile_prefix=profile_prefix)
        window = model.window
    model.choice = choice
    return model, window


def _load_torch_backend(model_path: str | os.PathLike[str], backend: str, threads: int, fold_bn: bool):
    """(backend, stft_window) for a checkpoint on eager PyTorch or a TorchScript file."""
    import torch

    from models.checkpoint import load_checkpoint

    from .torch_backends import TorchBackend, TorchScriptBackend

    torch.set_num_threads(threads)
    if backend == "torchscript":
        model = TorchScriptBackend(model_path)
        return model, model.window
    loaded = load_checkpoint(model_path)
    return TorchBackend(loaded.network, loaded.architecture, fold_bn=fold_bn), loaded.window.numpy()


def load_separator(model_path: str | os.PathLike[str], backend: str | None = None,
                   threads: int | None = None, windows_per_batch: int = 1,
                   precision: str = "fp32", compile_cache: str | os.PathLike[str] | None = None,
                   niter: int | None = None, profile_prefix: str | None = None):
    """Load a model into a separator (``backend``, ``precision``: see :func:`choose_backend`).

    ``model_path``: a .ckpt/.pt checkpoint, .ts TorchScript or .onnx of the LaSAFT family, an
    Open-Unmix model folder (``niter``: its Wiener iterations, None for the package's 1) or a
    demucs ``.th`` package. Returns a :class:`Separator` (or the baselines' own separators, which
    stream the same way)."""
    fmt = baseline_format(model_path)
    if fmt is None:
        model, window = load_backend(model_path, backend, threads, precision=precision, compile_cache=compile_cache,
                                     profile_prefix=profile_prefix)
        return Separator(model, window, windows_per_batch)
    choice = choose_backend(model_path, backend, precision)
    threads = threads or available_cpus()
    return _load_baseline(model_path, fmt, choice, threads, niter)


def _load_baseline(model_path: str | os.PathLike[str], fmt: str, choice: BackendChoice, threads: int,
                   niter: int | None):
    """An Open-Unmix folder or a demucs package, on eager PyTorch, ready to separate."""
    import torch

    from models.htdemucs import load_demucs
    from models.umx import load_umx_folder

    from .umx_engine import DEFAULT_NITER, UmxBackend, UmxSeparator
    from .waveform_engine import DemucsBackend, WaveformSeparator

    torch.set_num_threads(threads)
    if fmt == "umx-folder":
        runner = UmxBackend(load_umx_folder(model_path), threads)
        separator = UmxSeparator(runner, DEFAULT_NITER if niter is None else niter)
    else:
        runner = DemucsBackend(load_demucs(model_path), threads)
        separator = WaveformSeparator(runner)
    runner.choice = choice
    return separator
