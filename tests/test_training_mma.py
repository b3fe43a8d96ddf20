"""MMA band arrangements as training songs: the stem map from track names, the charts, the recipe."""
from __future__ import annotations

import shutil
from pathlib import Path

import mido
import numpy as np
import pytest

from training import mma_songs
from training.stem_map import load_stem_map

TRAINING = Path(__file__).resolve().parents[1] / "training"
# (map, --seed, --prefix, songs kept, songs left out) of each committed MMA generation
GENERATIONS = [(TRAINING / "stem_map_mma.json", 0, "mma", 80, 10),
               (TRAINING / "stem_map_mma_s1.json", 1, "mma_s1_", 95, 9)]


def _named_track(name: str, channel: int, program: int, pitches: list[int]) -> mido.MidiTrack:
    track = mido.MidiTrack([mido.MetaMessage("track_name", name=name, time=0),
                            mido.Message("program_change", channel=channel, program=program, time=0)])
    for pitch in pitches:
        track.append(mido.Message("note_on", channel=channel, note=pitch, velocity=90, time=0))
        track.append(mido.Message("note_off", channel=channel, note=pitch, velocity=0, time=96))
    return track


def test_track_names_decide_the_stems():
    assert [mma_songs.track_stem(n) for n in ("Drum-Snare", "Bass", "Walk", "Bass-Guitar", "Aria",
                                               "Chord-Piano", "Arpeggio", "Scale", "Plectrum")] \
        == ["drums", "bass", "bass", "bass", "vocals", "other", "other", "other", "other"]


def test_parts_get_their_tracks_stems_with_timpani_and_off_channel_drums_as_other():
    midi = mido.MidiFile(type=1, ticks_per_beat=96)
    midi.tracks += [_named_track("Drum-Kick", 9, 0, [36, 36]),
                    _named_track("Bass", 15, 32, [36, 38]),
                    _named_track("Bass-Timp", 12, 47, [36, 43]),
                    _named_track("Aria", 13, 56, [67, 69]),
                    _named_track("Chord-Piano", 14, 0, [60, 64]),
                    _named_track("Drum-Bells", 11, 14, [72])]
    assert mma_songs.stems_by_part(midi) == {"c9drums": "drums", "c15p32": "bass", "c12p47": "other",
                                             "c13p56": "vocals", "c14p0": "other", "c11p14": "other"}
    midi.tracks.append(_named_track("Walk", 14, 0, [40]))  # same channel and program as Chord-Piano
    with pytest.raises(mma_songs.MMAError, match="c14p0"):
        mma_songs.stems_by_part(midi)


@pytest.mark.parametrize("style", ["swing", "jazzwaltz"])
def test_song_source_is_a_whole_seeded_chart(style):
    source, settings = mma_songs.song_source(style, style.title(), np.random.default_rng(3), mma_seed=17)
    lines = source.splitlines()
    assert "RndSeed 17" in lines and f"Groove {style.title()}" in lines
    bars = [line for line in lines if line.split()[0].isdigit()]
    assert len(bars) == {"AABA": 32, "blues x3": 36}[settings["form"]]
    assert [int(b.split()[0]) for b in bars] == list(range(1, len(bars) + 1))
    beats = [float(note.split()[0]) for note in settings["rhythm"].split(";")]
    assert max(beats) < (4 if style == "jazzwaltz" else 5)  # a waltz bar has three beats
    again, _ = mma_songs.song_source(style, style.title(), np.random.default_rng(3), mma_seed=17)
    assert again == source


@pytest.mark.parametrize("path, seed, prefix, n_songs, n_left_out", GENERATIONS)
def test_committed_mma_map_is_consistent(path, seed, prefix, n_songs, n_left_out):
    data = load_stem_map(path)
    assert len(data["songs"]) == n_songs and len(data["left_out"]) == n_left_out
    assert "GPL-2" in data["source"] and "training.mma_songs" in data["prepare"]
    assert f"--seed {seed}" in data["prepare"]
    for name, entry in data["songs"].items():
        assert name.startswith(prefix) and entry["settings"]["style"] == name.split("_")[-1], name
        assert entry["split"] == "train", name
        assert entry["revoice"] and all(entry["parts"][k] == "vocals" for k in entry["revoice"])
        assert entry["review"].startswith("by construction"), name
        assert entry["settings"]["mma_seed"] == seed * 1000 + int(name[len(prefix):len(prefix) + 3])
    assert len({e["settings"]["style"] for e in data["songs"].values()}) == n_songs  # one song per style


def test_generations_share_no_song_name():
    names = [set(load_stem_map(path)["songs"]) | set(load_stem_map(path)["left_out"]) for path, *_ in GENERATIONS]
    assert not names[0] & names[1]


@pytest.mark.parametrize("path, seed, prefix, n_first", [(g[0], g[1], g[2], 12 - 6 * g[1]) for g in GENERATIONS])
def test_committed_mma_map_is_what_the_generator_makes(tmp_path, path, seed, prefix, n_first):
    if shutil.which("mma") is None or not mma_songs.MMA_STDLIB.is_dir():
        pytest.skip("MMA not installed (apt-get install mma && mma -G)")
    data = load_stem_map(path)
    # song i depends only on the songs before it, so the first ones are those of the full command
    made = mma_songs.make_collection(tmp_path, n_songs=n_first, seed=seed, prefix=prefix)
    first_ones = {f"{prefix}{i:03d}_" for i in range(n_first)}
    in_first = lambda name: name[:len(prefix) + 4] in first_ones  # noqa: E731
    assert made["songs"] == {k: v for k, v in data["songs"].items() if in_first(k)}
    assert set(made["left_out"]) == {k for k in data["left_out"] if in_first(k)}
    assert (f"--prefix {prefix}" in made["prepare"]) == (prefix != "mma")
    first = next(iter(made["songs"]))
    mma_songs.make_collection(tmp_path / "again", n_songs=1, seed=seed, prefix=prefix)  # MMA's randomness is seeded
    assert (tmp_path / "again" / f"{first}.mid").read_bytes() == (tmp_path / f"{first}.mid").read_bytes()


def test_prefix_must_be_a_file_name_part(tmp_path, capsys):
    with pytest.raises(SystemExit):
        mma_songs.main(["--out", str(tmp_path / "out"), "--map", str(tmp_path / "map.json"), "--prefix", "a/b"])
    assert "--prefix" in capsys.readouterr().err and not (tmp_path / "out").exists()


def test_missing_mma_is_reported(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(mma_songs, "MMA_STDLIB", tmp_path / "absent")
    assert mma_songs.main(["--out", str(tmp_path / "out"), "--map", str(tmp_path / "map.json")]) == 2
    assert "apt-get install mma" in capsys.readouterr().err and not (tmp_path / "map.json").exists()
    monkeypatch.setattr(mma_songs.shutil, "which", lambda name: None)
    with pytest.raises(mma_songs.MMAError, match="apt-get install mma"):
        mma_songs.run_mma("Tempo 120\n")
