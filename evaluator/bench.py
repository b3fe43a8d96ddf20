"""Latency benchmark: ``python -m evaluator.bench CKPT [--seconds 60] [--out DIR]``.

Times, in one run and on one input, the plain eager path (the original pipeline's shape: batches
of 32 (window, target) items, an STFT per target, no shared stem, no BatchNorm folding) and each
backend and precision of the kit, each in its own child process so that peak RSS is its own. Peers
(Open-Unmix at UMX-HQ size and HTDemucs, random weights, when ``demucs`` is importable for the
latter) run in the same way. Prints wall time, RTF (wall / audio seconds), peak RSS, achieved
network GFLOP/s, the speed-up over the plain path and the default runtime's speed-up over each
row, and writes ``bench.json`` and ``bench.md``.
"""
from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

#: The configurations, in report order: name -> how the child builds its separator.
CONFIGS: dict[str, dict] = {
    "plain": {"kind": "plain", "label": "plain eager (batch 32 items, STFT per target)"},
    "torch-noopt": {"kind": "kit", "backend": "torch", "share_stem": False, "fold_bn": False,
                    "label": "torch, STFT once per window, 1 item per call"},
    "torch-share": {"kind": "kit", "backend": "torch", "share_stem": True, "fold_bn": False,
                    "label": "+ shared condition-free stem"},
    "torch": {"kind": "kit", "backend": "torch", "share_stem": True, "fold_bn": True,
              "label": "+ conv-BatchNorm folding (kit's torch backend)"},
    "torchscript": {"kind": "kit", "backend": "torchscript", "label": "TorchScript artifact"},
    "onnx": {"kind": "kit", "backend": "onnx", "label": "ONNX Runtime artifact (CPU provider)"},
    "openvino": {"kind": "kit", "backend": "openvino", "label": "OpenVINO artifact (CPU plugin, fp32)"},
    "openvino-bf16": {"kind": "kit", "backend": "openvino", "precision": "bf16",
                      "label": "OpenVINO, bf16 (approximate; native bf16 CPUs only)"},
    # Peers: other architectures of the same size as their published models, random weights, run
    # the way the kit runs them (their stems are not comparable with the model's: no max-abs/SDR).
    "umx-hq": {"kind": "peer", "architecture": "umx",
               "label": "peer: Open-Unmix, UMX-HQ size, random weights (niter 1)"},
    "htdemucs": {"kind": "peer", "architecture": "htdemucs",
                 "label": "peer: HTDemucs (demucs v4 default config), random weights, shifts 0"},
}
EXACT_CONFIGS = ("torch-noopt", "torch-share", "torch", "torchscript", "onnx", "openvino")
#: Backends that read the exported ONNX file.
_ONNX_BACKENDS = ("onnx", "openvino")


def _peak_rss_mib() -> float:
    """This process's peak RSS. VmHWM, not ru_maxrss: Linux carries ru_maxrss across exec, so a
    child would inherit the parent's peak."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _geometry(architecture, config):
    from separation.geometry import geometry_for

    return geometry_for(architecture.window_spec(config))


def _body(network, features, condition):
    return network.body(features if len(features) > 1 else features[0], condition)


def plain_separate(architecture, network, window, audio: np.ndarray, batch_items: int = 32) -> np.ndarray:
    """The original's pipeline shape on the kit's network: every (window, target) item on its
    own STFT, 32 items per network call, no shared stem; the architecture's windows and
    overlap weights. Returns (4, n, 2)."""
    import torch

    from core.audio import ArraySource
    from core.constants import N_SOURCES
    from models.spectral import Spectral

    cfg = network.cfg
    geo = _geometry(architecture, cfg)
    spectral = Spectral(cfg.n_fft, cfg.hop_length, window)
    source = ArraySource(audio)
    n_win = geo.n_windows(source.n_samples)
    items = [(c, k) for c in range(n_win) for k in range(N_SOURCES)]
    out = np.zeros((N_SOURCES, (n_win - 1) * geo.step + geo.kept, 2), dtype=np.float32)

    def read(c: int) -> np.ndarray:
        start = geo.window_start(c)
        w = source.read(start, start + geo.window)
        w[max(0, geo.read_stop(c, source.n_samples) - start):] = 0.0
        return w

    with torch.inference_mode():
        for first in range(0, len(items), batch_items):
            chunk = items[first:first + batch_items]
            wave = torch.from_numpy(np.stack([read(c) for c, _ in chunk]))
            cond = torch.tensor([k for _, k in chunk])
            sep = spectral.to_audio(network(spectral.to_spec(wave), cond))
            for (c, k), y in zip(chunk, sep):
                piece = y[geo.trim:geo.trim + geo.kept].numpy()
                weights = geo.weights(c, source.n_samples)
                out[k, c * geo.step:c * geo.step + geo.kept] += piece if weights is None else piece * weights[:, None]
    return out[:, :source.n_samples]


def network_gflop(architecture, config, n_frames: int) -> tuple[float, float]:
    """(stem, body) GFLOP for one item of ``n_frames`` frames, counted by torch's FlopCounterMode."""
    import torch
    from torch.utils.flop_counter import FlopCounterMode

    net = architecture.build(config).eval()
    spec = torch.zeros(1, 4, n_frames, config.n_fft // 2 + 1)
    with torch.inference_mode():
        with FlopCounterMode(display=False) as counter:
            features = net.stem(spec)
        stem = counter.get_total_flops()
        features = (features,) if isinstance(features, torch.Tensor) else tuple(features)
        with FlopCounterMode(display=False) as counter:
            _body(net, features, torch.tensor([0]))
        body = counter.get_total_flops()
    return stem / 1e9, body / 1e9


def run_child(name: str, model: str, artifacts: dict[str, str], wav: str, threads: int) -> dict:
    """Separate ``wav`` once with configuration ``name`` in this process; returns the figures.

    The stems are saved beside ``wav`` as ``<name>.npy`` for the parent to compare."""
    import torch

    from core.audio import read_mixture
    from models.checkpoint import load_checkpoint
    from separation import Separator, StageTimes, load_backend
    from separation.torch_backends import TorchBackend
    from core.audio import ArraySource

    spec = CONFIGS[name]
    torch.set_num_threads(threads)
    t0 = time.perf_counter()
    if spec["kind"] == "peer":
        separator = peer_separator(spec["architecture"], threads)
        setup = time.perf_counter() - t0
        audio = read_mixture(wav)
        times = StageTimes()
        t1 = time.perf_counter()
        stems = np.concatenate([b for _, b in separator.iter_blocks(ArraySource(audio), times=times)], axis=1)
        wall = time.perf_counter() - t1
        np.save(Path(wav).with_name(f"{name}.npy"), stems)
        return {"name": name, "wall_s": wall, "setup_s": setup, "stages_s": dict(times), "precision": "fp32",
                "shared_stem": None, "peak_rss_mib": _peak_rss_mib(), "n_samples": int(audio.shape[0]), "peer": True}
    if spec["kind"] == "plain":
        loaded = load_checkpoint(model)
        setup = time.perf_counter() - t0
        audio = read_mixture(wav)
        t1 = time.perf_counter()
        stems = plain_separate(loaded.architecture, loaded.network, loaded.window, audio)
        wall = time.perf_counter() - t1
        times = {}
        precision, share = "fp32", False
    else:
        if spec["backend"] == "torch":
            loaded = load_checkpoint(model)
            backend, window = TorchBackend(loaded.network, loaded.architecture, share_stem=spec["share_stem"],
                                           fold_bn=spec["fold_bn"]), loaded.window
        else:
            artifact = artifacts["onnx" if spec["backend"] in _ONNX_BACKENDS else spec["backend"]]
            backend, window = load_backend(artifact, spec["backend"], threads, precision=spec.get("precision", "fp32"))
        precision, share = backend.choice.precision if hasattr(backend, "choice") else "fp32", backend.share_stem
        separator = Separator(backend, window)
        setup = time.perf_counter() - t0
        audio = read_mixture(wav)
        times = StageTimes()
        t1 = time.perf_counter()
        blocks = [block for _, block in separator.iter_blocks(ArraySource(audio), times=times)]
        wall = time.perf_counter() - t1
        stems = np.concatenate(blocks, axis=1)
    np.save(Path(wav).with_name(f"{name}.npy"), stems)
    return {"name": name, "wall_s": wall, "setup_s": setup, "stages_s": dict(times), "precision": precision,
            "shared_stem": share, "peak_rss_mib": _peak_rss_mib(), "n_samples": int(audio.shape[0])}


def peer_available(architecture: str) -> str | None:
    """None when a peer can run here, else why not."""
    if architecture == "htdemucs":
        import importlib.util

        if importlib.util.find_spec("demucs") is None:
            return "the `demucs` package is not installed"
    return None


def peer_separator(architecture: str, threads: int, seed: int = 0):
    """A separator for a peer architecture at its published size, with seeded random weights."""
    import torch

    from core.constants import SAMPLE_RATE, SOURCES

    torch.manual_seed(seed)
    if architecture == "umx":
        from models.umx import UmxConfig, UmxModel, UmxNetwork
        from separation.umx_engine import UmxBackend, UmxSeparator

        networks = {t: UmxNetwork(UmxConfig()) for t in SOURCES}
        return UmxSeparator(UmxBackend(UmxModel(networks, 4096, 1024, Path("random")), threads))
    from demucs.htdemucs import HTDemucs

    from models.htdemucs import DemucsModel
    from separation.waveform_engine import DemucsBackend, WaveformSeparator

    network = HTDemucs(sources=["drums", "bass", "other", "vocals"]).eval()
    model = DemucsModel(network, tuple(network.sources), int(SAMPLE_RATE * network.segment), Path("random"))
    return WaveformSeparator(DemucsBackend(model, threads))


def _executed_gflop(result: dict, architecture, config, flops: dict) -> float:
    from core.constants import N_SOURCES

    geo = _geometry(architecture, config)
    n_frames = geo.window // config.hop_length + 1
    stem, body = flops[n_frames]
    n_win = geo.n_windows(result["n_samples"])
    n_src = N_SOURCES
    return n_win * ((stem if result["shared_stem"] else n_src * stem) + n_src * body)


def _markdown(rows: list[dict], meta: dict) -> str:
    lines = [f"# Latency benchmark ({meta['audio_s']:.0f} s stereo input, {meta['threads']} threads)", "",
             f"Machine: {meta['machine']}; torch {meta['torch']}, onnxruntime {meta['onnxruntime']}; "
             f"model `{meta['model']}` ({meta['architecture']}); {meta['when']}.", "",
             "| configuration | precision | wall (s) | RTF | peak RSS (MiB) | network GFLOP/s | speed-up vs plain "
             f"| {meta['default']} faster by | max-abs vs plain | SDR vs plain (dB) |",
             "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|"]

    def cell(value, fmt: str) -> str:
        return "—" if value is None else format(value, fmt)

    for r in rows:
        lines.append(f"| {r['label']} | {r['precision']} | {r['wall_s']:.1f} | {r['rtf']:.3f} | {r['peak_rss_mib']:.0f} | "
                     f"{cell(r['gflops'], '.0f')} | {r['speedup']:.2f}x | {cell(r['default_speedup'], '.2f')}x | "
                     f"{cell(r['max_abs_vs_plain'], '.1e')} | {cell(r['sdr_vs_plain_db'], '.1f')} |")
    lines += ["", "RTF = wall time of the separation (read to stems in memory) / audio duration; setup "
              "(model load) is not included. GFLOP/s = network FLOPs executed (torch FlopCounterMode; the "
              "shared stem counted once per window) / wall time. Each row ran in its own process, one "
              "after another, on the same input. SDR vs plain: MDX SDR of each output taking the plain "
              "path's stems as reference (mean of the four sources): exact rows sit near float32 "
              "rounding, an approximate precision shows how far it departs. "
              f"'{meta['default']} faster by': this row's wall / the {meta['default']} row's (the runtime "
              "`--backend auto` picks for the model's export on this CPU). Peer rows are other "
              "architectures with random weights at their published sizes: their stems are not the model's."]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m evaluator.bench", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("checkpoint", help="checkpoint of any supported architecture (.ckpt / .pt)")
    parser.add_argument("--seconds", type=float, default=60.0, help="input duration (default 60)")
    parser.add_argument("--configs", default=",".join(CONFIGS), help="comma-separated subset of: " + ", ".join(CONFIGS))
    parser.add_argument("--threads", type=int, default=None, help="intra-op threads (default: available CPUs)")
    parser.add_argument("--out", default=None, help="report folder (default results/bench/<timestamp>)")
    parser.add_argument("--child", default=None, help=argparse.SUPPRESS)
    parser.add_argument("--wav", default=None, help=argparse.SUPPRESS)
    parser.add_argument("--artifacts", default="{}", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)

    from separation.backends import available_cpus
    from separation.loading import choose_backend

    threads = args.threads or available_cpus()
    if args.child:
        print(json.dumps(run_child(args.child, args.checkpoint, json.loads(args.artifacts), args.wav, threads)))
        return 0

    import platform

    import onnxruntime
    import torch

    from core.audio import write_wav
    from export.exporters import export_onnx, export_torchscript
    from core.signals import parity_signal
    from models.checkpoint import load_checkpoint
    from core.constants import SAMPLE_RATE

    names = [n.strip() for n in args.configs.split(",") if n.strip()]
    unknown = [n for n in names if n not in CONFIGS]
    if unknown:
        parser.error(f"unknown configuration(s): {', '.join(unknown)}")
    model = load_checkpoint(args.checkpoint)
    arch, cfg = model.architecture, model.config
    out_dir = Path(args.out or Path("results") / "bench" / time.strftime("%Y%m%d-%H%M%S"))
    out_dir.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix="mdxkit-bench-"))
    wav = work / "input.wav"
    write_wav(wav, parity_signal(int(args.seconds * SAMPLE_RATE)))
    artifacts = {}
    native = {n: choose_backend("model.onnx", CONFIGS[n]["backend"], CONFIGS[n].get("precision", "fp32"))
              for n in names if CONFIGS[n].get("backend") in _ONNX_BACKENDS}
    lacking = [n for n, c in native.items() if c.precision != CONFIGS[n].get("precision", "fp32")]
    if lacking:
        print(f"[bench] skipping {', '.join(lacking)}: {native[lacking[0]].notes[0]}", file=sys.stderr)
        names = [n for n in names if n not in lacking]
    for n in [n for n in names if CONFIGS[n]["kind"] == "peer"]:
        why = peer_available(CONFIGS[n]["architecture"])
        if why:
            print(f"[bench] skipping {n}: {why}", file=sys.stderr)
            names.remove(n)
    if any(CONFIGS[n].get("backend") in _ONNX_BACKENDS for n in names):
        artifacts["onnx"] = str(export_onnx(model, work / "model.onnx"))
    if any(CONFIGS[n].get("backend") == "torchscript" for n in names):
        artifacts["torchscript"] = str(export_torchscript(model, work / "model.ts"))
    n_frames = _geometry(arch, cfg).window // cfg.hop_length + 1
    flops = {n_frames: network_gflop(arch, cfg, n_frames)}
    rows = []
    for name in names:
        print(f"[bench] {name}: {CONFIGS[name]['label']} ...", file=sys.stderr, flush=True)
        cmd = [sys.executable, "-m", "evaluator.bench", args.checkpoint, "--child", name, "--wav", str(wav),
               "--artifacts", json.dumps(artifacts), "--threads", str(threads)]
        res = subprocess.run(cmd, capture_output=True, text=True, cwd=Path(__file__).resolve().parents[1])
        if res.returncode != 0:
            print(res.stderr, file=sys.stderr)
            return 1
        row = json.loads(res.stdout.strip().splitlines()[-1])
        row["label"] = CONFIGS[name]["label"]
        row["rtf"] = row["wall_s"] / args.seconds
        peer = CONFIGS[name]["kind"] == "peer"
        row["gflop"] = None if peer else _executed_gflop(row, arch, cfg, flops)
        row["gflops"] = None if peer else row["gflop"] / row["wall_s"]
        rows.append(row)
        print(f"[bench] {name}: wall {row['wall_s']:.1f} s, RTF {row['rtf']:.3f}, peak RSS "
              f"{row['peak_rss_mib']:.0f} MiB", file=sys.stderr, flush=True)
    plain = next((r for r in rows if r["name"] == "plain"), rows[0])
    reference = np.load(work / f"{plain['name']}.npy")
    default_name = choose_backend("model.onnx", None, "fp32", arch.cpu_runtime).backend
    default = next((r for r in rows if r["name"] == default_name), None)
    for r in rows:
        r["speedup"] = plain["wall_s"] / r["wall_s"]
        r["default_speedup"] = r["wall_s"] / default["wall_s"] if default else None
        if r.get("peer"):
            r["max_abs_vs_plain"] = r["sdr_vs_plain_db"] = None
            continue
        stems = np.load(work / f"{r['name']}.npy")
        diff = stems - reference
        r["max_abs_vs_plain"] = float(np.abs(diff).max())
        # SDR of this output against the plain one (inf when identical): how approximate a row is.
        r["sdr_vs_plain_db"] = float(np.mean([10 * np.log10((np.sum(reference[k] ** 2) + 1e-7) / (np.sum(diff[k] ** 2) + 1e-7))
                                              for k in range(reference.shape[0])]))
    meta = {"audio_s": args.seconds, "threads": threads, "machine": f"{platform.processor() or platform.machine()}, "
            f"{os.cpu_count()} CPUs visible, {available_cpus()} usable", "torch": torch.__version__,
            "onnxruntime": onnxruntime.__version__, "model": args.checkpoint, "architecture": arch.name, "when": time.strftime("%Y-%m-%d %H:%M"),
            "gflop_per_item": {str(k): v for k, v in flops.items()}, "baseline": plain["name"],
            "default": default_name}
    (out_dir / "bench.json").write_text(json.dumps({"meta": meta, "rows": rows}, indent=2))
    md = _markdown(rows, meta)
    (out_dir / "bench.md").write_text(md)
    print(md)
    print(f"report: {out_dir / 'bench.md'}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
