"""Inference backends: "given a batch of window spectrograms, return every source's spectrogram".

A backend knows nothing of windows, files or budgets; adding one never touches the engine.
"""
from __future__ import annotations

from typing import Protocol

import torch

from models.config import LightSAFTConfig
from models.lightsaft import LightSAFTNet


class Backend(Protocol):
    """(N, 4, T, bins) window spectrograms -> (N, n_sources, 4, T, bins)."""

    name: str
    config: LightSAFTConfig

    def separate_spec(self, spec: torch.Tensor) -> torch.Tensor:
        ...


class TorchBackend:
    """Eager PyTorch.

    ``share_stem``: run the condition-free stem (first conv and first TFC) once per window
    instead of once per target. ``items_per_call``: how many (window, target) items go through
    the conditioned body at once; 1 keeps peak memory lowest and is also fastest on CPU.
    """

    name = "torch"

    def __init__(self, network: LightSAFTNet, share_stem: bool = True, items_per_call: int = 1) -> None:
        if items_per_call < 1:
            raise ValueError("items_per_call must be >= 1")
        self.network = network.eval()
        self.config = network.cfg
        self.share_stem = share_stem
        self.items_per_call = items_per_call

    @torch.inference_mode()
    def separate_spec(self, spec: torch.Tensor) -> torch.Tensor:
        net = self.network
        n_win = spec.shape[0]
        n_src = self.config.control_input_dim
        out = spec.new_empty((n_win, n_src) + tuple(spec.shape[1:]))
        items = [(w, s) for w in range(n_win) for s in range(n_src)]
        stems = net.stem(spec) if self.share_stem else None
        for start in range(0, len(items), self.items_per_call):
            chunk = items[start:start + self.items_per_call]
            win_idx = torch.tensor([w for w, _ in chunk])
            cond = torch.tensor([s for _, s in chunk], dtype=torch.long)
            if stems is not None:
                body_in = stems[win_idx]
                result = net.body(body_in, cond)
                if net.masking:
                    result = spec[win_idx] * result
            else:
                result = net(spec[win_idx], cond)
            for k, (w, s) in enumerate(chunk):
                out[w, s] = result[k]
        return out
