"""LASAFT-Net-v2 configuration, read from a checkpoint's ``hyper_parameters``.

The original (``ws-choi/LASAFT-Net-v2``) builds its model with hydra from a nested config: the
LightningModule ``AbstractLaSAFTNet`` at the top, ``spec2spec`` (``BaseNet``) inside it, and the
block/down/up-sampling factories ``mk_block_f`` / ``mk_ds_f`` / ``mk_us_f`` inside that. A
checkpoint stores that resolved ``model:`` section as ``hyper_parameters``.
:class:`LasaftV2Config` flattens it into the constructor arguments that the network actually uses.
:meth:`LasaftV2Config.to_dict` writes the same nested layout back.

Supported (and checked against the original's source): ``MkTFCLightSAFTGPoCM`` blocks with every
query/key-listening combination, ``MKConvDS`` / ``MkConvTransposeUS``, the norms 'bn'/'gn'/'in',
``condition_to`` 'decoder'/'encoder'/'full', embedding conditioning, and mapping or masking
estimation of complex spectrograms.
"""
from __future__ import annotations

import dataclasses
import math
from typing import Any, ClassVar, Mapping

from models.config import ConfigError, SpectrogramWindows

#: Source names in condition-index order (the original's ``target_names``).
SOURCES = ("vocals", "drums", "bass", "other")

#: ``get_activation_by_name`` in the original; any other name gives None there and crashes.
SUPPORTED_ACTIVATIONS = ("relu", "leaky_relu", "sigmoid", "tanh", "softmax", "identity")

#: ``mk_norm_2d`` in the original: BatchNorm2d, GroupNorm (groups from a divisor search) or
#: InstanceNorm2d (no affine, no running stats).
SUPPORTED_NORMS = ("bn", "gn", "in")

#: ``condition_to``: which U-Net blocks get the conditioned LightSAFT+GPoCM block.
CONDITION_TARGETS = ("decoder", "encoder", "full")

#: The original's ``get_trim_length(hop, min_trim=5000)`` default, used by ``separate_tracks``.
MIN_TRIM_SAMPLES = 5000

# Class names behind the hydra ``_target_`` entries we can build (module paths vary between
# versions of the original, e.g. ``src.source_separation.lasaft_net_v2...``, so only the class
# name is compared).
_FRAMEWORK = "AbstractLaSAFTNet"
_SPEC2SPEC = "BaseNet"
_BLOCK = "MkTFCLightSAFTGPoCM"
_DOWN = "MKConvDS"
_UP = "MkConvTransposeUS"
_TARGET_PATHS = {
    _FRAMEWORK: "lasaft.models.conditioned.base_framework.AbstractLaSAFTNet",
    _SPEC2SPEC: "lasaft.models.conditioned.spec2spec.base.BaseNet",
    _BLOCK: "lasaft.models.conditioned.spec2spec.block_functions.MkTFCLightSAFTGPoCM",
    _DOWN: "lasaft.models.conditioned.spec2spec.block_functions.MKConvDS",
    _UP: "lasaft.models.conditioned.spec2spec.block_functions.MkConvTransposeUS",
}
# Why the known-but-unbuildable classes are refused (named in the ConfigError).
_REFUSED_TARGETS = {
    "AbstractLaSAFTNetWithZeroShot": "audio-query (zero-shot) conditioning is not supported",
    "AbstractLaSAFTNetWithMultiSource": "needs control_vector_type 'linear', which is not supported",
    "BaseNetWithZeroShot": "audio-query (zero-shot) conditioning is not supported",
    "BaseNetWithMultiSource": "needs control_vector_type 'linear', which is not supported",
    "MkTFCLaSAFT": "LaSAFT v1 (TDF_f1_to_f2) blocks are not supported, only MkTFCLightSAFTGPoCM",
    "MkTFCLaSAFTGPoCM": "LaSAFT v1 (TDF_f1_to_f2) blocks are not supported, only MkTFCLightSAFTGPoCM",
}


@dataclasses.dataclass(frozen=True)
class LasaftV2Config(SpectrogramWindows):
    """Constructor arguments of LASAFT-Net-v2's ``spec2spec``; defaults are ``v2_light``.

    Names follow the original where it has one flat name; the block/down/up-sampling factory
    arguments get a prefix (``mk_block_f.num_layers`` -> ``n_internal_layers``, ``kt``/``kf`` ->
    ``kernel_size_t``/``kernel_size_f``, ``bias`` -> ``tfc_tdf_bias``, ``activation`` ->
    ``tfc_tdf_activation``, ``norm`` -> ``block_norm``, ``mk_ds_f.*`` -> ``downsampling_*``...).
    """

    min_trim: ClassVar[int] = MIN_TRIM_SAMPLES

    name: str = "v2_light"
    # AbstractLaSAFTNet (framework)
    n_fft: int = 2048
    hop_length: int = 1024
    num_frame: int = 128
    spec_type: str = "complex"
    spec_est_mode: str = "mapping"
    # BaseNet (spec2spec)
    input_channels: int = 4
    internal_channels: int = 20
    n_blocks: int = 7
    first_conv_activation: str = "leaky_relu"
    last_activation: str = "identity"
    control_vector_type: str = "embedding"
    control_input_dim: int = 4
    embedding_dim: int = 32
    condition_to: str = "decoder"
    norm: str = "bn"  # BaseNet.norm: only the first_conv uses it
    # MkTFCLightSAFTGPoCM (mk_block_f)
    n_internal_layers: int = 5
    kernel_size_t: int = 3
    kernel_size_f: int = 3
    bn_factor: int = 16
    min_bn_units: int = 16
    tfc_tdf_bias: bool = False
    tfc_tdf_activation: str = "leaky_relu"
    num_tdfs: int = 12
    dk: int = 32
    block_norm: str = "bn"
    query_listen: bool = True
    key_listen: bool = True
    # MKConvDS (mk_ds_f) / MkConvTransposeUS (mk_us_f)
    downsampling_activation: str = "leaky_relu"
    downsampling_norm: str = "bn"
    upsampling_activation: str = "leaky_relu"
    upsampling_norm: str = "bn"

    def __post_init__(self) -> None:
        self._validate()

    # ------------------------------------------------------------------ construction
    @classmethod
    def from_hyper_parameters(cls, hparams: Mapping[str, Any]) -> "LasaftV2Config":
        """Build from a checkpoint's ``hyper_parameters`` (the resolved hydra ``model:`` section).

        A whole hydra config with a ``model`` entry is accepted too. Training-only keys (lr,
        optimizer, initializer, losses, ...) are ignored. Raises :class:`ConfigError` naming the
        offending key and value for anything that cannot be built.
        """
        if not isinstance(hparams, Mapping):
            raise ConfigError(f"hyper_parameters must be a dict, got {type(hparams).__name__}")
        if "spec2spec" not in hparams and isinstance(hparams.get("model"), Mapping):
            hparams = hparams["model"]
        _check_target(hparams, "_target_", _FRAMEWORK, required=False)
        s2s = _section(hparams, "spec2spec")
        _check_target(s2s, "spec2spec._target_", _SPEC2SPEC, required=False)
        blk = _section(s2s, "mk_block_f", "spec2spec.")
        _check_target(blk, "spec2spec.mk_block_f._target_", _BLOCK, required=True)
        ds = _section(s2s, "mk_ds_f", "spec2spec.")
        _check_target(ds, "spec2spec.mk_ds_f._target_", _DOWN, required=True)
        us = _section(s2s, "mk_us_f", "spec2spec.")
        _check_target(us, "spec2spec.mk_us_f._target_", _UP, required=True)

        def get(d: Mapping[str, Any], key: str, where: str, default: Any = ...) -> Any:
            if key in d:
                return d[key]
            if default is ...:
                raise ConfigError(f"hyper_parameters: missing required key {where}{key}")
            return default

        n_fft = get(hparams, "n_fft", "")
        # The sub-configs are hydra interpolations of shared values in the original; a stored
        # checkpoint has them resolved, and a mismatch cannot be built (the original would crash).
        _same(get(s2s, "n_fft", "spec2spec."), n_fft, "spec2spec.n_fft", "n_fft")
        channels = get(s2s, "internal_channels", "spec2spec.")
        embedding_dim = get(s2s, "embedding_dim", "spec2spec.")
        _same(get(blk, "gr", "spec2spec.mk_block_f."), channels,
              "spec2spec.mk_block_f.gr", "spec2spec.internal_channels")
        _same(get(blk, "condition_dim", "spec2spec.mk_block_f."), embedding_dim,
              "spec2spec.mk_block_f.condition_dim", "spec2spec.embedding_dim")
        # BaseNet.n_internal_layers is required but unused by the original: the blocks use
        # mk_block_f.num_layers, so that one is authoritative.
        get(s2s, "n_internal_layers", "spec2spec.")
        kwargs = dict(
            name=hparams.get("name", "no_name"),
            n_fft=n_fft,
            hop_length=get(hparams, "hop_length", ""),
            num_frame=get(hparams, "num_frame", ""),
            spec_type=get(hparams, "spec_type", ""),
            spec_est_mode=get(hparams, "spec_est_mode", ""),
            input_channels=get(s2s, "input_channels", "spec2spec."),
            internal_channels=channels,
            n_blocks=get(s2s, "n_blocks", "spec2spec."),
            first_conv_activation=get(s2s, "first_conv_activation", "spec2spec."),
            last_activation=get(s2s, "last_activation", "spec2spec."),
            control_vector_type=get(s2s, "control_vector_type", "spec2spec."),
            control_input_dim=get(s2s, "control_input_dim", "spec2spec."),
            embedding_dim=embedding_dim,
            condition_to=get(s2s, "condition_to", "spec2spec."),
            norm=get(s2s, "norm", "spec2spec.", "bn"),
            n_internal_layers=get(blk, "num_layers", "spec2spec.mk_block_f."),
            kernel_size_t=get(blk, "kt", "spec2spec.mk_block_f."),
            kernel_size_f=get(blk, "kf", "spec2spec.mk_block_f."),
            bn_factor=get(blk, "bn_factor", "spec2spec.mk_block_f."),
            min_bn_units=get(blk, "min_bn_units", "spec2spec.mk_block_f."),
            tfc_tdf_bias=get(blk, "bias", "spec2spec.mk_block_f."),
            tfc_tdf_activation=get(blk, "activation", "spec2spec.mk_block_f."),
            num_tdfs=get(blk, "num_tdfs", "spec2spec.mk_block_f."),
            dk=get(blk, "dk", "spec2spec.mk_block_f."),
            block_norm=get(blk, "norm", "spec2spec.mk_block_f.", "bn"),
            # MkTFCLightSAFTGPoCM defaults both to False; the top-level model.query_listen /
            # key_listen are only hydra interpolation sources ("not explicitly used").
            query_listen=get(blk, "query_listen", "spec2spec.mk_block_f.", False),
            key_listen=get(blk, "key_listen", "spec2spec.mk_block_f.", False),
            downsampling_activation=get(ds, "activation", "spec2spec.mk_ds_f."),
            downsampling_norm=get(ds, "norm", "spec2spec.mk_ds_f.", "bn"),
            upsampling_activation=get(us, "activation", "spec2spec.mk_us_f."),
            upsampling_norm=get(us, "norm", "spec2spec.mk_us_f.", "bn"),
        )
        return cls(**kwargs)

    def to_dict(self) -> dict[str, Any]:
        """Plain-JSON dict in the original's nested hydra layout (``_target_`` entries included).

        ``from_hyper_parameters(cfg.to_dict()) == cfg``; the dict is also a valid
        ``hyper_parameters`` entry for a checkpoint the original could instantiate.
        """
        return {
            "name": self.name,
            "_target_": _TARGET_PATHS[_FRAMEWORK],
            "query_listen": self.query_listen,
            "key_listen": self.key_listen,
            "n_fft": self.n_fft,
            "num_frame": self.num_frame,
            "hop_length": self.hop_length,
            "spec_type": self.spec_type,
            "spec_est_mode": self.spec_est_mode,
            "norm": self.block_norm,
            "spec2spec": {
                "_target_": _TARGET_PATHS[_SPEC2SPEC],
                "n_fft": self.n_fft,
                "input_channels": self.input_channels,
                "internal_channels": self.internal_channels,
                "n_blocks": self.n_blocks,
                "n_internal_layers": self.n_internal_layers,
                "first_conv_activation": self.first_conv_activation,
                "last_activation": self.last_activation,
                "control_vector_type": self.control_vector_type,
                "control_input_dim": self.control_input_dim,
                "embedding_dim": self.embedding_dim,
                "condition_to": self.condition_to,
                "norm": self.norm,
                "mk_block_f": {
                    "_target_": _TARGET_PATHS[_BLOCK],
                    "gr": self.internal_channels,
                    "num_layers": self.n_internal_layers,
                    "kt": self.kernel_size_t,
                    "kf": self.kernel_size_f,
                    "bn_factor": self.bn_factor,
                    "min_bn_units": self.min_bn_units,
                    "bias": self.tfc_tdf_bias,
                    "activation": self.tfc_tdf_activation,
                    "condition_dim": self.embedding_dim,
                    "num_tdfs": self.num_tdfs,
                    "dk": self.dk,
                    "norm": self.block_norm,
                    "query_listen": self.query_listen,
                    "key_listen": self.key_listen,
                },
                "mk_ds_f": {"_target_": _TARGET_PATHS[_DOWN], "activation": self.downsampling_activation,
                            "norm": self.downsampling_norm},
                "mk_us_f": {"_target_": _TARGET_PATHS[_UP], "activation": self.upsampling_activation,
                            "norm": self.upsampling_norm},
            },
        }

    # ------------------------------------------------------------------ derived geometry
    @property
    def frame_multiple(self) -> int:
        """The frame count must be divisible by this: every level halves time (2x2 stride)."""
        return 2 ** self.n_levels

    @property
    def n_sources(self) -> int:
        """Number of targets (conditions 0..3 = vocals, drums, bass, other)."""
        return len(SOURCES)

    @property
    def sources(self) -> tuple[str, ...]:
        """Target names in condition order."""
        return SOURCES

    @property
    def masking(self) -> bool:
        """True when the network output is a mask multiplied onto the input spectrogram."""
        return self.spec_est_mode == "masking"

    @property
    def encoder_conditioned(self) -> bool:
        """Encoders use the conditioned block ('encoder' or 'full')."""
        return self.condition_to in ("encoder", "full")

    @property
    def mid_conditioned(self) -> bool:
        """The middle block is conditioned ('full' only)."""
        return self.condition_to == "full"

    @property
    def decoder_conditioned(self) -> bool:
        """Decoders use the conditioned block ('decoder' or 'full')."""
        return self.condition_to in ("decoder", "full")

    # ------------------------------------------------------------------ validation
    def _validate(self) -> None:
        def need(cond: bool, msg: str) -> None:
            if not cond:
                raise ConfigError(msg)

        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            if f.type == "int":
                need(isinstance(value, int) and not isinstance(value, bool),
                     f"{f.name} must be an int, got {value!r}")
            elif f.type == "bool":
                need(isinstance(value, bool), f"{f.name} must be a bool, got {value!r}")
            elif f.type == "str":
                need(isinstance(value, str), f"{f.name} must be a string, got {value!r}")
        for name in ("n_fft", "hop_length", "num_frame", "internal_channels", "n_internal_layers",
                     "kernel_size_t", "kernel_size_f", "bn_factor", "min_bn_units", "num_tdfs", "dk",
                     "embedding_dim"):
            need(getattr(self, name) > 0, f"{name} must be positive, got {getattr(self, name)}")
        need(self.spec_type == "complex",
             f"spec_type {self.spec_type!r} is not supported: only 'complex' spectrograms")
        need(self.spec_est_mode in ("mapping", "masking"),
             f"spec_est_mode {self.spec_est_mode!r} unknown (expected 'mapping' or 'masking')")
        need(self.input_channels == 4,
             f"input_channels {self.input_channels}: must be 4 (Re L, Re R, Im L, Im R)")
        need(self.control_vector_type == "embedding",
             f"control_vector_type {self.control_vector_type!r} is not supported: only 'embedding'")
        need(self.control_input_dim == len(SOURCES),
             f"control_input_dim {self.control_input_dim}: must be 4 (vocals, drums, bass, other)")
        need(self.condition_to in CONDITION_TARGETS,
             f"condition_to {self.condition_to!r} unknown (expected one of {CONDITION_TARGETS})")
        for name in ("first_conv_activation", "last_activation", "tfc_tdf_activation",
                     "downsampling_activation", "upsampling_activation"):
            need(getattr(self, name) in SUPPORTED_ACTIVATIONS,
                 f"{name} {getattr(self, name)!r} is not supported (expected one of {SUPPORTED_ACTIVATIONS})")
        for name in ("norm", "block_norm", "downsampling_norm", "upsampling_norm"):
            need(getattr(self, name) in SUPPORTED_NORMS,
                 f"{name} {getattr(self, name)!r} is not supported (expected one of {SUPPORTED_NORMS})")
        need(self.n_blocks % 2 == 1 and self.n_blocks >= 3,
             f"n_blocks must be odd and >= 3, got {self.n_blocks}")
        # The original passes kernel (kf, kt) with padding (kt//2, kf//2): only equal odd sizes
        # keep T and F unchanged; anything else breaks the skip concatenation there too.
        need(self.kernel_size_t == self.kernel_size_f and self.kernel_size_t % 2 == 1,
             f"kt={self.kernel_size_t}, kf={self.kernel_size_f}: only equal odd kernel sizes "
             "keep the feature map size in the original's TFC")
        need(self.n_fft % 2 == 0 and (self.n_fft // 2) % self.frame_multiple == 0,
             f"n_fft // 2 = {self.n_fft // 2} is not divisible by 2**{self.n_levels}")
        need(self.num_frame % self.frame_multiple == 0,
             f"num_frame {self.num_frame} must be divisible by {self.frame_multiple}")
        # get_trim_length asserts at least two hops of trim.
        need(math.ceil(MIN_TRIM_SAMPLES / self.hop_length) > 1,
             f"hop_length {self.hop_length}: the original's get_trim_length needs hop < {MIN_TRIM_SAMPLES}")
        need(self.hop_samples > 0,
             f"window of {self.window_samples} samples is too short for 2 x {self.trim_samples} trim")


def _section(d: Mapping[str, Any], key: str, where: str = "") -> Mapping[str, Any]:
    value = d.get(key)
    if not isinstance(value, Mapping):
        raise ConfigError(f"hyper_parameters: {where}{key} must be a dict, got {value!r}")
    return value


def _check_target(d: Mapping[str, Any], where: str, expected: str, required: bool) -> None:
    """Compare a hydra ``_target_`` by class name; refuse known-but-unsupported classes clearly."""
    target = d.get("_target_")
    if target is None:
        if required:
            raise ConfigError(f"hyper_parameters: missing {where} (expected ...{expected})")
        return
    cls_name = str(target).rsplit(".", 1)[-1]
    if cls_name == expected:
        return
    reason = _REFUSED_TARGETS.get(cls_name, f"unknown class, expected ...{expected}")
    raise ConfigError(f"{where} {target!r} cannot be built: {reason}")


def _same(value: Any, expected: Any, name: str, other: str) -> None:
    if value != expected:
        raise ConfigError(f"{name} = {value!r} differs from {other} = {expected!r}; the original "
                          "cannot build that either")
