"""The kit's demo set: deterministic, **synthetic** four-stem songs in the MDX folder layout.

These songs are generated, not recorded: a sung-like lead (harmonic voice with vibrato, vowel
formants, phrases and rests), drums (kick, snare, hi-hats), a bass line (MIDI pitch below 48)
and chords (pads and plucked arpeggios), each its own stem, over a random tempo, key and chord
progression. They exist so that ``bash run.sh`` works on a fresh machine and so that training
can draw extra material; scores on them say nothing about scores on real music.

``make_demo_song(seed, duration_s)`` is a pure function of its arguments: the same seed and
duration give the same samples, bit for bit, on every run.
"""
from __future__ import annotations

import json
import math
import os
import shutil
from pathlib import Path

import numpy as np

from core.constants import N_AUDIO_CHANNELS, SAMPLE_RATE, SOURCES
from core.files import atomic_path, atomic_write_text

#: The default demo set: a handful of 20-40 s songs, small enough for a full-size model on CPU.
DEMO_SONGS = 4
DEMO_SEED = 2021
DEMO_DURATION_RANGE_S = (20.0, 32.0)
#: Bump when the synthesis changes, so that a stale demo folder is regenerated.
DEMO_VERSION = 1
MANIFEST_NAME = "demo.json"
README_NAME = "README.txt"

#: Loudness (RMS) of each stem before the per-song random offset; the lead sits on top.
_STEM_RMS = {"vocals": 0.085, "drums": 0.08, "bass": 0.07, "other": 0.05}
_PEAK = 0.95
_MAJOR = (0, 2, 4, 5, 7, 9, 11)
_MINOR = (0, 2, 3, 5, 7, 8, 10)
#: Chord progressions as scale degrees (0 = tonic).
_PROGRESSIONS = ((0, 4, 5, 3), (0, 5, 3, 4), (5, 3, 0, 4), (0, 3, 0, 4), (0, 3, 5, 4), (0, 6, 5, 4))
#: Vowel formants (Hz) and bandwidths: a, e, i, o, u.
_VOWELS = ((800, 1200, 2500), (450, 1900, 2600), (300, 2300, 3000), (480, 850, 2500), (330, 750, 2400))
_FORMANT_WIDTHS = (90.0, 110.0, 150.0)
_FORMANT_GAINS = (1.0, 0.55, 0.3)


def midi_to_hz(pitch: float) -> float:
    """Equal-tempered frequency of a MIDI pitch (A4 = 69 = 440 Hz)."""
    return 440.0 * 2.0 ** ((pitch - 69.0) / 12.0)


# ---------------------------------------------------------------------- building blocks
def _envelope(n: int, attack: float, release: float, sr: int = SAMPLE_RATE) -> np.ndarray:
    """Linear attack, flat sustain, linear release; ``n`` samples."""
    env = np.ones(n)
    a, r = min(n, max(1, int(attack * sr))), min(n, max(1, int(release * sr)))
    env[:a] *= np.linspace(0.0, 1.0, a, endpoint=False)
    env[n - r:] *= np.linspace(1.0, 0.0, r)
    return env


def _harmonics(phase: np.ndarray, amps: np.ndarray) -> np.ndarray:
    """sum_k amps[k] * sin((k + 1) * phase) -- an additive tone."""
    out = np.zeros_like(phase)
    for k, a in enumerate(amps):
        if a:
            out += a * np.sin((k + 1) * phase)
    return out


def _n_harmonics(f0: float, top_hz: float = 12000.0) -> int:
    return max(1, int(top_hz // max(f0, 1.0)))


def _highpass(x: np.ndarray, order: int = 2) -> np.ndarray:
    """Crude high-pass by repeated first differences (enough for hats and breath)."""
    for _ in range(order):
        x = np.diff(x, prepend=0.0)
    return x


def _lowpass(x: np.ndarray, coeff: float) -> np.ndarray:
    """One-pole low-pass y[n] = (1 - c) x[n] + c y[n-1], vectorised through a short IIR."""
    from scipy.signal import lfilter

    return lfilter([1.0 - coeff], [1.0, -coeff], x)


def _place(buffer: np.ndarray, start: int, sound: np.ndarray, pan: float = 0.0) -> None:
    """Add a mono ``sound`` into the stereo ``buffer`` at ``start`` with constant-power ``pan``."""
    if start >= buffer.shape[0] or sound.size == 0:
        return
    stop = min(buffer.shape[0], start + sound.shape[0])
    angle = (pan + 1.0) * math.pi / 4.0
    piece = sound[: stop - start]
    buffer[start:stop, 0] += math.cos(angle) * piece
    buffer[start:stop, 1] += math.sin(angle) * piece


# ---------------------------------------------------------------------- the song plan
class _Plan:
    """Tempo, key, chords and the bar grid of one song, drawn from ``rng``."""

    def __init__(self, rng: np.random.Generator, n_samples: int) -> None:
        self.bpm = float(rng.uniform(88.0, 132.0))
        self.beat = 60.0 / self.bpm
        self.minor = bool(rng.random() < 0.4)
        self.scale = _MINOR if self.minor else _MAJOR
        self.tonic = int(rng.integers(0, 12))
        progression = _PROGRESSIONS[int(rng.integers(len(_PROGRESSIONS)))]
        self.bar_s = 4 * self.beat
        self.n_bars = int(math.ceil(n_samples / (self.bar_s * SAMPLE_RATE))) + 1
        # Harmonic rhythm: one chord per bar, the progression looped.
        self.chords = [progression[b % len(progression)] for b in range(self.n_bars)]

    def degree_pitch(self, degree: int, base: int) -> int:
        """MIDI pitch of a scale degree (any integer) in the octave starting at ``base``."""
        octave, step = divmod(degree, 7)
        return base + self.tonic + 12 * octave + self.scale[step]

    def chord_pitches(self, bar: int, base: int, size: int = 3) -> list[int]:
        root = self.chords[bar]
        return [self.degree_pitch(root + 2 * i, base) for i in range(size)]

    def at(self, bar: int, beat: float) -> int:
        """Sample index of ``beat`` (may be fractional) in ``bar``."""
        return int(round((bar * self.bar_s + beat * self.beat) * SAMPLE_RATE))


# ---------------------------------------------------------------------- drums
def _kick(rng: np.random.Generator) -> np.ndarray:
    t = np.arange(int(0.35 * SAMPLE_RATE)) / SAMPLE_RATE
    freq = 48.0 + 110.0 * np.exp(-t / 0.035)
    body = np.sin(2 * np.pi * np.cumsum(freq) / SAMPLE_RATE) * np.exp(-t / 0.18)
    click = rng.standard_normal(t.size) * np.exp(-t / 0.002) * 0.15
    return body + click


def _snare(rng: np.random.Generator) -> np.ndarray:
    t = np.arange(int(0.25 * SAMPLE_RATE)) / SAMPLE_RATE
    noise = _lowpass(_highpass(rng.standard_normal(t.size), 1), 0.35) * np.exp(-t / 0.07)
    tone = np.sin(2 * np.pi * 190.0 * t) * np.exp(-t / 0.05)
    return 0.8 * noise + 0.6 * tone


def _hat(rng: np.random.Generator, open_hat: bool) -> np.ndarray:
    t = np.arange(int((0.3 if open_hat else 0.06) * SAMPLE_RATE)) / SAMPLE_RATE
    return 0.35 * _highpass(rng.standard_normal(t.size), 2) * np.exp(-t / (0.09 if open_hat else 0.015))


def _drums(plan: _Plan, rng: np.random.Generator, n: int) -> np.ndarray:
    out = np.zeros((n, N_AUDIO_CHANNELS))
    sixteenth = 0.25
    kick_extra = (6, 10, 14)[int(rng.integers(3))]
    busy_hats = bool(rng.random() < 0.5)
    breakdown = int(rng.integers(2, max(3, plan.n_bars)))  # one bar with kick and snare only
    for bar in range(plan.n_bars):
        for step in range(16):
            start = plan.at(bar, step * sixteenth)
            vel = float(rng.uniform(0.8, 1.0))
            if step in (0, 8) or (step == kick_extra and rng.random() < 0.7):
                _place(out, start, vel * _kick(rng), 0.0)
            if step in (4, 12) or (step == 15 and rng.random() < 0.2):
                _place(out, start, vel * _snare(rng), -0.1)
            hat_step = busy_hats or step % 2 == 0
            if hat_step and bar != breakdown:
                accent = 1.0 if step % 4 == 0 else 0.6
                _place(out, start, vel * accent * _hat(rng, open_hat=(step == 14 and rng.random() < 0.5)), 0.35)
    return out


# ---------------------------------------------------------------------- bass
def _bass_note(pitch: int, length: int) -> np.ndarray:
    """A plucked, darkening saw-like bass note (upper harmonics die away faster)."""
    f0 = midi_to_hz(pitch)
    t = np.arange(length) / SAMPLE_RATE
    phase = 2 * np.pi * f0 * t
    tone = np.zeros(length)
    decay = np.exp(-t * 2.5)
    fade = np.ones(length)
    for k in range(1, _n_harmonics(f0, 3000.0) + 1):
        fade *= decay
        tone += np.sin(k * phase) * fade / k
    return tone * _envelope(length, 0.004, 0.03) * (0.6 + 0.4 * np.exp(-t / 0.15))


def _bass(plan: _Plan, rng: np.random.Generator, n: int) -> np.ndarray:
    out = np.zeros((n, N_AUDIO_CHANNELS))
    pattern = [(0.0, 0), (1.0, 0), (1.5, 0), (2.0, 7), (3.0, 0), (3.5, 12)]  # (beat, semitones)
    if rng.random() < 0.5:
        pattern = [(b * 0.5, 7 if b == 6 else 0) for b in range(8)]  # driving eighths
    notes: dict[tuple[int, int], np.ndarray] = {}
    for bar in range(plan.n_bars):
        # Root placed between E1 (28) and D#2 (39); a fifth or octave above stays below C3 (48).
        root = plan.degree_pitch(plan.chords[bar], 24)
        while root < 28:
            root += 12
        while root > 39:
            root -= 12
        for i, (beat, interval) in enumerate(pattern):
            next_beat = pattern[i + 1][0] if i + 1 < len(pattern) else 4.0
            pitch = min(root + interval, 47)
            length = int((next_beat - beat) * plan.beat * SAMPLE_RATE * 0.92)
            if (pitch, length) not in notes:
                notes[pitch, length] = _bass_note(pitch, length)
            _place(out, plan.at(bar, beat), float(rng.uniform(0.85, 1.0)) * notes[pitch, length], 0.0)
    return out


# ---------------------------------------------------------------------- other (chords)
def _pad_voice(pitch: int, length: int, detune_cents: float, phase0: float) -> np.ndarray:
    """A soft triangle-like pad tone (odd harmonics, 1/k^2) with slow attack and release."""
    f = midi_to_hz(pitch) * 2 ** (detune_cents / 1200.0)
    amps = np.array([1.0 / k ** 2 if k % 2 else 0.0 for k in range(1, _n_harmonics(f, 5000.0) + 1)])
    t = np.arange(length) / SAMPLE_RATE
    return _harmonics(2 * np.pi * f * t + phase0, amps) * _envelope(length, 0.12, 0.25)


def _pluck(pitch: int, length: int) -> np.ndarray:
    f0 = midi_to_hz(pitch)
    t = np.arange(length) / SAMPLE_RATE
    amps = np.array([0.8 ** k for k in range(_n_harmonics(f0, 8000.0))])
    return _harmonics(2 * np.pi * f0 * t, amps) * np.exp(-t / 0.12) * _envelope(length, 0.002, 0.01)


def _other(plan: _Plan, rng: np.random.Generator, n: int) -> np.ndarray:
    out = np.zeros((n, N_AUDIO_CHANNELS))
    arpeggio = bool(rng.random() < 0.7)
    bar_len = int(plan.bar_s * SAMPLE_RATE)
    pluck_len = int(0.5 * plan.beat * SAMPLE_RATE)
    sounds: dict[tuple, np.ndarray] = {}  # chords repeat: render each distinct sound once
    for bar in range(plan.n_bars):
        start = plan.at(bar, 0.0)
        stop = min(n, start + bar_len)
        pitches = plan.chord_pitches(bar, 48 + 7, size=4 if rng.random() < 0.3 else 3)
        for j, pitch in enumerate(pitches):
            for ch, detune_cents in enumerate((-4.0, 4.0)):  # detuned channels give a wide pad
                key = ("pad", pitch, ch, j)
                if key not in sounds:
                    sounds[key] = _pad_voice(pitch, bar_len, detune_cents, float(j))
                if stop > start:
                    out[start:stop, ch] += 0.35 * sounds[key][: stop - start]
        if arpeggio:
            for step in range(8):
                pitch = pitches[step % len(pitches)] + 12
                if ("pluck", pitch) not in sounds:
                    sounds["pluck", pitch] = _pluck(pitch, pluck_len)
                _place(out, plan.at(bar, step * 0.5), 0.3 * sounds["pluck", pitch], -0.4 + 0.1 * (step % 3))
    return out


# ---------------------------------------------------------------------- vocals
def _formant_gain(freqs: np.ndarray, vowel: tuple[int, int, int]) -> np.ndarray:
    gain = np.full_like(freqs, 0.02)
    for centre, width, g in zip(vowel, _FORMANT_WIDTHS, _FORMANT_GAINS):
        gain += g / (1.0 + ((freqs - centre) / width) ** 2)
    return gain


def _sung_note(f_prev: float, f0: float, length: int, rng: np.random.Generator) -> np.ndarray:
    t = np.arange(length) / SAMPLE_RATE
    glide = np.exp(-t / 0.035)  # portamento from the previous note
    cents = 1200.0 * np.log2(f_prev / f0) * glide
    vib_rate = float(rng.uniform(5.0, 6.2))
    vib_depth = float(rng.uniform(25.0, 45.0)) * np.clip((t - 0.15) / 0.25, 0.0, 1.0)
    cents = cents + vib_depth * np.sin(2 * np.pi * vib_rate * t) + 6.0 * np.sin(2 * np.pi * 1.3 * t + rng.uniform(0, 6))
    freq = f0 * 2.0 ** (cents / 1200.0)
    phase = 2 * np.pi * np.cumsum(freq) / SAMPLE_RATE
    k = np.arange(1, _n_harmonics(f0 * 1.1, 10000.0) + 1)
    vowel = _VOWELS[int(rng.integers(len(_VOWELS)))]
    amps = _formant_gain(k * f0, vowel) / k ** 0.8
    voice = _harmonics(phase, amps)
    breath = _lowpass(_highpass(rng.standard_normal(length), 1), 0.6) * 0.015
    env = _envelope(length, 0.04, 0.08)
    note = (voice / max(1e-9, np.abs(amps).sum()) * 3.0 + breath) * env
    if rng.random() < 0.4:  # a consonant: a short noise burst at the onset
        burst = min(length, int(0.025 * SAMPLE_RATE))
        note[:burst] += 0.25 * _highpass(rng.standard_normal(burst), 2) * np.linspace(1.0, 0.0, burst)
    return note


def _vocals(plan: _Plan, rng: np.random.Generator, n: int) -> np.ndarray:
    dry = np.zeros((n, N_AUDIO_CHANNELS))
    degree = int(rng.integers(0, 5))
    base = 57 if rng.random() < 0.5 else 52  # a higher or a lower voice
    f_prev = midi_to_hz(plan.degree_pitch(degree, base))
    bar = int(rng.integers(0, 2))  # sometimes an instrumental first bar
    while bar < plan.n_bars:
        phrase_bars = int(rng.integers(1, 3))
        beat = 0.0
        end = phrase_bars * 4.0 - 0.5
        while beat < end:
            dur = float(rng.choice([0.5, 1.0, 1.0, 1.5, 2.0]))
            dur = min(dur, end - beat)
            chord_tones = [plan.chords[min(plan.n_bars - 1, bar + int(beat // 4))] + 2 * i for i in range(3)]
            if rng.random() < 0.5:  # step-wise motion, else jump to a nearby chord tone
                degree += int(rng.choice([-1, 1, -2, 2]))
            else:
                degree = min(chord_tones, key=lambda d: abs(d - degree))
            degree = int(np.clip(degree, -2, 9))
            f0 = midi_to_hz(plan.degree_pitch(degree, base))
            length = int(dur * plan.beat * SAMPLE_RATE * float(rng.uniform(0.85, 0.97)))  # breaths
            if length > 0:
                note = _sung_note(f_prev, f0, length, rng)
                _place(dry, plan.at(bar, beat), float(rng.uniform(0.8, 1.0)) * note, 0.0)
                f_prev = f0
            beat += dur
        bar += phrase_bars + int(rng.integers(1, 3))  # a rest of one or two bars
    # A little room: two early reflections, one per side, so the lead is not bone dry.
    wet = dry.copy()
    for ch, delay_s in enumerate((0.023, 0.031)):
        d = int(delay_s * SAMPLE_RATE)
        wet[d:, ch] += 0.25 * dry[:-d, 1 - ch]
    return wet


# ---------------------------------------------------------------------- public API
def make_demo_song(seed: int, duration_s: float) -> dict[str, np.ndarray]:
    """One synthetic song: ``{vocals, drums, bass, other, mixture}``, each (n, 2) float32 at 44.1 kHz.

    Deterministic per ``(seed, duration_s)``. ``mixture`` is exactly the float32 sum of the four
    stems, added in ``SOURCES`` order (``((vocals + drums) + bass) + other``).
    """
    if not isinstance(seed, (int, np.integer)) or seed < 0:
        raise ValueError(f"seed must be a non-negative integer, got {seed!r}")
    if not math.isfinite(duration_s) or duration_s <= 0:
        raise ValueError(f"duration_s must be a positive number of seconds, got {duration_s!r}")
    n = int(round(duration_s * SAMPLE_RATE))
    rng = np.random.default_rng([int(seed), DEMO_VERSION])
    plan = _Plan(rng, n)
    makers = {"vocals": _vocals, "drums": _drums, "bass": _bass, "other": _other}
    # Each part draws from its own stream so that changing one part leaves the others alone.
    streams = dict(zip(SOURCES, rng.spawn(len(SOURCES))))
    stems = {name: makers[name](plan, streams[name], n) for name in SOURCES}
    level_rng = np.random.default_rng([int(seed), DEMO_VERSION, 1])
    for name in SOURCES:
        rms = float(np.sqrt(np.mean(stems[name] ** 2))) or 1.0
        gain_db = float(level_rng.uniform(-2.0, 2.0))
        stems[name] = stems[name] * (_STEM_RMS[name] * 10 ** (gain_db / 20) / rms)
    peak = float(np.abs(sum(stems.values())).max())
    scale = min(1.0, _PEAK / peak) if peak > 0 else 1.0
    song = {name: (stems[name] * scale).astype(np.float32) for name in SOURCES}
    mixture = np.zeros((n, N_AUDIO_CHANNELS), dtype=np.float32)
    for name in SOURCES:
        mixture = mixture + song[name]
    song["mixture"] = mixture
    return song


def demo_song_name(index: int) -> str:
    """Folder name of song ``index`` of a demo set."""
    return f"synthetic-{index:02d}"


def demo_durations(n_songs: int, seed: int,
                   duration_range_s: tuple[float, float] = DEMO_DURATION_RANGE_S) -> list[float]:
    """Song lengths of a demo set, whole tenths of a second, drawn from ``duration_range_s``."""
    lo, hi = duration_range_s
    if not 0 < lo <= hi:
        raise ValueError(f"bad duration range {duration_range_s!r}")
    rng = np.random.default_rng([int(seed), DEMO_VERSION, 2])
    return [round(float(rng.uniform(lo, hi)), 1) for _ in range(n_songs)]


def _manifest(n_songs: int, seed: int, durations: list[float]) -> dict:
    return {"kind": "mdx-kit synthetic demo set", "synthetic": True, "version": DEMO_VERSION,
            "seed": int(seed), "n_songs": n_songs, "sample_rate": SAMPLE_RATE,
            "songs": {demo_song_name(i): {"seed": song_seed(seed, i), "duration_s": d}
                      for i, d in enumerate(durations)}}


def song_seed(set_seed: int, index: int) -> int:
    """The ``make_demo_song`` seed of song ``index`` of a demo set."""
    return int(set_seed) * 1000 + index


def demo_set_is_current(root: str | os.PathLike[str], n_songs: int = DEMO_SONGS, seed: int = DEMO_SEED,
                        duration_range_s: tuple[float, float] = DEMO_DURATION_RANGE_S) -> bool:
    """True when ``root`` holds a complete demo set made with these settings and this version."""
    root = Path(root)
    try:
        manifest = json.loads((root / MANIFEST_NAME).read_text())
    except (OSError, ValueError):
        return False
    want = _manifest(n_songs, seed, demo_durations(n_songs, seed, duration_range_s))
    if manifest != want:
        return False
    names = ("mixture",) + SOURCES
    return all((root / song / f"{s}.wav").is_file() for song in want["songs"] for s in names)


def write_demo_set(root: str | os.PathLike[str], n_songs: int = DEMO_SONGS, seed: int = DEMO_SEED,
                   duration_range_s: tuple[float, float] = DEMO_DURATION_RANGE_S) -> list[Path]:
    """Write a synthetic demo set in the MDX layout ``root/<song>/{mixture,vocals,...}.wav``.

    Each song is built in a hidden temporary folder and renamed into place when complete, and
    the manifest (``demo.json``) is written last, so an interrupted call never leaves a song or
    a set that looks finished. Returns the song folders.
    """
    from core.audio import write_wav

    if n_songs < 1:
        raise ValueError("n_songs must be at least 1")
    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    durations = demo_durations(n_songs, seed, duration_range_s)
    folders = []
    for index, duration in enumerate(durations):
        folder = root / demo_song_name(index)
        with atomic_path(folder) as tmp:
            shutil.rmtree(tmp, ignore_errors=True)
            tmp.mkdir()
            song = make_demo_song(song_seed(seed, index), duration)
            for name in ("mixture",) + SOURCES:
                write_wav(tmp / f"{name}.wav", song[name])
            if folder.exists():
                shutil.rmtree(folder)
        folders.append(folder)
    _write_text(root / README_NAME, _README)
    _write_text(root / MANIFEST_NAME, json.dumps(_manifest(n_songs, seed, durations), indent=2) + "\n")
    return folders


def ensure_demo_set(root: str | os.PathLike[str], n_songs: int = DEMO_SONGS, seed: int = DEMO_SEED,
                    duration_range_s: tuple[float, float] = DEMO_DURATION_RANGE_S) -> bool:
    """Generate the demo set under ``root`` unless a current one is there; True if generated."""
    if demo_set_is_current(root, n_songs, seed, duration_range_s):
        return False
    write_demo_set(root, n_songs, seed, duration_range_s)
    return True


def _write_text(path: Path, text: str) -> None:
    atomic_write_text(path, text)


_README = """mdx-kit demo set -- SYNTHETIC AUDIO

Every song here was generated by evaluator/demo.py (make_demo_song): a sung-like synthetic lead,
synthetic drums, bass and chords, each written as its own stem; mixture.wav is their exact sum.
Nothing was recorded. Scores on these songs check that the pipeline works end to end; they are
not comparable with MUSDB18 or MDX leaderboard figures. Regenerate with
    python -m evaluator.demo --out data/demo
"""


def main(argv: list[str] | None = None) -> int:
    """``python -m evaluator.demo --out DIR [--songs N] [--seed S]``: write a demo set."""
    import argparse

    parser = argparse.ArgumentParser(prog="python -m evaluator.demo",
                                     description="Write the kit's synthetic demo set (MDX folder layout).")
    parser.add_argument("--out", required=True, help="folder to write (songs go to OUT/<song>/)")
    parser.add_argument("--songs", type=int, default=DEMO_SONGS, help=f"number of songs (default {DEMO_SONGS})")
    parser.add_argument("--seed", type=int, default=DEMO_SEED, help=f"set seed (default {DEMO_SEED})")
    args = parser.parse_args(argv)
    for folder in write_demo_set(args.out, args.songs, args.seed):
        print(folder)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
