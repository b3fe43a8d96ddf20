"""The exported graph: the stem and the conditioned body side by side in one module.

Exported as one graph with two disjoint halves so that a single file can run the condition-free
stem once per window and the body once per target (the backends split it again when loading).
An architecture's stem may return several tensors (LASAFT-Net-v2: the mid block's output and the
skips); they become numbered outputs of the stem and numbered inputs of the body.
"""
from __future__ import annotations

import torch
from torch import nn


def stem_features(network: nn.Module, spec: torch.Tensor) -> tuple[torch.Tensor, ...]:
    """The stem's output as a tuple, whatever the architecture returns."""
    out = network.stem(spec)
    return (out,) if isinstance(out, torch.Tensor) else tuple(out)


class SplitGraph(nn.Module):
    """``(spec (N,4,T,bins), *features, condition (B,)) -> (*stem outputs, spec (B,4,T,bins))``."""

    def __init__(self, network: nn.Module, n_features: int) -> None:
        super().__init__()
        self.network = network
        self.n_features = n_features

    def forward(self, spec: torch.Tensor, *rest: torch.Tensor) -> tuple[torch.Tensor, ...]:
        features, condition = rest[:-1], rest[-1]
        stem = stem_features(self.network, spec)
        body = self.network.body(features if self.n_features > 1 else features[0], condition)
        return (*stem, body)


def example_inputs(network: nn.Module, frame_multiple: int,
                   n_frames: int | None = None) -> tuple[torch.Tensor, tuple[torch.Tensor, ...], torch.Tensor]:
    """Deterministic tracing inputs: spec (1, 4, T, bins), the stem's features, condition (1,)."""
    cfg = network.cfg
    t = n_frames or 2 * frame_multiple
    gen = torch.Generator().manual_seed(0)
    spec = torch.randn(1, 4, t, cfg.n_fft // 2 + 1, generator=gen)
    with torch.inference_mode():
        features = tuple(f.clone() for f in stem_features(network, spec))
    return spec, features, torch.tensor([0], dtype=torch.long)
