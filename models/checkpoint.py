"""Checkpoint formats: the original PyTorch Lightning ``.ckpt`` and plain state_dict files.

Which network a file holds is read from the file itself (:func:`models.registry.detect`: its
``hyper_parameters`` and state_dict keys), so one loader serves every registered architecture.

Nothing here ever unpickles with code execution enabled: every load goes through
``torch.load(..., weights_only=True)``. Lightning 1.x checkpoints may reference Lightning
classes (``callbacks`` keyed by the ``ModelCheckpoint`` class, an ``AttributeDict`` of
hyper-parameters); those names, and only those, are mapped to inert stub classes. Any other
global (``os.system``, ``builtins.eval``, ...) makes the load fail before a byte is unpickled.
"""
from __future__ import annotations

import dataclasses
import os
import pickle
import zipfile
from collections import OrderedDict
from pathlib import Path
from typing import Any, Iterable, Mapping

import torch

from core.files import atomic_path

from torch import nn

from .config import ConfigError
from .registry import Architecture, detect, get
from .spectral import hann_window

#: Prefix of the network's keys inside the Lightning module's state_dict.
NETWORK_PREFIX = "spec2spec."
#: Key of the (frozen) STFT window inside the Lightning module's state_dict.
WINDOW_KEY = "stft.stft.window"
#: Module prefixes whose globals may be replaced by inert stubs when loading.
STUBBABLE_MODULE_PREFIXES = ("pytorch_lightning.", "lightning.", "lightning_fabric.")


class CheckpointError(ValueError):
    """A file that is not a usable checkpoint of a supported architecture; the message says why."""


class UnsafeCheckpointError(CheckpointError):
    """A checkpoint whose pickle references code we refuse to run."""


@dataclasses.dataclass
class LoadedModel:
    """A network ready for inference (eval mode) with its architecture, config and STFT window."""

    config: Any
    network: nn.Module
    window: torch.Tensor
    source: str
    format: str  # "lightning" | "state_dict"
    global_step: int = 0  # the training step it was saved at; 0 for a plain state_dict
    architecture: Architecture = dataclasses.field(default_factory=lambda: get("lightsaft"))


class _StubBase(dict):
    """Inert stand-in for a Lightning class: accepts any construction or state, runs nothing.

    It is a dict so that an ``AttributeDict`` of hyper-parameters still reads as a mapping, and
    hashable so that instances may serve as dict keys.
    """

    __hash__ = object.__hash__

    def __init__(self, *args: Any, **kwargs: Any) -> None:  # noqa: D401 - stub
        super().__init__()
        if len(args) == 1 and isinstance(args[0], Mapping):
            self.update(args[0])
        self.update(kwargs)

    def __setstate__(self, state: Any) -> None:
        if isinstance(state, Mapping):
            self.update(state)


def _stub_for(qualified_name: str) -> type:
    if qualified_name.endswith(".AttributeDict"):
        # Lightning's hyper-parameter dict; torch's safe unpickler fills only true dict types.
        return OrderedDict
    module, _, name = qualified_name.rpartition(".")
    return type(name, (_StubBase,), {"__module__": module, "__qualname__": name})


def _is_zip(path: Path) -> bool:
    try:
        return zipfile.is_zipfile(path)
    except OSError:
        return False


def safe_torch_load(path: str | os.PathLike[str]) -> Any:
    """``torch.load`` with ``weights_only=True``, Lightning globals stubbed, others refused."""
    path = Path(path)
    if not path.exists():
        raise CheckpointError(f"checkpoint not found: {path}")
    if not path.is_file():
        raise CheckpointError(f"checkpoint path is not a file: {path}")
    stubs: list[tuple[type, str]] = []
    if _is_zip(path):
        try:
            unsafe = torch.serialization.get_unsafe_globals_in_checkpoint(str(path))
        except Exception as exc:  # corrupt archive
            raise CheckpointError(f"{path} is not a readable torch checkpoint: {exc}") from exc
        refused = [g for g in unsafe if not g.startswith(STUBBABLE_MODULE_PREFIXES)]
        if refused:
            raise UnsafeCheckpointError(
                f"refusing to load {path}: its pickle references {', '.join(sorted(refused)[:5])}, "
                "which could execute code. Re-save the weights as a plain state_dict from a trusted "
                "environment.")
        stubs = [(_stub_for(g), g) for g in unsafe]
    try:
        with torch.serialization.safe_globals(stubs):
            return torch.load(str(path), map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        text = str(exc) or type(exc).__name__
        if "GLOBAL" in text or "Unsupported global" in text or "weights_only" in text:
            raise UnsafeCheckpointError(f"refusing to load {path}: {text.splitlines()[0]}") from exc
        raise CheckpointError(f"{path} is not a torch checkpoint ({text.splitlines()[0]})") from exc
    except Exception as exc:  # torch raises many types for foreign or truncated files
        detail = (str(exc).splitlines() or [type(exc).__name__])[0]
        raise CheckpointError(f"{path} is not a torch checkpoint ({detail})") from exc


def split_state_dict(state: Mapping[str, Any]) -> tuple[dict[str, torch.Tensor], torch.Tensor | None]:
    """Normalise a Lightning or bare state_dict to (network keys without prefix, window or None)."""
    bad = [k for k, v in state.items() if not isinstance(k, str) or not isinstance(v, torch.Tensor)]
    if bad:
        raise CheckpointError(f"state_dict holds non-tensor entries, first: {bad[:3]}")
    window = state.get(WINDOW_KEY)
    has_prefix = any(k.startswith(NETWORK_PREFIX) for k in state)
    net: dict[str, torch.Tensor] = {}
    for key, value in state.items():
        if key == WINDOW_KEY:
            continue
        if has_prefix:
            if not key.startswith(NETWORK_PREFIX):
                net["<unexpected>" + key] = value
                continue
            key = key[len(NETWORK_PREFIX):]
        net[key] = value
    return net, window


def _describe(keys: Iterable[str], limit: int = 5) -> str:
    keys = list(keys)
    more = f" (+{len(keys) - limit} more)" if len(keys) > limit else ""
    return ", ".join(keys[:limit]) + more


def build_network(config: Any, net_state: Mapping[str, torch.Tensor],
                  architecture: Architecture | None = None) -> nn.Module:
    """Create ``architecture``'s network (default LightSAFT) for ``config`` and load ``net_state``
    strictly; errors name the keys."""
    architecture = architecture or get("lightsaft")
    try:
        network = architecture.build(config)
    except ConfigError as exc:
        raise CheckpointError(f"cannot build {architecture.name} from this config: {exc}") from exc
    expected = network.state_dict()
    missing = [k for k in expected if k not in net_state]
    unexpected = [k.replace("<unexpected>", "") for k in net_state if k not in expected]
    if missing or unexpected:
        parts = []
        if missing:
            parts.append(f"{len(missing)} missing key(s): {_describe(missing)}")
        if unexpected:
            parts.append(f"{len(unexpected)} unexpected key(s): {_describe(unexpected)}")
        raise CheckpointError(f"state_dict does not match the {architecture.name} config: " + "; ".join(parts))
    wrong = [f"{k} {tuple(net_state[k].shape)} != expected {tuple(v.shape)}"
             for k, v in expected.items() if net_state[k].shape != v.shape]
    if wrong:
        raise CheckpointError(f"{len(wrong)} tensor(s) with the wrong shape: {_describe(wrong, 3)}")
    network.load_state_dict({k: v.to(expected[k].dtype) for k, v in net_state.items()}, strict=True)
    network.eval()
    for p in network.parameters():
        p.requires_grad_(False)
    return network


def load_checkpoint(path: str | os.PathLike[str], config: Any | None = None) -> LoadedModel:
    """Load a Lightning ``.ckpt`` (state_dict + hyper_parameters) or a plain state_dict file.

    The architecture is recognised from the file (:func:`models.registry.detect`). ``config`` is
    needed only for a plain state_dict whose configuration is not its architecture's default; a
    Lightning checkpoint carries its own.
    """
    obj = safe_torch_load(path)
    if not isinstance(obj, Mapping):
        raise CheckpointError(f"{path}: expected a dict, found {type(obj).__name__}")
    hparams = None
    if "state_dict" in obj:
        fmt = "lightning"
        state = obj["state_dict"]
        if not isinstance(state, Mapping):
            raise CheckpointError(f"{path}: 'state_dict' is a {type(state).__name__}, not a dict")
        hparams = obj.get("hyper_parameters")
        if hparams is not None and not isinstance(hparams, Mapping):
            raise CheckpointError(f"{path}: hyper_parameters must be a dict, got {type(hparams).__name__}")
    else:
        fmt = "state_dict"
        state = obj
    if not state:
        raise CheckpointError(f"{path}: the state_dict is empty")
    net_state, window = split_state_dict(state)
    try:
        architecture = detect(hparams, net_state.keys(), where=str(path))
        if config is None:
            config = architecture.config_from_hyper_parameters(hparams)
    except ConfigError as exc:
        raise CheckpointError(f"{path}: {exc}" if str(path) not in str(exc) else str(exc)) from exc
    try:
        network = build_network(config, net_state, architecture)
    except CheckpointError as exc:
        raise CheckpointError(f"{path}: {exc}") from exc
    if window is None:
        window = hann_window(config.n_fft)
    elif window.shape != (config.n_fft,):
        raise CheckpointError(f"{path}: {WINDOW_KEY} has shape {tuple(window.shape)}, expected ({config.n_fft},)")
    return LoadedModel(config=config, network=network, window=window.detach().float().clone(),
                       source=str(path), format=fmt,
                       global_step=int(obj.get("global_step", 0)) if fmt == "lightning" else 0,
                       architecture=architecture)


def save_lightning_checkpoint(path: str | os.PathLike[str], network: nn.Module,
                              window: torch.Tensor | None = None, **extra: Any) -> None:
    """Write the original Lightning 1.x layout (state_dict with prefixes + hyper_parameters).

    The file is written to a temporary name and renamed, so a crash never leaves half a file.
    """
    state: dict[str, torch.Tensor] = {WINDOW_KEY: (window if window is not None else hann_window(network.cfg.n_fft))}
    for key, value in network.state_dict().items():
        state[NETWORK_PREFIX + key] = value.detach().clone()
    ckpt = {
        "epoch": int(extra.pop("epoch", 0)),
        "global_step": int(extra.pop("global_step", 0)),
        "pytorch-lightning_version": "1.1.6",
        "callbacks": {},
        "optimizer_states": extra.pop("optimizer_states", []),
        "lr_schedulers": [],
        "state_dict": state,
        "hparams_name": "kwargs",
        "hyper_parameters": network.cfg.to_dict(),
    }
    ckpt.update(extra)
    with atomic_path(path) as tmp:
        torch.save(ckpt, tmp)
