"""The networks the kit runs (one module or subpackage per architecture), their registry,
configurations, STFT front end, checkpoint and artifact formats."""
from pathlib import Path

_CHECKPOINTS = Path(__file__).resolve().parent / "checkpoints"
#: The kit's own trained LightSAFT checkpoint (see models/checkpoints/README.md): the source of truth.
DEFAULT_CHECKPOINT = _CHECKPOINTS / "lightsaft_small_mdxkit.ckpt"
#: What runs by default: the same network exported to ONNX (``python -m export``), which the fastest
#: exact backend runs. Its metadata names the checkpoint's sha256; a test keeps the two in step.
DEFAULT_MODEL = _CHECKPOINTS / "lightsaft_small_mdxkit.onnx"
