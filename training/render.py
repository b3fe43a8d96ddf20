"""Render MIDI songs stem by stem with fluidsynth into the MDX folder layout.

For every song and stem a MIDI file is written that keeps every event except the notes of
other stems' parts (so tempo, controllers and pitch bends stay identical), fluidsynth renders
it to float WAV, and the mixture is the exact float32 sum of the four stems as written.

    python -m training.render --out data/openmsx            # all songs, full length
    python -m training.render --out data/openmsx_test30 --excerpt auto:30 --split test --flat
    python -m training.render --out data/freedoom --map training/stem_map_freedoom.json \
        --midi-dir data/midi/freedoom                       # after python -m training.wad_music
    python -m training.render --out data/openmsx_var --split train --variant=-2:0.9 --variant=2:1.1
    python -m training.render --out data/openmsx_tim --split train --soundfont /usr/share/sounds/sf2/TimGM6mb.sf2
"""
from __future__ import annotations

import argparse
import dataclasses
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any, Mapping

import mido
import numpy as np
import soundfile as sf

from core.audio import StemWriter
from core.constants import SAMPLE_RATE, SOURCES

from .midi_parts import (DRUM_CHANNEL, VOCAL_STANDIN_PROGRAM, absolute_messages, is_note_off, is_note_on,
                         key_channel, part_key)
from .stem_map import STEM_MAP_PATH, check_map, load_stem_map

MIDI_DIR = Path("/usr/share/games/openttd/baseset/openmsx")
SOUNDFONT = Path("/usr/share/sounds/sf2/FluidR3_GM.sf2")
#: fluidsynth's synth gain; 0.5 keeps dense songs well below full scale.
SYNTH_GAIN = 0.5
#: The vocal stand-in is mixed like a lead vocal: its RMS over the song is set to this fraction
#: of the accompaniment's (-6 dB); GM "Voice Oohs" alone renders some 20 dB under the band.
VOCAL_TO_ACCOMPANIMENT_RMS = 0.5
APT_HINT = "apt-get install fluidsynth fluid-soundfont-gm openttd-openmsx"


class RenderError(RuntimeError):
    """Rendering cannot proceed; the message says what is missing."""


def stem_midi(midi: mido.MidiFile, parts: Mapping[str, str], stem: str,
              revoice: tuple[str, ...] = ()) -> mido.MidiFile:
    """A one-track copy of ``midi`` that sounds only the notes of ``stem``'s parts.

    ``parts`` maps part keys to stems. Channels of ``revoice`` parts get the vocal stand-in
    program (their own program changes are rewritten), so the stand-in sounds voice-like.
    """
    revoiced_channels = {key_channel(k) for k in revoice} if stem == "vocals" else set()
    programs: dict[int, int] = {}
    kept_notes: dict[tuple[int, int], int] = {}
    events: list[tuple[int, mido.Message]] = [
        (0, mido.Message("program_change", channel=c, program=VOCAL_STANDIN_PROGRAM))
        for c in sorted(revoiced_channels)]
    for tick, msg in absolute_messages(midi):
        if msg.type == "program_change":
            programs[msg.channel] = msg.program
            if msg.channel in revoiced_channels:
                msg = msg.copy(program=VOCAL_STANDIN_PROGRAM)
        elif is_note_on(msg):
            if parts.get(part_key(msg.channel, programs.get(msg.channel, 0))) != stem:
                continue
            kept_notes[(msg.channel, msg.note)] = kept_notes.get((msg.channel, msg.note), 0) + 1
        elif is_note_off(msg):
            held = kept_notes.get((msg.channel, msg.note), 0)
            if not held:
                continue
            kept_notes[(msg.channel, msg.note)] = held - 1
        events.append((tick, msg))
    track = mido.MidiTrack()
    previous = 0
    for tick, msg in events:
        track.append(msg.copy(time=tick - previous))
        previous = tick
    out = mido.MidiFile(type=0, ticks_per_beat=midi.ticks_per_beat)
    out.tracks.append(track)
    return out


#: MIDI's tempo when a song sets none (120 bpm), in microseconds per beat.
DEFAULT_MIDI_TEMPO = mido.bpm2tempo(120)


@dataclasses.dataclass(frozen=True)
class Variant:
    """A re-performance of a song: pitched notes moved by ``transpose`` semitones, played ``tempo`` x as fast.

    Done on the MIDI, before synthesis, so a variant is as clean as the original render
    (no resampling or phase-vocoder artefacts) and its stems still sum to its mixture exactly.
    """

    transpose: int = 0
    tempo: float = 1.0

    @classmethod
    def parse(cls, text: str) -> "Variant":
        """``"SEMITONES:TEMPO"``, e.g. ``"-2:0.9"``."""
        try:
            semitones, tempo = text.split(":")
            variant = cls(int(semitones), float(tempo))
        except ValueError:
            raise RenderError(f"a variant is SEMITONES:TEMPO such as -2:0.9, got {text!r}") from None
        if not (-12 <= variant.transpose <= 12 and 0.5 <= variant.tempo <= 2.0):
            raise RenderError(f"variant {text!r} is out of range (-12..12 semitones, tempo 0.5..2)")
        return variant

    @property
    def suffix(self) -> str:
        """Folder-name suffix; empty for the song as written."""
        return "" if self == Variant() else f"_t{self.transpose:+d}_x{self.tempo:.2f}"


def vary_midi(midi: mido.MidiFile, variant: Variant) -> mido.MidiFile:
    """``midi`` performed as ``variant`` (a copy); the percussion channel is never transposed."""
    if variant == Variant():
        return midi

    def moved(msg: mido.Message) -> mido.Message:
        if msg.type in ("note_on", "note_off", "polytouch") and msg.channel != DRUM_CHANNEL:
            return msg.copy(note=min(127, max(0, msg.note + variant.transpose)))
        if msg.type == "set_tempo":
            return msg.copy(tempo=round(msg.tempo / variant.tempo))
        return msg

    out = mido.MidiFile(type=midi.type, ticks_per_beat=midi.ticks_per_beat)
    out.tracks.extend(mido.MidiTrack(moved(m) for m in track) for track in midi.tracks)
    if variant.tempo != 1.0 and not any(tick == 0 and m.type == "set_tempo" for tick, m in absolute_messages(midi)):
        # the song starts at MIDI's implicit 120 bpm, which must speed up too
        out.tracks[0].insert(0, mido.MetaMessage("set_tempo", tempo=round(DEFAULT_MIDI_TEMPO / variant.tempo)))
    return out


def require_tools(soundfont: Path = SOUNDFONT) -> str:
    """Path of the fluidsynth binary; a clear error when it or the soundfont is missing."""
    exe = shutil.which("fluidsynth")
    if exe is None:
        raise RenderError(f"fluidsynth not found on PATH; install it: {APT_HINT}")
    if not soundfont.is_file():
        hint = f"install it: {APT_HINT}" if soundfont == SOUNDFONT else "give --soundfont an installed .sf2/.sf3 file"
        raise RenderError(f"soundfont {soundfont} not found; {hint}")
    return exe


def fluidsynth_render(midi_path: Path, wav_path: Path, soundfont: Path = SOUNDFONT,
                      gain: float = SYNTH_GAIN) -> np.ndarray:
    """Render one MIDI file; returns (samples, 2) float32 at the kit's sample rate."""
    exe = require_tools(soundfont)
    cmd = [exe, "-ni", "-q", "-g", str(gain), "-r", str(SAMPLE_RATE), "-T", "wav", "-O", "float",
           "-F", str(wav_path), str(soundfont), str(midi_path)]
    proc = subprocess.run(cmd, capture_output=True, text=True)
    if proc.returncode != 0 or not wav_path.is_file():
        raise RenderError(f"fluidsynth failed on {midi_path}: {proc.stderr.strip()[-500:]}")
    audio, rate = sf.read(str(wav_path), dtype="float32", always_2d=True)
    if rate != SAMPLE_RATE or audio.shape[1] != 2:
        raise RenderError(f"fluidsynth wrote {rate} Hz x {audio.shape[1]} channels, expected {SAMPLE_RATE} x 2")
    return audio


def render_song(midi_path: Path, entry: Mapping[str, Any], variant: Variant = Variant(),
                soundfont: Path = SOUNDFONT, gain: float = SYNTH_GAIN) -> dict[str, np.ndarray]:
    """All four stems of one song (performed as ``variant``, voiced by ``soundfont`` at synth
    ``gain``), padded to a common length, plus their exact sum."""
    midi = vary_midi(mido.MidiFile(str(midi_path)), variant)
    stems: dict[str, np.ndarray] = {}
    with tempfile.TemporaryDirectory(prefix="mdxkit-render-") as tmp:
        for stem in SOURCES:
            mid = Path(tmp) / f"{stem}.mid"
            stem_midi(midi, entry["parts"], stem, tuple(entry.get("revoice", ()))).save(str(mid))
            stems[stem] = fluidsynth_render(mid, Path(tmp) / f"{stem}.wav", soundfont, gain)
    length = max(a.shape[0] for a in stems.values())
    for stem, audio in stems.items():
        stems[stem] = np.pad(audio, ((0, length - audio.shape[0]), (0, 0)))
    stems["vocals"] *= vocal_gain(stems)
    stems["mixture"] = np.sum([stems[s] for s in SOURCES], axis=0, dtype=np.float32)
    return stems


def vocal_gain(stems: Mapping[str, np.ndarray]) -> np.float32:
    """Gain that brings the vocals to ``VOCAL_TO_ACCOMPANIMENT_RMS`` of the accompaniment."""
    accompaniment = np.sum([stems[s] for s in SOURCES if s != "vocals"], axis=0)
    voc, acc = (float(np.sqrt(np.mean(np.square(a, dtype=np.float64)))) for a in (stems["vocals"], accompaniment))
    if voc == 0.0 or acc == 0.0:
        return np.float32(1.0)
    return np.float32(VOCAL_TO_ACCOMPANIMENT_RMS * acc / voc)


def write_song(folder: Path, tracks: Mapping[str, np.ndarray]) -> None:
    """Write ``{name}.wav`` (float WAV) into ``folder``, all renamed into place together."""
    with StemWriter({name: folder / f"{name}.wav" for name in tracks}) as writer:
        for name, audio in tracks.items():
            writer.write(name, audio)


def excerpt(tracks: Mapping[str, np.ndarray], start_s: float, length_s: float) -> dict[str, np.ndarray]:
    """The same ``[start, start + length)`` seconds of every track (mixture stays the exact sum)."""
    a, b = int(start_s * SAMPLE_RATE), int((start_s + length_s) * SAMPLE_RATE)
    if b > next(iter(tracks.values())).shape[0]:
        raise RenderError(f"excerpt {start_s}+{length_s}s runs past the end of the song")
    return {name: np.ascontiguousarray(audio[a:b]) for name, audio in tracks.items()}


def busiest_start(tracks: Mapping[str, np.ndarray], length_s: float) -> float:
    """Start (whole seconds) of the ``length_s`` window whose quietest stem is loudest.

    Held-out excerpts need every stem audible: MDX SDR of a silent reference is meaningless.
    """
    n = next(iter(tracks.values())).shape[0]
    n_sec = n // SAMPLE_RATE
    width = int(np.ceil(length_s))
    if width > n_sec:
        raise RenderError(f"song is {n / SAMPLE_RATE:.1f} s, shorter than the {length_s} s excerpt")
    # energy per whole second and stem, then a sliding sum over the window
    energy = np.stack([np.square(tracks[s][:n_sec * SAMPLE_RATE], dtype=np.float64)
                       .reshape(n_sec, -1).sum(axis=1) for s in SOURCES])
    window = np.stack([np.convolve(e, np.ones(width), mode="valid") for e in energy])
    return float(np.argmax(window.min(axis=0)))


def _excerpt_argument(text: str) -> tuple[float | None, float]:
    """``START:LENGTH`` or ``auto:LENGTH`` -> (start, or None for auto, length), checked before any rendering."""
    try:
        start, length = text.split(":")
        return (None if start == "auto" else float(start)), float(length)
    except ValueError:
        raise argparse.ArgumentTypeError(f"an excerpt is START:LENGTH or auto:LENGTH in seconds, got {text!r}") \
            from None


def _variant_argument(text: str) -> Variant:
    try:
        return Variant.parse(text)
    except RenderError as exc:  # argparse turns this into a usage error instead of a traceback
        raise argparse.ArgumentTypeError(str(exc)) from None


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, required=True, help="output root")
    parser.add_argument("--midi-dir", type=Path, default=MIDI_DIR, help="where the map's <song>.mid files are")
    parser.add_argument("--map", type=Path, default=STEM_MAP_PATH, help="reviewed part->stem map (JSON)")
    parser.add_argument("--split", choices=("train", "validation", "test"), action="append",
                        help="render only these splits (repeatable); default all")
    parser.add_argument("--song", action="append", help="render only these songs (repeatable)")
    parser.add_argument("--excerpt", type=_excerpt_argument, help="START:LENGTH in seconds, e.g. 20:30, or auto:LENGTH for the "
                        "window whose quietest stem is loudest")
    parser.add_argument("--flat", action="store_true", help="OUT/<song>/ instead of OUT/<split>/<song>/")
    parser.add_argument("--variant", action="append", type=_variant_argument, metavar="SEMITONES:TEMPO",
                        help="render each song transposed and at this tempo factor, into <song>_t-2_x0.90/ "
                        "(repeatable; write --variant=-2:0.9 when it starts with a minus; 0:1 is the song "
                        "as written); default the song as written")
    parser.add_argument("--soundfont", type=Path, default=SOUNDFONT,
                        help=f"SoundFont (.sf2/.sf3) that voices the songs; default {SOUNDFONT}")
    parser.add_argument("--synth-gain", type=float, default=SYNTH_GAIN,
                        help=f"fluidsynth's gain (-g); default {SYNTH_GAIN}. The WAVs are float, so a "
                        "gain that takes peaks past 1.0 does not clip")
    args = parser.parse_args(argv)
    if args.synth_gain <= 0:
        parser.error("--synth-gain must be positive")

    from .midi_parts import read_parts

    require_tools(args.soundfont)
    stem_map = load_stem_map(args.map)
    songs = {s: e for s, e in stem_map["songs"].items()
             if (not args.split or e["split"] in args.split) and (not args.song or s in args.song)}
    if not songs:
        print("no song matches --split/--song", file=sys.stderr)
        return 2
    paths = {s: args.midi_dir / f"{s}.mid" for s in songs}
    absent = [str(p) for p in paths.values() if not p.is_file()]
    if absent:
        raise RenderError(f"MIDI files not found: {absent[:3]}; install them: {stem_map.get('prepare', APT_HINT)}")
    problems = check_map({"songs": songs}, {s: read_parts(p) for s, p in paths.items()})
    if problems:
        raise RenderError("the stem map does not fit the songs:\n  " + "\n  ".join(problems))
    for song, entry in songs.items():
        for variant in args.variant or [Variant()]:
            name = song + variant.suffix
            tracks = render_song(paths[song], entry, variant, args.soundfont, args.synth_gain)
            if args.excerpt:
                start, length = args.excerpt
                if start is None:
                    start = busiest_start(tracks, length)
                tracks = excerpt(tracks, start, length)
                print(f"{name}: excerpt {start:g}-{start + length:g} s", flush=True)
            folder = args.out / name if args.flat else args.out / entry["split"] / name
            write_song(folder, tracks)
            rms = {s: float(np.sqrt(np.mean(tracks[s] ** 2))) for s in SOURCES}
            print(f"{name}: {tracks['mixture'].shape[0] / SAMPLE_RATE:.1f} s, rms "
                  + " ".join(f"{s}={v:.3f}" for s, v in rms.items()), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
