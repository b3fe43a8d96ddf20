"""LaSAFT+GPoCM v1 (``lasaft_large_2020`` family) network: parity with the original's outputs.

Fixture: ../shared/reference/lasaft_v1_large (see its README.md and SPEC_ADDENDUM.md). Criteria
are the README's float32 ones: raw network output within 5e-4 max-abs (absmax 24.1 / 28.9),
conditioning intermediates (embedding, Γ, β, attention) within 1e-5. The tiny-config tests below
need no fixture; they cover the config variants the large fixture does not exercise.
"""
from __future__ import annotations

import dataclasses
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch

from models.config import ConfigError, LightSAFTConfig
from models.lasaft_v1 import LaSAFT, LaSAFTNet, is_lasaft_v1_state_dict
from models.spectral import Spectral
from tests.helpers import REFERENCE_DIR, randomize, require

SPEC_TOL = 5e-4
COND_TOL = 1e-5
STFT_TOL = 1e-4
PREFIX = "spec2spec."
WINDOW_KEY = "stft.stft.window"

V1_DIR = REFERENCE_DIR / "lasaft_v1_large"
V1_CKPT = V1_DIR / "lasaft_v1_large_random.ckpt"
V1_SPEC_IO = V1_DIR / "spec_io.pt"


# ---------------------------------------------------------------------------------- fixtures
@pytest.fixture(scope="module")
def v1_dir(reference_dir: Path) -> Path:
    """The v1 fixture folder; like ``reference_dir``: skipped when absent, a failure when CI=true."""
    for path in (V1_CKPT, V1_SPEC_IO):
        require(path, "LaSAFT v1 reference fixture")
    return V1_DIR


@pytest.fixture(scope="module")
def v1_ckpt(v1_dir: Path) -> dict:
    return torch.load(V1_CKPT, weights_only=True)


@pytest.fixture(scope="module")
def v1_config(v1_ckpt: dict) -> LightSAFTConfig:
    return LightSAFTConfig.from_hyper_parameters(v1_ckpt["hyper_parameters"])


@pytest.fixture(scope="module")
def v1_net(v1_ckpt: dict, v1_config: LightSAFTConfig) -> LaSAFTNet:
    net = LaSAFTNet(v1_config)
    state = {k[len(PREFIX):]: v for k, v in v1_ckpt["state_dict"].items() if k.startswith(PREFIX)}
    net.load_state_dict(state, strict=True)
    return net.eval()


@pytest.fixture(scope="module")
def spec_io(v1_dir: Path) -> dict:
    return torch.load(V1_SPEC_IO, weights_only=True)


@pytest.fixture(scope="module")
def small_outputs(v1_net: LaSAFTNet, spec_io: dict) -> dict:
    """The 16-frame input through ``forward`` (4 conditions) and ``forward_all_sources``."""
    with torch.inference_mode():
        per_target = v1_net(spec_io["input_spec"].expand(4, -1, -1, -1), spec_io["conditions"])
        shared = v1_net.forward_all_sources(spec_io["input_spec"])[0]
    return {"forward": per_target, "all_sources": shared}


def window_waveform(mixture: np.ndarray, cfg: LightSAFTConfig, index: int) -> np.ndarray:
    """Window ``index`` of the original SingleTrackSet windowing, (W, 2).

    ``padded = [τ zeros; mixture; p zeros; τ zeros]`` with ``p`` making the mixture a whole
    number of hops ``S = W - 2τ``; window ``c`` is ``padded[c·S : c·S + W]``.
    """
    width, trim, hop = cfg.window_samples, cfg.trim_samples, cfg.hop_samples
    n_windows = -(-len(mixture) // hop)
    pad = n_windows * hop - len(mixture)
    zeros = np.zeros((trim, mixture.shape[1]), dtype=np.float32)
    tail = np.zeros((pad + trim, mixture.shape[1]), dtype=np.float32)
    padded = np.concatenate([zeros, mixture.astype(np.float32), tail])
    return padded[index * hop:index * hop + width]


def max_abs(a: torch.Tensor, b: torch.Tensor) -> float:
    assert a.shape == b.shape, (a.shape, b.shape)
    return (a - b).abs().max().item()


# ---------------------------------------------------------------------------------- fixture parity
def test_checkpoint_structure(v1_ckpt: dict, v1_config: LightSAFTConfig, v1_net: LaSAFTNet):
    cfg = v1_config
    assert (cfg.n_fft, cfg.hop_length, cfg.num_frame, cfg.internal_channels) == (4096, 1024, 128, 24)
    assert (cfg.num_tdfs, cfg.dk, cfg.bn_factor, cfg.min_bn_units, cfg.tfc_tdf_bias) == (6, 32, 16, 16, False)
    assert sum(p.numel() for p in v1_net.parameters()) == 31_541_908
    assert len(v1_net.state_dict()) == 542  # + the STFT window = the original's 543 keys
    assert torch.equal(v1_ckpt["state_dict"][WINDOW_KEY], torch.hann_window(4096))
    # u = max(6F // 16, 16) per level: 768, 384, 192, 96 and mid 48.
    units = [blk.tdfs.bn_units for blk in list(v1_net.encoders) + [v1_net.mid_block]]
    assert units == [768, 384, 192, 96, 48]
    assert [blk.tdfs.bn_units for blk in v1_net.decoders] == [96, 192, 384, 768]


def test_output_spec_matches_original(small_outputs: dict, spec_io: dict):
    assert max_abs(small_outputs["forward"], spec_io["output_spec"]) <= SPEC_TOL


def test_forward_all_sources_matches_forward(small_outputs: dict, spec_io: dict):
    assert max_abs(small_outputs["all_sources"], small_outputs["forward"]) <= SPEC_TOL
    assert max_abs(small_outputs["all_sources"], spec_io["output_spec"]) <= SPEC_TOL


def test_conditioning_matches_original(v1_net: LaSAFTNet, spec_io: dict):
    with torch.inference_mode():
        embedding, gammas, betas = v1_net.conditioning(spec_io["conditions"])
        attention = v1_net.attentions(embedding)
    assert max_abs(embedding, spec_io["condition_embedding"]) <= COND_TOL
    assert max_abs(gammas.transpose(0, 1), spec_io["gpocm_gammas_decoder"]) <= COND_TOL
    assert max_abs(betas.transpose(0, 1), spec_io["gpocm_betas_decoder"]) <= COND_TOL
    assert max_abs(attention, spec_io["lasaft_attention"]) <= COND_TOL


@pytest.mark.slow
def test_full_window_stft_and_network(v1_net: LaSAFTNet, v1_config: LightSAFTConfig, v1_ckpt: dict,
                                      spec_io: dict, reference_dir: Path):
    """Window #1 of the real mixture through our STFT and the full 128-frame network (4 targets)."""
    import soundfile as sf

    cfg = v1_config
    mixture, sr = sf.read(reference_dir / "mixture.wav", dtype="float32")
    assert sr == 44100 and mixture.shape == (529_200, 2)
    assert (cfg.window_samples, cfg.trim_samples, cfg.hop_samples) == (130_048, 8_192, 113_664)
    waveform = window_waveform(mixture, cfg, int(spec_io["window_index"]))
    spectral = Spectral(cfg.n_fft, cfg.hop_length, v1_ckpt["state_dict"][WINDOW_KEY])
    frames = spec_io["full_window_frame_index"]
    start, stop = int(spec_io["frame_start"]), int(spec_io["frame_stop"])
    with torch.inference_mode():
        spec = spectral.to_spec(torch.from_numpy(waveform)[None])
        assert spec.shape == (1, 4, cfg.num_frame, cfg.n_bins)
        assert max_abs(spec[:, :, frames], spec_io["full_window_input_frames"]) <= STFT_TOL
        assert max_abs(spec[:, :, start:stop], spec_io["input_spec"]) <= STFT_TOL
        out = v1_net.forward_all_sources(spec)[0]
    assert max_abs(out[:, :, frames], spec_io["full_window_output_frames"]) <= SPEC_TOL


def test_state_dict_detection(v1_ckpt: dict, reference_dir: Path):
    v1_keys = list(v1_ckpt["state_dict"])
    assert is_lasaft_v1_state_dict(v1_keys)
    assert is_lasaft_v1_state_dict(k[len(PREFIX):] for k in v1_keys if k.startswith(PREFIX))
    light = torch.load(reference_dir / "lightsaft_small_random.ckpt", weights_only=True)["state_dict"]
    assert not is_lasaft_v1_state_dict(light)
    assert not is_lasaft_v1_state_dict(k[len(PREFIX):] for k in light if k.startswith(PREFIX))
    assert not is_lasaft_v1_state_dict(list(light) + v1_keys)  # mixed: not a v1 network
    v2 = reference_dir / "lasaft_v2_light" / "lasaft_v2_light_random.ckpt"
    if v2.is_file():  # LASAFT-Net-v2 has tdf.tdf.* and tfc_lightsaft.LaSIFT.*: not v1
        assert not is_lasaft_v1_state_dict(torch.load(v2, weights_only=True)["state_dict"])


# ---------------------------------------------------------------------------------- family variants
TINY_V1 = LightSAFTConfig(n_fft=256, hop_length=128, num_frame=256, n_blocks=5, internal_channels=4,
                          n_internal_layers=2, num_tdfs=3, dk=8, embedding_dim=8, bn_factor=4,
                          min_bn_units=4, control_n_layer=3)


def original_lasaft(block: LaSAFT, x: torch.Tensor, embedding: torch.Tensor) -> torch.Tensor:
    """The original ``TFC_LaSAFT.lasaft`` formula, literally, with the block's own modules."""
    query = block.linear_query(embedding)
    qk = torch.matmul(query, block.keys) / block.dk_sqrt
    value = block.tdfs.tdf(x).view(list(x.shape)[:-1] + [-1, block.n_sources])
    att = qk.softmax(-1)
    return torch.matmul(value, att.unsqueeze(-2).unsqueeze(-3).unsqueeze(-1)).squeeze(-1)


def block_config(**overrides) -> SimpleNamespace:
    """Duck-typed block config with TINY_V1's fields."""
    return SimpleNamespace(**{**dataclasses.asdict(TINY_V1), **overrides})


def test_single_layer_tdf_config_builds_v1_and_is_refused_for_lightsaft(tmp_path):
    """bn_factor None ("None" in the original's YAML) is LaSAFT v1's single-layer TDF; LightSAFT
    divides by it, so a LightSAFT checkpoint with it gets a clear error."""
    from models.checkpoint import CheckpointError, load_checkpoint, save_lightning_checkpoint
    from models.lightsaft import LightSAFTNet

    cfg = LightSAFTConfig.from_hyper_parameters({**TINY_V1.to_dict(), "bn_factor": "None"})
    assert cfg.bn_factor is None
    net = randomize(LaSAFTNet(cfg), seed=2)
    save_lightning_checkpoint(tmp_path / "v1.ckpt", net)
    loaded = load_checkpoint(tmp_path / "v1.ckpt")
    assert loaded.architecture.name == "lasaft_v1" and loaded.config.bn_factor is None
    with pytest.raises(ConfigError, match="bn_factor None"):
        LightSAFTNet(cfg)


@pytest.mark.parametrize("bn_factor, min_bn_units, bias, units", [
    (4, 4, False, 24),       # max(3*32 // 4, 4)
    (16, 10, True, 10),      # min_bn_units wins: max(96 // 16, 10); biased linears
    (None, 16, False, None),  # single Linear(F, L*F) + BN + activation
])
def test_block_variants_match_original_formula(bn_factor, min_bn_units, bias, units):
    cfg = block_config(bn_factor=bn_factor, min_bn_units=min_bn_units, tfc_tdf_bias=bias)
    n_freq, channels, n_src = 32, cfg.internal_channels, cfg.num_tdfs
    block = randomize(LaSAFT(channels, cfg, n_freq), seed=3)
    shapes = {k: tuple(v.shape) for k, v in block.state_dict().items() if k.startswith("tdfs.")}
    if units is None:
        assert shapes["tdfs.tdf.0.weight"] == (n_src * n_freq, n_freq)
        assert not any(k.startswith("tdfs.tdf.3.") for k in shapes)
    else:
        assert block.tdfs.bn_units == units
        assert shapes["tdfs.tdf.0.weight"] == (units, n_freq)
        assert shapes["tdfs.tdf.3.weight"] == (n_src * n_freq, units)
    assert ("tdfs.tdf.0.bias" in shapes) == bias
    gen = torch.Generator().manual_seed(4)
    x = torch.randn(2, channels, 8, n_freq, generator=gen)
    embedding = torch.randn(2, cfg.embedding_dim, generator=gen)
    with torch.no_grad():
        want = original_lasaft(block, x, embedding)
        fused = block.lasaft(x, block.attention(embedding))  # in-place BN inference path
    plain = block.lasaft(x, block.attention(embedding))  # autograd path (params need grad)
    assert max_abs(fused, want) <= 1e-5
    assert max_abs(plain.detach(), want) <= 1e-5


@pytest.mark.parametrize("overrides", [
    {},
    {"tfc_tdf_bias": True, "t_down_layers": (1,), "spec_est_mode": "masking", "tfc_tdf_activation": "leaky_relu"},
])
def test_tiny_network_variants(overrides):
    cfg = dataclasses.replace(TINY_V1, **overrides)
    net = randomize(LaSAFTNet(cfg), seed=1)
    state = net.state_dict()
    assert is_lasaft_v1_state_dict(state)
    LaSAFTNet(cfg).load_state_dict(state, strict=True)
    spec = torch.randn(2, 4, 16, cfg.n_bins, generator=torch.Generator().manual_seed(2))
    conditions = torch.tensor([0, 1, 2, 3])
    with torch.no_grad():
        shared = net.forward_all_sources(spec)  # (2, 4, 4, T, bins)
        per_target = torch.stack([net(spec[i:i + 1].expand(4, -1, -1, -1), conditions) for i in range(2)])
    plain = net(spec[:1].expand(4, -1, -1, -1), conditions).detach()  # autograd path
    assert shared.shape == (2, 4, 4, 16, cfg.n_bins)
    assert max_abs(shared, per_target) <= 1e-4
    assert max_abs(plain, per_target[0]) <= 1e-4
