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

from models.constants import N_AUDIO_CHANNELS, SAMPLE_RATE, SOURCES


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
        return cls(folder.name, lengths.pop(), files=files)

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
        """(length, 2) float32 from ``start``; the song must be at least ``length`` long."""
        if self.arrays is not None:
            return self.arrays[stem][start:start + length]
        audio, _ = sf.read(str(self.files[stem]), start=start, stop=start + length,
                           dtype="float32", always_2d=True)
        return audio


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
        lengths = np.array([s.n_samples - crop_samples + 1 for s in usable], dtype=np.float64)
        self.weights = lengths / lengths.sum()  # every crop position equally likely

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
