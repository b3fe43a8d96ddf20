"""What an exported artifact carries besides its graph, so that the file alone can separate.

The metadata is one JSON document: the architecture, its config (the checkpoint's
hyper-parameters), the STFT window, the sample rate, the window geometry, the source order and
the kit version. ONNX files keep it in ``metadata_props``; TorchScript files in an extra file
inside the archive.
"""
from __future__ import annotations

import json
from typing import Any

import numpy as np

from core.constants import KIT_NAME, KIT_VERSION, SAMPLE_RATE, SOURCES

from .config import ConfigError
from .registry import Architecture, get

#: Key of the metadata in ONNX ``metadata_props`` and name of the TorchScript extra file.
METADATA_KEY = "mdxkit.json"
#: Input and output names of the exported graph (see ``export.graph.SplitGraph``). The stem's
#: outputs and the body's feature inputs are numbered when an architecture's stem returns several
#: tensors (``stem``/``features`` for one, ``stem_0``/``features_0``, ... for more).
INPUT_SPEC, INPUT_FEATURES, INPUT_CONDITION = "spec", "features", "condition"
OUTPUT_STEM, OUTPUT_SPEC = "stem", "separated_spec"
#: Artifacts written before the kit knew more than one architecture hold LightSAFT.
LEGACY_ARCHITECTURE = "lightsaft"


class ArtifactError(ValueError):
    """An exported file without usable kit metadata."""


def feature_names(base: str, n_features: int) -> list[str]:
    """Graph names of the stem outputs / body feature inputs."""
    return [base] if n_features == 1 else [f"{base}_{i}" for i in range(n_features)]


def build_metadata(architecture: Architecture, config: Any, window: Any, source: str,
                   n_features: int = 1, source_sha256: str | None = None) -> str:
    """JSON metadata for an artifact of ``architecture`` exported from ``source`` (whose file hash,
    when given, lets a shipped artifact be checked against the checkpoint it claims to be)."""
    spec = architecture.window_spec(config)
    doc = {
        "kit": KIT_NAME,
        "kit_version": KIT_VERSION,
        "architecture": architecture.name,
        "model": architecture.title,
        "exported_from": source,
        "exported_from_sha256": source_sha256,
        "sample_rate": SAMPLE_RATE,
        "sources": list(SOURCES),
        "n_fft": config.n_fft,
        "hop_length": config.hop_length,
        "window_samples": spec.window,
        "trim_samples": spec.trim,
        "frame_multiple": spec.frame_multiple,
        "config": config.to_dict(),
        "stft_window": [float(v) for v in np.asarray(window, dtype=np.float32).reshape(-1)],
        "graph": {"inputs": [INPUT_SPEC, *feature_names(INPUT_FEATURES, n_features), INPUT_CONDITION],
                  "outputs": [*feature_names(OUTPUT_STEM, n_features), OUTPUT_SPEC],
                  "n_features": n_features},
    }
    return json.dumps(doc)


def _version(text: str) -> tuple[int, ...]:
    return tuple(int(p) for p in str(text).split(".") if p.isdigit())


def parse_metadata(text: str | bytes | None, path: str) -> tuple[Architecture, Any, np.ndarray, dict[str, Any]]:
    """(architecture, config, STFT window (n_fft,) float32, whole document) from an artifact's metadata."""
    if not text:
        raise ArtifactError(f"{path} has no {METADATA_KEY} metadata; export it with `python -m export`")
    try:
        doc = json.loads(text)
    except ValueError as exc:
        raise ArtifactError(f"{path}: unreadable {METADATA_KEY} metadata ({exc})") from exc
    if _version(doc.get("kit_version", "0")) > _version(KIT_VERSION):
        raise ArtifactError(f"{path} was exported by {KIT_NAME} {doc.get('kit_version')}, newer than this kit "
                            f"({KIT_VERSION}); update the kit or export the checkpoint again with this one")
    try:
        architecture = get(doc.get("architecture", LEGACY_ARCHITECTURE))
    except ConfigError as exc:
        raise ArtifactError(f"{path}: {exc}") from exc
    try:
        config = architecture.config_from_hyper_parameters(doc["config"])
        window = np.asarray(doc["stft_window"], dtype=np.float32)
    except (ValueError, KeyError, TypeError) as exc:
        raise ArtifactError(f"{path}: unreadable {METADATA_KEY} metadata ({exc})") from exc
    if doc.get("sample_rate") != SAMPLE_RATE:
        raise ArtifactError(f"{path} was exported for {doc.get('sample_rate')} Hz, the kit runs at {SAMPLE_RATE}")
    if doc.get("sources") != list(SOURCES):
        raise ArtifactError(f"{path}: source order {doc.get('sources')} differs from the kit's {list(SOURCES)}")
    return architecture, config, window, doc
