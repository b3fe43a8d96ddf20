"""Dataset readers: the MDX layout and its errors, musdb (WAV and stem MP4), the stempeg excerpt."""
from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from core.audio import write_wav
from evaluator import datasets
from evaluator.datasets import DatasetError
from core.constants import SAMPLE_RATE, SOURCES
from tests.helpers import music_like

needs_ffmpeg = pytest.mark.skipif(shutil.which("ffmpeg") is None or shutil.which("ffprobe") is None,
                                  reason="ffmpeg/ffprobe not installed (CI installs them)")


def _song_folder(root: Path, name: str, n: int = 4410, stems: tuple[str, ...] = SOURCES, seed: int = 0) -> Path:
    folder = root / name
    folder.mkdir(parents=True)
    parts = {s: music_like(n, seed=seed + i) * 0.25 for i, s in enumerate(SOURCES)}
    write_wav(folder / "mixture.wav", sum(parts.values()))
    for s in stems:
        write_wav(folder / f"{s}.wav", parts[s])
    return folder


def test_mdx_layout(tmp_path):
    _song_folder(tmp_path, "b song", seed=1)
    _song_folder(tmp_path, "a song", stems=())
    (tmp_path / ".hidden").mkdir()
    data = datasets.mdx_folder(tmp_path)
    assert [s.name for s in data.songs] == ["a song", "b song"]
    a, b = data.songs
    assert not a.has_references and b.has_references
    assert b.n_samples == 4410 and b.duration_s == pytest.approx(0.1)
    refs = b.load_references()
    assert set(refs) == set(SOURCES) and refs["vocals"].dtype == np.float64
    assert np.array_equal(refs["bass"], sf.read(tmp_path / "b song" / "bass.wav", dtype="float64")[0])
    assert b.mixture_path == tmp_path.resolve() / "b song" / "mixture.wav"
    assert [s.name for s in datasets.mdx_folder(tmp_path, songs=["b song"]).songs] == ["b song"]
    with pytest.raises(DatasetError, match="not found.*c song"):
        datasets.mdx_folder(tmp_path, songs=["c song"])


@pytest.mark.parametrize("problem, message", [
    ("partial", "give all four stems or none"),
    ("no_mixture", "has no mixture.wav"),
    ("mono", "stereo"),
    ("rate", "22050 Hz"),
    ("length", "samples"),
    ("song_folder", "pass the folder that contains song folders"),
    ("empty", "no song folders"),
    ("missing", "data folder not found"),
])
def test_mdx_layout_errors(tmp_path, problem, message):
    root = tmp_path / "data"
    root.mkdir()
    if problem == "partial":
        _song_folder(root, "s", stems=("vocals", "drums"))
    elif problem == "no_mixture":
        (root / "s").mkdir()
    elif problem == "mono":
        (root / "s").mkdir()
        sf.write(root / "s" / "mixture.wav", np.zeros(100), SAMPLE_RATE)
    elif problem == "rate":
        (root / "s").mkdir()
        sf.write(root / "s" / "mixture.wav", np.zeros((100, 2)), 22050)
    elif problem == "length":
        folder = _song_folder(root, "s")
        write_wav(folder / "other.wav", np.zeros((10, 2), np.float32))
    elif problem == "song_folder":
        folder = _song_folder(root, "s")
        root = folder
    elif problem == "missing":
        root = tmp_path / "nope"
    with pytest.raises(DatasetError, match=message):
        datasets.mdx_folder(root)


def test_missing_ffmpeg_is_explained(monkeypatch, tmp_path):
    monkeypatch.setattr(shutil, "which", lambda name: None)
    with pytest.raises(DatasetError, match="apt-get install ffmpeg"):
        datasets.stempeg_excerpt(tmp_path)
    with pytest.raises(DatasetError, match="ffmpeg"):
        datasets.musdb_set(tmp_path, tmp_path / "scratch")


@needs_ffmpeg
def test_musdb_hq_wav_folders(tmp_path):
    root = tmp_path / "musdb18hq"
    _song_folder(root / "test", "Artist - Track", n=8820, seed=3)
    data = datasets.musdb_set(root, tmp_path / "scratch", subset="test", is_wav=True)
    (song,) = data.songs
    assert song.name == "Artist - Track" and song.n_samples == 8820
    assert song.prepare is None and song.mixture_path.is_file()  # read in place, nothing decoded
    refs = song.load_references()
    assert np.array_equal(refs["drums"], sf.read(root / "test" / "Artist - Track" / "drums.wav", dtype="float64")[0])
    with pytest.raises(DatasetError, match="--is-wav"):
        datasets.musdb_set(root, tmp_path / "scratch", subset="test", is_wav=False)


@needs_ffmpeg
def test_stempeg_excerpt_is_decoded_for_its_turn_only(tmp_path):
    data = datasets.stempeg_excerpt(tmp_path / "scratch")
    (song,) = data.songs
    assert song.has_references and song.duration_s > 3
    assert not song.mixture_path.exists()
    song.prepare()
    try:
        mixture, rate = sf.read(song.mixture_path, dtype="float64")
        assert rate == SAMPLE_RATE and mixture.shape == (song.n_samples, 2)
        refs = song.load_references()
        assert set(refs) == set(SOURCES)
        assert all(r.shape == mixture.shape for r in refs.values())
        # A real mix: the stems add up to (nearly) the mixture.
        residual = mixture - sum(refs.values())
        assert np.sqrt(np.mean(residual ** 2)) < 0.2 * np.sqrt(np.mean(mixture ** 2))
    finally:
        song.release()
    assert not song.mixture_path.exists()


@needs_ffmpeg
def test_musdb_stem_mp4_through_musdb(tmp_path):
    root = tmp_path / "musdb18"
    (root / "test").mkdir(parents=True)
    shutil.copy(datasets.stempeg_excerpt_path(), root / "test" / "Some Artist - Some Track.stem.mp4")
    data = datasets.musdb_set(root, tmp_path / "scratch", subset="test")
    (song,) = data.songs
    assert song.name == "Some Artist - Some Track" and song.prepare is not None
    song.prepare()
    try:
        assert song.mixture_path.is_file()
        refs = song.load_references()
        assert refs["vocals"].shape == (song.n_samples, 2)
    finally:
        song.release()
