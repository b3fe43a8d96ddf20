"""The reviewed per-song part -> stem map, its first-draft rules and its checks.

The draft rules (``propose_map``) follow General MIDI: the percussion channel is drums,
programs 33-40 are bass, voice/choir programs are vocals, the rest is other. Programs lie, so
the draft was reviewed song by song and the result is stored in ``stem_map.json``; ``check_map``
re-checks the stored map against the parsed songs (every part mapped, bass median pitch at or
below C3, drums only from the percussion channel, one vocal stand-in at least).

Vocal stand-in: when a song has no voice/choir part, its lead melody part (a mostly monophonic
part in the singing range, chosen by ``lead_candidates`` and confirmed in review) becomes the
vocals stem and is re-voiced with GM "Voice Oohs" so that the stand-in sounds voice-like in
every song. Songs whose own choir part is the vocals keep their program.
"""
from __future__ import annotations

import json
import statistics
from pathlib import Path
from typing import Any, Mapping

from models.constants import SOURCES

from .midi_parts import (BASS_PROGRAMS, DRUM_CHANNEL, MAX_BASS_MEDIAN_PITCH, VOICE_PROGRAMS, Part,
                         stem_pitches)

STEM_MAP_PATH = Path(__file__).with_name("stem_map.json")
SPLITS = ("train", "validation", "test")
#: Lead-melody candidates sing: median pitch in this range (MIDI notes, G3..C6) ...
LEAD_PITCH_RANGE = (55, 84)
#: ... and mostly one note at a time.
LEAD_MIN_MONO_FRACTION = 0.6


class StemMapError(ValueError):
    """A part -> stem map that contradicts the song or the rules; the message says where."""


def lead_candidates(parts: Mapping[str, Part]) -> list[str]:
    """Melodic non-drum, non-bass parts that could carry the tune, best first."""
    lo, hi = LEAD_PITCH_RANGE
    found = [p for p in parts.values()
             if p.channel != DRUM_CHANNEL and p.program not in BASS_PROGRAMS
             and lo <= p.median_pitch <= hi and p.mono_fraction >= LEAD_MIN_MONO_FRACTION]
    return [p.key for p in sorted(found, key=lambda p: p.n_notes * p.mono_fraction, reverse=True)]


def propose_map(parts: Mapping[str, Part]) -> dict[str, Any]:
    """First-draft entry for one song: ``{"parts": {key: stem}, "revoice": [keys]}``."""
    stems: dict[str, str] = {}
    for key, part in parts.items():
        if part.channel == DRUM_CHANNEL:
            stems[key] = "drums"
        elif part.program in VOICE_PROGRAMS:
            stems[key] = "vocals"
        elif part.program in BASS_PROGRAMS and part.median_pitch <= MAX_BASS_MEDIAN_PITCH:
            stems[key] = "bass"
        else:
            stems[key] = "other"
    revoice: list[str] = []
    if "vocals" not in stems.values():
        leads = lead_candidates(parts)
        if leads:
            stems[leads[0]] = "vocals"
            revoice = [leads[0]]
    return {"parts": dict(sorted(stems.items())), "revoice": revoice}


def load_stem_map(path: str | Path = STEM_MAP_PATH) -> dict[str, Any]:
    """The stored map: ``{"songs": {song: {"split", "parts", "revoice", "note"}}, ...}``."""
    with open(path, encoding="utf-8") as fh:
        data = json.load(fh)
    if not isinstance(data, dict) or not isinstance(data.get("songs"), dict):
        raise StemMapError(f"{path}: expected an object with a 'songs' object")
    return data


def check_song(song: str, entry: Mapping[str, Any], parts: Mapping[str, Part]) -> list[str]:
    """Problems of one song's entry against its parsed parts; empty when the entry is sound."""
    problems = []
    mapping = entry.get("parts", {})
    if entry.get("split") not in SPLITS:
        problems.append(f"{song}: split {entry.get('split')!r} is not one of {SPLITS}")
    missing = sorted(set(parts) - set(mapping))
    unknown = sorted(set(mapping) - set(parts))
    if missing:
        problems.append(f"{song}: parts without a stem: {missing}")
    if unknown:
        problems.append(f"{song}: mapped parts that the song does not have: {unknown}")
    bad = {k: v for k, v in mapping.items() if v not in SOURCES}
    if bad:
        problems.append(f"{song}: unknown stems {bad}; use one of {SOURCES}")
    for key, stem in mapping.items():
        part = parts.get(key)
        if part is None:
            continue
        if (stem == "drums") != (part.channel == DRUM_CHANNEL):
            problems.append(f"{song}: {key} -> {stem}: drums must be exactly the percussion channel")
    bass = [k for k, v in mapping.items() if v == "bass"]
    if bass:
        median = float(statistics.median(stem_pitches(parts, bass)))
        if median > MAX_BASS_MEDIAN_PITCH:
            problems.append(f"{song}: bass stem median pitch {median} is above MIDI {MAX_BASS_MEDIAN_PITCH}")
    if "vocals" not in mapping.values():
        problems.append(f"{song}: no vocal stand-in")
    for key in entry.get("revoice", []):
        if mapping.get(key) != "vocals":
            problems.append(f"{song}: re-voiced part {key} is not mapped to vocals")
    return problems


def check_map(stem_map: Mapping[str, Any], parts_by_song: Mapping[str, Mapping[str, Part]]) -> list[str]:
    """Problems of the whole map; songs that ``parts_by_song`` lacks are reported too."""
    problems = []
    for song, entry in stem_map["songs"].items():
        if song not in parts_by_song:
            problems.append(f"{song}: song file not found")
            continue
        problems.extend(check_song(song, entry, parts_by_song[song]))
    return problems
