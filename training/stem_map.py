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

import argparse
import json
import statistics
import sys
from pathlib import Path
from typing import Any, Mapping

from core.files import atomic_write_text
from core.constants import SOURCES

from .midi_parts import (BASS_PROGRAMS, DRUM_CHANNEL, MAX_BASS_MEDIAN_PITCH, VOICE_PROGRAMS, Part,
                         read_parts, stem_pitches)

STEM_MAP_PATH = Path(__file__).with_name("stem_map.json")
SPLITS = ("train", "validation", "test")
#: Lead-melody candidates sing: median pitch in this range (MIDI notes, G3..C6) ...
LEAD_PITCH_RANGE = (55, 84)
#: ... and mostly one note at a time.
LEAD_MIN_MONO_FRACTION = 0.6
#: Refinement: a mostly monophonic part whose median lies at or below C2 plays the bass line,
#: whatever its program (rock MIDI often writes bass on saw leads or detuned guitars) ...
LOW_LINE_MAX_MEDIAN = 36
LOW_LINE_MIN_MONO = 0.9
#: ... unless it is unpitched or an effect: GM 48 Timpani, 97-104 (synth effects) and 113-128
#: (percussive, sound effects), 0-based. Such parts never stand in for the vocals either.
UNPITCHED_PROGRAMS = frozenset({47, *range(96, 104), *range(112, 128)})
#: Refinement: a choir/voice part is a sung line only with this many notes, mostly one at a time;
#: sparse hits and chordal pads go to other, and the lead melody stands in for the vocals.
VOICE_LINE_MIN_NOTES = 40
VOICE_LINE_MIN_MONO = 0.5


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


def _carries_a_tune(part: Part) -> bool:
    """Pitched, not an effect, and busy enough to be heard as a line."""
    return part.program not in UNPITCHED_PROGRAMS and part.n_notes >= VOICE_LINE_MIN_NOTES


def refine_draft(parts: Mapping[str, Part], draft: Mapping[str, Any]) -> tuple[dict[str, Any], list[str]]:
    """``propose_map``'s draft with the refinements above; returns (entry, what they changed).

    Written for collections whose programs lie more than OpenMSX's (Freedoom); the list of
    changes becomes the song's review note. An entry without vocals means: leave the song out.
    """
    stems = dict(draft["parts"])
    notes: list[str] = []
    for key, part in sorted(parts.items()):
        if (stems.get(key) == "other" and part.program is not None
                and part.program not in UNPITCHED_PROGRAMS and part.median_pitch <= LOW_LINE_MAX_MEDIAN
                and part.mono_fraction >= LOW_LINE_MIN_MONO):
            stems[key] = "bass"
            notes.append(f"{key} low line (median {part.median_pitch:g}): bass")
    drafted_leads = list(draft.get("revoice", []))
    lead = [k for k in drafted_leads if _carries_a_tune(parts[k])]
    for key in set(drafted_leads) - set(lead):
        stems[key] = "other"
        notes.append(f"lead {key} is an effect or too sparse: other")
    choir = [k for k, v in stems.items() if v == "vocals" and k not in lead]
    sung = [k for k in choir if _carries_a_tune(parts[k]) and parts[k].mono_fraction >= VOICE_LINE_MIN_MONO]
    if not lead and not sung:
        # The stand-in is scaled to -6 dB of the band over the whole song: a few choir hits
        # would become loud bursts. They go to other, and a lead melody stands in if there is one.
        for key in choir:
            stems[key] = "other"
        if choir:
            notes.append(f"choir {', '.join(choir)} is hits or a pad, not a line: other")
        leads = [k for k in lead_candidates(parts)
                 if k not in choir and k not in drafted_leads and _carries_a_tune(parts[k])]
        if leads:
            stems[leads[0]] = "vocals"
            lead = [leads[0]]
            notes.append(f"lead {leads[0]} re-voiced as the stand-in")
    if "vocals" not in stems.values():
        notes.append("no lead melody part: song left out")
    return {"parts": dict(sorted(stems.items())), "revoice": lead}, notes


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


def draft_collection(midi_dir: Path, source: str, prepare: str, split: str = "train") -> dict[str, Any]:
    """A map for every ``*.mid`` in ``midi_dir``: ``propose_map`` plus ``refine_draft``.

    Songs without any vocal stand-in are listed under ``left_out`` with the reason. Every entry's
    ``review`` note records what the refinements changed, for the reviewer to confirm or edit.
    """
    songs: dict[str, Any] = {}
    left_out: dict[str, str] = {}
    for path in sorted(Path(midi_dir).glob("*.mid")):
        parts = read_parts(path)
        entry, notes = refine_draft(parts, propose_map(parts))
        if "vocals" not in entry["parts"].values():
            left_out[path.stem] = "; ".join(notes)
            continue
        songs[path.stem] = {"split": split, **entry,
                            "review": "; ".join(notes) if notes else "draft confirmed"}
    return {"source": source, "prepare": prepare,
            "keys": "c{channel}p{program}, 0-based as in the MIDI bytes; c9drums is the percussion channel",
            "songs": songs, "left_out": left_out}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Draft a part->stem map for a folder of MIDI songs")
    parser.add_argument("--midi-dir", type=Path, required=True)
    parser.add_argument("--source", required=True, help="where the songs come from and their license")
    parser.add_argument("--prepare", required=True, help="the commands that put the songs in --midi-dir")
    parser.add_argument("--split", choices=SPLITS, default="train")
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args(argv)
    if not args.midi_dir.is_dir():
        print(f"MIDI folder not found: {args.midi_dir}", file=sys.stderr)
        return 2
    data = draft_collection(args.midi_dir, args.source, args.prepare, args.split)
    atomic_write_text(args.out, json.dumps(data, indent=1) + "\n")
    print(f"{len(data['songs'])} songs drafted, {len(data['left_out'])} left out -> {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
