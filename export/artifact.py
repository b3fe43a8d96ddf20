"""What an exported artifact carries besides its graph, so that the file alone can separate.

The metadata is one JSON document: model config (the checkpoint's hyper-parameters), the STFT
window, the sample rate, the window geometry, the source order and the kit version. ONNX files
keep it in ``metadata_props``; TorchScript files in an extra file inside the archive.
"""
from __future__ import annotations

import json
from typing import Any

import torch

from models.config import LightSAFTConfig
from models.constants import KIT_NAME, KIT_VERSION, SAMPLE_RATE, SOURCES

#: Key of the metadata in ONNX ``metadata_props`` and name of the TorchScript extra file.
METADATA_KEY = "mdxkit.json"
#: Input and output names of the exported graph (see ``export.graph.SplitGraph``).
INPUT_SPEC, INPUT_FEATURES, INPUT_CONDITION = "spec", "features", "condition"
OUTPUT_STEM, OUTPUT_SPEC = "stem", "separated_spec"


class ArtifactError(ValueError):
    """An exported file without usable kit metadata."""


def build_metadata(config: LightSAFTConfig, window: torch.Tensor, source: str) -> str:
    """JSON metadata for an artifact exported from ``source``."""
    doc = {
        "kit": KIT_NAME,
        "kit_version": KIT_VERSION,
        "model": "LightSAFT+GPoCM (DCUN_TFC_GPoCM_LightSAFT)",
        "exported_from": source,
        "sample_rate": SAMPLE_RATE,
        "sources": list(SOURCES[: config.control_input_dim]),
        "n_fft": config.n_fft,
        "hop_length": config.hop_length,
        "window_samples": config.window_samples,
        "trim_samples": config.trim_samples,
        "frame_multiple": config.frame_multiple,
        "config": config.to_dict(),
        "stft_window": [float(v) for v in window.detach().float().cpu()],
        "graph": {"inputs": [INPUT_SPEC, INPUT_FEATURES, INPUT_CONDITION],
                  "outputs": [OUTPUT_STEM, OUTPUT_SPEC]},
    }
    return json.dumps(doc)


def parse_metadata(text: str | bytes | None, path: str) -> tuple[LightSAFTConfig, torch.Tensor, dict[str, Any]]:
    """(config, STFT window, whole document) from an artifact's metadata."""
    if not text:
        raise ArtifactError(f"{path} has no {METADATA_KEY} metadata; export it with `python -m export`")
    try:
        doc = json.loads(text)
        config = LightSAFTConfig.from_hyper_parameters(doc["config"])
        window = torch.tensor(doc["stft_window"], dtype=torch.float32)
    except (ValueError, KeyError, TypeError) as exc:
        raise ArtifactError(f"{path}: unreadable {METADATA_KEY} metadata ({exc})") from exc
    if doc.get("sample_rate") != SAMPLE_RATE:
        raise ArtifactError(f"{path} was exported for {doc.get('sample_rate')} Hz, the kit runs at {SAMPLE_RATE}")
    if doc.get("sources") != list(SOURCES[: config.control_input_dim]):
        raise ArtifactError(f"{path}: source order {doc.get('sources')} differs from the kit's {list(SOURCES)}")
    return config, window, doc
