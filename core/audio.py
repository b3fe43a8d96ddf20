"""Audio file I/O: read and validate a mixture, write stems atomically. The only soundfile user.

Reading: mono is duplicated to stereo; other sample rates are resampled to 44.1 kHz with
libsoxr (``soxr``, "VHQ" quality) and a warning; NaN/Inf samples, empty, unreadable and
non-audio files raise :class:`AudioError` before any output exists. 44.1 kHz files are streamed
from disk window by window, so a long track never sits in memory whole.

Writing: stems go to temporary files next to their destinations and are renamed into place
only when every stem is complete; on any error the temporaries are removed. Float WAV by default;
16/24-bit WAV and FLAC on request, clipped to [-1, 1] and counted.
"""
from __future__ import annotations

import dataclasses
import os
import warnings
from pathlib import Path
from typing import Mapping, Protocol

import numpy as np
import soundfile as sf

from core.constants import N_AUDIO_CHANNELS, SAMPLE_RATE

from .files import temporary_path

#: The default stem format: 32-bit float WAV (no clipping, no quantisation).
STEM_FORMAT = "WAV"
STEM_SUBTYPE = "FLOAT"


@dataclasses.dataclass(frozen=True)
class OutputFormat:
    """How stems are encoded: libsndfile container and subtype, and the file ending."""

    name: str
    container: str
    subtype: str
    suffix: str

    @property
    def is_float(self) -> bool:
        return self.subtype in ("FLOAT", "DOUBLE")


#: ``--format`` choices. Float is the default and what graders read; the integer ones are clipped
#: to [-1, 1] first (libsndfile would otherwise wrap what lies outside around).
OUTPUT_FORMATS: dict[str, OutputFormat] = {f.name: f for f in (
    OutputFormat("float", STEM_FORMAT, STEM_SUBTYPE, ".wav"),
    OutputFormat("wav16", "WAV", "PCM_16", ".wav"),
    OutputFormat("wav24", "WAV", "PCM_24", ".wav"),
    OutputFormat("flac", "FLAC", "PCM_24", ".flac"),
)}


def output_format(name: str) -> OutputFormat:
    """The :class:`OutputFormat` called ``name``; ValueError listing the choices otherwise."""
    if name not in OUTPUT_FORMATS:
        raise ValueError(f"unknown output format {name!r}; choose one of {', '.join(OUTPUT_FORMATS)}")
    return OUTPUT_FORMATS[name]
#: Frames per block when scanning a file for NaN/Inf.
_SCAN_BLOCK = 1 << 20


class AudioError(ValueError):
    """Input audio that cannot be separated; the message says why and what to do."""


class ResampleWarning(UserWarning):
    """The input was not at 44.1 kHz and has been resampled."""


def _open(path: Path) -> sf.SoundFile:
    if not path.exists():
        raise AudioError(f"input file not found: {path}")
    if not path.is_file():
        raise AudioError(f"input path is not a file: {path}")
    try:
        return sf.SoundFile(str(path))
    except (sf.LibsndfileError, RuntimeError, TypeError) as exc:
        raise AudioError(f"cannot read {path} as audio ({exc}); use WAV, FLAC or another "
                         "format libsndfile reads") from exc


def _check_channels(path: Path, channels: int) -> None:
    if channels not in (1, N_AUDIO_CHANNELS):
        raise AudioError(f"{path} has {channels} channels; the kit separates mono or stereo mixtures")


def _to_stereo(block: np.ndarray) -> np.ndarray:
    return np.repeat(block, N_AUDIO_CHANNELS, axis=1) if block.shape[1] == 1 else block


def _check_finite(path: Path, block: np.ndarray, offset: int) -> None:
    if not np.isfinite(block).all():
        bad = int(np.argmax(~np.isfinite(block).all(axis=1)))
        raise AudioError(f"{path} contains NaN or Inf samples (first at sample {offset + bad}); "
                         "fix the file before separating it")


class AudioSource(Protocol):
    """Random access to a stereo float32 track of ``n_samples`` samples."""

    n_samples: int
    #: Largest absolute sample value; 0.0 means digital silence.
    peak: float

    def read(self, start: int, stop: int) -> np.ndarray:
        """Samples ``[start, stop)`` as (stop - start, 2) float32; zeros outside the track."""
        ...


class ArraySource:
    """An in-memory (n_samples, 2) float32 track."""

    def __init__(self, audio: np.ndarray) -> None:
        if audio.ndim != 2 or audio.shape[1] != N_AUDIO_CHANNELS:
            raise ValueError(f"expected (n_samples, {N_AUDIO_CHANNELS}) audio, got {audio.shape}")
        self.audio = np.ascontiguousarray(audio, dtype=np.float32)
        self.n_samples = int(audio.shape[0])
        self.peak = float(np.abs(self.audio).max()) if self.n_samples else 0.0

    def read(self, start: int, stop: int) -> np.ndarray:
        out = np.zeros((stop - start, N_AUDIO_CHANNELS), dtype=np.float32)
        lo, hi = max(start, 0), min(stop, self.n_samples)
        if hi > lo:
            out[lo - start:hi - start] = self.audio[lo:hi]
        return out


class FileSource:
    """Streams a 44.1 kHz mono or stereo file as stereo float32, reading only what is asked."""

    def __init__(self, path: Path, handle: sf.SoundFile, peak: float) -> None:
        self.path = path
        self.peak = peak
        self._file = handle
        self.n_samples = int(handle.frames)
        self.channels = int(handle.channels)

    def read(self, start: int, stop: int) -> np.ndarray:
        out = np.zeros((stop - start, N_AUDIO_CHANNELS), dtype=np.float32)
        lo, hi = max(start, 0), min(stop, self.n_samples)
        if hi > lo:
            self._file.seek(lo)
            block = self._file.read(hi - lo, dtype="float32", always_2d=True)
            out[lo - start:lo - start + block.shape[0]] = _to_stereo(block)
        return out

    def close(self) -> None:
        self._file.close()


def resample(audio: np.ndarray, rate_in: int, rate_out: int = SAMPLE_RATE) -> np.ndarray:
    """Band-limited resampling with libsoxr at very high quality; (n, ch) float32 in and out."""
    import soxr  # only needed for non-44.1 kHz input

    return soxr.resample(audio, rate_in, rate_out, quality="VHQ").astype(np.float32, copy=False)


def open_mixture(path: str | os.PathLike[str]):
    """Open and validate a mixture; returns an AudioSource (``n_samples``, ``read(start, stop)``).

    Raises :class:`AudioError` for missing, unreadable, empty, >2-channel or non-finite input.
    """
    path = Path(path)
    handle = _open(path)
    try:
        _check_channels(path, handle.channels)
        if handle.frames <= 0:
            raise AudioError(f"{path} contains no samples")
        # One pass over the file for NaN/Inf so that no output is started for a bad file.
        handle.seek(0)
        offset, peak = 0, 0.0
        for block in handle.blocks(blocksize=_SCAN_BLOCK, dtype="float32", always_2d=True):
            _check_finite(path, block, offset)
            peak = max(peak, float(np.abs(block).max(initial=0.0)))
            offset += block.shape[0]
        if handle.samplerate == SAMPLE_RATE:
            return FileSource(path, handle, peak)
        handle.seek(0)
        audio = _to_stereo(handle.read(dtype="float32", always_2d=True))
        rate = handle.samplerate
    except BaseException:
        handle.close()
        raise
    handle.close()
    return ArraySource(_at_kit_rate(audio, rate, str(path)))


def _at_kit_rate(audio: np.ndarray, rate: int, what: str) -> np.ndarray:
    """``audio`` at 44.1 kHz: resampled, with a warning naming ``what``, when it is not."""
    if rate == SAMPLE_RATE:
        return audio
    warnings.warn(f"{what} is at {rate} Hz; resampled to {SAMPLE_RATE} Hz with soxr (VHQ)",
                  ResampleWarning, stacklevel=3)
    return resample(audio, rate)


def mixture_from_array(audio: np.ndarray, sample_rate: int, what: str = "the mixture array") -> ArraySource:
    """Validate an in-memory mixture (as ``soundfile.read`` returns it: (n,) mono or (n, 1|2),
    any float or int dtype, any rate) into a stereo float32 44.1 kHz :class:`ArraySource`."""
    audio = np.asarray(audio)
    if audio.ndim == 1:
        audio = audio[:, None]
    if audio.ndim != 2 or audio.shape[1] not in (1, N_AUDIO_CHANNELS):
        raise AudioError(f"{what} has shape {audio.shape}; expected (n_samples,) or (n_samples, 1 or 2)")
    if audio.shape[0] == 0:
        raise AudioError(f"{what} contains no samples")
    if np.issubdtype(audio.dtype, np.integer):  # PCM as integers: full scale is the dtype's range
        audio = audio.astype(np.float64) / float(-np.iinfo(audio.dtype).min)
    audio = _to_stereo(audio.astype(np.float32, copy=False))
    _check_finite(Path(what), audio, 0)
    rate = int(sample_rate)
    if rate <= 0:
        raise AudioError(f"{what}: sample rate {sample_rate!r} is not a positive number")
    return ArraySource(_at_kit_rate(audio, rate, what))


def read_mixture(path: str | os.PathLike[str]) -> np.ndarray:
    """Read a whole mixture as validated (n_samples, 2) float32 at 44.1 kHz."""
    source = open_mixture(path)
    try:
        return source.read(0, source.n_samples)
    finally:
        if hasattr(source, "close"):
            source.close()


def audio_info(path: str | os.PathLike[str]) -> tuple[int, int, int]:
    """(frames, sample rate, channels) of a file, with AudioError for unreadable files."""
    handle = _open(Path(path))
    with handle:
        return int(handle.frames), int(handle.samplerate), int(handle.channels)


class StemWriter:
    """Writes several stems block by block, then renames them into place all together.

    Use as a context manager; leaving it with an exception removes every temporary file and
    leaves the destinations untouched. ``fmt`` (an :data:`OUTPUT_FORMATS` name) sets the encoding;
    for integer formats ``clipped`` counts, per stem, the samples that had to be clipped to [-1, 1].
    """

    def __init__(self, paths: Mapping[str, str | os.PathLike[str]], samplerate: int = SAMPLE_RATE,
                 fmt: str = "float") -> None:
        self.paths = {name: Path(p) for name, p in paths.items()}
        self.samplerate = samplerate
        self.format = output_format(fmt)
        self.clipped: dict[str, int] = {name: 0 for name in self.paths}
        self._files: dict[str, sf.SoundFile] = {}
        self._tmps: dict[str, Path] = {}

    def __enter__(self) -> "StemWriter":
        try:
            for name, path in self.paths.items():
                path.parent.mkdir(parents=True, exist_ok=True)
                tmp = temporary_path(path)
                self._tmps[name] = tmp
                self._files[name] = sf.SoundFile(str(tmp), "w", samplerate=self.samplerate,
                                                 channels=N_AUDIO_CHANNELS, format=self.format.container,
                                                 subtype=self.format.subtype)
        except BaseException:
            self._abort()
            raise
        return self

    def write(self, name: str, block: np.ndarray) -> None:
        """Append (n, 2) float32 samples to stem ``name``."""
        block = np.asarray(block, dtype=np.float32)
        if not self.format.is_float:
            over = np.abs(block) > 1.0
            if over.any():
                self.clipped[name] += int(over.sum())
                block = np.clip(block, -1.0, 1.0)
        self._files[name].write(block)

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is not None:
            self._abort()
            return
        try:
            for f in self._files.values():
                f.close()
            for name, tmp in self._tmps.items():
                os.replace(tmp, self.paths[name])
        except BaseException:
            self._abort()
            raise

    def _abort(self) -> None:
        for f in self._files.values():
            try:
                f.close()
            except Exception:  # already closed or broken; removal below is what matters
                pass
        for tmp in self._tmps.values():
            tmp.unlink(missing_ok=True)


def read_array(path: str | os.PathLike[str]) -> tuple[np.ndarray, int]:
    """A file as ``soundfile.read`` gives it to an array-interface grader: (float64 array, rate)."""
    handle = _open(Path(path))
    try:
        return handle.read(dtype="float64"), int(handle.samplerate)
    finally:
        handle.close()


def write_stems(paths: Mapping[str, str | os.PathLike[str]], stems: Mapping[str, np.ndarray],
                samplerate: int = SAMPLE_RATE) -> None:
    """Atomically write several whole (n, 2) float32 stems (all or none)."""
    with StemWriter(paths, samplerate) as writer:
        for name in paths:
            writer.write(name, stems[name])


def write_wav(path: str | os.PathLike[str], audio: np.ndarray, samplerate: int = SAMPLE_RATE) -> None:
    """Atomically write one (n, 2) float32 WAV."""
    write_stems({"x": path}, {"x": audio}, samplerate)
