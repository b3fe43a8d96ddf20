"""MIDI songs as *parts*: the notes one channel plays with one General MIDI program.

A part is keyed ``"c{channel}p{program}"`` (0-based channel and program numbers, as in the MIDI
bytes); the percussion channel (channel 9, "channel 10" to musicians) is keyed ``"c9drums"``.
The program of a note is the channel's latest program change before it (0 when none came).
"""
from __future__ import annotations

import dataclasses
import statistics
from pathlib import Path
from typing import Iterable, Iterator

import mido

#: MIDI channel 10 (0-based 9) carries General MIDI percussion.
DRUM_CHANNEL = 9
#: General MIDI programs 33-40 (1-based) are the bass family; 0-based here, as in the bytes.
BASS_PROGRAMS = range(32, 40)
#: General MIDI 53-55 (1-based): Choir Aahs, Voice Oohs, Synth Voice.
VOICE_PROGRAMS = range(52, 55)
#: The program the vocal stand-in is re-voiced with: GM 54 "Voice Oohs" (0-based 53).
VOCAL_STANDIN_PROGRAM = 53
#: A bass stem whose median pitch lies above this MIDI note is mislabelled (C3 = 48).
MAX_BASS_MEDIAN_PITCH = 48


def part_key(channel: int, program: int) -> str:
    """The key of the part a note on ``channel`` under ``program`` belongs to."""
    return "c9drums" if channel == DRUM_CHANNEL else f"c{channel}p{program}"


def key_channel(key: str) -> int:
    """Channel number of a part key (``"c3p32"`` -> 3)."""
    return int(key[1:].split("p")[0].split("d")[0])


@dataclasses.dataclass
class Part:
    """Statistics of one part, enough to review its stem assignment."""

    key: str
    channel: int
    program: int | None  # None for the drum channel
    pitches: list[int] = dataclasses.field(default_factory=list)
    onsets: list[float] = dataclasses.field(default_factory=list)  # seconds
    max_polyphony: int = 0
    mono_fraction: float = 0.0  # fraction of notes that start while no other note of the part sounds

    @property
    def n_notes(self) -> int:
        return len(self.pitches)

    @property
    def median_pitch(self) -> float:
        return float(statistics.median(self.pitches)) if self.pitches else float("nan")


def absolute_messages(midi: mido.MidiFile) -> Iterator[tuple[int, mido.Message]]:
    """All tracks merged, as ``(absolute tick, message)`` in playing order."""
    tick = 0
    for msg in mido.merge_tracks(midi.tracks):
        tick += msg.time
        yield tick, msg


def is_note_on(msg: mido.Message) -> bool:
    """A sounding note-on (a note-on with velocity 0 is a note-off)."""
    return msg.type == "note_on" and msg.velocity > 0


def is_note_off(msg: mido.Message) -> bool:
    return msg.type == "note_off" or (msg.type == "note_on" and msg.velocity == 0)


def read_parts(source: str | Path | mido.MidiFile) -> dict[str, Part]:
    """Parse a MIDI file (or one already parsed) into its parts, with pitch, onset and polyphony statistics."""
    midi = source if isinstance(source, mido.MidiFile) else mido.MidiFile(str(source))
    programs: dict[int, int] = {}
    parts: dict[str, Part] = {}
    sounding: dict[str, dict[int, int]] = {}  # part -> note -> count
    seconds = 0.0
    # iterating a MidiFile gives delta times in seconds with the tempo map applied
    for msg in midi:
        seconds += msg.time
        if msg.type == "program_change":
            programs[msg.channel] = msg.program
        elif is_note_on(msg) or is_note_off(msg):
            program = programs.get(msg.channel, 0)
            key = part_key(msg.channel, program)
            if is_note_on(msg):
                part = parts.setdefault(key, Part(key, msg.channel, None if msg.channel == DRUM_CHANNEL else program))
                held = sounding.setdefault(key, {})
                if not any(held.values()):
                    part.mono_fraction += 1
                held[msg.note] = held.get(msg.note, 0) + 1
                part.max_polyphony = max(part.max_polyphony, sum(held.values()))
                part.pitches.append(msg.note)
                part.onsets.append(seconds)
            else:
                # a note-off closes the note in whichever part of the channel started it
                for k, held in sounding.items():
                    if key_channel(k) == msg.channel and held.get(msg.note):
                        held[msg.note] -= 1
                        break
    for part in parts.values():
        part.mono_fraction = part.mono_fraction / part.n_notes if part.n_notes else 0.0
    return parts


def song_duration(path: str | Path) -> float:
    """Length of a MIDI song in seconds."""
    return float(mido.MidiFile(str(path)).length)


def stem_pitches(parts: dict[str, Part], keys: Iterable[str]) -> list[int]:
    """All note pitches of the given parts, pooled."""
    return [p for k in keys if k in parts for p in parts[k].pitches]
