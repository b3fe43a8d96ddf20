"""Open-Unmix's model folder: ``separator.json`` and, per target, ``<target>.json`` + ``<target>*.pth``.

What the package reads, the kit reads (../shared/reference/umx/README.md): the STFT from
``separator.json``; ``nfft``, ``nb_channels`` and ``hidden_size`` from each target's ``args``;
``max_bin`` from the stored ``input_mean``; layers and direction from the state_dict's keys.
Weights load with ``torch.load(..., weights_only=True)`` and strictly: a missing or extra key, or
a shape that does not fit, is an error naming the file (the package's non-strict load would
silently keep initial values).
"""
from __future__ import annotations

import dataclasses
import json
import os
import re
from pathlib import Path
from typing import Any, Mapping

import torch

from core.constants import SAMPLE_RATE, SOURCES

from ..config import ConfigError
from ..formats import UMX_SEPARATOR_FILE
from .network import UmxConfig, UmxNetwork


class UmxError(ConfigError):
    """An Open-Unmix folder the kit cannot build; the message names the file and the problem."""


@dataclasses.dataclass
class UmxModel:
    """The four target networks (in the kit's source order) and the STFT they expect."""

    networks: dict[str, UmxNetwork]
    n_fft: int
    hop_length: int
    path: Path

    @property
    def config(self) -> UmxConfig:
        return next(iter(self.networks.values())).cfg


def _read_json(path: Path) -> Mapping[str, Any]:
    try:
        data = json.loads(path.read_text())
    except FileNotFoundError:
        raise UmxError(f"{path} is missing: an Open-Unmix folder needs it") from None
    except (OSError, ValueError) as exc:
        raise UmxError(f"{path} is not readable JSON: {exc}") from None
    if not isinstance(data, Mapping):
        raise UmxError(f"{path} should hold a JSON object")
    return data


def _int_field(data: Mapping[str, Any], key: str, where: Path) -> int:
    value = data.get(key)
    if isinstance(value, bool) or not isinstance(value, (int, float)) or int(value) != value or value <= 0:
        raise UmxError(f"{where}: {key!r} should be a positive integer, found {value!r}")
    return int(value)


def _weights_file(folder: Path, target: str) -> Path:
    exact = folder / f"{target}.pth"
    if exact.is_file():
        return exact
    found = sorted(folder.glob(f"{target}*.pth"))  # published files carry a hash: vocals-b62c91ce.pth
    if len(found) != 1:
        what = "no" if not found else f"{len(found)}"
        raise UmxError(f"{folder}: {what} weights file for target {target!r} (expected {target}.pth or "
                       f"{target}-<hash>.pth)")
    return found[0]


def _network_config(state: Mapping[str, torch.Tensor], args: Mapping[str, Any], where: Path) -> UmxConfig:
    if "input_mean" not in state:
        raise UmxError(f"{where} has no 'input_mean': not an Open-Unmix target network")
    layers = {int(m.group(1)) for k in state if (m := re.fullmatch(r"lstm\.weight_ih_l(\d+)", k))}
    return UmxConfig(nb_bins=_int_field(args, "nfft", where) // 2 + 1,
                     nb_channels=_int_field(args, "nb_channels", where),
                     hidden_size=_int_field(args, "hidden_size", where),
                     nb_layers=len(layers) or 1,
                     unidirectional="lstm.weight_ih_l0_reverse" not in state,
                     max_bin=int(state["input_mean"].shape[0]))


def _load_target(folder: Path, target: str, n_fft: int, channels: int) -> UmxNetwork:
    meta = folder / f"{target}.json"
    args = _read_json(meta).get("args")
    if not isinstance(args, Mapping):
        raise UmxError(f"{meta} has no 'args' object (Open-Unmix's training script writes one)")
    weights = _weights_file(folder, target)
    try:
        state = torch.load(weights, map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001 - any unreadable file gets the same clear message
        raise UmxError(f"{weights} could not be read as weights only ({type(exc).__name__}: {exc})") from None
    if not isinstance(state, Mapping) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise UmxError(f"{weights} should hold a state_dict (a dict of tensors)")
    cfg = _network_config(state, args, meta)
    if cfg.nb_bins != n_fft // 2 + 1 or cfg.nb_channels != channels:
        raise UmxError(f"{meta}: nfft {2 * (cfg.nb_bins - 1)} / {cfg.nb_channels} channels do not match "
                       f"{UMX_SEPARATOR_FILE} (nfft {n_fft}, {channels} channels)")
    network = UmxNetwork(cfg)
    expected = network.state_dict()
    missing = sorted(set(expected) - set(state))
    extra = sorted(set(state) - set(expected))
    if missing or extra:
        raise UmxError(f"{weights}: keys do not match Open-Unmix's network for {cfg} "
                       f"(missing {missing[:4]}, unexpected {extra[:4]})")
    wrong = [f"{k} {tuple(state[k].shape)} (expected {tuple(v.shape)})"
             for k, v in expected.items() if state[k].shape != v.shape]
    if wrong:
        raise UmxError(f"{weights}: shapes do not match {meta}'s configuration: {', '.join(wrong[:3])}")
    network.load_state_dict(state, strict=True)
    network.requires_grad_(False)
    return network.eval()


def load_umx_folder(path: str | os.PathLike[str]) -> UmxModel:
    """Read an Open-Unmix model folder with all four of the kit's targets."""
    folder = Path(path)
    if not folder.is_dir():
        raise UmxError(f"{folder} is not a folder (an Open-Unmix model is a folder with {UMX_SEPARATOR_FILE})")
    sep = _read_json(folder / UMX_SEPARATOR_FILE)
    where = folder / UMX_SEPARATOR_FILE
    n_fft, hop, channels = (_int_field(sep, k, where) for k in ("nfft", "nhop", "nb_channels"))
    rate = sep.get("sample_rate")
    if rate != SAMPLE_RATE:
        raise UmxError(f"{where}: sample_rate {rate!r}; the kit runs models at {SAMPLE_RATE} Hz")
    if channels != 2:
        raise UmxError(f"{where}: nb_channels {channels}; the kit separates stereo with stereo models")
    networks = {t: _load_target(folder, t, n_fft, channels) for t in SOURCES}
    return UmxModel(networks=networks, n_fft=n_fft, hop_length=hop, path=folder)
