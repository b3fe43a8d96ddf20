"""LASAFT-Net-v2 (``ws-choi/LASAFT-Net-v2``) spec2spec network and its configuration."""
from .config import SOURCES, LasaftV2Config
from .network import LasaftV2Net, spec2spec_state_dict

__all__ = ["SOURCES", "LasaftV2Config", "LasaftV2Net", "spec2spec_state_dict"]
