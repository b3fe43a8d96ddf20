"""LASAFT-Net-v2 ``spec2spec`` (``BaseNet`` + ``MkTFCLightSAFTGPoCM`` blocks), from a :class:`LasaftV2Config`.

Module and parameter names mirror the original's state_dict (without the ``spec2spec.`` prefix),
so that a checkpoint loads strictly. Tensors are (batch, channels, frames, freq) throughout.

Structure (``n = n_blocks // 2``, ``condition_to='decoder'``)::

    first_conv -> [TFC_TDF -> skip -> down] x n -> TFC_TDF (mid)              <- stem (condition-free)
      -> [up -> cat(up, skip) -> TFC -> GPoCM gate -> +LightSAFT] x n -> last_conv   <- body

With ``condition_to`` 'encoder' or 'full' the encoders (and for 'full' the mid block) are
conditioned too; then only ``first_conv`` is condition-free and :meth:`LasaftV2Net.stem` returns
just its output.
"""
from __future__ import annotations

import functools
import math
from typing import Any, Dict, List, Mapping, Optional, Tuple, Union

import torch
from torch import nn

from ..lightsaft import TFC
from .config import LasaftV2Config

Record = Optional[Dict[str, Any]]


# ---------------------------------------------------------------------- small building blocks
def make_activation(name: str) -> nn.Module:
    """The original's ``get_activation_by_name`` (module defaults: LeakyReLU slope 0.01)."""
    if name == "softmax":
        # nn.Softmax() without dim picks dim 1 for 4-D input (all activations here see 4-D maps).
        return nn.Softmax(dim=1)
    table = {"relu": nn.ReLU, "leaky_relu": nn.LeakyReLU, "sigmoid": nn.Sigmoid, "tanh": nn.Tanh,
             "identity": nn.Identity}
    return table[name]()


def make_norm(kind: str, channels: int) -> nn.Module:
    """The original's ``mk_norm_2d``: normalisation over dim 1 of a (B, C, H, W) map."""
    if kind == "bn":
        return nn.BatchNorm2d(channels)
    if kind == "gn":
        # Largest divisor of C in [3, ceil(sqrt(C))], else a single group (original's search).
        groups = 1
        for g in range(math.ceil(math.sqrt(channels)), 2, -1):
            if channels % g == 0:
                groups = g
                break
        return nn.GroupNorm(groups, channels)
    if kind == "in":
        return nn.InstanceNorm2d(channels)  # affine=False, no running stats: no state_dict keys
    raise ValueError(f"unknown norm {kind!r}")


class WNLinear(nn.Module):
    """``torch.nn.utils.weight_norm(nn.Linear(i, o))`` (dim 0), evaluated on the fly.

    W = g * v / ||v||_row; keys ``bias`` [o], ``weight_g`` [o, 1], ``weight_v`` [o, i] as in the
    original. Recomputing W per call costs nothing next to the convolutions.
    """

    def __init__(self, in_features: int, out_features: int) -> None:
        super().__init__()
        ref = nn.Linear(in_features, out_features)  # same default init as the original
        self.bias = nn.Parameter(ref.bias.detach().clone())
        self.weight_g = nn.Parameter(ref.weight.detach().norm(dim=1, keepdim=True))
        self.weight_v = nn.Parameter(ref.weight.detach().clone())

    def weight(self) -> torch.Tensor:
        """The effective [out, in] weight, g * v / ||v|| per output row."""
        # The op torch.nn.utils.weight_norm itself calls: bitwise the original's Γ/β (the
        # explicit formula differs by ~2e-6); it traces and exports to ONNX like any aten op.
        return torch._weight_norm(self.weight_v, self.weight_g, 0)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return nn.functional.linear(x, self.weight(), self.bias)


def weight_normed_mlp(dim: int, out: int) -> nn.Sequential:
    """WN-Linear(dim, dim) -> ReLU -> WN-Linear(dim, out): the (query_)pocm_generator."""
    return nn.Sequential(WNLinear(dim, dim), nn.ReLU(), WNLinear(dim, out))


def pointwise_modulation(x: torch.Tensor, gamma: torch.Tensor, beta: torch.Tensor) -> torch.Tensor:
    """The original's ``Pocm_Matmul``: a per-item 1x1 convolution ``Σ_i Γ[b,i,o]·x[b,i] + β[b,o]``.

    x: (B, C_in, T, F); gamma: (B, C_in, C_out) indexed [in, out]; beta: (B, C_out)
    -> (B, C_out, T, F).
    """
    out = torch.matmul(gamma.transpose(1, 2), x.flatten(2))  # (B, C_out, T*F)
    out = out.unflatten(2, (x.shape[2], x.shape[3]))
    return out + beta.unsqueeze(-1).unsqueeze(-1)


class TDF(nn.Module):
    """Frequency MLP on the last dim: Linear F->u -> norm -> act -> Linear u->F -> norm -> act."""

    def __init__(self, channels: int, n_freq: int, units: int, bias: bool, activation: str,
                 norm: str) -> None:
        super().__init__()
        self.tdf = nn.Sequential(
            nn.Linear(n_freq, units, bias), make_norm(norm, channels), make_activation(activation),
            nn.Linear(units, n_freq, bias), make_norm(norm, channels), make_activation(activation),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.tdf(x)


def bottleneck_units(cfg: LasaftV2Config, n_freq: int) -> int:
    """``max(F // bn_factor, min_bn_units)``, the TDF / LightSAFT bottleneck width."""
    return max(n_freq // cfg.bn_factor, cfg.min_bn_units)


class TFCTDF(nn.Module):
    """Unconditioned block (``TFC_TDF``): y = TFC(x); y + TDF(y)."""

    def __init__(self, in_channels: int, cfg: LasaftV2Config, n_freq: int) -> None:
        super().__init__()
        c = cfg.internal_channels
        self.tfc = TFC(in_channels, cfg.n_internal_layers, c, cfg.kernel_size_t, cfg.kernel_size_f,
                       cfg.tfc_tdf_activation, functools.partial(make_norm, cfg.block_norm), make_activation)
        self.tdf = TDF(c, n_freq, bottleneck_units(cfg, n_freq), cfg.tfc_tdf_bias, cfg.tfc_tdf_activation,
                       cfg.block_norm)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(B, C_in, T, F) -> (B, C, T, F)."""
        y = self.tfc(x)
        return y + self.tdf(y)


class LightSAFT(nn.Module):
    """``TFC_LightSAFT``: the TFC plus the latent-source attentive frequency transformation.

    The attention over ``num_tdfs`` latent sources comes from a query (condition embedding, or
    with ``query_listen`` the mixture "listened" through a condition-generated 1x1 conv and a
    LayerNorm->ReLU->Linear per frame) and keys (a free parameter, or with ``key_listen`` a
    1x1 conv->BN->ReLU->Linear of the features per frame and source).
    """

    def __init__(self, in_channels: int, cfg: LasaftV2Config, n_freq: int) -> None:
        super().__init__()
        c, n_src, dk = cfg.internal_channels, cfg.num_tdfs, cfg.dk
        act, norm = cfg.tfc_tdf_activation, cfg.block_norm
        self.channels = c
        self.n_sources = n_src
        self.units = bottleneck_units(cfg, n_freq)
        self.dk_sqrt = math.sqrt(dk)
        self.query_listen = cfg.query_listen
        self.key_listen = cfg.key_listen
        self.tfc = TFC(in_channels, cfg.n_internal_layers, c, cfg.kernel_size_t, cfg.kernel_size_f, act,
                       functools.partial(make_norm, norm), make_activation)
        self.LaSAFT_bn_layer = nn.Sequential(
            nn.Linear(n_freq, self.units * n_src, cfg.tfc_tdf_bias), make_norm(norm, c), make_activation(act))
        # Norm *before* the linear here (the v1 LightSAFT has Linear -> BN -> act).
        self.LaSIFT = nn.Sequential(
            make_norm(norm, c), nn.Linear(self.units, n_freq, cfg.tfc_tdf_bias), make_activation(act))
        if cfg.query_listen:
            self.query_pocm_generator = weight_normed_mlp(cfg.embedding_dim, c + 1)
            self.linear_query = nn.Sequential(nn.LayerNorm(n_freq), nn.ReLU(), nn.Linear(n_freq, dk))
        else:
            self.linear_query = nn.Linear(cfg.embedding_dim, dk)
        if cfg.key_listen:
            # BatchNorm whatever cfg.block_norm says (as in the original).
            self.keys = nn.Sequential(nn.Conv2d(c, n_src, (1, 1), (1, 1)), nn.BatchNorm2d(n_src), nn.ReLU(),
                                      nn.Linear(n_freq, dk))
        else:
            self.keys = nn.Parameter(torch.randn(1, 1, dk, n_src))

    def listen_query(self, x: torch.Tensor, embedding: torch.Tensor, record: Record = None) -> torch.Tensor:
        """Query listening: (B, C, T, F), (B, E) -> per-frame query (B, T, 1, dk)."""
        weights = self.query_pocm_generator(embedding)  # (B, C + 1): C channel weights + bias
        if record is not None:
            record["query_pocm"] = weights
        c = self.channels
        listened = pointwise_modulation(x, weights[:, :c].unsqueeze(-1), weights[:, c:])  # (B, 1, T, F)
        return self.linear_query(listened).squeeze(1).unsqueeze(-2)

    def attention(self, x: torch.Tensor, embedding: torch.Tensor, record: Record = None) -> torch.Tensor:
        """Softmax weights over the latent sources: (B, T, L), or (B, 1, L) without listening."""
        if self.key_listen:
            keys = self.keys(x).transpose(1, 2)  # (B, L, T, dk) -> (B, T, L, dk)
            if self.query_listen:
                query = self.listen_query(x, embedding, record).transpose(-1, -2)  # (B, T, dk, 1)
            else:
                query = self.linear_query(embedding).unsqueeze(1).unsqueeze(-1)  # (B, 1, dk, 1)
            logits = torch.matmul(keys, query) / self.dk_sqrt  # (B, T, L, 1)
            return logits.softmax(dim=-2).squeeze(-1)
        if self.query_listen:
            query = self.listen_query(x, embedding, record)  # (B, T, 1, dk)
        else:
            query = self.linear_query(embedding).unsqueeze(1).unsqueeze(1)  # (B, 1, 1, dk)
        logits = torch.matmul(query, self.keys) / self.dk_sqrt  # (B, T|1, 1, L)
        return logits.softmax(dim=-1).squeeze(2)

    def lasaft(self, x: torch.Tensor, embedding: torch.Tensor, record: Record = None) -> torch.Tensor:
        """Residual branch: (B, C, T, F), (B, E) -> (B, C, T, F)."""
        value = self.LaSAFT_bn_layer(x)  # (B, C, T, u * L): feature m * L + l, source-minor
        value = value.unflatten(-1, (self.units, self.n_sources))  # (B, C, T, u, L)
        att = self.attention(x, embedding, record)
        if record is not None:
            record["attention"] = att
        mixed = torch.matmul(value, att.unsqueeze(1).unsqueeze(-1)).squeeze(-1)  # (B, C, T, u)
        return self.LaSIFT(mixed)


class LightSAFTGPoCM(nn.Module):
    """Conditioned block (``TFC_LightSAFT_GPoCM``): TFC -> GPoCM gate -> + LightSAFT residual."""

    def __init__(self, in_channels: int, cfg: LasaftV2Config, n_freq: int) -> None:
        super().__init__()
        self.tfc_lightsaft = LightSAFT(in_channels, cfg, n_freq)
        c = cfg.internal_channels
        self.pocm_generator = weight_normed_mlp(cfg.embedding_dim, c * c + c)
        self.channels = c

    def pocm_parameters(self, embedding: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:
        """(B, E) -> Γ (B, C_in, C_out) and β (B, C_out) of the gate (no normalisation)."""
        p = self.pocm_generator(embedding)
        c = self.channels
        return p[:, : c * c].unflatten(1, (c, c)), p[:, c * c:]

    def forward(self, x: torch.Tensor, embedding: torch.Tensor, record: Record = None) -> torch.Tensor:
        """(B, C_in, T, F), (B, E) -> (B, C, T, F)."""
        y = self.tfc_lightsaft.tfc(x)
        gamma, beta = self.pocm_parameters(embedding)
        if record is not None:
            record["gamma"], record["beta"] = gamma, beta
        y = y * torch.sigmoid(pointwise_modulation(y, gamma, beta))
        return y + self.tfc_lightsaft.lasaft(y, embedding, record)


# ---------------------------------------------------------------------- the network
class LasaftV2Net(nn.Module):
    """LASAFT-Net-v2 ``spec2spec``: (B, 4, T, bins) spectrogram + (B,) condition -> (B, 4, T, bins).

    ``T`` must be a multiple of ``cfg.frame_multiple``; bins is ``cfg.n_bins``. Channels are
    [Re L, Re R, Im L, Im R]. The module is created in eval mode (BatchNorm uses running stats).
    """

    #: Name of this network's architecture in ``models.registry``.
    architecture_name = "lasaft_v2"

    def __init__(self, cfg: LasaftV2Config) -> None:
        super().__init__()
        self.cfg = cfg
        self.masking = cfg.masking
        c = cfg.internal_channels
        n = cfg.n_levels
        self.n_levels = n
        # Registration order follows the original so that state_dict() orders keys the same way.
        self.first_conv = nn.Sequential(
            nn.Conv2d(cfg.input_channels, c, kernel_size=(1, 2), stride=1),
            make_norm(cfg.norm, c), make_activation(cfg.first_conv_activation))
        self.encoders = nn.ModuleList()
        self.downsamplings = nn.ModuleList()
        self.decoders = nn.ModuleList()
        self.upsamplings = nn.ModuleList()
        self.last_conv = nn.Sequential(
            nn.Conv2d(c, cfg.input_channels, kernel_size=(1, 2), stride=1, padding=(0, 1)),
            make_activation(cfg.last_activation))
        self.embedding = nn.Embedding(cfg.control_input_dim, cfg.embedding_dim)
        f = cfg.n_fft // 2
        for _ in range(n):
            self.encoders.append(self._block(c, f, cfg.encoder_conditioned))
            self.downsamplings.append(nn.Sequential(
                nn.Conv2d(c, c, kernel_size=(2, 2), stride=(2, 2)),
                make_norm(cfg.downsampling_norm, c), make_activation(cfg.downsampling_activation)))
            f //= 2
        self.mid_block = self._block(c, f, cfg.mid_conditioned)
        for _ in range(n):
            self.upsamplings.append(nn.Sequential(
                nn.ConvTranspose2d(c, c, kernel_size=(2, 2), stride=(2, 2)),
                make_norm(cfg.upsampling_norm, c), make_activation(cfg.upsampling_activation)))
            f *= 2
            self.decoders.append(self._block(2 * c, f, cfg.decoder_conditioned))
        self.eval()

    def _block(self, in_channels: int, n_freq: int, conditioned: bool) -> nn.Module:
        if conditioned:
            return LightSAFTGPoCM(in_channels, self.cfg, n_freq)
        return TFCTDF(in_channels, self.cfg, n_freq)

    # ------------------------------------------------------------------ construction helpers
    @classmethod
    def from_checkpoint(cls, ckpt: Mapping[str, Any]) -> "LasaftV2Net":
        """Network from a loaded checkpoint dict (``hyper_parameters`` + ``state_dict``), strict, eval."""
        net = cls(LasaftV2Config.from_hyper_parameters(ckpt["hyper_parameters"]))
        net.load_state_dict(spec2spec_state_dict(ckpt["state_dict"]), strict=True)
        return net.eval()

    # ------------------------------------------------------------------ forward pieces
    def stem(self, spec: torch.Tensor) -> Tuple[torch.Tensor, ...]:
        """All condition-free computation. (B, 4, T, bins) -> features for :meth:`body`.

        ``condition_to='decoder'``: (mid output, skip_0, ..., skip_{n-1}), skip_i being encoder i's
        output; each (B, C, T / 2**k, F / 2**k). Otherwise only (first_conv output,).
        """
        x = self.first_conv(spec)
        if self.cfg.encoder_conditioned:
            return (x,)
        skips: List[torch.Tensor] = []
        for encoder, down in zip(self.encoders, self.downsamplings):
            x = encoder(x)
            skips.append(x)
            x = down(x)
        x = self.mid_block(x)  # unconditioned here: a conditioned mid implies conditioned encoders
        return (x, *skips)

    def body(self, features: Union[Tuple[torch.Tensor, ...], torch.Tensor], condition: torch.Tensor) -> torch.Tensor:
        """The conditioned rest: :meth:`stem` features and (B,) int64 conditions -> (B, 4, T, bins).

        A one-tensor stem output may also be passed bare. Traceable/exportable: no control flow on
        tensor values. Without masking (see :meth:`forward`).
        """
        return self._body(features, condition, None)

    def _body(self, features: Union[Tuple[torch.Tensor, ...], torch.Tensor], condition: torch.Tensor,
              record: Record) -> torch.Tensor:
        if isinstance(features, torch.Tensor):  # exporters pass a single feature map unwrapped
            features = (features,)
        embedding = self.embedding(condition)
        if record is not None:
            record["condition_embedding"] = embedding
        x = features[0]
        if self.cfg.encoder_conditioned:
            skips: List[torch.Tensor] = []
            for i, (encoder, down) in enumerate(zip(self.encoders, self.downsamplings)):
                x = encoder(x, embedding, _sub(record, f"enc{i}"))
                skips.append(x)
                x = down(x)
            if self.cfg.mid_conditioned:
                x = self.mid_block(x, embedding, _sub(record, "mid"))
            else:
                x = self.mid_block(x)
        else:
            skips = list(features[1:])
        for i, (up, decoder) in enumerate(zip(self.upsamplings, self.decoders)):
            x = torch.cat([up(x), skips[self.n_levels - 1 - i]], dim=1)
            if self.cfg.decoder_conditioned:
                x = decoder(x, embedding, _sub(record, f"dec{i}"))
            else:
                x = decoder(x)
        return self.last_conv(x)

    def forward(self, spec: torch.Tensor, condition: torch.Tensor) -> torch.Tensor:
        """(B, 4, T, bins) mixture spectrogram and (B,) int64 condition -> (B, 4, T, bins) estimate."""
        out = self.body(self.stem(spec), condition)
        return spec * out if self.masking else out

    def forward_all_sources(self, spec: torch.Tensor) -> torch.Tensor:
        """(N, 4, T, bins) windows -> (N, 4 targets, 4, T, bins): the original's multi-source path.

        The stem runs once per window; its features are repeated window-major / target-minor and
        the body runs with conditions [0, 1, 2, 3] per window.
        """
        n_win = spec.shape[0]
        n_src = self.cfg.n_sources
        features = tuple(f.repeat_interleave(n_src, dim=0) for f in self.stem(spec))
        condition = torch.arange(n_src, device=spec.device).repeat(n_win)
        out = self.body(features, condition)
        out = out.unflatten(0, (n_win, n_src))
        return spec.unsqueeze(1) * out if self.masking else out

    # ------------------------------------------------------------------ inspection (tests)
    def intermediates(self, spec: torch.Tensor, condition: torch.Tensor) -> Dict[str, torch.Tensor]:
        """One plain forward call with its conditioning and attention, shaped like spec_io.pt.

        Keys: ``output`` (B, 4, T, bins); ``condition_embedding`` (B, E);
        ``gpocm_gammas_decoder`` (n, B, C, C) [in, out]; ``gpocm_betas_decoder`` (n, B, C);
        ``query_pocm_decoder`` (n, B, C + 1) with query listening; ``attention_dec{i}``
        (B, T_i, L) (T_i = 1 without listening). Conditioned encoders/mid ('encoder'/'full')
        add the same entries with ``encoder``/``enc{i}``/``mid``.
        """
        record: Dict[str, Any] = {}
        out = self._body(self.stem(spec), condition, record)
        result: Dict[str, torch.Tensor] = {
            "output": spec * out if self.masking else out,
            "condition_embedding": record["condition_embedding"],
        }
        for prefix, part in (("enc", "encoder"), ("dec", "decoder")):
            # Insertion order is execution order: enc0.., mid, dec0..
            blocks = [v for k, v in record.items() if k.startswith(prefix) and isinstance(v, dict)]
            if not blocks:
                continue
            result[f"gpocm_gammas_{part}"] = torch.stack([b["gamma"] for b in blocks])
            result[f"gpocm_betas_{part}"] = torch.stack([b["beta"] for b in blocks])
            if self.cfg.query_listen:
                result[f"query_pocm_{part}"] = torch.stack([b["query_pocm"] for b in blocks])
        for key, block in record.items():
            if isinstance(block, dict):
                result[f"attention_{key}"] = block["attention"]
                if key == "mid":
                    result["gpocm_gammas_mid"], result["gpocm_betas_mid"] = block["gamma"], block["beta"]
        return result


def _sub(record: Record, key: str) -> Record:
    """A per-block sub-record (None when not recording)."""
    if record is None:
        return None
    record[key] = {}
    return record[key]


def spec2spec_state_dict(state_dict: Mapping[str, torch.Tensor]) -> Dict[str, torch.Tensor]:
    """The ``spec2spec.*`` entries of an original LightningModule state_dict, prefix removed.

    Everything else (the STFT window ``stft.stft.window``) is dropped.
    """
    prefix = "spec2spec."
    return {k[len(prefix):]: v for k, v in state_dict.items() if k.startswith(prefix)}
