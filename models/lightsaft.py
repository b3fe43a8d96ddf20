"""LightSAFT+GPoCM (``DCUN_TFC_GPoCM_LightSAFT``), built from a :class:`LightSAFTConfig`.

Module and parameter names mirror the original ``spec2spec`` so that its state_dict loads
strictly. Tensors are laid out (batch, channels, frames, freq) throughout. The network is pure:
spectrogram and condition indices in, spectrogram out; no I/O and no timing.

Structure (``n = n_blocks // 2``)::

    first_conv -> [TFC -> +LightSAFT -> skip -> down] x n -> TFC -> +LightSAFT
               -> [up -> cat(up, skip) -> TFC -> GPoCM gate -> +LightSAFT] x n -> last_conv
"""
from __future__ import annotations

import math
from typing import Callable, List, Tuple, Union

import torch
from torch import nn

from .config import ConfigError, LightSAFTConfig


def make_activation(name: str) -> nn.Module:
    """Activation module by the original's names."""
    table = {
        "relu": nn.ReLU, "leaky_relu": nn.LeakyReLU, "elu": nn.ELU, "selu": nn.SELU,
        "gelu": nn.GELU, "tanh": nn.Tanh, "sigmoid": nn.Sigmoid, "identity": nn.Identity,
    }
    return table[name]()


class TFC(nn.Module):
    """Densely connected time-frequency convolutions; returns only the last layer's output.

    Layer ``l`` sees ``cat[y_{l-1}, ..., y_0, x]`` (newest first) and emits ``growth`` channels:
    conv, ``norm(growth)``, ``make_act(activation)``. The LaSAFT family uses BatchNorm and its own
    activation names; LASAFT-Net-v2 passes its norms and activations.
    """

    def __init__(self, in_channels: int, n_layers: int, growth: int, kt: int, kf: int,
                 activation: str, norm: Callable[[int], nn.Module] = nn.BatchNorm2d,
                 make_act: Callable[[str], nn.Module] = make_activation) -> None:
        super().__init__()
        # The original passes the kernel as (kf, kt) but the padding as (kt//2, kf//2) (quirk Q11).
        self.H = nn.ModuleList([
            nn.Sequential(
                nn.Conv2d(in_channels + growth * i, growth, kernel_size=(kf, kt), stride=1,
                          padding=(kt // 2, kf // 2)),
                norm(growth),
                make_act(activation),
            )
            for i in range(n_layers)
        ])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(B, in_channels, T, F) -> (B, growth, T, F)."""
        layers = list(self.H)
        y = layers[0](x)
        for layer in layers[1:]:
            x = torch.cat([y, x], dim=1)
            y = layer(x)
        return y


class LightSAFT(nn.Module):
    """Latent source attentive frequency transformation, "light" variant (spec 4.3).

    Holds one block's TFC (``tfc``) and the LightSAFT residual (``lasaft``); the U-Net calls
    them separately so that GPoCM can sit between them (quirk Q7).
    """

    def __init__(self, in_channels: int, cfg: LightSAFTConfig, n_freq: int) -> None:
        super().__init__()
        channels = cfg.internal_channels
        self.n_sources = cfg.num_tdfs
        if cfg.bn_factor is None:  # the original LightSAFT divides by it
            raise ConfigError("bn_factor None builds LaSAFT v1's single-layer TDF only; LightSAFT needs an int")
        self.bottleneck = max(n_freq // cfg.bn_factor, cfg.min_bn_units)
        self.scale = 1.0 / math.sqrt(cfg.dk)
        self.keys = nn.Parameter(torch.zeros(cfg.dk, cfg.num_tdfs))
        self.tfc = TFC(in_channels, cfg.n_internal_layers, channels, cfg.kernel_size_t,
                       cfg.kernel_size_f, cfg.tfc_tdf_activation)
        self.LaSAFT_bn_layer = nn.Sequential(
            nn.Linear(n_freq, self.bottleneck * cfg.num_tdfs, bias=cfg.tfc_tdf_bias),
            nn.BatchNorm2d(channels),
            make_activation(cfg.tfc_tdf_activation),
        )
        self.LaSIFT = nn.Sequential(
            nn.Linear(self.bottleneck, n_freq, bias=cfg.tfc_tdf_bias),
            nn.BatchNorm2d(channels),
            make_activation(cfg.tfc_tdf_activation),
        )
        self.linear_query = nn.Linear(cfg.embedding_dim, cfg.dk)

    def attention(self, embedding: torch.Tensor) -> torch.Tensor:
        """(B, embedding_dim) condition embedding -> (B, num_tdfs) softmax weights."""
        query = self.linear_query(embedding)
        return torch.softmax(torch.matmul(query, self.keys) * self.scale, dim=-1)

    def values(self, x: torch.Tensor) -> torch.Tensor:
        """Condition-free latent-source values: (B, C, T, F) -> (B, C, T, num_tdfs * bn), source-major."""
        return self.LaSAFT_bn_layer(x)

    def mix(self, values: torch.Tensor, attention: torch.Tensor) -> torch.Tensor:
        """Attention-weighted latent sources, back to frequencies: (B, C, T, L*bn), (B, L) -> (B, C, T, F)."""
        b, c, t, _ = values.shape
        values = values.view(b, c * t, self.n_sources, self.bottleneck)
        mixed = torch.matmul(attention.view(b, 1, 1, self.n_sources), values)  # (B, C*T, 1, bn)
        return self.LaSIFT(mixed.view(b, c, t, self.bottleneck))

    def lasaft(self, x: torch.Tensor, attention: torch.Tensor) -> torch.Tensor:
        """Residual branch: (B, C, T, F) and (B, num_tdfs) -> (B, C, T, F)."""
        return self.mix(self.values(x), attention)


class DenseControlBlock(nn.Module):
    """Condition MLP: Linear-ReLU, then (Linear-ReLU-Dropout-BN1d) with doubling widths."""

    def __init__(self, embedding_dim: int, n_layers: int) -> None:
        super().__init__()
        dims = [embedding_dim * 2 ** i for i in range(n_layers)]
        layers: List[nn.Module] = [nn.Linear(dims[0], dims[1]), nn.ReLU()]
        for d_in, d_out in zip(dims[1:-1], dims[2:]):
            layers += [nn.Linear(d_in, d_out), nn.ReLU(), nn.Dropout(), nn.BatchNorm1d(d_out)]
        self.linear = nn.Sequential(*layers)
        self.out_dim = dims[-1]

    def forward(self, embedding: torch.Tensor) -> torch.Tensor:
        return self.linear(embedding)


class PoCMConditionGenerator(nn.Module):
    """Produces the decoders' GPoCM Γ (in, out) matrices and β biases from the embedding."""

    def __init__(self, cfg: LightSAFTConfig) -> None:
        super().__init__()
        self.n_blocks = cfg.n_levels
        self.channels = cfg.internal_channels
        self.dense_control_block = DenseControlBlock(cfg.embedding_dim, cfg.control_n_layer)
        hidden = self.dense_control_block.out_dim
        n_gamma = self.n_blocks * self.channels * self.channels
        n_beta = self.n_blocks * self.channels
        self.linear_gamma = nn.Sequential(nn.Linear(hidden, n_gamma), nn.Identity(),
                                          nn.BatchNorm1d(n_gamma, affine=False))
        self.linear_beta = nn.Sequential(nn.Linear(hidden, n_beta), nn.Identity(),
                                         nn.BatchNorm1d(n_beta, affine=False))

    def forward(self, embedding: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:
        """(B, embedding_dim) -> Γ (B, blocks, C_in, C_out) and β (B, blocks, C_out)."""
        h = self.dense_control_block(embedding)
        b = embedding.shape[0]
        gammas = self.linear_gamma(h).view(b, self.n_blocks, self.channels, self.channels)
        betas = self.linear_beta(h).view(b, self.n_blocks, self.channels)
        return gammas, betas


def gpocm_gate(x: torch.Tensor, gamma: torch.Tensor, beta: torch.Tensor) -> torch.Tensor:
    """Gated point-wise convolutional modulation: ``sigmoid(Γᵀx + β) ⊙ x``.

    x: (B, C, T, F); gamma: (B, C_in, C_out); beta: (B, C_out).
    """
    b, c, t, f = x.shape
    pocm = torch.bmm(gamma.transpose(1, 2), x.reshape(b, c, t * f)).view(b, c, t, f)
    return torch.sigmoid(pocm + beta.view(b, c, 1, 1)) * x


class LightSAFTNet(nn.Module):
    """The ``spec2spec`` network: (B, 4, T, bins) spectrogram + (B,) condition -> (B, 4, T, bins).

    ``T`` must be a multiple of ``cfg.frame_multiple``; bins is ``n_fft // 2 + 1``.
    """

    #: Name of this network's architecture in ``models.registry``.
    architecture_name = "lightsaft"

    def __init__(self, cfg: LightSAFTConfig) -> None:
        super().__init__()
        self.cfg = cfg
        self.masking = cfg.spec_est_mode == "masking"
        channels = cfg.internal_channels
        n = cfg.n_levels
        self.n_levels = n
        self.first_conv = nn.Sequential(
            nn.Conv2d(cfg.input_channels, channels, kernel_size=(1, 2), stride=1),
            nn.BatchNorm2d(channels),
            make_activation(cfg.first_conv_activation),
        )
        self.encoders = nn.ModuleList()
        self.downsamplings = nn.ModuleList()
        self.decoders = nn.ModuleList()
        self.upsamplings = nn.ModuleList()
        t_down = set(cfg.t_down)
        f = cfg.n_fft // 2
        for i in range(n):
            self.encoders.append(self.make_block(channels, cfg, f))
            scale = (2, 2) if i in t_down else (1, 2)
            self.downsamplings.append(nn.Sequential(
                nn.Conv2d(channels, channels, kernel_size=scale, stride=scale),
                nn.BatchNorm2d(channels)))
            f //= 2
        self.mid_block = self.make_block(channels, cfg, f)
        t_up = {n - 1 - s for s in t_down}
        for i in range(n):
            scale = (2, 2) if i in t_up else (1, 2)
            self.upsamplings.append(nn.Sequential(
                nn.ConvTranspose2d(channels, channels, kernel_size=scale, stride=scale),
                nn.BatchNorm2d(channels)))
            f *= 2
            self.decoders.append(self.make_block(2 * channels, cfg, f))
        self.last_conv = nn.Sequential(
            nn.Conv2d(channels, cfg.input_channels, kernel_size=(1, 2), stride=1, padding=(0, 1)),
            make_activation(cfg.last_activation),
        )
        self.embedding = nn.Embedding(cfg.control_input_dim, cfg.embedding_dim)
        self.condition_generator = PoCMConditionGenerator(cfg)

    @staticmethod
    def make_block(in_channels: int, cfg: LightSAFTConfig, n_freq: int) -> nn.Module:
        """One U-Net block (TFC + latent-source residual); LaSAFT v1 overrides this.

        A block has ``tfc``, ``attention(embedding)`` and ``lasaft(x, attention)``."""
        return LightSAFT(in_channels, cfg, n_freq)

    # ------------------------------------------------------------------ conditioning
    def conditioning(self, condition: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Per-condition constants: embedding (B, E), Γ (B, n, C, C), β (B, n, C)."""
        embedding = self.embedding(condition)
        gammas, betas = self.condition_generator(embedding)
        return embedding, gammas, betas

    def attentions(self, embedding: torch.Tensor) -> torch.Tensor:
        """(B, E) -> (n_blocks, B, num_tdfs): enc0..enc{n-1}, mid, dec0..dec{n-1}."""
        blocks = list(self.encoders) + [self.mid_block] + list(self.decoders)
        return torch.stack([blk.attention(embedding) for blk in blocks])

    # ------------------------------------------------------------------ forward
    #: Whether :meth:`stem` also returns the first encoder's latent values. They depend on the
    #: spectrogram only, and their frequency Linear (F -> num_tdfs * bn, at the finest level) is the
    #: costliest single layer of LightSAFT (13 % of a body pass): run once per window instead of
    #: once per target. LaSAFT v1 turns it off: its values are num_tdfs full feature maps.
    stem_values = True

    def stem(self, spec: torch.Tensor) -> Tuple[torch.Tensor, ...]:
        """Condition-free part: first_conv, the first encoder's TFC and (with :attr:`stem_values`)
        that encoder's latent values. (B,4,T,bins) -> ((B,C,T,F), (B,C,T,L*bn))."""
        x = self.encoders[0].tfc(self.first_conv(spec))
        if self.stem_values:
            return x, self.encoders[0].values(x)
        return (x,)

    def body(self, features: Union[Tuple[torch.Tensor, ...], torch.Tensor], condition: torch.Tensor) -> torch.Tensor:
        """Everything after :meth:`stem` (its tuple, or its first tensor alone), for one condition
        per batch item. -> (B, 4, T, bins)."""
        if isinstance(features, torch.Tensor):  # exporters pass a single feature map unwrapped
            features = (features,)
        embedding, gammas, betas = self.conditioning(condition)
        x = features[0]
        skips: List[torch.Tensor] = []
        for i, (encoder, down) in enumerate(zip(self.encoders, self.downsamplings)):
            if i > 0:
                x = encoder.tfc(x)
            values = features[1] if i == 0 and len(features) > 1 else encoder.values(x)
            x = x + encoder.mix(values, encoder.attention(embedding))
            skips.append(x)
            x = down(x)
        x = self.mid_block.tfc(x)
        x = x + self.mid_block.lasaft(x, self.mid_block.attention(embedding))
        for i, (up, decoder) in enumerate(zip(self.upsamplings, self.decoders)):
            x = torch.cat([up(x), skips[self.n_levels - 1 - i]], dim=1)
            x = decoder.tfc(x)
            x = gpocm_gate(x, gammas[:, i], betas[:, i])
            x = x + decoder.lasaft(x, decoder.attention(embedding))
        return self.last_conv(x)

    def forward(self, spec: torch.Tensor, condition: torch.Tensor) -> torch.Tensor:
        """(B, 4, T, bins) mixture spectrogram and (B,) int64 condition -> (B, 4, T, bins)."""
        out = self.body(self.stem(spec), condition)
        return spec * out if self.masking else out

    def forward_all_sources(self, spec: torch.Tensor) -> torch.Tensor:
        """(N, 4, T, bins) windows -> (N, n_sources, 4, T, bins), every condition per window.

        The condition-free stem runs once per window and is shared by the targets.
        """
        n_win = spec.shape[0]
        n_src = self.cfg.control_input_dim
        features = tuple(f.repeat_interleave(n_src, dim=0) for f in self.stem(spec))
        condition = torch.arange(n_src, device=spec.device).repeat(n_win)
        out = self.body(features, condition)
        if self.masking:
            out = spec.repeat_interleave(n_src, dim=0) * out
        return out.view(n_win, n_src, out.shape[1], out.shape[2], out.shape[3])
