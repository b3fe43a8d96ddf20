"""The synthetic demo set: deterministic, exact mixtures, plausible parts, atomic MDX layout."""
from __future__ import annotations

import json

import numpy as np
import pytest
import soundfile as sf

from evaluator.demo import (MANIFEST_NAME, demo_set_is_current, ensure_demo_set, make_demo_song, midi_to_hz,
                            song_seed, write_demo_set)
from core.constants import SAMPLE_RATE, SOURCES


@pytest.fixture(scope="module")
def song() -> dict[str, np.ndarray]:
    return make_demo_song(11, 8.0)


def test_song_shapes_and_exact_mixture(song):
    assert set(song) == set(SOURCES) | {"mixture"}
    n = int(round(8.0 * SAMPLE_RATE))
    for name, audio in song.items():
        assert audio.shape == (n, 2) and audio.dtype == np.float32, name
        assert np.isfinite(audio).all()
    total = np.zeros_like(song["mixture"])
    for name in SOURCES:
        total = total + song[name]
    assert np.array_equal(total, song["mixture"])  # bit for bit, in SOURCES order
    assert np.abs(song["mixture"]).max() <= 0.95 + 1e-6


def test_deterministic_per_seed(song):
    again = make_demo_song(11, 8.0)
    assert all(np.array_equal(song[k], again[k]) for k in song)
    other = make_demo_song(12, 8.0)
    assert not np.array_equal(song["mixture"], other["mixture"])


def test_every_part_is_audible(song):
    for name in SOURCES:
        rms = float(np.sqrt(np.mean(song[name].astype(np.float64) ** 2)))
        assert rms > 0.01, f"{name} is nearly silent (rms {rms})"


def _frame_rms(audio: np.ndarray, frame_s: float = 0.1) -> np.ndarray:
    mono = audio.astype(np.float64).mean(axis=1)
    hop = int(frame_s * SAMPLE_RATE)
    n = len(mono) // hop
    return np.sqrt((mono[: n * hop].reshape(n, hop) ** 2).mean(axis=1))


def test_bass_stays_low():
    # The fundamental of every bass note lies below MIDI 48 (C3, 130.8 Hz): in every 0.1-s frame
    # with sound, the strongest spectral peak is below that.
    bass = make_demo_song(3, 6.0)["bass"].astype(np.float64).mean(axis=1)
    hop = int(0.1 * SAMPLE_RATE)
    limit = midi_to_hz(48)
    checked = 0
    for start in range(0, len(bass) - 8192, hop):
        frame = bass[start:start + 8192] * np.hanning(8192)
        if np.sqrt(np.mean(frame ** 2)) < 1e-3:
            continue
        spectrum = np.abs(np.fft.rfft(frame))
        peak_hz = np.argmax(spectrum) * SAMPLE_RATE / 8192
        assert peak_hz < limit, f"bass peak at {peak_hz:.1f} Hz"
        checked += 1
    assert checked > 20


def test_vocals_sing_in_phrases_with_rests():
    # Long songs have at least one rest of a bar or more, and the lead is voiced (pitched)
    # somewhere in the singing range when it sings.
    vocals = make_demo_song(5, 24.0)["vocals"]
    loud = _frame_rms(vocals) > 1e-3
    assert 0.2 < loud.mean() < 0.95
    quiet_runs = np.diff(np.flatnonzero(np.diff(np.concatenate([[1], loud.astype(int), [1]])) != 0))
    assert quiet_runs.size and quiet_runs.max() >= 10  # >= 1 s of rest somewhere
    mono = vocals.astype(np.float64).mean(axis=1)
    start = int(np.argmax(_frame_rms(vocals) > 1e-2)) * int(0.1 * SAMPLE_RATE)
    frame = mono[start:start + 8192] * np.hanning(8192)
    peak_hz = np.argmax(np.abs(np.fft.rfft(frame))) * SAMPLE_RATE / 8192
    assert 80 < peak_hz < 3000


def test_bad_arguments_are_refused():
    with pytest.raises(ValueError, match="seed"):
        make_demo_song(-1, 3.0)
    with pytest.raises(ValueError, match="duration"):
        make_demo_song(0, 0.0)


def test_write_demo_set_layout_and_resume(tmp_path):
    root = tmp_path / "demo"
    folders = write_demo_set(root, n_songs=2, seed=7, duration_range_s=(2.0, 3.0))
    assert [f.name for f in folders] == ["synthetic-00", "synthetic-01"]
    manifest = json.loads((root / MANIFEST_NAME).read_text())
    assert manifest["synthetic"] is True and manifest["n_songs"] == 2
    assert "SYNTHETIC" in (root / "README.txt").read_text()
    assert not [p for p in root.rglob("*") if ".tmp-" in p.name]
    for index, folder in enumerate(folders):
        info = manifest["songs"][folder.name]
        assert 2.0 <= info["duration_s"] <= 3.0
        want = make_demo_song(song_seed(7, index), info["duration_s"])
        for name in ("mixture",) + SOURCES:
            audio, rate = sf.read(folder / f"{name}.wav", dtype="float32")
            assert rate == SAMPLE_RATE
            assert np.array_equal(audio, want[name]), (folder.name, name)
    assert demo_set_is_current(root, 2, 7, (2.0, 3.0))
    (folders[1] / "drums.wav").unlink()  # an incomplete set is not current
    assert not demo_set_is_current(root, 2, 7, (2.0, 3.0))


def test_ensure_demo_set_generates_once(tmp_path):
    assert ensure_demo_set(tmp_path / "d", n_songs=1, seed=1, duration_range_s=(1.0, 1.5)) is True
    stamp = (tmp_path / "d" / "synthetic-00" / "mixture.wav").stat().st_mtime_ns
    assert ensure_demo_set(tmp_path / "d", n_songs=1, seed=1, duration_range_s=(1.0, 1.5)) is False
    assert (tmp_path / "d" / "synthetic-00" / "mixture.wav").stat().st_mtime_ns == stamp
