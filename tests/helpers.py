"""Helpers shared by the tests: paths, a tiny model configuration, generated audio."""
from __future__ import annotations

import os
from pathlib import Path

import mido
import numpy as np
import pytest
import torch

from models.config import LightSAFTConfig
from models.lightsaft import LightSAFTNet

REPO_ROOT = Path(__file__).resolve().parents[1]
REFERENCE_DIR = Path(os.getenv("MDX_REFERENCE_DIR", REPO_ROOT.parent / "shared" / "reference"))
REFERENCE_CKPT = REFERENCE_DIR / "lightsaft_small_random.ckpt"

#: A small member of the LightSAFT family: runs in milliseconds, same code paths.
TINY_CONFIG = LightSAFTConfig(n_fft=512, hop_length=256, num_frame=128, n_blocks=5,
                              internal_channels=4, n_internal_layers=2, num_tdfs=3, dk=8,
                              embedding_dim=8, bn_factor=8, min_bn_units=4, control_n_layer=3)


def exact_geometry(cfg, architecture: str = "lightsaft"):
    """The exact window geometry of ``architecture`` for ``cfg``."""
    from models.registry import get
    from separation.geometry import geometry_for

    return geometry_for(get(architecture).window_spec(cfg))


def require(path: Path, what: str = "reference fixture") -> Path:
    """``path`` if it exists; else the test is skipped with a reason, or fails when CI=true."""
    if not path.exists():
        msg = f"{what} not found: {path} (expected ../shared/reference beside the repo)"
        if os.getenv("CI") == "true":
            pytest.fail(msg + "; CI must have it")
        pytest.skip(msg)
    return path


def randomize(module: torch.nn.Module, seed: int = 0, weight_scale: float = 0.5) -> torch.nn.Module:
    """Random weights (N(0, weight_scale) for matrices, N(0, 0.1) for vectors) and non-trivial
    BatchNorm statistics, in eval mode."""
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in module.parameters():
            p.copy_(torch.randn(p.shape, generator=gen) * (weight_scale if p.dim() > 1 else 0.1))
        for m in module.modules():
            if isinstance(m, (torch.nn.BatchNorm1d, torch.nn.BatchNorm2d)):
                m.running_mean.copy_(torch.randn(m.running_mean.shape, generator=gen) * 0.1)
                m.running_var.copy_(torch.rand(m.running_var.shape, generator=gen) + 0.5)
    return module.eval()


def random_network(cfg: LightSAFTConfig = TINY_CONFIG, seed: int = 0) -> LightSAFTNet:
    """A LightSAFT network with random weights and non-trivial BatchNorm statistics, in eval mode."""
    torch.manual_seed(seed)
    return randomize(LightSAFTNet(cfg), seed + 1)


def music_like(n_samples: int, seed: int = 0, sr: int = 44100) -> np.ndarray:
    """Deterministic stereo test signal: tones, a sweep and noise bursts, peak 0.8."""
    rng = np.random.default_rng(seed)
    t = np.arange(n_samples) / sr
    left = 0.3 * np.sin(2 * np.pi * 110 * t) + 0.2 * np.sin(2 * np.pi * (300 + 200 * t) * t)
    right = 0.3 * np.sin(2 * np.pi * 220 * t + 0.5) + 0.1 * rng.standard_normal(n_samples)
    audio = np.stack([left, right], axis=1)
    peak = np.abs(audio).max() or 1.0
    return (0.8 * audio / peak).astype(np.float32)


def write_stem_folder(folder: Path, n_samples: int, gain: float = 0.3) -> Path:
    """A song folder with the four stems only (no mixture file), as a training data folder holds it."""
    import soundfile as sf

    from core.constants import SOURCES

    folder.mkdir(parents=True, exist_ok=True)
    for i, source in enumerate(SOURCES):
        sf.write(str(folder / f"{source}.wav"), music_like(n_samples, seed=i) * gain, 44100, subtype="FLOAT")
    return folder


def write_midi(path: Path, parts: list[tuple[int, int | None, list[int], int]], chord_step: int = 4,
               tempo: int | None = None) -> Path:
    """A type-1 MIDI file of quarter notes, one track per part.

    A part is (channel, program or None for no program change, pitches, notes per onset); an
    onset of ``n`` notes stacks ``pitch, pitch + chord_step, ...``. ``tempo`` (us per beat) adds
    a leading meta track with that tempo.
    """
    midi = mido.MidiFile(type=1, ticks_per_beat=96)
    if tempo is not None:
        midi.tracks.append(mido.MidiTrack([mido.MetaMessage("set_tempo", tempo=tempo, time=0)]))
    for channel, program, pitches, chord in parts:
        track = mido.MidiTrack()
        if program is not None:
            track.append(mido.Message("program_change", channel=channel, program=program, time=0))
        for pitch in pitches:
            for k in range(chord):
                track.append(mido.Message("note_on", channel=channel, note=pitch + chord_step * k,
                                          velocity=90, time=0))
            for k in range(chord):
                track.append(mido.Message("note_off", channel=channel, note=pitch + chord_step * k,
                                          velocity=0, time=96 if k == 0 else 0))
        midi.tracks.append(track)
    midi.save(str(path))
    return path
