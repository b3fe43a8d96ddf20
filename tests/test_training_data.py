"""The training data recipe: MIDI parts, the reviewed stem map, per-stem MIDI, mixing, crops."""
from __future__ import annotations

import json

import mido
import numpy as np
import pytest
import soundfile as sf

from core.constants import SAMPLE_RATE, SOURCES
from tests.helpers import write_midi
from training import render
from training.dataset import Augment, CropSampler, DatasetError, SongStems, find_songs
from training.midi_parts import VOCAL_STANDIN_PROGRAM, read_parts
from training.stem_map import (SPLITS, check_map, check_song, load_stem_map,
                               propose_map)


def _tiny_song(path) -> None:
    """Four bars: drums (ch 9), a bass-program line (ch 1), a lead (ch 2), pad chords (ch 3),
    and a 'bass' program (ch 4) that plays high - General MIDI lying."""
    write_midi(path, [
        (9, None, [36, 38, 42, 38] * 2, 1),
        (1, 33, [36, 40, 43, 36] * 2, 1),  # electric bass, median < 48
        (2, 0, [72, 74, 76, 77, 79, 77, 76, 74], 1),  # monophonic lead in the singing range
        (3, 48, [60, 62, 64, 60] * 2, 3),  # strings chords: polyphonic
        (4, 34, [67, 69, 71, 72] * 2, 2),  # a bass program far above C3
    ], chord_step=4, tempo=500000)


@pytest.fixture()
def tiny_midi(tmp_path):
    path = tmp_path / "tiny.mid"
    _tiny_song(path)
    return path


def _notes(midi: mido.MidiFile) -> list[tuple[int, int]]:
    return [(m.channel, m.note) for m in mido.merge_tracks(midi.tracks) if m.type == "note_on" and m.velocity]


def test_parts_and_draft_map_follow_general_midi_but_check_pitch(tiny_midi):
    parts = read_parts(tiny_midi)
    assert set(parts) == {"c9drums", "c1p33", "c2p0", "c3p48", "c4p34"}
    assert parts["c1p33"].median_pitch < 48 and parts["c4p34"].median_pitch > 60
    assert parts["c2p0"].mono_fraction == 1.0 and parts["c3p48"].max_polyphony == 3
    draft = propose_map(parts)
    assert draft["parts"] == {"c9drums": "drums", "c1p33": "bass", "c2p0": "vocals",
                              "c3p48": "other", "c4p34": "other"}
    assert draft["revoice"] == ["c2p0"]
    assert check_song("tiny", {"split": "train", **draft}, parts) == []


def test_check_song_names_each_mistake(tiny_midi):
    parts = read_parts(tiny_midi)
    entry = {"split": "train", "revoice": ["c3p48"],
             "parts": {"c9drums": "drums", "c1p33": "bass", "c2p0": "drums", "c3p48": "other",
                       "c4p34": "bass", "c7p1": "drums"}}
    problems = "\n".join(check_song("tiny", entry, parts))
    assert "median pitch" in problems  # c4p34 drags the bass stem above C3
    assert "no vocal stand-in" in problems
    assert "c7p1" in problems  # a part the song does not have
    assert "drums must be exactly the percussion channel" in problems
    assert "re-voiced part c3p48" in problems
    missing = check_song("tiny", {"split": "dev", "parts": {"c9drums": "drums"}}, parts)
    assert any("parts without a stem" in p for p in missing) and any("split" in p for p in missing)


def test_stem_midi_keeps_only_the_stem_notes_and_revoices_the_standin(tiny_midi):
    midi = mido.MidiFile(str(tiny_midi))
    draft = propose_map(read_parts(tiny_midi))
    per_stem = {s: render.stem_midi(midi, draft["parts"], s, tuple(draft["revoice"])) for s in SOURCES}
    channels = {s: {c for c, _ in _notes(m)} for s, m in per_stem.items()}
    assert channels == {"vocals": {2}, "drums": {9}, "bass": {1}, "other": {3, 4}}
    # together the stems play every note of the song exactly once
    all_notes = sorted(n for m in per_stem.values() for n in _notes(m))
    assert all_notes == sorted(_notes(midi))
    for m in per_stem.values():  # same tempo map and length everywhere
        assert m.length == pytest.approx(midi.length)
        assert any(x.type == "set_tempo" for x in m.tracks[0])
    programs = [x.program for x in per_stem["vocals"].tracks[0] if x.type == "program_change" and x.channel == 2]
    assert programs and set(programs) == {VOCAL_STANDIN_PROGRAM}
    other_programs = {x.program for x in per_stem["other"].tracks[0] if x.type == "program_change" and x.channel == 2}
    assert other_programs == {0}  # only the vocals file is re-voiced


def test_render_song_mixture_is_the_exact_sum(tiny_midi, monkeypatch):
    lengths = iter([1000, 1200, 900, 1100])

    def fake_render(midi_path, wav_path, soundfont=render.SOUNDFONT, gain=render.SYNTH_GAIN):
        # a deterministic stand-in for fluidsynth: noise scaled by the stem's note count
        n_notes = len(_notes(mido.MidiFile(str(midi_path))))
        rng = np.random.default_rng(n_notes)
        return (0.01 * n_notes * rng.standard_normal((next(lengths), 2))).astype(np.float32)

    monkeypatch.setattr(render, "fluidsynth_render", fake_render)
    draft = propose_map(read_parts(tiny_midi))
    tracks = render.render_song(tiny_midi, draft)
    assert {t.shape for t in tracks.values()} == {(1200, 2)}
    assert tracks["mixture"].dtype == np.float32
    expected = np.sum([tracks[s] for s in SOURCES], axis=0, dtype=np.float32)
    np.testing.assert_array_equal(tracks["mixture"], expected)
    accompaniment = sum(tracks[s].astype(np.float64) for s in SOURCES if s != "vocals")
    ratio = np.sqrt(np.mean(tracks["vocals"].astype(np.float64) ** 2) / np.mean(accompaniment ** 2))
    assert ratio == pytest.approx(render.VOCAL_TO_ACCOMPANIMENT_RMS, rel=1e-4)
    cut = render.excerpt(tracks, 0.005, 0.01)
    assert {t.shape for t in cut.values()} == {(441, 2)}
    with pytest.raises(render.RenderError, match="past the end"):
        render.excerpt(tracks, 0.0, 1.0)


def test_variant_transposes_pitched_notes_and_scales_the_tempo(tiny_midi, tmp_path):
    midi = mido.MidiFile(str(tiny_midi))
    varied = render.vary_midi(midi, render.Variant(-2, 0.8))
    before, after = _notes(midi), _notes(varied)
    assert len(before) == len(after)
    for (channel, note), (channel_after, note_after) in zip(before, after):
        assert channel_after == channel
        assert note_after == (note if channel == 9 else note - 2)  # the drum kit's keys are instruments
    assert varied.length == pytest.approx(midi.length / 0.8, rel=1e-4)
    # a song without a tempo event plays at MIDI's default 120 bpm, which must slow down as well
    plain = write_midi(tmp_path / "plain.mid", [(0, 0, [60, 62, 64, 65], 1)])
    plain_midi = mido.MidiFile(str(plain))
    assert render.vary_midi(plain_midi, render.Variant(0, 1.25)).length == pytest.approx(plain_midi.length / 1.25)
    assert render.vary_midi(plain_midi, render.Variant(3, 1.0)).length == pytest.approx(plain_midi.length)
    assert _notes(render.vary_midi(midi, render.Variant())) == before


def test_variant_parsing_and_folder_names():
    assert render.Variant.parse("-2:0.9") == render.Variant(-2, 0.9)
    assert render.Variant.parse("2:1.1").suffix == "_t+2_x1.10"
    assert render.Variant.parse("0:1").suffix == ""
    for bad in ("2", "a:1", "-2:0.9:1", "13:1", "0:3"):
        with pytest.raises(render.RenderError, match="variant"):
            render.Variant.parse(bad)
    with pytest.raises(SystemExit):  # a usage error from the CLI, not a traceback
        render.main(["--out", "unused", "--variant=13:1"])


def _tiny_collection(tmp_path):
    """A one-song MIDI folder and its drafted map (a training song); returns (folder, map path)."""
    midi_dir = tmp_path / "midi"
    midi_dir.mkdir()
    _tiny_song(midi_dir / "tiny.mid")
    entry = propose_map(read_parts(midi_dir / "tiny.mid"))
    entry["split"] = "train"
    stem_map = tmp_path / "map.json"
    stem_map.write_text(json.dumps({"songs": {"tiny": entry}}))
    return midi_dir, stem_map


def test_render_cli_writes_one_folder_per_variant(tmp_path, monkeypatch):
    midi_dir, stem_map = _tiny_collection(tmp_path)
    seen = []

    def fake_render(midi_path, wav_path, soundfont=render.SOUNDFONT, gain=render.SYNTH_GAIN):
        seconds = mido.MidiFile(str(midi_path)).length
        seen.append(sorted({n for c, n in _notes(mido.MidiFile(str(midi_path))) if c != 9}))
        return np.full((int(seconds * 100), 2), 0.01, dtype=np.float32)

    monkeypatch.setattr(render, "require_tools", lambda soundfont=render.SOUNDFONT: "fluidsynth")
    monkeypatch.setattr(render, "fluidsynth_render", fake_render)
    assert render.main(["--out", str(tmp_path / "out"), "--map", str(stem_map), "--midi-dir", str(midi_dir),
                        "--variant=-2:0.5", "--variant", "0:1"]) == 0
    slow, plain = (sf.info(str(tmp_path / "out" / "train" / name / "mixture.wav")).frames
                   for name in ("tiny_t-2_x0.50", "tiny"))
    assert slow == pytest.approx(2 * plain, rel=0.01)
    bass_slow, bass_plain = seen[2], seen[6]  # SOURCES order: vocals, drums, bass, other
    assert bass_plain and bass_slow == [n - 2 for n in bass_plain]


def test_written_song_reads_back_bit_exact(tmp_path):
    rng = np.random.default_rng(0)
    tracks = {s: (0.1 * rng.standard_normal((500, 2))).astype(np.float32) for s in SOURCES}
    tracks["mixture"] = np.sum(list(tracks.values()), axis=0, dtype=np.float32)
    render.write_song(tmp_path / "song", tracks)
    for name, audio in tracks.items():
        back, rate = sf.read(str(tmp_path / "song" / f"{name}.wav"), dtype="float32")
        assert rate == SAMPLE_RATE
        np.testing.assert_array_equal(back, audio)
    assert not list((tmp_path / "song").glob(".*tmp*"))


def test_committed_stem_map_is_consistent():
    data = load_stem_map()
    songs = data["songs"]
    assert len(songs) >= 30
    by_split = {s: [n for n, e in songs.items() if e["split"] == s] for s in SPLITS}
    assert all(by_split.values()), by_split
    for name, entry in songs.items():
        assert set(entry["parts"].values()) <= set(SOURCES)
        assert "vocals" in entry["parts"].values(), name
        assert entry.get("review"), f"{name} has no review note"
    # the held-out songs have all four stems, so their SDR is defined
    for name in by_split["test"]:
        assert set(songs[name]["parts"].values()) == set(SOURCES), name


def test_committed_stem_map_matches_the_installed_songs():
    if not render.MIDI_DIR.is_dir():
        pytest.skip(f"{render.MIDI_DIR} not installed ({render.APT_HINT})")
    data = load_stem_map()
    parts = {s: read_parts(render.MIDI_DIR / f"{s}.mid") for s in data["songs"]}
    assert check_map(data, parts) == []


def test_render_cli_reports_a_missing_tool(monkeypatch, tmp_path):
    monkeypatch.setattr(render.shutil, "which", lambda name: None)
    with pytest.raises(render.RenderError, match="apt-get install fluidsynth"):
        render.main(["--out", str(tmp_path)])


def test_render_cli_reports_a_missing_soundfont(monkeypatch, tmp_path):
    monkeypatch.setattr(render.shutil, "which", lambda name: "/usr/bin/fluidsynth")
    with pytest.raises(render.RenderError, match="no.sf2 not found; give --soundfont an installed"):
        render.main(["--out", str(tmp_path), "--soundfont", str(tmp_path / "no.sf2")])


def _write_song(folder, n, seed, rate=SAMPLE_RATE):
    folder.mkdir(parents=True)
    rng = np.random.default_rng(seed)
    for s in SOURCES:
        sf.write(str(folder / f"{s}.wav"), (0.1 * rng.standard_normal((n, 2))).astype(np.float32), rate,
                 subtype="FLOAT")


def test_crops_mix_to_the_exact_sum_and_are_reproducible(tmp_path):
    _write_song(tmp_path / "a", 3000, 0)
    _write_song(tmp_path / "b", 5000, 1)
    songs = find_songs([tmp_path])
    assert [s.name for s in songs] == ["a", "b"]
    batches = [CropSampler(songs, 1024, Augment(), seed=3).batch(4) for _ in range(2)]
    mixture, stems = batches[0]
    assert mixture.shape == (4, 1024, 2) and stems.shape == (4, 4, 1024, 2)
    np.testing.assert_array_equal(mixture, stems.sum(axis=1, dtype=np.float32))
    np.testing.assert_array_equal(batches[0][1], batches[1][1])
    plain = CropSampler(songs, 1024, None, seed=0).crop()
    whole = {s: sf.read(str(tmp_path / "a" / f"{s}.wav"), dtype="float32")[0] for s in SOURCES}
    whole.update({f"b{s}": sf.read(str(tmp_path / "b" / f"{s}.wav"), dtype="float32")[0] for s in SOURCES})
    # without augmentation a crop is a verbatim slice of one song
    first = plain[0]
    found = [k for k, v in whole.items() if any(np.array_equal(first, v[i:i + 1024]) for i in range(len(v) - 1023))]
    assert found


def test_dataset_errors_name_the_problem(tmp_path):
    _write_song(tmp_path / "lowrate", 1000, 0, rate=22050)
    with pytest.raises(DatasetError, match="22050 Hz"):
        find_songs([tmp_path])
    with pytest.raises(DatasetError, match="not found"):
        find_songs([tmp_path / "nope"])
    (tmp_path / "lowrate" / "bass.wav").unlink()
    with pytest.raises(DatasetError, match="missing bass.wav"):
        SongStems.from_folder(tmp_path / "lowrate")
    with pytest.raises(DatasetError, match="at least"):
        CropSampler([SongStems.from_arrays("x", {s: np.zeros((10, 2)) for s in SOURCES})], 100)


def test_held_out_excerpt_is_where_every_stem_plays():
    n_sec = 10
    tracks = {s: np.zeros((n_sec * SAMPLE_RATE, 2), dtype=np.float32) for s in SOURCES}
    tracks["other"][:] = 0.1
    tracks["drums"][3 * SAMPLE_RATE:] = 0.1  # drums enter at 3 s
    tracks["vocals"][:7 * SAMPLE_RATE] = 0.1  # vocals stop at 7 s
    tracks["bass"][2 * SAMPLE_RATE:9 * SAMPLE_RATE] = 0.1
    assert render.busiest_start(tracks, 4) == 3.0
    with pytest.raises(render.RenderError, match="shorter than"):
        render.busiest_start(tracks, 11)


def test_render_cli_voices_the_songs_with_the_chosen_soundfont_and_gain(tmp_path, monkeypatch):
    midi_dir, stem_map = _tiny_collection(tmp_path)
    soundfont = tmp_path / "other.sf2"
    checked, used = [], []

    def fake_render(midi_path, wav_path, soundfont=render.SOUNDFONT, gain=render.SYNTH_GAIN):
        used.append((soundfont, gain))
        return np.full((100, 2), 0.01, dtype=np.float32)

    monkeypatch.setattr(render, "require_tools", lambda soundfont=render.SOUNDFONT: checked.append(soundfont))
    monkeypatch.setattr(render, "fluidsynth_render", fake_render)
    assert render.main(["--out", str(tmp_path / "out"), "--map", str(stem_map), "--midi-dir", str(midi_dir),
                        "--soundfont", str(soundfont), "--synth-gain", "1.0"]) == 0
    assert checked == [soundfont] and used == [(soundfont, 1.0)] * len(SOURCES)
    with pytest.raises(SystemExit):
        render.main(["--out", str(tmp_path / "out"), "--map", str(stem_map), "--synth-gain", "0"])
