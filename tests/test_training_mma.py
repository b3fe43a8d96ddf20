"""MMA band arrangements as training songs: the stem map from track names, the charts, the recipe."""
from __future__ import annotations

import shutil
from pathlib import Path

import mido
import numpy as np
import pytest

from training import mma_songs
from training.stem_map import load_stem_map

MMA_MAP = Path(__file__).resolve().parents[1] / "training" / "stem_map_mma.json"


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


def test_committed_mma_map_is_consistent():
    data = load_stem_map(MMA_MAP)
    assert len(data["songs"]) == 80 and len(data["left_out"]) == 10
    assert "GPL-2" in data["source"] and "training.mma_songs" in data["prepare"]
    for name, entry in data["songs"].items():
        assert entry["split"] == "train", name
        assert entry["revoice"] and all(entry["parts"][k] == "vocals" for k in entry["revoice"])
        assert entry["review"].startswith("by construction"), name
    assert len({e["settings"]["style"] for e in data["songs"].values()}) == 80  # one song per style


def test_committed_mma_map_is_what_the_generator_makes(tmp_path):
    if shutil.which("mma") is None or not mma_songs.MMA_STDLIB.is_dir():
        pytest.skip("MMA not installed (apt-get install mma && mma -G)")
    data = load_stem_map(MMA_MAP)
    # song i depends only on the songs before it, so the first twelve are those of --songs 90
    made = mma_songs.make_collection(tmp_path, n_songs=12, seed=0)
    names = [f"mma{i:03d}_" for i in range(12)]
    committed_songs = {k: v for k, v in data["songs"].items() if k[:7] in names}
    committed_left_out = {k for k in data["left_out"] if k[:7] in names}
    assert made["songs"] == committed_songs and set(made["left_out"]) == committed_left_out
    first = next(iter(made["songs"]))
    mma_songs.make_collection(tmp_path / "again", n_songs=1, seed=0)  # MMA's randomness is seeded
    assert (tmp_path / "again" / f"{first}.mid").read_bytes() == (tmp_path / f"{first}.mid").read_bytes()


def test_missing_mma_is_reported(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(mma_songs, "MMA_STDLIB", tmp_path / "absent")
    assert mma_songs.main(["--out", str(tmp_path / "out"), "--map", str(tmp_path / "map.json")]) == 2
    assert "apt-get install mma" in capsys.readouterr().err and not (tmp_path / "map.json").exists()
    monkeypatch.setattr(mma_songs.shutil, "which", lambda name: None)
    with pytest.raises(mma_songs.MMAError, match="apt-get install mma"):
        mma_songs.run_mma("Tempo 120\n")
