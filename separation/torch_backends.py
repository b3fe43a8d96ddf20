"""The backends that run on PyTorch: the eager network of a checkpoint, and a TorchScript artifact.

They speak the numpy interface of :class:`separation.backends.StemBodyBackend` at their
boundary (``torch.from_numpy``/``.numpy()`` share memory, nothing is copied); torch is imported
only when one of them is loaded.
"""
from __future__ import annotations

import os
import warnings

import numpy as np
import torch

from models.artifact import METADATA_KEY, parse_metadata
from models.optimize import fold_batchnorm
from models.registry import Architecture, get

from .backends import Features, StemBodyBackend


def _as_arrays(features: torch.Tensor | tuple[torch.Tensor, ...]) -> Features:
    features = (features,) if isinstance(features, torch.Tensor) else tuple(features)
    return tuple(f.numpy() for f in features)


def _as_network_input(features: Features) -> torch.Tensor | tuple[torch.Tensor, ...]:
    tensors = tuple(torch.from_numpy(np.ascontiguousarray(f)) for f in features)
    return tensors if len(tensors) > 1 else tensors[0]


class _TorchModuleBackend(StemBodyBackend):
    """Runs ``self.module``'s ``stem`` and ``body`` (an eager network or a TorchScript module)."""

    module: torch.nn.Module

    @torch.inference_mode()
    def stem(self, spec: np.ndarray) -> Features:
        return _as_arrays(self.module.stem(torch.from_numpy(np.ascontiguousarray(spec))))

    @torch.inference_mode()
    def body(self, features: Features, condition: np.ndarray) -> np.ndarray:
        return self.module.body(_as_network_input(features), torch.from_numpy(condition)).numpy()


class TorchBackend(_TorchModuleBackend):
    """Eager PyTorch on the loaded network (optionally with conv-BatchNorm folding)."""

    name = "torch"

    def __init__(self, network: torch.nn.Module, architecture: Architecture | None = None, share_stem: bool = True,
                 items_per_call: int | None = None, fold_bn: bool = False) -> None:
        super().__init__(architecture or get(network.architecture_name), share_stem, items_per_call)
        if fold_bn:
            network = fold_batchnorm(network)
        self.network = self.module = network.eval()
        self.config = network.cfg
        self.masking = network.masking


class TorchScriptBackend(_TorchModuleBackend):
    """A TorchScript artifact from ``python -m export`` (methods ``stem`` and ``body``)."""

    name = "torchscript"

    def __init__(self, path: str | os.PathLike[str], share_stem: bool = True, items_per_call: int | None = None) -> None:
        extra = {METADATA_KEY: ""}
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", DeprecationWarning)  # TorchScript is what we ship
                self.module = torch.jit.load(str(path), map_location="cpu", _extra_files=extra)
        except RuntimeError as exc:
            raise ValueError(f"{path} is not a TorchScript artifact: {str(exc).splitlines()[0]}") from exc
        architecture, self.config, self.window, self.metadata = parse_metadata(extra[METADATA_KEY], str(path))
        super().__init__(architecture, share_stem, items_per_call)
        self.masking = self.config.spec_est_mode == "masking"
        self.module.eval()
