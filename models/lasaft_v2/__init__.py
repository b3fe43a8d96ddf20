"""LASAFT-Net-v2 (``ws-choi/LASAFT-Net-v2``) spec2spec network and its configuration."""
from .config import SOURCES, LasaftV2Config

# The network (``.network``: LasaftV2Net, spec2spec_state_dict) is not imported here: the registry
# reads the configuration, and the exported-model path must not import torch.
__all__ = ["SOURCES", "LasaftV2Config"]
