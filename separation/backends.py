"""Inference backends: "given a batch of window spectrograms, return every source's spectrogram".

Every backend runs the same two halves of the network: the condition-free *stem* once per
window (LightSAFT: first conv, first TFC and that encoder's latent values, 34 % of the FLOPs;
LASAFT-Net-v2: every encoder and the mid block), then the conditioned *body* once per (window,
target) item. The stem's output is a tuple of tensors (the features the body needs). A backend
knows nothing of windows, files or budgets, nor of which architecture it runs; adding one never
touches the engine.

Everything here works on numpy arrays and imports no torch: the exported-model path (ONNX
Runtime, OpenVINO) starts without it. The eager and TorchScript backends live in
:mod:`separation.torch_backends`.
"""
from __future__ import annotations

import os
import warnings
from pathlib import Path
from typing import Protocol

import numpy as np

from core.constants import N_SOURCES
from core.signal_stack import signal_stack_kept
from models.artifact import (INPUT_CONDITION, INPUT_FEATURES, INPUT_SPEC, METADATA_KEY, OUTPUT_SPEC, OUTPUT_STEM,
                             feature_names, parse_metadata)
from models.onnx_file import read_onnx_header
from models.registry import Architecture

#: The stem's outputs for a batch of windows: the features the body needs, float32 arrays.
Features = tuple[np.ndarray, ...]


class Backend(Protocol):
    """(N, 4, T, bins) window spectrograms -> (N, n_sources, 4, T, bins)."""

    name: str
    architecture: Architecture
    config: object

    def separate_spec(self, spec: np.ndarray) -> np.ndarray:
        ...


def available_cpus() -> int:
    """CPUs this process may really use: affinity mask and cgroup quota, whichever is smaller.

    ONNX Runtime and oneDNN size their thread pools from the host's core count, which
    oversubscribes CPU-limited containers; the backends pass this number explicitly instead.
    """
    try:
        cpus = len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        cpus = os.cpu_count() or 1
    try:
        quota, period = Path("/sys/fs/cgroup/cpu.max").read_text().split()[:2]
        if quota != "max":
            cpus = min(cpus, max(1, int(int(quota) // int(period))))
    except (OSError, ValueError):
        pass
    return max(1, cpus)


class EagerModelBackend:
    """A package's own model run on eager PyTorch in fp32 (the baselines): what separators, the
    predictor and the reports read of a backend. ``choice`` is set by the loader."""

    name = "torch"

    def __init__(self, model, threads: int) -> None:
        self.model = model
        self.threads = threads
        self.precision = "fp32"
        self.choice = None


class StemBodyBackend:
    """Shared driver: stem once per window (if ``share_stem``), body in chunks of items.

    ``items_per_call`` (window, target) items go through the body together; None takes the
    architecture's own choice.
    """

    name = "base"
    architecture: Architecture
    config: object

    def __init__(self, architecture: Architecture, share_stem: bool = True, items_per_call: int | None = None) -> None:
        items_per_call = architecture.items_per_call if items_per_call is None else items_per_call
        if items_per_call < 1:
            raise ValueError("items_per_call must be >= 1")
        self.architecture = architecture
        self.share_stem = share_stem
        self.items_per_call = items_per_call
        self.masking = False
        self.n_sources = N_SOURCES

    def stem(self, spec: np.ndarray) -> Features:
        """(N, 4, T, bins) float32 -> the condition-free features of each window."""
        raise NotImplementedError

    def body(self, features: Features, condition: np.ndarray) -> np.ndarray:
        """Features of N items and their (N,) int64 targets -> (N, 4, T, bins) float32."""
        raise NotImplementedError

    def _stem_for_this_call(self, spec: np.ndarray) -> Features:
        """:meth:`stem` for :meth:`separate_spec`'s own use: the features need to stay valid only
        until the next stem call, so a backend may hand out its own buffers instead of copies."""
        return self.stem(spec)

    def separate_spec(self, spec: np.ndarray) -> np.ndarray:
        """(N, 4, T, bins) float32 window spectrograms -> (N, n_sources, 4, T, bins) float32."""
        n_win = spec.shape[0]
        n_src = self.n_sources
        out = np.empty((n_win, n_src) + tuple(spec.shape[1:]), dtype=np.float32)
        items = [(w, s) for w in range(n_win) for s in range(n_src)]
        shared = self._stem_for_this_call(spec) if self.share_stem else None
        for start in range(0, len(items), self.items_per_call):
            chunk = items[start:start + self.items_per_call]
            win_idx = np.array([w for w, _ in chunk])
            cond = np.array([s for _, s in chunk], dtype=np.int64)
            if shared is None:
                features = self._stem_for_this_call(spec[win_idx])
            elif len(chunk) == 1:  # a view: the features of one item are not copied per call
                features = tuple(f[win_idx[0]:win_idx[0] + 1] for f in shared)
            else:
                features = tuple(f[win_idx] for f in shared)
            result = self.body(features, cond)
            if self.masking:
                result = spec[win_idx] * result
            for k, (w, s) in enumerate(chunk):
                out[w, s] = result[k]
        return out


def has_nvidia_gpu() -> bool:
    """Whether an NVIDIA driver is present (the CUDA provider may then run)."""
    return Path("/dev/nvidiactl").exists() or Path("/proc/driver/nvidia/version").exists()


class OnnxArtifact:
    """A kit ONNX file read and checked once: metadata, and (for ONNX Runtime) its stem and body
    halves as two graphs.

    The file holds the stem and the body as two disjoint halves of one graph; each runtime splits
    it so that each call computes only what it needs. External data is never followed: the kit's
    exports embed their weights, and a file with any tensor stored elsewhere is refused here,
    before any runtime reads it. The checks read the protobuf directly
    (:mod:`models.onnx_file`): the ``onnx`` package costs a second of start-up and is imported only
    where ONNX Runtime needs the halves as separate graphs.
    """

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path)
        header = read_onnx_header(path)
        if header.external_tensors:
            raise ValueError(f"{path} keeps weights in external files ({', '.join(header.external_tensors[:3])}); "
                             "the kit loads self-contained ONNX files only")
        self.architecture, self.config, self.window, self.metadata = parse_metadata(
            header.metadata.get(METADATA_KEY), str(path))
        n_features = int(self.metadata.get("graph", {}).get("n_features", 1))
        self.feature_inputs = feature_names(INPUT_FEATURES, n_features)
        self.stem_outputs = feature_names(OUTPUT_STEM, n_features)

    def split(self):
        """(stem, body) as two ONNX models (ONNX Runtime's way; shape inference makes it slowish)."""
        import onnx
        from onnx.utils import Extractor

        extractor = Extractor(onnx.load(str(self.path), load_external_data=False))
        return (extractor.extract_model([INPUT_SPEC], self.stem_outputs),
                extractor.extract_model([*self.feature_inputs, INPUT_CONDITION], [OUTPUT_SPEC]))

    @property
    def masking(self) -> bool:
        return self.config.spec_est_mode == "masking"


class _OnnxFileBackend(StemBodyBackend):
    """What the two runtimes of a kit ONNX file share: the file's facts and the body's inputs."""

    def _adopt(self, path: str | os.PathLike[str] | OnnxArtifact, share_stem: bool,
               items_per_call: int | None) -> OnnxArtifact:
        artifact = path if isinstance(path, OnnxArtifact) else OnnxArtifact(path)
        self.config, self.window, self.metadata = artifact.config, artifact.window, artifact.metadata
        StemBodyBackend.__init__(self, artifact.architecture, share_stem, items_per_call)
        self.masking = artifact.masking
        self._feature_inputs = artifact.feature_inputs
        return artifact

    def _body_feed(self, features: Features, condition: np.ndarray) -> dict[str, np.ndarray]:
        feed = {name: np.ascontiguousarray(f) for name, f in zip(self._feature_inputs, features)}
        feed[INPUT_CONDITION] = np.asarray(condition, dtype=np.int64)
        return feed


class OnnxBackend(_OnnxFileBackend):
    """An ONNX artifact under ONNX Runtime: CUDA provider when a GPU is present, else CPU."""

    name = "onnx"

    def __init__(self, path: str | os.PathLike[str] | OnnxArtifact, threads: int | None = None,
                 share_stem: bool = True, items_per_call: int | None = None,
                 providers: list[str] | None = None, profile_prefix: str | None = None) -> None:
        import onnxruntime as ort

        artifact = self._adopt(path, share_stem, items_per_call)
        options = ort.SessionOptions()
        if profile_prefix is not None:  # ONNX Runtime's own per-node trace (--profile)
            options.enable_profiling = True
            options.profile_file_prefix = profile_prefix
        self.threads = threads or available_cpus()
        options.intra_op_num_threads = self.threads
        options.inter_op_num_threads = 1
        options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        # Two sessions with arenas would each keep their own peak; without, memory goes back
        # to the allocator after every call (measured: same speed, lower peak RSS).
        options.enable_cpu_mem_arena = False
        if providers is None:
            providers = ["CPUExecutionProvider"]
            if has_nvidia_gpu() and "CUDAExecutionProvider" in ort.get_available_providers():
                providers.insert(0, "CUDAExecutionProvider")
        stem_graph, body_graph = artifact.split()
        self._stem = ort.InferenceSession(stem_graph.SerializeToString(), options, providers=providers)
        self._body = ort.InferenceSession(body_graph.SerializeToString(), options, providers=providers)
        self.providers = self._body.get_providers()
        self.device = "cuda" if self.providers[0] == "CUDAExecutionProvider" else "cpu"
        self.precision = "fp32"

    def stem(self, spec: np.ndarray) -> Features:
        return tuple(self._stem.run(None, {INPUT_SPEC: np.ascontiguousarray(spec)}))

    def body(self, features: Features, condition: np.ndarray) -> np.ndarray:
        return self._body.run(None, self._body_feed(features, condition))[0]

    def end_profiling(self) -> list[str]:
        """Close the profiled sessions' traces; their JSON file names (when built with a prefix)."""
        return [self._stem.end_profiling(), self._body.end_profiling()]


#: ``--precision`` values: fp32 is exact; the others are approximate and gated (separation.precision).
PRECISIONS = ("fp32", "bf16", "int8")
#: OpenVINO's inference precision hint per kit precision name.
_OV_PRECISION_HINT = {"fp32": "f32", "bf16": "bf16"}


def openvino_capabilities(device: str = "CPU") -> tuple[str, ...]:
    """What OpenVINO says ``device`` computes natively (e.g. ``FP32``, ``BF16``, ``INT8``)."""
    import openvino as ov

    return tuple(ov.Core().get_property(device, "OPTIMIZATION_CAPABILITIES"))


class OpenVinoBackend(_OnnxFileBackend):
    """An ONNX artifact under OpenVINO (CPU plugin by default), compiled at construction.

    ``precision`` ``fp32`` is exact (the plugin is told to keep f32 even where the CPU could
    down-convert); ``bf16`` asks for bf16 inference and needs a CPU with native bf16 (the caller
    checks, see :mod:`separation.loading`). ``cache_dir``: OpenVINO's own cache of compiled
    models (keyed by the model's content, the device and these settings), which turns a 1.5-s
    compile into a 0.1-s load on later start-ups; None compiles every time.

    Each half is compiled for static input shapes, the window shape the engine sends at
    construction and any other shape on first use: with static shapes the plugin plans its
    buffers ahead (measured on LightSAFT: 84 MiB less resident memory, same speed, same numbers).
    """

    name = "openvino"

    def __init__(self, path: str | os.PathLike[str] | OnnxArtifact, threads: int | None = None,
                 share_stem: bool = True, items_per_call: int | None = None, device: str = "CPU",
                 precision: str = "fp32", cache_dir: str | os.PathLike[str] | None = None,
                 profile: bool = False) -> None:
        import openvino as ov

        if precision not in _OV_PRECISION_HINT:
            raise ValueError(f"OpenVINO runs {', '.join(_OV_PRECISION_HINT)} here, not {precision!r}")
        artifact = self._adopt(path, share_stem, items_per_call)
        self.threads = threads or available_cpus()
        self.device = device
        self.precision = precision
        self._core = ov.Core()
        if cache_dir is not None:
            self._core.set_property({"CACHE_DIR": str(cache_dir)})
        properties = {"INFERENCE_NUM_THREADS": self.threads, "NUM_STREAMS": 1, "PERFORMANCE_HINT": "LATENCY",
                      "INFERENCE_PRECISION_HINT": _OV_PRECISION_HINT[precision]}
        if device != "CPU":
            properties = {"PERFORMANCE_HINT": "LATENCY", "INFERENCE_PRECISION_HINT": _OV_PRECISION_HINT[precision]}
        #: With ``profile``: OpenVINO's performance counters, summed per node over every call.
        self.counters: dict[tuple[str, str], float] | None = {} if profile else None
        if profile:
            properties["PERF_COUNT"] = True
        self._properties = properties
        # OpenVINO's own ONNX reader (the file was checked above), split into the two halves by
        # their inputs and outputs: the halves are disjoint, so nothing is computed twice.
        full = self._core.read_model(str(artifact.path))
        outputs = {o.get_any_name(): o for o in full.outputs}
        inputs = {p.get_friendly_name(): p for p in full.get_parameters()}
        self._halves = {
            "stem": ov.Model([outputs[n] for n in artifact.stem_outputs], [inputs[INPUT_SPEC]], "stem"),
            "body": ov.Model([outputs[OUTPUT_SPEC]], [inputs[n] for n in (*artifact.feature_inputs, INPUT_CONDITION)],
                             "body")}
        self._requests: dict[tuple, object] = {}
        self._compile_for_one_window()

    def _compile_for_one_window(self) -> None:
        """Compile both halves for what the engine sends first: one window, its targets in chunks."""
        items = min(self.items_per_call, self.n_sources)  # the body's batch (separate_spec's chunks)
        batch, *rest = self.window_spec_shape()
        stem = self._request("stem", {INPUT_SPEC: (batch if self.share_stem else items, *rest)})
        shapes = {name: (items, *tuple(out.get_shape())[1:])
                  for name, out in zip(self._feature_inputs, stem.model_outputs)}
        shapes[INPUT_CONDITION] = (items,)
        self._request("body", shapes)

    def window_spec_shape(self) -> tuple[int, int, int, int]:
        """(1, 4, frames, bins) of one window of this artifact's geometry."""
        cfg = self.config
        window = self.architecture.window_spec(cfg).window
        return (1, 4, window // cfg.hop_length + 1, cfg.n_fft // 2 + 1)

    def _request(self, half: str, shapes: dict[str, tuple[int, ...]]):
        key = (half, tuple(sorted(shapes.items())))
        request = self._requests.get(key)
        if request is None:
            model = self._halves[half].clone()
            model.reshape({name: list(shape) for name, shape in shapes.items()})
            with signal_stack_kept():  # the plugin's own signal stack dies with the model (core.signal_stack)
                request = self._core.compile_model(model, self.device, self._properties).create_infer_request()
            self._requests[key] = request
        return request

    def _infer(self, half: str, feed: dict[str, np.ndarray]):
        request = self._request(half, {name: tuple(a.shape) for name, a in feed.items()})
        # Shared: the request reads the (contiguous) arrays in place and hands back views of its
        # own output buffers, which the callers copy before the next call.
        result = request.infer(feed, share_inputs=True, share_outputs=True)
        if self.counters is not None:
            for info in request.profiling_info:
                key = (info.node_type, info.node_name)
                self.counters[key] = self.counters.get(key, 0.0) + info.real_time.total_seconds()
        return request, result

    def stem(self, spec: np.ndarray) -> Features:
        # Copies: the request reuses its output buffers on the next call.
        return tuple(np.array(f) for f in self._stem_for_this_call(spec))

    def _stem_for_this_call(self, spec: np.ndarray) -> Features:
        # Views of the stem request's output buffers (48 MiB less at LightSAFT's window than copies):
        # only the next stem call overwrites them, and the body runs on its own request.
        request, result = self._infer("stem", {INPUT_SPEC: np.ascontiguousarray(spec)})
        return tuple(result[out] for out in request.model_outputs)

    def body(self, features: Features, condition: np.ndarray) -> np.ndarray:
        request, result = self._infer("body", self._body_feed(features, condition))
        return np.array(result[request.model_outputs[0]])
