"""ONNX and TorchScript exports: parity on the spot, metadata, backends, and the reference wavs."""
from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import onnx
import pytest
import soundfile as sf
import torch

from models.artifact import METADATA_KEY, ArtifactError
from export.exporters import export_onnx, export_torchscript
from export.parity import ParityError, check_artifact
from models.checkpoint import LoadedModel, load_checkpoint
from core.constants import SOURCES
from models.optimize import fold_batchnorm
from separation import Separator, backend_for_path, load_backend, load_separator
from separation.torch_backends import TorchBackend
from tests.helpers import REPO_ROOT, TINY_CONFIG, music_like

EXPORTERS = {"onnx": export_onnx, "ts": export_torchscript}


@pytest.fixture()
def tiny_model(tiny_ckpt):
    return load_checkpoint(tiny_ckpt)


def test_batchnorm_folding_keeps_outputs(tiny_model):
    net = tiny_model.network
    folded = fold_batchnorm(net)
    spec = torch.randn(2, 4, 32, TINY_CONFIG.n_bins)
    cond = torch.tensor([1, 3])
    with torch.inference_mode():
        want, got = net(spec, cond), folded(spec, cond)
    assert (got - want).abs().max().item() <= 1e-4 * max(1.0, want.abs().max().item())
    n_bn = lambda m: sum(isinstance(x, torch.nn.BatchNorm2d) for x in m.modules())  # noqa: E731
    assert n_bn(folded) < n_bn(net)


@pytest.mark.parametrize("suffix", ["onnx", "ts"])
def test_export_parity_and_metadata(tmp_path, tiny_model, suffix):
    path = EXPORTERS[suffix](tiny_model, tmp_path / f"m.{suffix}")
    report = check_artifact(tiny_model, path)
    assert report.audio_max_abs <= 1e-5 and report.spec_max_abs <= 5e-4
    backend, window = load_backend(path)
    assert backend.config == TINY_CONFIG and np.array_equal(window, tiny_model.window.numpy())
    assert backend.metadata["sources"] == list(SOURCES) and backend.metadata["sample_rate"] == 44100


@pytest.mark.parametrize("suffix,runtime", [("onnx", "onnx"), ("onnx", "openvino"), ("ts", "torchscript")])
def test_artifacts_have_dynamic_batch_and_time(tmp_path, tiny_model, suffix, runtime):
    path = EXPORTERS[suffix](tiny_model, tmp_path / f"m.{suffix}")
    backend, _ = load_backend(path, runtime)
    reference = TorchBackend(tiny_model.network)
    for n_windows, n_frames in [(1, 16), (3, 48), (2, TINY_CONFIG.num_frame)]:
        spec = torch.randn(n_windows, 4, n_frames, TINY_CONFIG.n_bins).numpy()
        got, want = backend.separate_spec(spec), reference.separate_spec(spec)
        assert got.shape == (n_windows, 4, 4, n_frames, TINY_CONFIG.n_bins) and got.dtype == np.float32
        assert np.abs(got - want).max() <= 5e-4


@pytest.mark.parametrize("suffix", ["onnx", "ts"])
def test_artifact_separates_like_the_checkpoint(tmp_path, tiny_model, suffix):
    path = EXPORTERS[suffix](tiny_model, tmp_path / f"m.{suffix}")
    audio = music_like(40000)
    want = Separator(TorchBackend(tiny_model.network), tiny_model.window).separate(audio)
    got = load_separator(path).separate(audio)
    for s in SOURCES:
        assert np.abs(got[s] - want[s]).max() <= 1e-5


def test_parity_failure_is_loud(tmp_path, tiny_model, tiny_network):
    path = export_onnx(tiny_model, tmp_path / "m.onnx")
    with torch.no_grad():
        tiny_network.last_conv[0].bias.add_(0.5)  # a different model than the artifact's

    changed = LoadedModel(tiny_model.config, tiny_network, tiny_model.window, "changed", "lightning")
    with pytest.raises(ParityError, match="exceeds tolerance"):
        check_artifact(changed, path)


def test_artifacts_without_metadata_are_refused(tmp_path, tiny_model):
    path = export_onnx(tiny_model, tmp_path / "m.onnx")
    proto = onnx.load(str(path))
    del proto.metadata_props[:]
    onnx.save(proto, str(tmp_path / "bare.onnx"))
    with pytest.raises(ArtifactError, match="no mdxkit.json metadata"):
        load_backend(tmp_path / "bare.onnx")
    (tmp_path / "junk.onnx").write_bytes(b"junk")
    with pytest.raises(ValueError, match="not an ONNX model"):
        load_backend(tmp_path / "junk.onnx")
    (tmp_path / "junk.ts").write_bytes(b"junk")
    with pytest.raises(ValueError, match="not a TorchScript artifact"):
        load_backend(tmp_path / "junk.ts")


def test_backend_is_chosen_from_the_file_ending():
    assert [backend_for_path(p) for p in ("a.ckpt", "b.pt", "c.ts", "d.onnx")] == \
        ["torch", "torch", "torchscript", "onnx"]
    with pytest.raises(ValueError, match="--backend"):
        backend_for_path("model.bin")


def test_export_cli_writes_both_formats(tmp_path, tiny_ckpt):
    res = subprocess.run([sys.executable, "-m", "export", str(tiny_ckpt), "--format", "all",
                          "--out", str(tmp_path / "art")], cwd=REPO_ROOT, capture_output=True, text=True)
    assert res.returncode == 0, res.stderr
    assert "parity: spectrogram max-abs" in res.stdout
    meta = json.loads({p.key: p.value for p in onnx.load(str(tmp_path / "art" / "tiny.onnx")).metadata_props}[METADATA_KEY])
    assert meta["window_samples"] == TINY_CONFIG.window_samples and meta["n_fft"] == TINY_CONFIG.n_fft
    assert (tmp_path / "art" / "tiny.ts").is_file()


def test_exported_reference_model_matches_expected_wavs(reference_dir, tmp_path):
    """The issue's acceptance check: both artifacts reproduce the original's stems within 1e-5."""
    res = subprocess.run([sys.executable, "-m", "export", str(reference_dir / "lightsaft_small_random.ckpt"),
                          "--out", str(tmp_path / "art")], cwd=REPO_ROOT, capture_output=True, text=True)
    assert res.returncode == 0, res.stderr
    for suffix, backend in (("onnx", "onnx"), ("onnx", "openvino"), ("ts", "torchscript")):
        out = tmp_path / backend
        res = subprocess.run([sys.executable, "predict.py", "separate", str(reference_dir / "mixture.wav"),
                              "--checkpoint", str(tmp_path / "art" / f"lightsaft_small_random.{suffix}"),
                              "--out", str(out), "--quiet", "--backend", backend], cwd=REPO_ROOT,
                             capture_output=True, text=True)
        assert res.returncode == 0, res.stderr
        for s in SOURCES:
            got, _ = sf.read(out / "mixture" / f"{s}.wav", dtype="float32")
            want, _ = sf.read(reference_dir / f"expected_{s}.wav", dtype="float32")
            assert np.abs(got - want).max() <= 1e-5, (backend, s)
