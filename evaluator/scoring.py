"""The MDX 2021 score and, optionally, BSSEval v4 (museval).

MDX SDR of one source over a whole song, every sample and both channels at once::

    SDR = 10 log10( (sum s^2 + 1e-7) / (sum (s - s_hat)^2 + 1e-7) )

A song scores the mean of its four sources; a run scores the mean over its songs. Per song
the keys are the starter kit's: ``sdr_bass, sdr_drums, sdr_other, sdr_vocals, sdr``.

Sums run in float64 over audio read as float64 (``soundfile``'s default), so the figures are
the formula's value, not a float32 approximation of it.
"""
from __future__ import annotations

from typing import Iterable, Mapping

import numpy as np

from core.constants import SAMPLE_RATE, SOURCES

#: The 1e-7 added to numerator and denominator by the official formula.
SDR_DELTA = 1e-7
#: Source order of the starter kit's scores (alphabetical).
SCORE_SOURCES: tuple[str, ...] = tuple(sorted(SOURCES))
#: Per-song keys, in the starter kit's order, and the song (mean) key.
SONG_KEY = "sdr"
SCORE_KEYS: tuple[str, ...] = tuple(f"sdr_{s}" for s in SCORE_SOURCES) + (SONG_KEY,)


class ScoringError(ValueError):
    """References and estimates that cannot be compared (missing source, shape mismatch)."""


def sdr(reference: np.ndarray, estimate: np.ndarray) -> float:
    """MDX SDR in dB of one source: (n_samples, n_channels) arrays, summed over everything."""
    reference = np.asarray(reference, dtype=np.float64)
    estimate = np.asarray(estimate, dtype=np.float64)
    if reference.shape != estimate.shape:
        raise ScoringError(f"reference {reference.shape} and estimate {estimate.shape} differ in shape")
    num = np.sum(np.square(reference)) + SDR_DELTA
    den = np.sum(np.square(reference - estimate)) + SDR_DELTA
    return float(10.0 * np.log10(num / den))


def song_scores(references: Mapping[str, np.ndarray], estimates: Mapping[str, np.ndarray]) -> dict[str, float]:
    """{source: (n, ch)} references and estimates -> ``{sdr_bass, ..., sdr_vocals, sdr}``."""
    missing = [s for s in SCORE_SOURCES if s not in references or s not in estimates]
    if missing:
        raise ScoringError(f"cannot score without {', '.join(missing)} (need reference and estimate)")
    return _song_row([sdr(references[s], estimates[s]) for s in SCORE_SOURCES])


def _song_row(per_source: list[float]) -> dict[str, float]:
    """Per-source values in SCORE_SOURCES order -> ``{sdr_<source>: v, ..., sdr: mean}``."""
    scores = {f"sdr_{s}": v for s, v in zip(SCORE_SOURCES, per_source)}
    scores[SONG_KEY] = float(np.mean(per_source))
    return scores


def mean_scores(per_song: Iterable[Mapping[str, float]]) -> dict[str, float] | None:
    """Mean over songs of every score key (the run's score); None for no songs."""
    rows = list(per_song)
    if not rows:
        return None
    return {key: float(np.mean([row[key] for row in rows])) for key in SCORE_KEYS}


# ---------------------------------------------------------------------- museval (BSSEval v4)
#: BSSEval v4 frame length and hop, in seconds (the MUSDB18 / SiSEC 2018 setting).
MUSEVAL_WINDOW_S = 1.0


def museval_song(references: Mapping[str, np.ndarray], estimates: Mapping[str, np.ndarray]) -> dict[str, float]:
    """BSSEval v4 SDR per source: the median over 1-s frames (NaN frames, silent ones, ignored).

    Keys as :func:`song_scores`; ``sdr`` is the mean of the four medians.
    """
    museval = _import_museval()
    refs = np.stack([np.asarray(references[s], dtype=np.float64) for s in SCORE_SOURCES])
    ests = np.stack([np.asarray(estimates[s], dtype=np.float64) for s in SCORE_SOURCES])
    win = int(MUSEVAL_WINDOW_S * SAMPLE_RATE)
    frames_sdr = museval.evaluate(refs, ests, win=win, hop=win, mode="v4")[0]  # (sources, frames)
    return _song_row([float(np.nanmedian(row)) if np.isfinite(row).any() else float("nan") for row in frames_sdr])


def median_scores(per_song: Iterable[Mapping[str, float]]) -> dict[str, float] | None:
    """Median over songs of every key (how MUSDB18 papers aggregate museval); None for none."""
    rows = list(per_song)
    if not rows:
        return None
    return {key: float(np.nanmedian([row[key] for row in rows])) for key in SCORE_KEYS}


def _import_museval():
    import shutil

    # museval's package imports musdb, which imports stempeg, which refuses to load without
    # ffmpeg even though the metrics never decode audio; say so instead of a deep traceback.
    if shutil.which("ffmpeg") is None or shutil.which("ffprobe") is None:
        raise ScoringError("--museval needs ffmpeg and ffprobe on PATH (museval imports musdb/stempeg, "
                           "which refuse to load without them): apt-get install ffmpeg, or brew/conda install ffmpeg")
    import museval

    return museval
