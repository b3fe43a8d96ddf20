"""Every registered architecture through the kit's one interface: detection, geometry, artifacts,
and the whole ``predict.py separate`` pipeline against each original's own stems.

Criteria are the fixtures' (``models.registry.ParityCriteria``): LightSAFT and LaSAFT v1 stems
within 1e-5 max-abs; LASAFT-Net-v2 (sensitive to float32 rounding) within 5e-3 max-abs and 1e-4
RMS of the difference.
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch

from core.constants import KIT_VERSION, SOURCES
from models.artifact import ArtifactError, build_metadata, parse_metadata
from models.checkpoint import CheckpointError, load_checkpoint
from models.registry import ARCHITECTURES, get
from separation.geometry import HalfOverlapGeometry, geometry_for
from tests.helpers import TINY_CONFIG, require

#: Fixture checkpoint of each architecture, relative to ../shared/reference.
FIXTURES = {"lightsaft": "lightsaft_small_random.ckpt",
            "lasaft_v1": "lasaft_v1_large/lasaft_v1_large_random.ckpt",
            "lasaft_v2": "lasaft_v2_light/lasaft_v2_light_random.ckpt"}


def fixture(reference_dir: Path, name: str) -> Path:
    return require(reference_dir / FIXTURES[name], f"{name} reference checkpoint")


def assert_stems_match(out: Path, expected_dir: Path, architecture: str) -> dict[str, tuple[float, float]]:
    """Each stem in ``out`` against ``expected_dir/expected_<source>.wav``; returns (max-abs, RMS)."""
    criteria = get(architecture).criteria
    found = {}
    for source in SOURCES:
        got, rate = sf.read(out / f"{source}.wav", dtype="float32")
        want, _ = sf.read(expected_dir / f"expected_{source}.wav", dtype="float32")
        assert rate == 44100 and got.shape == want.shape, source
        diff = got.astype(np.float64) - want
        found[source] = (float(np.abs(diff).max()), float(np.sqrt(np.mean(diff ** 2))))
        assert found[source][0] <= criteria.stems_max_abs, (architecture, source, found[source])
        if criteria.stems_rms is not None:
            assert found[source][1] <= criteria.stems_rms, (architecture, source, found[source])
    return found


def test_every_architecture_is_registered():
    assert set(ARCHITECTURES) == {"lightsaft", "lasaft_v1", "lasaft_v2", "umx", "htdemucs"}


@pytest.mark.parametrize("name", sorted(FIXTURES))
def test_checkpoints_say_what_they_hold(reference_dir, name):
    loaded = load_checkpoint(fixture(reference_dir, name))
    assert loaded.architecture.name == name
    assert type(loaded.network).architecture_name == name


def test_unknown_architecture_names_what_was_found(tmp_path):
    path = tmp_path / "other.ckpt"
    torch.save({"state_dict": {"encoder.weight": torch.zeros(3)}, "hyper_parameters": {"width": 3}}, path)
    with pytest.raises(CheckpointError) as info:
        load_checkpoint(path)
    text = str(info.value)
    assert "matches no architecture" in text and "encoder.weight" in text and "width" in text
    assert all(name in text for name in ARCHITECTURES)


def _metadata(**changes) -> str:
    doc = json.loads(build_metadata(get("lightsaft"), TINY_CONFIG, torch.hann_window(512), "test"))
    doc.update(changes)
    return json.dumps(doc)


def test_artifact_metadata_round_trips():
    architecture, config, window, doc = parse_metadata(_metadata(), "a.onnx")
    assert architecture.name == "lightsaft" and config == TINY_CONFIG and window.shape == (512,)
    assert doc["kit_version"] == KIT_VERSION


def test_artifacts_of_a_newer_kit_or_unknown_architecture_are_refused():
    with pytest.raises(ArtifactError, match="newer than this kit"):
        parse_metadata(_metadata(kit_version="99.0.0"), "a.onnx")
    with pytest.raises(ArtifactError, match="unknown architecture 'demucs9'.*lightsaft"):
        parse_metadata(_metadata(architecture="demucs9"), "a.onnx")


def test_artifacts_of_the_first_kit_version_load_as_lightsaft():
    doc = json.loads(_metadata())
    doc.pop("architecture")
    doc["kit_version"] = "0.1.0"
    assert parse_metadata(json.dumps(doc), "old.onnx")[0].name == "lightsaft"


# ---------------------------------------------------------------------- LASAFT-Net-v2 windows
V2 = HalfOverlapGeometry(window=130_048, trim=5_120)


def test_half_overlap_numbers_are_the_originals():
    assert (V2.kept, V2.step) == (119_808, 59_904)
    assert V2.n_windows(529_200) == 8  # the fixture's 12 s
    assert V2.n_windows(1) == 1  # the original makes none below kept - step samples; we make one


def test_half_overlap_weights_equal_the_originals_mask(reference_dir):
    """Window #1's output mask as the original's SingleTrackSet built it (spec_io.pt)."""
    spec_io = torch.load(fixture(reference_dir, "lasaft_v2").parent / "spec_io.pt", weights_only=True)
    mask = spec_io["window1_output_mask"].numpy()  # (window, 2): 0 on the trims, 0.5 / 1 inside
    ours = np.zeros(V2.window, dtype=np.float32)
    ours[V2.trim:V2.trim + V2.kept] = V2.weights(1, 529_200)
    assert np.array_equal(ours, mask[:, 0]) and np.array_equal(mask[:, 0], mask[:, 1])


@pytest.mark.parametrize("n_samples", [1_000, 119_808, 200_000, 529_200, 1_000_003])
def test_half_overlap_weights_tile_the_track(n_samples):
    """Weights sum to one on every sample, except where the original's case (c) double-counts."""
    total = np.zeros(n_samples)
    quirk = False
    for c in range(V2.n_windows(n_samples)):
        start = c * V2.step
        piece = V2.weights(c, n_samples)[:max(0, n_samples - start)]
        total[start:start + len(piece)] += piece
        quirk |= V2.read_stop(c, n_samples) < n_samples
    if quirk:
        assert np.isin(total, [1.0, 1.5]).all()
    else:
        assert np.allclose(total, 1.0)


# ---------------------------------------------------------------------- whole pipeline
def _separate(checkpoint: Path, out: Path) -> None:
    import predict

    mixture = checkpoint.parent / "mixture.wav" if (checkpoint.parent / "mixture.wav").is_file() else \
        checkpoint.parent.parent / "mixture.wav"
    assert predict.main(["separate", str(mixture), "--checkpoint", str(checkpoint), "--out", str(out), "--quiet"]) == 0


@pytest.mark.slow
def test_lasaft_v1_separates_like_its_original(reference_dir, tmp_path):
    ckpt = fixture(reference_dir, "lasaft_v1")
    _separate(ckpt, tmp_path)
    assert_stems_match(tmp_path / "mixture", ckpt.parent, "lasaft_v1")


@pytest.mark.slow
def test_lasaft_v2_separates_like_its_original(reference_dir, tmp_path):
    ckpt = fixture(reference_dir, "lasaft_v2")
    _separate(ckpt, tmp_path)
    assert_stems_match(tmp_path / "mixture", ckpt.parent, "lasaft_v2")


@pytest.mark.slow
def test_lasaft_v2_artifacts_separate_like_its_original(reference_dir, tmp_path):
    """``python -m export`` (with its own parity check), then each artifact through ``separate``."""
    import export.__main__ as export_cli

    ckpt = fixture(reference_dir, "lasaft_v2")
    assert export_cli.main([str(ckpt), "--out", str(tmp_path / "art"), "--name", "v2"]) == 0
    for suffix, backend in (("onnx", "onnx"), ("onnx", "openvino"), ("ts", "torchscript")):
        _separate_file(reference_dir / "mixture.wav", tmp_path / "art" / f"v2.{suffix}", tmp_path / backend, backend)
        assert_stems_match(tmp_path / backend / "mixture", ckpt.parent, "lasaft_v2")


@pytest.mark.slow
def test_lasaft_v1_on_openvino_separates_like_its_original(reference_dir, tmp_path):
    """OpenVINO, when asked, runs an exported LaSAFT v1 within the original's criteria (auto picks
    ONNX Runtime for v1: OpenVINO measured 2.2x slower there)."""
    from export.exporters import export_onnx

    ckpt = fixture(reference_dir, "lasaft_v1")
    path = export_onnx(load_checkpoint(ckpt), tmp_path / "v1.onnx")
    _separate_file(reference_dir / "mixture.wav", path, tmp_path / "ov", "openvino")
    assert_stems_match(tmp_path / "ov" / "mixture", ckpt.parent, "lasaft_v1")


def _separate_file(mixture: Path, model: Path, out: Path, backend: str = "auto") -> None:
    import predict

    assert predict.main(["separate", str(mixture), "--checkpoint", str(model), "--out", str(out), "--quiet",
                         "--backend", backend]) == 0


def _tiny(architecture: str):
    """A tiny random member of ``architecture``'s family, as a LoadedModel."""
    from models.checkpoint import LoadedModel
    from tests.helpers import random_network

    if architecture == "lightsaft":
        net = random_network()
    elif architecture == "lasaft_v1":
        from models.lasaft_v1 import LaSAFTNet

        torch.manual_seed(0)
        net = LaSAFTNet(TINY_CONFIG).eval()
    else:
        from models.lasaft_v2.config import LasaftV2Config
        from models.lasaft_v2.network import LasaftV2Net

        cfg = LasaftV2Config(**TINY_V2)
        torch.manual_seed(0)
        net = LasaftV2Net(cfg).eval()
    return LoadedModel(net.cfg, net, torch.hann_window(net.cfg.n_fft), "tiny", "lightning",
                       architecture=get(architecture))


#: A small LASAFT-Net-v2 (the v2_light layout at a fraction of its size).
TINY_V2 = dict(n_fft=512, hop_length=256, num_frame=64, internal_channels=4, n_blocks=5, n_internal_layers=2,
               embedding_dim=8, min_bn_units=4, num_tdfs=3, dk=4)


@pytest.mark.parametrize("architecture", ["lightsaft", "lasaft_v1", "lasaft_v2"])
@pytest.mark.parametrize("runtime", ["onnx", "openvino", "torchscript"])
def test_every_architecture_exports_with_parity(tmp_path, architecture, runtime):
    """Exported artifacts of each architecture load through the registry and separate like the eager
    model on every runtime that reads them."""
    from export.exporters import export_onnx, export_torchscript
    from export.parity import check_artifact
    from separation import Separator, load_backend
    from separation.torch_backends import TorchBackend
    from tests.helpers import music_like

    model = _tiny(architecture)
    suffix = "ts" if runtime == "torchscript" else "onnx"
    path = (export_onnx if suffix == "onnx" else export_torchscript)(model, tmp_path / f"m.{suffix}")
    check_artifact(model, path, runtime)
    backend, window = load_backend(path, runtime)
    assert backend.name == runtime
    assert backend.architecture.name == architecture and backend.config == model.config
    audio = music_like(70_000, seed=4)
    want = Separator(TorchBackend(model.network, model.architecture), model.window).separate(audio)
    got = Separator(backend, window).separate(audio)
    for source in SOURCES:
        assert np.abs(got[source] - want[source]).max() <= 1e-4, source


def test_onnx_weights_in_external_files_are_refused(tmp_path):
    """An ONNX file whose weights live in other files is never followed out of its folder."""
    import onnx

    from export.exporters import export_onnx
    from separation import load_backend

    path = export_onnx(_tiny("lightsaft"), tmp_path / "m.onnx")
    proto = onnx.load(str(path))
    onnx.save_model(proto, str(tmp_path / "ext.onnx"), save_as_external_data=True, all_tensors_to_one_file=True,
                    location="weights.bin", size_threshold=0)
    with pytest.raises(ValueError, match="external files"):
        load_backend(tmp_path / "ext.onnx")
