"""The networks the kit runs (one module or subpackage per architecture), their registry,
configurations, STFT front end, checkpoint and artifact formats."""
from pathlib import Path

#: The kit's own trained LightSAFT checkpoint (see models/checkpoints/README.md).
DEFAULT_CHECKPOINT = Path(__file__).resolve().parent / "checkpoints" / "lightsaft_small_mdxkit.ckpt"
