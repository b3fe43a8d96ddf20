"""LaSAFT+GPoCM v1 (``DCUN_TFC_GPoCM_LaSAFT``, the ``lasaft_large_20xx`` family).

Same U-Net, conditioning and hyper-parameter names as LightSAFT+GPoCM
(:class:`models.lightsaft.LightSAFTNet`); only the latent-source block differs. Per block at
frequency size ``F`` with ``L = num_tdfs`` latent sources (``SPEC_ADDENDUM.md``):

* attention ``a = softmax(linear_query(e) @ keys / sqrt(dk))``, shape (B, L), per condition;
* value ``V = TDF(x)``: a frequency MLP ``F -> u -> L*F`` (``u = max(L*F // bn_factor,
  min_bn_units)``), each linear followed by BatchNorm2d over the channels and the activation;
  with ``bn_factor=None`` it is a single ``Linear(F, L*F)`` + BN + activation;
* ``V`` is laid out **frequency-major, source-minor** (feature ``f*L + l``) and the residual is
  ``sum_l a_l * V[..., f, l]``; there is no projection back (unlike LightSAFT's ``LaSIFT``).

Parameter names mirror the original ``TFC_LaSAFT`` (``keys``, ``tfc.H.*``, ``tdfs.tdf.*``,
``linear_query``) so that a checkpoint's ``spec2spec.*`` state_dict loads strictly.
Tensors are (batch, channels, frames, freq) throughout.
"""
from __future__ import annotations

import math
import re
from typing import Iterable, List, Optional

import torch
from torch import nn
from torch.nn import functional as F_

from .config import LightSAFTConfig
from .lightsaft import TFC, LightSAFTNet, make_activation

__all__ = ["TDF", "LaSAFT", "LaSAFTNet", "is_lasaft_v1_state_dict", "tdf_bottleneck_units"]

#: A v1 block's frequency MLP (``<block>.tdfs.tdf.<i>.*``).
_V1_KEY = re.compile(r"(?:^|\.)tdfs\.tdf\.\d+\.")
#: A LightSAFT block (v1-era ``TFC_LightSAFT`` or LASAFT-Net-v2's ``tfc_lightsaft``).
_LIGHTSAFT_KEY = re.compile(r"(?:^|\.)(?:LaSAFT_bn_layer|LaSIFT)\.")


def tdf_bottleneck_units(f_out: int, bn_factor: Optional[int], min_bn_units: int) -> Optional[int]:
    """Hidden width of the TDF MLP: ``max(f_out // bn_factor, min_bn_units)``; None for a single layer.

    As in the original ``TDF_f1_to_f2``, the bottleneck is taken from the *output* width
    (``L * F`` in a LaSAFT block), not the input width.
    """
    if bn_factor is None:
        return None
    return max(f_out // bn_factor, min_bn_units)


def _inplace_activation(name: str) -> nn.Module:
    """The named activation, switched to in-place where the module supports it.

    Safe for autograd: in a TDF the activation's input is always a fresh BatchNorm output.
    """
    act = make_activation(name)
    if hasattr(act, "inplace"):
        act.inplace = True
    return act


class TDF(nn.Module):
    """Frequency MLP ``(B, C, T, f_in) -> (B, C, T, f_out)`` (the original ``TDF_f1_to_f2``).

    ``tdf`` is ``[Linear(f_in, u), BN2d(C), act, Linear(u, f_out), BN2d(C), act]``, or
    ``[Linear(f_in, f_out), BN2d(C), act]`` when ``bn_factor`` is None. BN normalises over
    the channel axis; the linears act on the last (frequency) axis.
    """

    def __init__(self, channels: int, f_in: int, f_out: int, bn_factor: Optional[int],
                 min_bn_units: int, bias: bool, activation: str) -> None:
        super().__init__()
        self.bn_units = tdf_bottleneck_units(f_out, bn_factor, min_bn_units)
        widths = [f_in, f_out] if self.bn_units is None else [f_in, self.bn_units, f_out]
        layers: List[nn.Module] = []
        for w_in, w_out in zip(widths[:-1], widths[1:]):
            layers += [nn.Linear(w_in, w_out, bias=bias), nn.BatchNorm2d(channels),
                       _inplace_activation(activation)]
        self.tdf = nn.Sequential(*layers)

    def _fusable(self, x: torch.Tensor) -> bool:
        """Eval-mode BN with running stats and no gradient needed: BN may run in place."""
        if torch.is_grad_enabled() and (x.requires_grad or any(p.requires_grad for p in self.parameters())):
            return False
        return all(not m.training and m.running_mean is not None
                   for m in self.tdf if isinstance(m, nn.BatchNorm2d))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(B, C, T, f_in) -> (B, C, T, f_out)."""
        if not self._fusable(x):
            return self.tdf(x)
        # Inference: linear, then BN as an in-place per-channel affine, then in-place
        # activation; one (B, C, T, width) buffer per layer instead of three.
        layers = list(self.tdf)
        for i in range(0, len(layers), 3):
            linear, bn, act = layers[i], layers[i + 1], layers[i + 2]
            x = F_.linear(x, linear.weight, linear.bias)
            scale = torch.rsqrt(bn.running_var + bn.eps)
            if bn.weight is not None:
                scale = scale * bn.weight
            shift = -bn.running_mean * scale
            if bn.bias is not None:
                shift = shift + bn.bias
            c = scale.shape[0]
            x.mul_(scale.view(c, 1, 1).to(x.dtype)).add_(shift.view(c, 1, 1).to(x.dtype))
            x = act(x)
        return x


class LaSAFT(nn.Module):
    """One v1 U-Net block: dense TFC plus the LaSAFT residual (the original ``TFC_LaSAFT``).

    Same interface as :class:`models.lightsaft.LightSAFT`: the U-Net calls ``tfc``,
    :meth:`attention` and :meth:`lasaft` separately so that GPoCM can sit between them.
    """

    def __init__(self, in_channels: int, cfg: LightSAFTConfig, n_freq: int) -> None:
        super().__init__()
        channels = cfg.internal_channels
        self.n_sources = cfg.num_tdfs
        self.dk_sqrt = math.sqrt(cfg.dk)
        # Registration order mirrors the original's state_dict: keys, tfc, tdfs, linear_query.
        self.keys = nn.Parameter(torch.zeros(cfg.dk, cfg.num_tdfs))
        self.tfc = TFC(in_channels, cfg.n_internal_layers, channels, cfg.kernel_size_t,
                       cfg.kernel_size_f, cfg.tfc_tdf_activation)
        self.tdfs = TDF(channels, n_freq, n_freq * cfg.num_tdfs, cfg.bn_factor, cfg.min_bn_units,
                        bool(cfg.tfc_tdf_bias), cfg.tfc_tdf_activation)
        self.linear_query = nn.Linear(cfg.embedding_dim, cfg.dk)

    def attention(self, embedding: torch.Tensor) -> torch.Tensor:
        """(B, embedding_dim) condition embedding -> (B, num_tdfs) softmax weights."""
        query = self.linear_query(embedding)
        return torch.softmax(torch.matmul(query, self.keys) / self.dk_sqrt, dim=-1)

    def values(self, x: torch.Tensor) -> torch.Tensor:
        """Condition-free latent-source values: (B, C, T, F) -> (B, C, T, F, L).

        Frequency-major, source-minor (the TDF's feature ``f*L + l``); a view, no copy.
        """
        b, c, t, f = x.shape
        return self.tdfs(x).view(b, c, t, f, self.n_sources)

    @staticmethod
    def mix(values: torch.Tensor, attention: torch.Tensor) -> torch.Tensor:
        """Attention-weighted sum over latent sources: (B, C, T, F, L), (B or 1, L) -> (B, C, T, F).

        One batched mat-vec over the (B, C*T*F, L) values; nothing else is materialised.
        """
        b, c, t, f, n_src = values.shape
        weights = attention.to(values.dtype).reshape(-1, n_src, 1).expand(b, n_src, 1)
        return torch.bmm(values.reshape(b, c * t * f, n_src), weights).view(b, c, t, f)

    def lasaft(self, x: torch.Tensor, attention: torch.Tensor) -> torch.Tensor:
        """Residual branch: (B, C, T, F) and (B, num_tdfs) (or (1, num_tdfs)) -> (B, C, T, F).

        ``mix(values(x), attention)``; :meth:`values` depends only on ``x``, so a caller that
        runs several conditions on one input may compute it once.
        """
        return self.mix(self.values(x), attention)


class LaSAFTNet(LightSAFTNet):
    """The v1 ``spec2spec`` network (``DCUN_TFC_GPoCM_LaSAFT``): LightSAFTNet with LaSAFT blocks.

    (B, 4, T, bins) spectrogram + (B,) condition -> (B, 4, T, bins); see :class:`LightSAFTNet`
    for ``forward``, ``forward_all_sources``, ``conditioning`` and ``attentions``.
    """

    architecture_name = "lasaft_v1"
    #: The stem stops at the first encoder's TFC: v1's latent values are ``num_tdfs`` full feature
    #: maps, too large to hand from stem to body (LightSAFT's are one map's worth).
    stem_values = False

    @staticmethod
    def make_block(in_channels: int, cfg: LightSAFTConfig, n_freq: int) -> nn.Module:
        """A :class:`LaSAFT` block for ``n_freq`` frequency bins."""
        return LaSAFT(in_channels, cfg, n_freq)


def is_lasaft_v1_state_dict(keys: Iterable[str]) -> bool:
    """True if a (``spec2spec.``-prefixed or stripped) state_dict's keys are a LaSAFT v1 network's.

    v1 blocks carry ``tdfs.tdf.*``; LightSAFT blocks carry ``LaSAFT_bn_layer.*``/``LaSIFT.*``
    (LASAFT-Net-v2 has ``tdf.tdf.*`` and ``tfc_lightsaft.LaSIFT.*``, so it is not v1 either).
    A key set with both markers is not a v1 state_dict.
    """
    has_v1 = has_light = False
    for key in keys:
        if not has_v1 and _V1_KEY.search(key):
            has_v1 = True
        if not has_light and _LIGHTSAFT_KEY.search(key):
            has_light = True
            break
    return has_v1 and not has_light
