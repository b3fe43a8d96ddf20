"""Input handling of `predict.py separate` and the audio reader; outputs are atomic."""
from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest
import soundfile as sf

from core.audio import AudioError, ResampleWarning, StemWriter, open_mixture, read_mixture
from core.constants import SOURCES
from separation import Separator, separate_file
from separation.torch_backends import TorchBackend
from tests.helpers import REPO_ROOT, music_like


@pytest.fixture()
def separator(tiny_network):
    return Separator(TorchBackend(tiny_network))


def _out_paths(folder):
    return {s: folder / f"{s}.wav" for s in SOURCES}


def _run_cli(*args):
    return subprocess.run([sys.executable, "predict.py", *map(str, args)], cwd=REPO_ROOT,
                          capture_output=True, text=True)


def test_mono_is_duplicated(tmp_path):
    mono = music_like(4410)[:, :1]
    sf.write(tmp_path / "m.wav", mono, 44100, subtype="FLOAT")
    audio = read_mixture(tmp_path / "m.wav")
    assert audio.shape == (4410, 2) and np.array_equal(audio[:, 0], audio[:, 1])
    assert np.array_equal(audio[:, 0], mono[:, 0])


def test_other_rate_is_resampled_with_warning(tmp_path):
    sr = 22050
    t = np.arange(sr) / sr
    tone = (0.5 * np.sin(2 * np.pi * 1000 * t)).astype(np.float32)
    sf.write(tmp_path / "lo.wav", np.stack([tone, tone], 1), sr, subtype="FLOAT")
    with pytest.warns(ResampleWarning, match="22050 Hz"):
        audio = read_mixture(tmp_path / "lo.wav")
    assert abs(audio.shape[0] - 44100) <= 1
    # Still a 1 kHz tone of the same level: compare with an ideal 44.1 kHz one mid-signal.
    ideal = 0.5 * np.sin(2 * np.pi * 1000 * np.arange(audio.shape[0]) / 44100)
    mid = slice(4000, 40000)
    assert np.abs(audio[mid, 0] - ideal[mid]).max() < 1e-3


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_non_finite_samples_are_rejected(tmp_path, separator, bad):
    audio = music_like(2000)
    audio[1234, 1] = bad
    sf.write(tmp_path / "bad.wav", audio, 44100, subtype="FLOAT")
    with pytest.raises(AudioError, match="NaN or Inf.*sample 1234"):
        separate_file(separator, tmp_path / "bad.wav", _out_paths(tmp_path / "out"))
    assert not (tmp_path / "out").exists() or not any((tmp_path / "out").iterdir())


def test_unreadable_missing_and_wrong_channel_files(tmp_path):
    (tmp_path / "text.wav").write_text("hello, not audio")
    with pytest.raises(AudioError, match="cannot read"):
        open_mixture(tmp_path / "text.wav")
    with pytest.raises(AudioError, match="not found"):
        open_mixture(tmp_path / "missing.wav")
    sf.write(tmp_path / "multi.wav", np.zeros((100, 6), np.float32), 44100)
    with pytest.raises(AudioError, match="6 channels"):
        open_mixture(tmp_path / "multi.wav")
    sf.write(tmp_path / "empty.wav", np.zeros((0, 2), np.float32), 44100)
    with pytest.raises(AudioError, match="no samples"):
        open_mixture(tmp_path / "empty.wav")


def test_short_input_and_silence(tmp_path, separator):
    sf.write(tmp_path / "short.wav", music_like(4410), 44100, subtype="FLOAT")  # 0.1 s
    sf.write(tmp_path / "silent.wav", np.zeros((44100, 2), np.float32), 44100, subtype="PCM_16")
    for name in ("short", "silent"):
        paths = _out_paths(tmp_path / name)
        separate_file(separator, tmp_path / f"{name}.wav", paths)
        n = 4410 if name == "short" else 44100
        for p in paths.values():
            data, sr = sf.read(p, dtype="float32")
            info = sf.info(p)
            assert data.shape == (n, 2) and sr == 44100 and info.subtype == "FLOAT"
            assert np.isfinite(data).all()
            if name == "silent":
                assert not data.any()


def test_crash_mid_write_leaves_no_stem(tmp_path, separator, monkeypatch):
    sf.write(tmp_path / "mix.wav", music_like(40000), 44100, subtype="FLOAT")
    paths = _out_paths(tmp_path / "out")
    calls = {"n": 0}
    real_write = StemWriter.write

    def failing_write(self, name, block):
        calls["n"] += 1
        if calls["n"] == 3:
            raise RuntimeError("disk on fire")
        real_write(self, name, block)

    monkeypatch.setattr(StemWriter, "write", failing_write)
    with pytest.raises(RuntimeError, match="disk on fire"):
        separate_file(separator, tmp_path / "mix.wav", paths)
    assert list((tmp_path / "out").iterdir()) == []


def test_existing_stems_survive_a_failed_run(tmp_path, separator):
    out = tmp_path / "out"
    out.mkdir()
    (out / "vocals.wav").write_bytes(b"old")
    audio = music_like(3000)
    audio[5] = np.nan
    sf.write(tmp_path / "bad.wav", audio, 44100, subtype="FLOAT")
    with pytest.raises(AudioError):
        separate_file(separator, tmp_path / "bad.wav", _out_paths(out))
    assert (out / "vocals.wav").read_bytes() == b"old"
    assert sorted(p.name for p in out.iterdir()) == ["vocals.wav"]


def test_cli_separate_writes_named_folders(tmp_path, tiny_ckpt):
    sf.write(tmp_path / "song one.flac", music_like(30000), 44100)
    sf.write(tmp_path / "two.wav", music_like(20000)[:, :1], 44100)
    res = _run_cli("separate", tmp_path / "song one.flac", tmp_path / "two.wav",
                   "--checkpoint", tiny_ckpt, "--out", tmp_path / "out")
    assert res.returncode == 0, res.stderr
    for name, n in (("song one", 30000), ("two", 20000)):
        for s in SOURCES:
            data, sr = sf.read(tmp_path / "out" / name / f"{s}.wav")
            assert data.shape == (n, 2) and sr == 44100


def test_cli_errors_are_clear(tmp_path, tiny_ckpt):
    (tmp_path / "junk.wav").write_text("junk")
    res = _run_cli("separate", tmp_path / "junk.wav", "--checkpoint", tiny_ckpt, "--out", tmp_path / "out")
    assert res.returncode == 1 and "error: cannot read" in res.stderr and "Traceback" not in res.stderr
    assert not (tmp_path / "out" / "junk").exists() or not any((tmp_path / "out" / "junk").iterdir())
    res = _run_cli("separate", tmp_path / "junk.wav", "--checkpoint", tmp_path / "none.ckpt", "--out", tmp_path)
    assert res.returncode == 2 and "model file not found" in res.stderr and "Traceback" not in res.stderr

