"""HTDemucs (demucs v4) from demucs's own serialized ``.th`` model package, loaded safely.

A demucs package is a ``torch.save``d dict ``{klass, args, kwargs, state, training_args, ...}``
whose ``klass`` is pickled as a reference to demucs's model class. demucs itself loads it with
``weights_only=False``, which would run whatever a crafted file names. The kit first lists the
globals the pickle names (without unpickling), refuses anything outside :data:`ALLOWED_GLOBALS`,
then unpickles with ``weights_only=True`` and exactly those classes allowed. The network is
demucs's own class (the ``demucs`` package imports without torchaudio), built the way
``demucs.states.load_model`` builds it.

Supported: single HTDemucs models with the four MDX sources (extra sources such as guitar and
piano of the 6-source models are summed into ``other``). Bags of models (release ``.yaml``
files), quantized (DiffQ) states and the older HDemucs/Demucs classes are refused with a clear
message.
"""
from __future__ import annotations

import dataclasses
import fractions
import inspect
import os
import warnings
from pathlib import Path
from typing import Any, Mapping

import torch

from core.constants import SAMPLE_RATE, SOURCES

from .config import ConfigError

#: The only globals a demucs package may name: HTDemucs itself and ``Fraction`` (release
#: models store their segment length as one).
ALLOWED_GLOBALS = ("demucs.htdemucs.HTDemucs", "fractions.Fraction")
_OLDER = ("demucs.hdemucs.HDemucs", "demucs.demucs.Demucs")


class DemucsError(ConfigError):
    """A demucs file the kit will not load; the message names the file and the problem."""


@dataclasses.dataclass
class DemucsModel:
    """A loaded HTDemucs network, its sources and how ``apply_model`` would chunk a track."""

    network: torch.nn.Module
    sources: tuple[str, ...]
    segment_samples: int
    path: Path
    training_args: Any = None

    @property
    def source_index(self) -> dict[str, tuple[int, ...]]:
        """For each kit source, the network outputs summed into it (extras go to ``other``)."""
        index = {name: (self.sources.index(name),) for name in SOURCES}
        extra = tuple(i for i, name in enumerate(self.sources) if name not in SOURCES)
        index["other"] = index["other"] + extra
        return index


def _import_htdemucs():
    try:
        from demucs.htdemucs import HTDemucs
    except ImportError as exc:
        raise DemucsError(f"HTDemucs models need the `demucs` package (pip install -r requirements.txt): {exc}") from None
    return HTDemucs


def _check_globals(path: Path) -> None:
    try:
        named = torch.serialization.get_unsafe_globals_in_checkpoint(str(path))
    except Exception as exc:  # noqa: BLE001 - not a torch zip archive at all
        raise DemucsError(f"{path} is not a demucs model package ({type(exc).__name__}: {exc})") from None
    refused = [g for g in named if g not in ALLOWED_GLOBALS]
    older = [g for g in refused if g in _OLDER]
    if older:
        raise DemucsError(f"{path} holds a {older[0]} model; the kit runs HTDemucs (demucs v4) models only")
    if refused:
        raise DemucsError(f"{path} names code the kit will not load: {', '.join(refused)} "
                          f"(a demucs package may only name {', '.join(ALLOWED_GLOBALS)}); nothing was executed")


def load_demucs(path: str | os.PathLike[str]) -> DemucsModel:
    """Read a demucs ``.th`` model package into an eval-mode HTDemucs (float32)."""
    path = Path(path)
    if not path.is_file():
        raise DemucsError(f"{path} does not exist")
    if path.suffix.lower() == ".yaml":
        raise DemucsError(f"{path} is a bag of models; pass one of its .th files")
    _check_globals(path)
    HTDemucs = _import_htdemucs()
    try:
        with torch.serialization.safe_globals([HTDemucs, fractions.Fraction]):
            package = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001
        raise DemucsError(f"{path} could not be read as a demucs package ({type(exc).__name__}: {exc})") from None
    if not isinstance(package, Mapping) or not {"klass", "args", "kwargs", "state"} <= set(package):
        raise DemucsError(f"{path} is not a demucs model package (expected klass, args, kwargs and state)")
    if package["klass"] is not HTDemucs:
        raise DemucsError(f"{path}: klass is {package['klass']!r}, not demucs.htdemucs.HTDemucs")
    state, args, kwargs = package["state"], package["args"], package["kwargs"]
    if not isinstance(state, Mapping) or state.get("__quantized"):
        raise DemucsError(f"{path} holds a quantized (DiffQ) state, which the kit does not read")
    if not isinstance(args, (tuple, list)) or not isinstance(kwargs, Mapping):
        raise DemucsError(f"{path}: args/kwargs are not a tuple and a dict")
    kwargs = dict(kwargs)
    params = inspect.signature(HTDemucs).parameters
    for key in [k for k in kwargs if k not in params]:  # demucs drops these too, with a warning
        warnings.warn(f"{path}: dropping unknown HTDemucs parameter {key!r} (as demucs does)")
        del kwargs[key]
    try:
        network = HTDemucs(*args, **kwargs)
        network.load_state_dict(state)
    except (TypeError, ValueError, RuntimeError) as exc:
        raise DemucsError(f"{path}: cannot build HTDemucs from its config: {str(exc).splitlines()[0]}") from None
    network.requires_grad_(False)
    network.eval()
    sources = tuple(network.sources)
    missing = [s for s in SOURCES if s not in sources]
    if missing:
        raise DemucsError(f"{path}: the model separates {list(sources)}, without {missing}")
    if network.samplerate != SAMPLE_RATE or network.audio_channels != 2:
        raise DemucsError(f"{path}: {network.samplerate} Hz, {network.audio_channels} channels; "
                          f"the kit runs stereo {SAMPLE_RATE} Hz models")
    segment = int(SAMPLE_RATE * network.segment)  # apply_model's segment_length
    return DemucsModel(network, sources, segment, path, package.get("training_args"))
