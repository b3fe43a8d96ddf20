"""Stem encodings: float by default; 16/24-bit WAV and FLAC clipped to [-1, 1], counted, and within
one quantisation step of the float stems; written atomically like every stem."""
from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest
import soundfile as sf

from core.audio import OUTPUT_FORMATS, StemWriter
from core.constants import SOURCES
from separation.settings import ENV_FORMAT, PredictorSettings, grader_settings
from tests.helpers import REPO_ROOT, music_like

STEP16 = 1 / 32768


@pytest.mark.parametrize("fmt", ["wav16", "wav24", "flac"])
def test_integer_formats_clip_count_and_round_trip(tmp_path, fmt):
    audio = music_like(44_100, seed=1) * 3.0  # loud: some samples beyond full scale
    over = int((np.abs(audio) > 1).sum())
    assert over > 0
    path = tmp_path / f"x{OUTPUT_FORMATS[fmt].suffix}"
    with StemWriter({"x": path}, fmt=fmt) as writer:
        writer.write("x", audio[:20_000])
        writer.write("x", audio[20_000:])
    assert writer.clipped == {"x": over}
    info = sf.info(path)
    assert info.format == OUTPUT_FORMATS[fmt].container and info.subtype == OUTPUT_FORMATS[fmt].subtype
    back, _ = sf.read(path, dtype="float32")
    assert np.abs(back - np.clip(audio, -1, 1)).max() <= STEP16


def test_float_is_the_default_and_never_clips(tmp_path):
    audio = music_like(4_410, seed=2) * 3.0
    with StemWriter({"x": tmp_path / "x.wav"}) as writer:
        writer.write("x", audio)
    assert writer.clipped == {"x": 0}
    assert np.array_equal(sf.read(tmp_path / "x.wav", dtype="float32")[0], audio)


def test_settings_and_grader_mode_take_the_format():
    assert PredictorSettings().output_format == "float"
    assert grader_settings({ENV_FORMAT: "flac"}).output_format == "flac"
    with pytest.raises(ValueError, match="unknown output format 'mp3'"):
        PredictorSettings(output_format="mp3")


def test_separate_writes_wav16_and_flac_within_one_step_of_float(tmp_path, tiny_ckpt):
    mix = tmp_path / "song.wav"
    sf.write(mix, music_like(3 * 44_100, seed=3) * 2.5, 44_100, subtype="FLOAT")
    outs = {}
    for fmt in ("float", "wav16", "flac"):
        out = tmp_path / fmt
        res = subprocess.run([sys.executable, "predict.py", "separate", str(mix), "--checkpoint", str(tiny_ckpt),
                              "--out", str(out), "--format", fmt, "--quiet", "--threads", "1"],
                             cwd=REPO_ROOT, capture_output=True, text=True, timeout=300)
        assert res.returncode == 0, res.stderr
        outs[fmt] = res.stderr
        suffix = OUTPUT_FORMATS[fmt].suffix
        assert sorted(p.name for p in (out / "song").iterdir()) == sorted(f"{s}{suffix}" for s in SOURCES)
    for source in SOURCES:
        ref = np.clip(sf.read(tmp_path / "float" / "song" / f"{source}.wav", dtype="float32")[0], -1, 1)
        for fmt in ("wav16", "flac"):
            got = sf.read(tmp_path / fmt / "song" / f"{source}{OUTPUT_FORMATS[fmt].suffix}", dtype="float32")[0]
            assert np.abs(got - ref).max() <= STEP16, (fmt, source)
    clipped_somewhere = any(np.abs(sf.read(tmp_path / "float" / "song" / f"{s}.wav")[0]).max() > 1 for s in SOURCES)
    assert ("clipped to [-1, 1] for wav16" in outs["wav16"]) == clipped_somewhere
    assert "clipped" not in outs["float"]
