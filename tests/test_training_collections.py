"""A second song collection: WAD music extraction, the refined draft rules, and its crop share."""
from __future__ import annotations

import struct
from pathlib import Path

import mido
import numpy as np
import pytest

from core.constants import SOURCES
from tests.helpers import write_midi
from training import wad_music
from training.dataset import CropSampler, DatasetError, SongStems, match_level, set_share
from training.midi_parts import read_parts
from training.stem_map import check_map, draft_collection, load_stem_map, propose_map, refine_draft

FREEDOOM_MAP = Path(__file__).resolve().parents[1] / "training" / "stem_map_freedoom.json"
BLUPI_MAP = FREEDOOM_MAP.with_name("stem_map_blupi.json")
BLUPI_MIDI_DIR = Path("/usr/share/planetblupi/music")


def _midi_bytes(tmp_path: Path, notes: list[int], channel: int = 0, program: int = 0) -> bytes:
    midi = mido.MidiFile(type=0, ticks_per_beat=96)
    track = mido.MidiTrack([mido.Message("program_change", channel=channel, program=program, time=0)])
    for pitch in notes:
        track.append(mido.Message("note_on", channel=channel, note=pitch, velocity=90, time=0))
        track.append(mido.Message("note_off", channel=channel, note=pitch, velocity=0, time=96))
    midi.tracks.append(track)
    path = tmp_path / "tmp.mid"
    midi.save(str(path))
    return path.read_bytes()


def _wad(path: Path, lumps: list[tuple[str, bytes]]) -> None:
    """A minimal IWAD: header, the lumps' bytes, then the directory."""
    body = b""
    entries = []
    for name, data in lumps:
        entries.append((12 + len(body), len(data), name.encode("ascii").ljust(8, b"\0")))
        body += data
    directory = b"".join(struct.pack("<ii8s", *e) for e in entries)
    path.write_bytes(b"IWAD" + struct.pack("<ii", len(lumps), 12 + len(body)) + body + directory)


def test_wad_music_extracts_midi_lumps_once(tmp_path):
    song = _midi_bytes(tmp_path, [60, 62, 64])
    other_song = _midi_bytes(tmp_path, [40, 41])
    _wad(tmp_path / "one.wad", [("D_E1M1", song), ("D_E1M2", b"MUS\x1a" + b"\0" * 20),
                                ("PLAYPAL", b"\0" * 30), ("D_INTRO", other_song)])
    _wad(tmp_path / "two.wad", [("D_RUNNIN", song)])  # the same track reused: kept once
    assert set(wad_music.music_lumps(tmp_path / "one.wad")) == {"D_E1M1", "D_INTRO"}
    written = wad_music.extract([tmp_path / "one.wad", tmp_path / "two.wad"], tmp_path / "out")
    assert sorted(written) == ["one_d_e1m1", "one_d_intro"]
    assert written["one_d_e1m1"].read_bytes() == song
    notes = [m.note for m in mido.MidiFile(str(written["one_d_intro"])).tracks[0] if m.type == "note_on"
             and m.velocity]
    assert notes == [40, 41]


def test_wad_music_rejects_other_files(tmp_path):
    (tmp_path / "x.wad").write_bytes(b"PK\x03\x04 not a wad")
    with pytest.raises(wad_music.WadError, match="not a WAD"):
        wad_music.music_lumps(tmp_path / "x.wad")
    (tmp_path / "y.wad").write_bytes(b"IWAD" + struct.pack("<ii", 5, 4000))
    with pytest.raises(wad_music.WadError, match="past the end"):
        wad_music.music_lumps(tmp_path / "y.wad")
    assert wad_music.main(["--out", str(tmp_path / "o"), str(tmp_path / "absent.wad")]) == 2


def _song(path: Path, parts: list[tuple[int, int, list[int], int]]) -> Path:
    """parts: (channel, program, pitches, notes per onset); chords stack minor thirds."""
    return write_midi(path, parts, chord_step=3)


def test_refine_moves_low_lines_to_bass_and_replaces_a_choir_pad(tmp_path):
    path = _song(tmp_path / "rock.mid", [
        (9, 0, [36, 38] * 30, 1),
        (0, 81, [28, 31, 33, 28] * 20, 1),   # saw lead playing the bass line (median 29.5)
        (1, 29, [64, 67, 69, 71] * 15, 1),    # overdriven guitar carrying the tune
        (2, 52, [60, 64] * 10, 3),            # choir pad: chords
        (3, 47, [30, 31] * 30, 1),            # timpani: unpitched, low, stays other
    ])
    parts = read_parts(path)
    draft = propose_map(parts)
    assert draft["parts"]["c0p81"] == "other" and draft["parts"]["c2p52"] == "vocals"
    entry, notes = refine_draft(parts, draft)
    assert entry["parts"] == {"c9drums": "drums", "c0p81": "bass", "c1p29": "vocals",
                              "c2p52": "other", "c3p47": "other"}
    assert entry["revoice"] == ["c1p29"]
    assert any("low line" in n for n in notes) and any("not a line" in n for n in notes)
    assert check_map({"songs": {"rock": {"split": "train", **entry}}}, {"rock": parts}) == []


def test_refine_leaves_out_a_song_without_a_line_to_sing(tmp_path):
    path = _song(tmp_path / "pads.mid", [(9, 0, [36] * 20, 1), (0, 48, [60, 62] * 20, 3),
                                         (1, 123, [70, 72] * 30, 1)])  # bird tweets do not sing
    parts = read_parts(path)
    entry, notes = refine_draft(parts, propose_map(parts))
    assert "vocals" not in entry["parts"].values()
    assert "left out" in notes[-1]
    data = draft_collection(tmp_path, "test songs", "none")
    assert list(data["left_out"]) == ["pads"] and data["songs"] == {}


def _arrays(n: int, value: float) -> SongStems:
    return SongStems.from_arrays(f"s{value}", {s: np.full((n, 2), value, np.float32) for s in SOURCES})


def test_extra_share_sets_the_fraction_of_crops():
    main = [_arrays(4000, 1.0), _arrays(2000, 2.0)]
    extra = [_arrays(30000, 3.0)]  # five times the main data's length
    set_share(main, extra, 0.25, 1000)
    sampler = CropSampler(main + extra, 1000, None, seed=0)
    from_extra = np.mean([sampler.crop()[0, 0, 0] == 3.0 for _ in range(4000)])
    # 4000 draws: the binomial standard error at p = 0.25 is 0.007
    assert from_extra == pytest.approx(0.25, abs=0.03)
    with pytest.raises(DatasetError, match="between 0 and 1"):
        set_share(main, extra, 1.0, 1000)
    with pytest.raises(DatasetError, match="both"):
        set_share(main, [], 0.5, 1000)


@pytest.mark.parametrize("stem_map, license_name, prepare, n_songs", [
    (FREEDOOM_MAP, "BSD", "training.wad_music", 50),
    (BLUPI_MAP, "GPL-3", "planetblupi-music-midi", 5),
])
def test_committed_collection_map_is_consistent(stem_map, license_name, prepare, n_songs):
    data = load_stem_map(stem_map)
    assert len(data["songs"]) == n_songs and data["left_out"]
    assert license_name in data["source"] and prepare in data["prepare"]
    for name, entry in data["songs"].items():
        assert entry["split"] == "train", name  # held-out songs stay OpenMSX's
        assert set(entry["parts"].values()) <= set(SOURCES)
        assert "vocals" in entry["parts"].values() and entry.get("review"), name
    assert not set(data["songs"]) & set(data["left_out"])


def test_committed_blupi_map_matches_the_installed_songs():
    if not BLUPI_MIDI_DIR.is_dir():
        pytest.skip(f"{BLUPI_MIDI_DIR} missing (apt-get install planetblupi-music-midi)")
    data = load_stem_map(BLUPI_MAP)
    installed = {p.stem for p in BLUPI_MIDI_DIR.glob("*.mid")}
    assert installed == set(data["songs"]) | set(data["left_out"])
    parts = {s: read_parts(BLUPI_MIDI_DIR / f"{s}.mid") for s in data["songs"]}
    assert check_map(data, parts) == []
    # the committed map is the draft plus review notes: its stems are what the rules propose
    assert {s: e["parts"] for s, e in draft_collection(BLUPI_MIDI_DIR, "", "")["songs"].items()} \
        == {s: e["parts"] for s, e in data["songs"].items()}


def test_committed_freedoom_map_matches_the_installed_songs(tmp_path):
    if not all(w.is_file() for w in wad_music.FREEDOOM_WADS):
        pytest.skip("freedoom not installed (apt-get install freedoom)")
    written = wad_music.extract(list(wad_music.FREEDOOM_WADS), tmp_path)
    data = load_stem_map(FREEDOOM_MAP)
    assert set(written) == set(data["songs"]) | set(data["left_out"])
    parts = {s: read_parts(written[s]) for s in data["songs"]}
    assert check_map(data, parts) == []


def test_cli_takes_extra_data_with_its_share(tmp_path, capsys):
    import json

    import soundfile as sf

    from tests.helpers import TINY_CONFIG, music_like
    from training import train as tr

    for root, name in (("main", "a"), ("extra", "b"), ("extra", "c")):
        song = tmp_path / root / name
        song.mkdir(parents=True)
        for i, s in enumerate(SOURCES):
            sf.write(str(song / f"{s}.wav"), music_like(8000, seed=i) * 0.3, 44100, subtype="FLOAT")
    cfg = tmp_path / "tiny.json"
    cfg.write_text(json.dumps(TINY_CONFIG.to_dict()))
    args = ["--data", str(tmp_path / "main"), "--extra-data", str(tmp_path / "extra"), "--config", str(cfg),
            "--out-dir", str(tmp_path / "run"), "--crop-frames", "16", "--max-steps", "1", "--threads", "1"]
    assert tr.main(args + ["--extra-share", "0.3"]) == 0
    assert "3 training songs" in capsys.readouterr().out
    assert tr.main(args + ["--extra-share", "1.5"]) == 2
    assert "between 0 and 1" in capsys.readouterr().err


def test_match_level_gives_the_extra_data_the_main_median_level(tmp_path):
    import soundfile as sf

    main = [_arrays(3000, 0.1), _arrays(3000, 0.2), _arrays(3000, 0.3)]  # mixture RMS 0.4, 0.8, 1.2
    folder = tmp_path / "loud"
    folder.mkdir()
    for s in SOURCES:
        sf.write(str(folder / f"{s}.wav"), np.full((3000, 2), 0.5, np.float32), 44100, subtype="FLOAT")
    sf.write(str(folder / "mixture.wav"), np.full((3000, 2), 2.0, np.float32), 44100, subtype="FLOAT")
    loud = SongStems.from_folder(folder)
    assert loud.mixture_file is not None and loud.mixture_rms() == pytest.approx(2.0)
    gain = match_level(main, [loud])
    assert gain == pytest.approx(0.8 / 2.0)
    crop = CropSampler([loud], 1000, None, seed=0).crop()
    np.testing.assert_allclose(crop, 0.5 * 0.4, rtol=1e-6)  # every stem scaled, the sum stays exact
    assert loud.mixture_rms() == pytest.approx(2.0)  # measured before the gain, so repeatable
    loud.mixture_file = None  # the same figure from the stems
    assert loud.mixture_rms() == pytest.approx(2.0)
