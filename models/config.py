"""LightSAFT+GPoCM configuration, read from a checkpoint's ``hyper_parameters``.

The field names are those of the original ``DCUN_TFC_GPoCM_LightSAFT_Framework`` so that a
Lightning checkpoint's ``hyper_parameters`` dict maps onto this class one to one.
"""
from __future__ import annotations

import dataclasses
import math
from typing import Any, ClassVar, Mapping

#: Activation names the original ``get_activation_by_name`` accepts and we implement.
SUPPORTED_ACTIVATIONS = ("relu", "leaky_relu", "elu", "selu", "gelu", "tanh", "sigmoid", "identity")

#: The original dataset trims at least this many samples from each window side, rounded up to
#: whole hops (``get_trim_length(hop, 8192)`` in ``SingleTrackSet``; see spec quirk Q1).
MIN_TRIM_SAMPLES = 8192


class ConfigError(ValueError):
    """A model configuration that this kit cannot build."""


class SpectrogramWindows:
    """Window arithmetic shared by the configs of the STFT-window architectures.

    A subclass sets ``min_trim`` (its original's ``get_trim_length(hop, min_trim)``) and has
    ``n_fft``, ``hop_length``, ``num_frame`` and ``n_blocks`` fields.
    """

    min_trim: ClassVar[int]

    @property
    def n_bins(self) -> int:
        """One-sided STFT bins (``n_fft // 2 + 1``)."""
        return self.n_fft // 2 + 1

    @property
    def n_levels(self) -> int:
        """Encoder (and decoder) blocks: ``n_blocks // 2``."""
        return self.n_blocks // 2

    @property
    def window_samples(self) -> int:
        """Samples per inference window, ``(num_frame - 1) * hop``."""
        return (self.num_frame - 1) * self.hop_length

    @property
    def trim_samples(self) -> int:
        """Samples discarded on each side of a separated window: ``min_trim`` rounded up to whole hops."""
        return math.ceil(self.min_trim / self.hop_length) * self.hop_length

    @property
    def hop_samples(self) -> int:
        """Useful (kept) samples per window: window minus both trims."""
        return self.window_samples - 2 * self.trim_samples


@dataclasses.dataclass(frozen=True)
class LightSAFTConfig(SpectrogramWindows):
    """Constructor arguments of LightSAFT+GPoCM (and LaSAFT+GPoCM v1, same fields); defaults are
    ``lightsaft_small_2020``."""

    min_trim: ClassVar[int] = MIN_TRIM_SAMPLES

    n_fft: int = 2048
    hop_length: int = 1024
    num_frame: int = 256
    spec_type: str = "complex"
    spec_est_mode: str = "mapping"
    n_blocks: int = 9
    input_channels: int = 4
    internal_channels: int = 16
    first_conv_activation: str = "relu"
    last_activation: str = "identity"
    t_down_layers: tuple[int, ...] | None = None
    f_down_layers: tuple[int, ...] | None = None
    n_internal_layers: int = 5
    kernel_size_t: int = 3
    kernel_size_f: int = 3
    tfc_tdf_activation: str = "relu"
    bn_factor: int | None = 16  # None: LaSAFT v1's single-layer TDF (LightSAFT needs an int)
    min_bn_units: int = 16
    tfc_tdf_bias: bool = False
    num_tdfs: int = 16
    dk: int = 64
    control_vector_type: str = "embedding"
    control_input_dim: int = 4
    embedding_dim: int = 64
    condition_to: str = "decoder"
    control_n_layer: int = 4
    control_type: str = "dense"
    pocm_type: str = "matmul"
    pocm_norm: str | None = "batch_norm"

    def __post_init__(self) -> None:
        self._validate()

    # ------------------------------------------------------------------ construction
    @classmethod
    def from_hyper_parameters(cls, hparams: Mapping[str, Any]) -> "LightSAFTConfig":
        """Build from a checkpoint's ``hyper_parameters``; training-only keys are ignored."""
        if not isinstance(hparams, Mapping):
            raise ConfigError(f"hyper_parameters must be a dict, got {type(hparams).__name__}")
        names = {f.name for f in dataclasses.fields(cls)}
        kwargs = {k: v for k, v in hparams.items() if k in names}
        for key in ("t_down_layers", "f_down_layers"):
            kwargs[key] = _parse_layer_list(kwargs.get(key))
        if kwargs.get("bn_factor") == "None":  # YAML/CLI spelling of None in the original's configs
            kwargs["bn_factor"] = None
        try:
            return cls(**kwargs)
        except TypeError as exc:  # wrong value types inside the dict
            raise ConfigError(f"bad hyper_parameters: {exc}") from exc

    def to_dict(self) -> dict[str, Any]:
        """Plain-JSON form (lists instead of tuples), the inverse of ``from_hyper_parameters``."""
        out = dataclasses.asdict(self)
        for key in ("t_down_layers", "f_down_layers"):
            if out[key] is not None:
                out[key] = list(out[key])
        return out

    # ------------------------------------------------------------------ derived geometry
    @property
    def t_down(self) -> tuple[int, ...]:
        """Encoder levels whose down-sampling halves time (all of them by default)."""
        return tuple(range(self.n_levels)) if self.t_down_layers is None else self.t_down_layers

    @property
    def frame_multiple(self) -> int:
        """The network needs a frame count divisible by this."""
        return 2 ** len(self.t_down)

    # ------------------------------------------------------------------ validation
    def _validate(self) -> None:
        def need(cond: bool, msg: str) -> None:
            if not cond:
                raise ConfigError(msg)

        need(self.bn_factor is None or (isinstance(self.bn_factor, int) and self.bn_factor > 0),
             f"bn_factor must be a positive int or None, got {self.bn_factor!r}")
        need(self.spec_type == "complex", f"spec_type {self.spec_type!r}: only 'complex' is supported")
        need(self.spec_est_mode in ("mapping", "masking"), f"spec_est_mode {self.spec_est_mode!r} unknown")
        need(self.input_channels == 4, "input_channels must be 4 (Re L, Re R, Im L, Im R of a stereo STFT)")
        need(self.n_blocks % 2 == 1 and self.n_blocks >= 3, f"n_blocks must be odd and >= 3, got {self.n_blocks}")
        need(self.n_fft % 2 == 0 and self.n_fft >= 16, f"n_fft must be even, got {self.n_fft}")
        need(0 < self.hop_length <= self.n_fft, f"hop_length {self.hop_length} out of range")
        need(self.condition_to == "decoder", f"condition_to {self.condition_to!r}: only 'decoder' (GPoCM in decoders) is supported")
        need(self.control_vector_type == "embedding", "only control_vector_type 'embedding' is supported")
        need(self.control_type == "dense", "only control_type 'dense' is supported")
        need(self.control_n_layer >= 2, "control_n_layer must be >= 2")
        need(self.pocm_type in ("matmul", "naive"), f"pocm_type {self.pocm_type!r} unknown")
        need(self.pocm_norm == "batch_norm", "only pocm_norm 'batch_norm' is supported")
        for name in ("first_conv_activation", "last_activation", "tfc_tdf_activation"):
            need(getattr(self, name) in SUPPORTED_ACTIVATIONS, f"{name} {getattr(self, name)!r} unsupported")
        for name in ("internal_channels", "n_internal_layers", "num_tdfs", "dk", "embedding_dim",
                     "min_bn_units", "control_input_dim", "kernel_size_t", "kernel_size_f"):
            need(isinstance(getattr(self, name), int) and getattr(self, name) > 0, f"{name} must be a positive int")
        need((self.n_fft // 2) % (2 ** self.n_levels) == 0,
             f"n_fft // 2 = {self.n_fft // 2} is not divisible by 2**{self.n_levels}")
        need(self.num_frame % self.frame_multiple == 0,
             f"num_frame {self.num_frame} must be divisible by {self.frame_multiple}")
        need(self.hop_samples > 0, "window too short for the trim: (num_frame-1)*hop <= 2*trim")
        need(self.control_input_dim == 4, "control_input_dim must be 4 (vocals, drums, bass, other)")


def _parse_layer_list(value: Any) -> tuple[int, ...] | None:
    """The original accepts None, 'None', a list, or a comma-separated string."""
    if value is None or value == "None":
        return None
    if isinstance(value, str):
        return tuple(int(v) for v in value.replace("[", "").replace("]", "").split(",") if v.strip())
    return tuple(int(v) for v in value)
