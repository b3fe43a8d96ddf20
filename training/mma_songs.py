"""Band arrangements from MMA's groove library, as MIDI songs with a stem map known by construction.

MMA (Musical MIDI Accompaniment, Debian ``mma``, GPL-2+) plays a chord chart in one of its
~120 library styles (swing, ragtime, bossa, rock, polka, ...). Each style's drum, bass and
chord patterns were written by people, so every song gets a composed band arrangement; the
chord charts and the lead come from here. The lead is MMA's ``Aria`` track, a melody MMA
improvises over the chords from a rhythm and a contour given below. Every MMA track lands in
its own MIDI track, named after it, on its own channel, so the part -> stem map follows from
the track names instead of from General MIDI programs:

* ``Drum*`` -> drums (MMA puts them on the percussion channel);
* ``Bass*`` and ``Walk*`` (walking bass) -> bass;
* ``Aria`` -> vocals, re-voiced with GM "Voice Oohs" by ``training.render`` like every
  stand-in;
* everything else (``Chord*``, ``Arpeggio*``, ``Scale*``, ``Plectrum*``, ...) -> other.

``check_map`` then checks the map like a reviewed one (a bass median above C3 drops the song).

    apt-get install mma && mma -G          # -G builds MMA's groove index once
    python -m training.mma_songs --out data/midi/mma --map training/stem_map_mma.json --songs 90 --seed 0
    python -m training.render --out data/mma --map training/stem_map_mma.json --midi-dir data/midi/mma \
        --synth-gain 1.0

A second generation takes another seed and its own name prefix (``--songs 104 --seed 1 --prefix
mma_s1_`` into ``data/midi/mma_s1`` and ``training/stem_map_mma_s1.json``).
"""
from __future__ import annotations

import argparse
import io
import json
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

import mido
import numpy as np

from core.files import atomic_write_bytes, atomic_write_text

from .midi_parts import DRUM_CHANNEL, is_note_on, part_key, read_parts
from .stem_map import UNPITCHED_PROGRAMS, check_song

MMA_STDLIB = Path("/usr/share/mma/lib/stdlib")
#: Library files left out: click tracks, the empty style, and the 5/4, 6/8 and 12/8 styles
#: (the lead's rhythms below are written for 4/4 and 3/4 bars).
EXCLUDED_STYLES = frozenset({"metronome", "metronome3", "metronome6", "metronome68", "none", "jazz-54",
                             "68march", "68swing", "arpeggio68", "ballad68", "blues68", "ballad128",
                             "blues128", "rock-128"})
#: Chord charts of eight bars in C (a bar's chords separated by spaces); transposed per song.
PHRASES = (
    "C | Am | Dm7 | G7 | C | Am | Dm7 G7 | C",
    "C | C7 | F | Fm | C | A7 | D7 G7 | C",
    "Cmaj7 | A7 | Dm7 | G7 | Em7 | A7 | Dm7 G7 | Cmaj7",
    "Am | F | C | G | Am | F | E7 | Am",
    "C | G | Am | F | C | G | F | C",
    "Dm7 | G7 | Cmaj7 | Cmaj7 | Dm7 | G7 | Cmaj7 | A7",
    "Am | Dm | G7 | Cmaj7 | Fmaj7 | Bm7b5 | E7 | Am",
    "C | E7 | A7 | D7 | G7 | G7 | C | G7",
    "F | C | G | C | F | C | G7 | C",
    "C | F | C | G7 | C | F | G7 | C",
    "Am7 | D7 | Gmaj7 | Cmaj7 | F#m7b5 | B7 | Em | Em",
    "C | Cmaj7 | C7 | F | Fm | C | D7 G7 | C",
    "Em | C | G | D | Em | C | B7 | Em",
    "C | Bb | F | C | C | Bb | F G | C",
)
BLUES = "C7 | F7 | C7 | C7 | F7 | F7 | C7 | A7 | Dm7 | G7 | C7 A7 | Dm7 G7"
#: Lead voices (MMA names of GM programs) that carry a tune.
LEAD_VOICES = ("Trumpet", "Clarinet", "Flute", "AltoSax", "TenorSax", "SopranoSax", "Violin", "Oboe",
               "Harmonica", "Accordion", "Piano1", "Vibraphone", "Trombone", "Recorder", "SquareWave",
               "NylonGuitar")
#: Lead rhythms per bar, ``beat length velocity`` (length 8 = an eighth note).
RHYTHMS_4 = (
    "1 4 90; 2 8 80; 2.5 8 80; 3 4 90; 4 4 80",
    "1 8 90; 1.5 8 80; 2 8 85; 2.5 8 80; 3 8 90; 3.5 8 80; 4 8 85; 4.5 8 80",
    "1 2 90; 3 4 85; 4 4 80",
    "1 4. 90; 2.5 8 80; 3 2 90",
    "1.5 8 85; 2 4 90; 3 8 85; 3.5 8 80; 4 4 85",
)
RHYTHMS_3 = (
    "1 4 90; 2 4 80; 3 4 80",
    "1 2 90; 3 4 80",
    "1 8 90; 1.5 8 80; 2 8 85; 2.5 8 80; 3 4 85",
    "1 4. 90; 2.5 8 80; 3 4 85",
)
DIRECTIONS = ("1 1 -1 2 -1", "1 -1 2 -2 1 1", "0 1 1 -2 1", "2 -1 -1 1 1 -2", "1 1 1 -3 1")
TEMPO_RANGE = (84, 176)
TRANSPOSE_RANGE = (-5, 6)


class MMAError(RuntimeError):
    """MMA is missing or failed; the message says why."""


def library_styles(stdlib: Path | None = None) -> dict[str, str]:
    """Library file name -> its main groove: the one named like the file, else the first it defines."""
    stdlib = MMA_STDLIB if stdlib is None else stdlib
    if not stdlib.is_dir():
        raise MMAError(f"MMA's style library {stdlib} not found; install it: apt-get install mma && mma -G")
    styles = {}
    for path in sorted(stdlib.glob("*.mma")):
        grooves = re.findall(r"^\s*DefGroove\s+(\S+)", path.read_text(errors="replace"), re.MULTILINE | re.IGNORECASE)
        if grooves and path.stem not in EXCLUDED_STYLES:
            same = [g for g in grooves if g.lower() == path.stem.lower()]
            styles[path.stem] = same[0] if same else grooves[0]
    return styles


def is_triple(style: str) -> bool:
    """Waltz styles play 3/4 bars."""
    return "waltz" in style


def song_source(style: str, groove: str, rng: np.random.Generator, mma_seed: int) -> tuple[str, dict[str, Any]]:
    """An MMA song file for ``style``: AABA (or three blues choruses), a lead, a key and a tempo.

    ``mma_seed`` seeds MMA's own randomness (skipped lead notes, the styles' timing and
    velocity humanisation), which is otherwise reseeded from the clock on every run.
    """
    if not is_triple(style) and rng.random() < 0.2:
        form, bars = "blues x3", [BLUES] * 3
    else:
        a, b = rng.choice(len(PHRASES), size=2, replace=False)
        form, bars = "AABA", [PHRASES[a], PHRASES[a], PHRASES[b], PHRASES[a]]
    chart = [bar.strip() for phrase in bars for bar in phrase.split("|")]
    settings = {
        "style": style, "groove": groove, "form": form,
        "tempo": int(rng.integers(*TEMPO_RANGE)),
        "transpose": int(rng.integers(TRANSPOSE_RANGE[0], TRANSPOSE_RANGE[1] + 1)),
        "lead": str(rng.choice(LEAD_VOICES)),
        "rhythm": str(rng.choice(RHYTHMS_3 if is_triple(style) else RHYTHMS_4)),
        "direction": str(rng.choice(DIRECTIONS)),
        "scale": str(rng.choice(["Chord", "Scale"])),
        "mma_seed": mma_seed,
    }
    lines = [
        f"// mdx-kit training song: style {style}, form {form}",
        f"RndSeed {mma_seed}",
        f"Tempo {settings['tempo']}",
        f"Transpose {settings['transpose']}",
        f"Groove {groove}",
        f"Aria Voice {settings['lead']}",
        "Aria Octave 5",
        "Aria Articulate 85",
        "Aria Volume f",
        f"Aria ScaleType {settings['scale']}",
        f"Aria Direction {settings['direction']}",
        f"Aria Sequence {{ {settings['rhythm']} }}",
        "Aria RSkip 10",
    ]
    lines += [f"{i} {bar}" for i, bar in enumerate(chart, 1)]
    return "\n".join(lines) + "\n", settings


def run_mma(source: str, name: str = "song") -> bytes:
    """The MIDI file MMA makes of ``source`` (its first track is named ``name``)."""
    exe = shutil.which("mma")
    if exe is None:
        raise MMAError("the mma command is not installed: apt-get install mma && mma -G")
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / f"{name}.mma"
        path.write_text(source)
        # a relative path: MMA names the first MIDI track after it, and a temporary folder's
        # name there would make every run's file differ
        proc = subprocess.run([exe, path.name], capture_output=True, text=True, cwd=tmp)
        out = path.with_suffix(".mid")
        if proc.returncode != 0 or not out.is_file():
            raise MMAError(f"mma failed: {(proc.stdout + proc.stderr).strip()[-400:]}")
        return out.read_bytes()


def track_stem(name: str) -> str:
    """The stem an MMA track plays (see the module docstring)."""
    kind = name.split("-")[0].lower()
    if kind == "drum":
        return "drums"
    if kind in ("bass", "walk"):
        return "bass"
    if kind == "aria":
        return "vocals"
    return "other"


def track_parts(midi: mido.MidiFile) -> list[tuple[str, str, str]]:
    """``(track name, part key, stem)`` for every part each MMA track plays, in track order."""
    found: dict[tuple[str, str, str], None] = {}  # insertion-ordered set
    for track in midi.tracks:
        track_kind = track_stem(track.name)
        programs: dict[int, int] = {}
        for msg in track:
            if msg.type == "program_change":
                programs[msg.channel] = msg.program
            elif is_note_on(msg):
                program = programs.get(msg.channel, 0)
                stem = track_kind
                if stem == "drums" and msg.channel != DRUM_CHANNEL:
                    stem = "other"  # a drum track off the percussion channel plays pitched notes
                if stem == "bass" and program in UNPITCHED_PROGRAMS:
                    stem = "other"  # e.g. showtune's Bass-Timp: timpani on the roots is no bass guitar
                found[(track.name, part_key(msg.channel, program), stem)] = None
    return list(found)


def stems_by_part(midi: mido.MidiFile) -> dict[str, str]:
    """Part key -> stem from the MMA track names; a part played by two stems' tracks is an error."""
    return _stems_of(track_parts(midi))


def _stems_of(found: list[tuple[str, str, str]]) -> dict[str, str]:
    stems: dict[str, str] = {}
    for _, key, stem in found:
        if stems.setdefault(key, stem) != stem:
            raise MMAError(f"part {key} is played by a {stems[key]} and a {stem} track")
    return stems


def make_collection(out_dir: Path, n_songs: int, seed: int, prefix: str = "mma") -> dict[str, Any]:
    """Write ``n_songs`` MMA songs (.mma and .mid) into ``out_dir``; return their stem map.

    Songs are named ``{prefix}{index:03d}_{style}``; a second generation (another ``seed``)
    takes another ``prefix`` so that its songs never share a name with the first one's.
    """
    rng = np.random.default_rng(seed)
    styles = library_styles()
    names = list(styles)
    order = [names[i % len(names)] for i in rng.permutation(max(n_songs, len(names)))][:n_songs]
    songs: dict[str, Any] = {}
    left_out: dict[str, str] = {}
    out_dir.mkdir(parents=True, exist_ok=True)
    for i, style in enumerate(order):
        name = f"{prefix}{i:03d}_{style}"
        # MMA's seed is not drawn from rng, so every song's settings stay those of the same --seed
        source, settings = song_source(style, styles[style], rng, mma_seed=seed * 1000 + i)
        try:
            midi_bytes = run_mma(source, name)
        except MMAError as exc:
            left_out[name] = str(exc)
            continue
        atomic_write_text(out_dir / f"{name}.mma", source)
        atomic_write_bytes(out_dir / f"{name}.mid", midi_bytes)
        midi = mido.MidiFile(file=io.BytesIO(midi_bytes))
        found = track_parts(midi)  # one pass over the tracks gives both the map and its review note
        try:
            parts = _stems_of(found)
        except MMAError as exc:
            left_out[name] = str(exc)
            continue
        entry = {"split": "train", "parts": dict(sorted(parts.items())),
                 "revoice": sorted(k for k, s in parts.items() if s == "vocals"),
                 "review": "by construction from MMA's track names: "
                           + ", ".join(f"{track} {key}->{stem}" for track, key, stem in found),
                 "settings": settings}
        problems = check_song(name, entry, read_parts(midi))  # the bytes just written, already parsed
        if problems:
            left_out[name] = "; ".join(problems)
            continue
        songs[name] = entry
        print(f"{name}: {settings['form']}, {settings['tempo']} bpm, lead {settings['lead']}, "
              f"{midi.length:.0f} s", flush=True)
    args = f"--songs {n_songs} --seed {seed}" + ("" if prefix == "mma" else f" --prefix {prefix}")
    return {"source": "songs made with MMA 21.09's style library (Debian mma, GPL-2+) by "
                      f"python -m training.mma_songs {args}",
            "prepare": f"apt-get install mma && mma -G && python -m training.mma_songs --out DIR {args}",
            "keys": "c{channel}p{program}, 0-based as in the MIDI bytes; c9drums is the percussion channel",
            "songs": songs, "left_out": left_out}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, required=True, help="folder for the .mma and .mid songs")
    parser.add_argument("--map", type=Path, required=True, help="where to write the songs' stem map (JSON)")
    parser.add_argument("--songs", type=int, default=90)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--prefix", default="mma",
                        help="song name prefix; give each generation (seed) its own, e.g. mma_s1_")
    args = parser.parse_args(argv)
    if not re.fullmatch(r"[A-Za-z0-9_-]+", args.prefix):
        parser.error(f"--prefix {args.prefix!r}: use letters, digits, '_' or '-' (it becomes part of file names)")
    try:
        data = make_collection(args.out, args.songs, args.seed, args.prefix)
    except MMAError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    atomic_write_text(args.map, json.dumps(data, indent=1) + "\n")
    print(f"{len(data['songs'])} songs, {len(data['left_out'])} left out -> {args.map}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
