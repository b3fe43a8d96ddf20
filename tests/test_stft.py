"""The numpy STFT the engine runs against its torch twin (training, export), and the start-up it buys."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from models.spectral import Spectral, hann_window as torch_hann
from models.stft import Stft, hann_window

ROOT = Path(__file__).resolve().parents[1]


def test_hann_window_matches_torch():
    assert np.abs(hann_window(2048) - torch_hann(2048).numpy()).max() < 3e-7


@pytest.mark.parametrize("n_fft,hop,n_samples", [(2048, 1024, 261120), (2048, 512, 30000), (512, 384, 7001),
                                                 (1024, 256, 8192)])
def test_numpy_stft_matches_torch(n_fft, hop, n_samples):
    """Same layout, frames and samples as ``torch.stft``/``torch.istft``, within float32 rounding."""
    rng = np.random.default_rng(n_fft + hop)
    audio = (rng.standard_normal((2, n_samples, 2)) * 0.3).astype(np.float32)
    window = torch_hann(n_fft)
    ours, theirs = Stft(n_fft, hop, window.numpy()), Spectral(n_fft, hop, window)
    spec, want = ours.to_spec(audio), theirs.to_spec(torch.from_numpy(audio)).numpy()
    assert spec.shape == want.shape == (2, 4, 1 + n_samples // hop, n_fft // 2 + 1) and spec.dtype == np.float32
    assert np.abs(spec - want).max() <= 2e-6 * max(1.0, np.abs(want).max())
    # The inverse of the same (torch) spectrogram, so that only the iSTFT is compared.
    back, want_back = ours.to_audio(want), theirs.to_audio(torch.from_numpy(want)).numpy()
    assert back.shape == want_back.shape == (2, (want.shape[2] - 1) * hop, 2) and back.dtype == np.float32
    assert np.abs(back - want_back).max() <= 1e-6
    assert np.abs(back[:, :n_samples] - audio[:, :back.shape[1]]).max() <= 1e-5  # and it inverts


def test_numpy_stft_refuses_what_torch_refuses():
    with pytest.raises(ValueError, match="window must have shape"):
        Stft(512, 128, np.ones(256, dtype=np.float32))
    with pytest.raises(ValueError, match="reflect padding"):
        Stft(512, 128).to_spec(np.zeros((1, 100, 2), dtype=np.float32))
    with pytest.raises(ValueError, match="NOLA"):
        Stft(512, 128, np.zeros(512, dtype=np.float32)).to_audio(np.ones((1, 4, 5, 257), dtype=np.float32))


def test_the_exported_model_path_imports_neither_torch_nor_onnx():
    """From ``predict.py`` to stems of the default ONNX model: no torch (2 s, 200 MiB) and no onnx (1 s)."""
    code = (
        "import sys, numpy as np\n"
        "import predict\n"
        "from models import DEFAULT_MODEL\n"
        "from separation.loading import load_separator\n"
        "sep = load_separator(DEFAULT_MODEL)\n"
        "stems = sep.separate(np.zeros((44100, 2), np.float32) + 0.01)\n"
        "assert set(stems) == {'vocals', 'drums', 'bass', 'other'}\n"
        "print(sorted(m for m in ('torch', 'onnx', 'ml_dtypes') if m in sys.modules))\n")
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip().splitlines()[-1] == "[]"
