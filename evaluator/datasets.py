"""Datasets the evaluator runs on, all seen through one small interface (:class:`Song`).

* MDX layout: ``DIR/<song>/mixture.wav`` plus ``bass/drums/other/vocals.wav`` when references
  exist (the grader's test folder).
* MUSDB18 (``.stem.mp4``) and MUSDB18-HQ (``--is-wav``) through the ``musdb`` package.
* The real four-stem excerpt shipped inside the ``stempeg`` package (decoded with ffmpeg).
* The kit's synthetic demo set (:mod:`evaluator.demo`), written in the MDX layout.

The predictor only ever sees ``<input root>/<song>/mixture.wav``, exactly as on the grader.
Songs whose mixture is not a WAV file on disk (stem MP4s) are decoded into a scratch folder
just before their turn and removed afterwards.
"""
from __future__ import annotations

import dataclasses
import os
import shutil
import sys
from pathlib import Path
from typing import Callable

import numpy as np

from core.constants import N_AUDIO_CHANNELS, SAMPLE_RATE, SOURCES

MIXTURE = "mixture"


class DatasetError(ValueError):
    """A dataset that cannot be evaluated; the message says what is wrong and what to do."""


@dataclasses.dataclass
class Song:
    """One song: its name, its length and how to get its mixture file and references.

    ``input_root`` is the folder the predictor reads ``<name>/mixture.wav`` from;
    ``prepare`` (when set) creates that file first and ``release`` removes it afterwards.
    ``load_references`` returns ``{source: (n, 2) float64}`` or is None (no references).
    ``source_file`` is the file the song comes from (the mixture, or the stem MP4); its hash
    tells a resumed run whether the input is still the one that was separated.
    """

    name: str
    n_samples: int
    input_root: Path
    load_references: Callable[[], dict[str, np.ndarray]] | None = None
    prepare: Callable[[], None] | None = None
    release: Callable[[], None] | None = None
    source_file: Path | None = None

    def __post_init__(self) -> None:
        if self.source_file is None:
            self.source_file = self.mixture_path

    @property
    def duration_s(self) -> float:
        return self.n_samples / SAMPLE_RATE

    @property
    def mixture_path(self) -> Path:
        return self.input_root / self.name / f"{MIXTURE}.wav"

    @property
    def has_references(self) -> bool:
        return self.load_references is not None

    def load_mixture(self) -> np.ndarray:
        """The mixture as (n, 2) float64 (call between ``prepare`` and ``release``)."""
        return read_float64(self.mixture_path)


@dataclasses.dataclass
class Dataset:
    """A named list of songs and what identifies it (for reports and resume checks)."""

    kind: str
    description: str
    identity: dict
    songs: list[Song]


def read_float64(path: Path) -> np.ndarray:
    """A WAV file as (n, channels) float64, the way the starter kit's scoring reads it."""
    import soundfile as sf

    audio, _ = sf.read(str(path), dtype="float64", always_2d=True)
    return audio


def _info(path: Path) -> tuple[int, int, int]:
    from core.audio import AudioError, audio_info

    try:
        return audio_info(path)
    except AudioError as exc:
        raise DatasetError(str(exc)) from exc


def _check_mixture(path: Path) -> int:
    frames, rate, channels = _info(path)
    if rate != SAMPLE_RATE or channels != N_AUDIO_CHANNELS:
        raise DatasetError(f"{path} is {rate} Hz with {channels} channel(s); MDX data is {SAMPLE_RATE} Hz "
                           f"stereo, and the grader compares stems sample by sample with it. Convert it first "
                           f"(e.g. ffmpeg -i IN -ar {SAMPLE_RATE} -ac 2 mixture.wav)")
    if frames <= 0:
        raise DatasetError(f"{path} contains no samples")
    return frames


def _filter(names: list[str], wanted: list[str] | None, where: str) -> list[str]:
    if not wanted:
        return names
    unknown = [w for w in wanted if w not in names]
    if unknown:
        raise DatasetError(f"song(s) not found in {where}: {', '.join(unknown)}")
    return [n for n in names if n in wanted]


# ---------------------------------------------------------------------- MDX layout
def mdx_folder(root: str | os.PathLike[str], songs: list[str] | None = None, kind: str = "mdx") -> Dataset:
    """``root/<song>/mixture.wav`` (+ the four stems as references when all are present)."""
    root = Path(root).expanduser().resolve()
    if not root.is_dir():
        raise DatasetError(f"data folder not found: {root}")
    if (root / f"{MIXTURE}.wav").is_file():
        raise DatasetError(f"{root} holds a mixture.wav itself; pass the folder that contains song "
                           f"folders (here: {root.parent})")
    folders = sorted(p.name for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))
    folders = _filter(folders, songs, str(root))
    if not folders:
        raise DatasetError(f"no song folders in {root}; expected {root}/<song>/mixture.wav")
    out = []
    for name in folders:
        folder = root / name
        mixture = folder / f"{MIXTURE}.wav"
        if not mixture.is_file():
            raise DatasetError(f"{folder} has no mixture.wav (every song folder needs one)")
        frames = _check_mixture(mixture)
        present = [s for s in SOURCES if (folder / f"{s}.wav").is_file()]
        if present and len(present) < len(SOURCES):
            missing = sorted(set(SOURCES) - set(present))
            raise DatasetError(f"{folder} has references for {', '.join(sorted(present))} but not "
                               f"{', '.join(missing)}; give all four stems or none")
        loader = None
        if present:
            for s in SOURCES:
                ref_frames, rate, channels = _info(folder / f"{s}.wav")
                if (ref_frames, rate, channels) != (frames, SAMPLE_RATE, N_AUDIO_CHANNELS):
                    raise DatasetError(f"{folder / f'{s}.wav'} is {ref_frames} samples, {rate} Hz, "
                                       f"{channels} ch; the mixture is {frames} samples, {SAMPLE_RATE} Hz, stereo")
            loader = _wav_references(folder)
        out.append(Song(name, frames, root, loader))
    n_refs = sum(s.has_references for s in out)
    description = f"MDX layout {root} ({len(out)} songs, {n_refs} with references)"
    return Dataset(kind, description, {"kind": kind, "root": str(root)}, out)


def _wav_references(folder: Path) -> Callable[[], dict[str, np.ndarray]]:
    return lambda: {s: read_float64(folder / f"{s}.wav") for s in SOURCES}


def demo(root: str | os.PathLike[str], songs: list[str] | None = None) -> Dataset:
    """The synthetic demo set at ``root``, generated first when absent or stale."""
    from evaluator.demo import ensure_demo_set

    if ensure_demo_set(root):
        print(f"[evaluator] generated the synthetic demo set in {root}", file=sys.stderr, flush=True)
    data = mdx_folder(root, songs, kind="demo")
    data.description = f"synthetic demo set {Path(root).resolve()} ({len(data.songs)} generated songs)"
    return data


# ---------------------------------------------------------------------- ffmpeg-decoded sets
def require_ffmpeg(what: str) -> None:
    """Raise a :class:`DatasetError` that says how to install ffmpeg when it is missing."""
    missing = [tool for tool in ("ffmpeg", "ffprobe") if shutil.which(tool) is None]
    if missing:
        raise DatasetError(f"{what} needs {' and '.join(missing)} on PATH to decode stem files: "
                           "apt-get install ffmpeg (Debian/Ubuntu), brew install ffmpeg (macOS) or "
                           "conda install -c conda-forge ffmpeg")


def _decoded_song(name: str, n_samples: int, scratch: Path, source_file: Path,
                  decode: Callable[[], dict[str, np.ndarray]], has_refs: bool) -> Song:
    """A song whose mixture is decoded to ``scratch/<name>/mixture.wav`` for its turn only."""
    from core.audio import write_wav

    cache: dict[str, np.ndarray] = {}
    song = Song(name, n_samples, scratch, source_file=Path(source_file))

    def prepare() -> None:
        cache.update(decode())
        song.n_samples = int(cache[MIXTURE].shape[0])  # the decoded length is the one that counts
        write_wav(song.mixture_path, cache[MIXTURE].astype(np.float32))

    def references() -> dict[str, np.ndarray]:
        if not cache:
            cache.update(decode())
        return {s: cache[s] for s in SOURCES}

    def release() -> None:
        cache.clear()
        shutil.rmtree(song.mixture_path.parent, ignore_errors=True)

    song.prepare, song.release = prepare, release
    song.load_references = references if has_refs else None
    return song


def musdb_set(root: str | os.PathLike[str], scratch: Path, subset: str = "test", is_wav: bool = False,
              songs: list[str] | None = None) -> Dataset:
    """MUSDB18 (stem MP4s) or MUSDB18-HQ (``is_wav``) tracks of ``subset`` via ``musdb``."""
    require_ffmpeg("MUSDB18 through musdb")  # musdb imports stempeg, which needs ffmpeg even for WAV
    import musdb

    root = Path(root).expanduser().resolve()
    if not (root / subset).is_dir():
        raise DatasetError(f"{root / subset} not found; --musdb ROOT must contain train/ and test/ folders")
    db = musdb.DB(root=str(root), subsets=subset, is_wav=is_wav)
    tracks = {t.name: t for t in db.tracks}
    if not tracks:
        hint = "" if is_wav else " (for MUSDB18-HQ's WAV folders add --is-wav)"
        raise DatasetError(f"no tracks found in {root / subset}{hint}")
    names = _filter(sorted(tracks), songs, f"{root / subset}")
    out = []
    for name in names:
        track = tracks[name]
        if is_wav:
            frames = _check_mixture(Path(track.path))
            out.append(Song(name, frames, root / subset, _musdb_references(track)))
        else:
            out.append(_decoded_song(name, _musdb_frames(track), scratch, Path(track.path), _musdb_decoder(track),
                                     True))
    variant = "MUSDB18-HQ" if is_wav else "MUSDB18"
    return Dataset("musdb", f"{variant} {subset} at {root} ({len(out)} tracks)",
                   {"kind": "musdb", "root": str(root), "subset": subset, "is_wav": is_wav}, out)


def _musdb_frames(track) -> int:
    frames = int(track.samples)
    if int(round(track.rate)) != SAMPLE_RATE:
        raise DatasetError(f"{track.path} is at {track.rate} Hz; MDX data is {SAMPLE_RATE} Hz")
    return frames


def _musdb_decoder(track) -> Callable[[], dict[str, np.ndarray]]:
    def decode() -> dict[str, np.ndarray]:
        audio = {MIXTURE: np.asarray(track.audio, dtype=np.float64)}
        for s in SOURCES:
            audio[s] = np.asarray(track.targets[s].audio, dtype=np.float64)
        n = audio[MIXTURE].shape[0]
        # AAC streams of one file may differ by a few samples; the grader's length is the mixture's.
        return {k: _fit_length(v, n) for k, v in audio.items()}
    return decode


def _musdb_references(track) -> Callable[[], dict[str, np.ndarray]]:
    def load() -> dict[str, np.ndarray]:
        return {s: read_float64(Path(track.sources[s].path)) for s in SOURCES}
    return load


def _fit_length(audio: np.ndarray, n: int) -> np.ndarray:
    if audio.shape[0] >= n:
        return audio[:n]
    return np.concatenate([audio, np.zeros((n - audio.shape[0], audio.shape[1]))])


def stempeg_excerpt_path() -> Path:
    """The four-stem MP4 excerpt that ships inside the ``stempeg`` package."""
    import importlib.util

    spec = importlib.util.find_spec("stempeg")
    if spec is None or not spec.submodule_search_locations:
        raise DatasetError("the stempeg package is not installed (pip install -r requirements.txt)")
    folder = Path(list(spec.submodule_search_locations)[0]) / "data"
    found = sorted(folder.glob("*.stem.mp4"))
    if not found:
        raise DatasetError(f"no .stem.mp4 excerpt found in {folder}")
    return found[0]


def stempeg_excerpt(scratch: Path) -> Dataset:
    """The real four-stem excerpt inside ``stempeg`` (a few seconds of a MUSDB18 track)."""
    require_ffmpeg("the stempeg excerpt")
    import musdb
    import stempeg
    import yaml

    path = stempeg_excerpt_path()
    # The stream order of NI stem files, as musdb defines it (mixture, drums, bass, other, vocals).
    with open(Path(musdb.__path__[0]) / "configs" / "mus.yaml") as f:
        stem_ids = yaml.safe_load(f)["stem_ids"]
    name = path.name[: -len(".stem.mp4")]

    def decode() -> dict[str, np.ndarray]:
        stems, rate = stempeg.read_stems(str(path), dtype=np.float64)
        if int(rate) != SAMPLE_RATE:
            raise DatasetError(f"{path} decoded at {rate} Hz; expected {SAMPLE_RATE}")
        return {key: np.asarray(stems[index], dtype=np.float64) for key, index in stem_ids.items()}

    info = stempeg.Info(str(path))
    n_samples = int(info.samples(stem_ids[MIXTURE]))
    song = _decoded_song(name, n_samples, scratch, path, decode, True)
    return Dataset("stempeg", f"stempeg excerpt {path.name} (1 real song, {song.duration_s:.1f} s)",
                   {"kind": "stempeg", "file": path.name}, [song])
