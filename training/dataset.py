"""Random training crops from multitrack songs, mixed on the fly.

A song is four stems (``SOURCES``); the mixture of a crop is always the exact sum of its
(augmented) stems. Songs come from MDX-layout folders (``<song>/{vocals,drums,bass,other}.wav``,
read lazily crop by crop) or from memory (the kit's synthetic demo generator).
"""
from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Mapping, Sequence

import numpy as np
import soundfile as sf

from core.constants import N_AUDIO_CHANNELS, SAMPLE_RATE, SOURCES


class DatasetError(ValueError):
    """Training data that cannot be used; the message names the file or folder."""


@dataclasses.dataclass
class Augment:
    """Stem-level augmentation: random gain, random channel swap, and cross-song remixing."""

    gain_db: tuple[float, float] = (-6.0, 3.0)
    swap_probability: float = 0.5
    remix_probability: float = 0.5  # each stem from an independently drawn song and offset


class SongStems:
    """One song's stems, from files or arrays, read by sample range."""

    def __init__(self, name: str, n_samples: int, files: Mapping[str, Path] | None = None,
                 arrays: Mapping[str, np.ndarray] | None = None) -> None:
        self.name = name
        self.n_samples = n_samples
        self.files = dict(files) if files else None
        self.arrays = {s: np.asarray(arrays[s], dtype=np.float32) for s in SOURCES} if arrays else None
        #: crop positions of this song are drawn in proportion to this (see ``set_share``)
        self.weight = 1.0
        #: every stem is scaled by this on reading (see ``match_level``); the mix stays their sum
        self.gain = 1.0
        self.mixture_file: Path | None = None

    @classmethod
    def from_folder(cls, folder: Path) -> "SongStems":
        """A song folder in MDX layout; all stems must be 44.1 kHz stereo of one length."""
        files = {s: folder / f"{s}.wav" for s in SOURCES}
        missing = [f"{stem}.wav" for stem, path in files.items() if not path.is_file()]
        if missing:
            raise DatasetError(f"{folder}: missing {', '.join(missing)}")
        lengths = set()
        for path in files.values():
            info = sf.info(str(path))
            if info.samplerate != SAMPLE_RATE or info.channels != N_AUDIO_CHANNELS:
                raise DatasetError(f"{path}: {info.samplerate} Hz x {info.channels} ch, "
                                   f"expected {SAMPLE_RATE} Hz stereo")
            lengths.add(info.frames)
        if len(lengths) != 1:
            raise DatasetError(f"{folder}: stems differ in length ({sorted(lengths)})")
        song = cls(folder.name, lengths.pop(), files=files)
        mixture = folder / "mixture.wav"
        if mixture.is_file() and sf.info(str(mixture)).frames == song.n_samples:
            song.mixture_file = mixture  # the renderer's exact sum: one read instead of four
        return song

    @classmethod
    def from_arrays(cls, name: str, stems: Mapping[str, np.ndarray]) -> "SongStems":
        """In-memory stems ``{source: (n, 2)}`` (extra keys such as ``mixture`` are ignored)."""
        missing = [s for s in SOURCES if s not in stems]
        if missing:
            raise DatasetError(f"{name}: missing stems {missing}")
        lengths = {np.asarray(stems[s]).shape for s in SOURCES}
        if len(lengths) != 1 or next(iter(lengths))[1:] != (N_AUDIO_CHANNELS,):
            raise DatasetError(f"{name}: stems must share one (n, {N_AUDIO_CHANNELS}) shape, got {lengths}")
        return cls(name, next(iter(lengths))[0], arrays=stems)

    def read(self, stem: str, start: int, length: int) -> np.ndarray:
        """(length, 2) float32 from ``start``, times ``gain``; the song must be at least ``length`` long."""
        audio = self._read_as_stored(stem, start, length)
        return audio * np.float32(self.gain) if self.gain != 1.0 else audio

    def _read_as_stored(self, stem: str, start: int, length: int) -> np.ndarray:
        if self.arrays is not None:
            return self.arrays[stem][start:start + length]
        audio, _ = sf.read(str(self.files[stem]), start=start, stop=start + length,
                           dtype="float32", always_2d=True)
        return audio

    def mixture_rms(self, block: int = 1 << 20) -> float:
        """RMS of the sum of the stems over the whole song (before ``gain``)."""
        total = 0.0
        for start in range(0, self.n_samples, block):
            length = min(block, self.n_samples - start)
            if self.mixture_file is not None:
                mix, _ = sf.read(str(self.mixture_file), start=start, stop=start + length, dtype="float64",
                                 always_2d=True)
            else:
                mix = sum(self._read_as_stored(s, start, length).astype(np.float64) for s in SOURCES)
            total += float(np.sum(np.square(mix)))
        return float(np.sqrt(total / (self.n_samples * N_AUDIO_CHANNELS)))


def find_songs(roots: Sequence[Path]) -> list[SongStems]:
    """Every MDX song folder directly under each root (a root may itself be a song folder)."""
    songs = []
    for root in roots:
        root = Path(root)
        if not root.is_dir():
            raise DatasetError(f"training data folder not found: {root}")
        folders = [root] if (root / "mixture.wav").is_file() or (root / "vocals.wav").is_file() \
            else sorted(p for p in root.iterdir() if p.is_dir())
        songs.extend(SongStems.from_folder(f) for f in folders)
    return songs


def set_share(main: Sequence[SongStems], extra: Sequence[SongStems], share: float, crop_samples: int) -> None:
    """Weight ``extra``'s songs so that a fraction ``share`` of all crops comes from them.

    Positions stay equally likely within each group; without this a large added collection
    would crowd out the songs closest to the test material.
    """
    if not 0.0 < share < 1.0:
        raise DatasetError(f"the extra data's share must lie between 0 and 1, got {share}")
    main_len, extra_len = (sum(max(0, s.n_samples - crop_samples + 1) for s in group) for group in (main, extra))
    if not main_len or not extra_len:
        raise DatasetError("a share needs songs in both the main and the extra data")
    for song in main:
        song.weight = 1.0
    for song in extra:
        song.weight = share / (1.0 - share) * main_len / extra_len


def match_level(main: Sequence[SongStems], extra: Sequence[SongStems]) -> float:
    """Scale all of ``extra``'s songs by one gain that gives them ``main``'s median mixture RMS.

    The objective is a squared error, so a collection mixed 5 dB hotter would weigh about three
    times as much per crop; one gain per collection keeps its songs' own spread of levels.
    Returns the gain.
    """
    if not main or not extra:
        raise DatasetError("matching levels needs songs in both the main and the extra data")
    reference = float(np.median([s.mixture_rms() for s in main]))
    level = float(np.median([s.mixture_rms() for s in extra]))
    if reference == 0.0 or level == 0.0:
        raise DatasetError("cannot match levels: a collection is silent")
    gain = reference / level
    for song in extra:
        song.gain = gain
    return gain


class CropSampler:
    """Draws batches of random crops: stems (B, n_sources, samples, 2) and their mixture sum."""

    def __init__(self, songs: Sequence[SongStems], crop_samples: int, augment: Augment | None = None,
                 seed: int = 0) -> None:
        usable = [s for s in songs if s.n_samples >= crop_samples]
        if not usable:
            raise DatasetError(f"no song is at least {crop_samples} samples long")
        self.songs = usable
        self.crop_samples = crop_samples
        self.augment = augment
        self.rng = np.random.default_rng(seed)
        lengths = np.array([(s.n_samples - crop_samples + 1) * s.weight for s in usable], dtype=np.float64)
        self.weights = lengths / lengths.sum()  # every crop position equally likely, times the song's weight

    def _draw(self) -> tuple[SongStems, int]:
        song = self.songs[self.rng.choice(len(self.songs), p=self.weights)]
        return song, int(self.rng.integers(0, song.n_samples - self.crop_samples + 1))

    def crop(self) -> np.ndarray:
        """One crop's stems, (n_sources, samples, 2) float32, augmented when configured."""
        aug = self.augment
        song, start = self._draw()
        remix = aug is not None and self.rng.random() < aug.remix_probability
        stems = []
        for stem in SOURCES:
            if remix:
                song, start = self._draw()
            audio = song.read(stem, start, self.crop_samples)
            if aug is not None:
                audio = audio * np.float32(10 ** (self.rng.uniform(*aug.gain_db) / 20))
                if self.rng.random() < aug.swap_probability:
                    audio = audio[:, ::-1]
            stems.append(audio)
        return np.ascontiguousarray(np.stack(stems), dtype=np.float32)

    def batch(self, batch_size: int) -> tuple[np.ndarray, np.ndarray]:
        """(mixture (B, samples, 2), stems (B, n_sources, samples, 2)); mixture = stems summed."""
        stems = np.stack([self.crop() for _ in range(batch_size)])
        return stems.sum(axis=1, dtype=np.float32), stems
