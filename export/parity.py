"""Output parity of an exported artifact against the eager model it came from.

The check separates one full window of a deterministic test signal (tones, a sweep and noise,
at the model's real window length) with the eager checkpoint and with the artifact, all four
targets, and compares the raw spectrograms and the separated audio.
"""
from __future__ import annotations

import dataclasses
import os

import numpy as np
import torch

from models.checkpoint import LoadedModel
from models.constants import SAMPLE_RATE

#: The reference fixture's float32 criteria: spectrogram within 5e-4 or 2e-5 x its peak,
#: audio within 1e-5 (scaled up only for outputs louder than full scale).
SPEC_ABS_TOL = 5e-4
SPEC_REL_TOL = 2e-5
AUDIO_TOL = 1e-5


class ParityError(AssertionError):
    """An artifact whose outputs differ from the eager model beyond tolerance."""


@dataclasses.dataclass
class ParityReport:
    spec_max_abs: float
    spec_peak: float
    audio_max_abs: float
    audio_peak: float

    def __str__(self) -> str:
        return (f"parity: spectrogram max-abs {self.spec_max_abs:.2e} (peak {self.spec_peak:.1f}), "
                f"audio max-abs {self.audio_max_abs:.2e} (peak {self.audio_peak:.3f})")


def parity_signal(n_samples: int, seed: int = 2021) -> np.ndarray:
    """Deterministic stereo signal with harmonic, swept and noisy parts, peak 0.9."""
    rng = np.random.default_rng(seed)
    t = np.arange(n_samples) / SAMPLE_RATE
    bass = np.sin(2 * np.pi * 55 * t) + 0.5 * np.sin(2 * np.pi * 110 * t)
    voice = sum(np.sin(2 * np.pi * k * (440 + 8 * np.sin(2 * np.pi * 5 * t)) * t) / k for k in (1, 2, 3))
    sweep = np.sin(2 * np.pi * (200 + 1500 * t / t[-1]) * t)
    noise = rng.standard_normal((n_samples, 2)) * np.exp(-((t % 0.5) / 0.05))[:, None]
    audio = np.stack([bass + 0.7 * voice + 0.3 * sweep, 0.8 * bass + 0.5 * voice - 0.3 * sweep], 1) + 0.3 * noise
    return (0.9 * audio / np.abs(audio).max()).astype(np.float32)


def check_artifact(model: LoadedModel, path: str | os.PathLike[str]) -> ParityReport:
    """Compare ``path`` with the eager ``model``; raises :class:`ParityError` past tolerance."""
    from separation import load_backend
    from separation.backends import TorchBackend
    from models.spectral import Spectral

    cfg = model.config
    spectral = Spectral(cfg.n_fft, cfg.hop_length, model.window)
    audio = torch.from_numpy(parity_signal(cfg.window_samples))[None]
    artifact, window = load_backend(path)
    if not torch.equal(window, model.window):
        raise ParityError(f"{path}: the embedded STFT window differs from the checkpoint's")
    with torch.inference_mode():
        spec = spectral.to_spec(audio)
        want = TorchBackend(model.network, fold_bn=False).separate_spec(spec)[0]
        got = artifact.separate_spec(spec)[0]
        want_audio = spectral.to_audio(want)
        got_audio = spectral.to_audio(got)
    report = ParityReport(
        spec_max_abs=float((got - want).abs().max()), spec_peak=float(want.abs().max()),
        audio_max_abs=float((got_audio - want_audio).abs().max()), audio_peak=float(want_audio.abs().max()))
    spec_tol = max(SPEC_ABS_TOL, SPEC_REL_TOL * report.spec_peak)
    audio_tol = AUDIO_TOL * max(1.0, report.audio_peak)
    if not (report.spec_max_abs <= spec_tol and report.audio_max_abs <= audio_tol):
        raise ParityError(f"{path}: {report} exceeds tolerance (spectrogram {spec_tol:.1e}, audio {audio_tol:.1e})")
    return report
