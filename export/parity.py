"""Output parity of an exported artifact against the eager model it came from.

The tolerances are the architecture's own (:class:`models.registry.ParityCriteria`, from the
reference fixtures' READMEs); audio tolerances scale up only for outputs louder than full scale.

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
from core.signals import parity_signal


class ParityError(AssertionError):
    """An artifact whose outputs differ from the eager model beyond tolerance."""


@dataclasses.dataclass
class ParityReport:
    spec_max_abs: float
    spec_peak: float
    audio_max_abs: float
    audio_peak: float
    audio_rms: float = 0.0

    def __str__(self) -> str:
        return (f"parity: spectrogram max-abs {self.spec_max_abs:.2e} (peak {self.spec_peak:.1f}), "
                f"audio max-abs {self.audio_max_abs:.2e} (peak {self.audio_peak:.3f}, RMS diff {self.audio_rms:.1e})")


def check_artifact(model: LoadedModel, path: str | os.PathLike[str], backend: str | None = None) -> ParityReport:
    """Compare ``path``, run by ``backend`` (default: the one ``auto`` picks), with the eager ``model``;
    raises :class:`ParityError` past tolerance."""
    from models.spectral import Spectral
    from separation import load_backend
    from separation.torch_backends import TorchBackend

    cfg = model.config
    criteria = model.architecture.criteria
    spectral = Spectral(cfg.n_fft, cfg.hop_length, model.window)
    audio = torch.from_numpy(parity_signal(model.architecture.window_spec(cfg).window))[None]
    artifact, window = load_backend(path, backend)
    if not np.array_equal(window, model.window.numpy()):
        raise ParityError(f"{path}: the embedded STFT window differs from the checkpoint's")
    with torch.inference_mode():
        spec = spectral.to_spec(audio).numpy()
        want = torch.from_numpy(TorchBackend(model.network, model.architecture, fold_bn=False).separate_spec(spec)[0])
        got = torch.from_numpy(artifact.separate_spec(spec)[0])
        want_audio = spectral.to_audio(want)
        got_audio = spectral.to_audio(got)
    report = ParityReport(
        spec_max_abs=float((got - want).abs().max()), spec_peak=float(want.abs().max()),
        audio_max_abs=float((got_audio - want_audio).abs().max()), audio_peak=float(want_audio.abs().max()),
        audio_rms=float((got_audio - want_audio).pow(2).mean().sqrt()))
    spec_tol = max(criteria.spec_abs, criteria.artifact_spec_rel * report.spec_peak)
    loudness = max(1.0, report.audio_peak)
    audio_tol = criteria.stems_max_abs * loudness
    rms_tol = criteria.stems_rms * loudness if criteria.stems_rms is not None else float("inf")
    if not (report.spec_max_abs <= spec_tol and report.audio_max_abs <= audio_tol and report.audio_rms <= rms_tol):
        raise ParityError(f"{path}: {report} exceeds tolerance (spectrogram {spec_tol:.1e}, audio {audio_tol:.1e}, "
                          f"audio RMS {rms_tol:.1e})")
    return report
