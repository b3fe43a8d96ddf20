"""One Open-Unmix target network: magnitude spectrogram in, the target's magnitude out.

The network works frame by frame except for its BiLSTM, which sees the whole track. It is split
so that a caller can stream: :meth:`UmxNetwork.features` (frame-wise encoder, any chunk),
:meth:`UmxNetwork.recur` (the BiLSTM and the frame-wise layers after it, whole track, output
``hidden_size`` values per frame) and :meth:`UmxNetwork.decode` (frame-wise, any chunk). Their
composition is :meth:`forward`, the original's call.
"""
from __future__ import annotations

import dataclasses

import torch
from torch import nn
from torch.nn import functional as F


@dataclasses.dataclass(frozen=True)
class UmxConfig:
    """Shape of one target network (what the model folder's files say).

    ``nb_bins``: STFT bins (n_fft // 2 + 1); ``max_bin``: bins the network reads (the bandwidth
    limit, taken from the stored ``input_mean``); ``hidden_size``: 512 (UMX, UMX-HQ) or 1024
    (UMX-L).
    """

    nb_bins: int = 2049
    nb_channels: int = 2
    hidden_size: int = 512
    nb_layers: int = 3
    unidirectional: bool = False
    max_bin: int = 1487


class UmxNetwork(nn.Module):
    """Parameter names match Open-Unmix's state_dict, so its ``.pth`` files load strictly."""

    def __init__(self, cfg: UmxConfig) -> None:
        super().__init__()
        self.cfg = cfg
        hidden = cfg.hidden_size
        self.fc1 = nn.Linear(cfg.max_bin * cfg.nb_channels, hidden, bias=False)
        self.bn1 = nn.BatchNorm1d(hidden)
        self.lstm = nn.LSTM(input_size=hidden, hidden_size=hidden if cfg.unidirectional else hidden // 2,
                            num_layers=cfg.nb_layers, bidirectional=not cfg.unidirectional)
        self.fc2 = nn.Linear(hidden * 2, hidden, bias=False)
        self.bn2 = nn.BatchNorm1d(hidden)
        self.fc3 = nn.Linear(hidden, cfg.nb_bins * cfg.nb_channels, bias=False)
        self.bn3 = nn.BatchNorm1d(cfg.nb_bins * cfg.nb_channels)
        # Stored as the negated data mean and the inverse std (the package's convention).
        self.input_mean = nn.Parameter(torch.zeros(cfg.max_bin))
        self.input_scale = nn.Parameter(torch.ones(cfg.max_bin))
        self.output_scale = nn.Parameter(torch.ones(cfg.nb_bins))
        self.output_mean = nn.Parameter(torch.ones(cfg.nb_bins))
        self.eval()

    def features(self, mag: torch.Tensor) -> torch.Tensor:
        """(frames, channels, nb_bins) mixture magnitude -> (frames, hidden) BiLSTM input."""
        x = (mag[..., :self.cfg.max_bin] + self.input_mean) * self.input_scale
        x = self.bn1(self.fc1(x.reshape(x.shape[0], -1)))
        return torch.tanh(x)

    def recur(self, x: torch.Tensor) -> torch.Tensor:
        """(frames, hidden) features of the whole track -> (frames, hidden) decoder input."""
        out, _ = self.lstm(x[:, None])  # the LSTM runs over the track's frames, batch of one
        x = torch.cat([x, out[:, 0]], dim=-1)  # skip connection
        return F.relu(self.bn2(self.fc2(x)))

    def decode(self, hidden: torch.Tensor, mag: torch.Tensor) -> torch.Tensor:
        """(frames, hidden) and the (frames, channels, nb_bins) mixture magnitude -> the target's
        magnitude, same shape as ``mag``."""
        y = self.bn3(self.fc3(hidden)).reshape(mag.shape)
        y = y * self.output_scale + self.output_mean
        return F.relu(y) * mag

    def forward(self, spec: torch.Tensor) -> torch.Tensor:
        """(batch, channels, nb_bins, frames) magnitude -> same shape (the original's layout)."""
        outs = []
        for mag in spec.permute(0, 3, 1, 2):  # (frames, channels, bins) per item
            outs.append(self.decode(self.recur(self.features(mag)), mag))
        return torch.stack(outs).permute(0, 2, 3, 1)
