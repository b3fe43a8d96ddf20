"""The exported graph: the stem and the conditioned body side by side in one module.

Exported as one graph with two disjoint halves so that a single file can run the condition-free
stem once per window and the body once per target (the backends split it again when loading).
"""
from __future__ import annotations

import torch

from models.lightsaft import LightSAFTNet


class SplitGraph(torch.nn.Module):
    """``(spec (N,4,T,bins), features (B,C,T,F), condition (B,)) -> (stem (N,C,T,F), spec (B,4,T,bins))``."""

    def __init__(self, network: LightSAFTNet) -> None:
        super().__init__()
        self.network = network

    def forward(self, spec: torch.Tensor, features: torch.Tensor,
                condition: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return self.network.stem(spec), self.network.body(features, condition)


def example_inputs(network: LightSAFTNet, n_frames: int | None = None) -> tuple[torch.Tensor, ...]:
    """Deterministic example inputs for tracing, ``n_frames`` frames (default: a full window)."""
    cfg = network.cfg
    t = n_frames or cfg.num_frame
    gen = torch.Generator().manual_seed(0)
    spec = torch.randn(1, cfg.input_channels, t, cfg.n_bins, generator=gen)
    with torch.inference_mode():
        features = network.stem(spec).clone()
    return spec, features, torch.tensor([0], dtype=torch.long)
