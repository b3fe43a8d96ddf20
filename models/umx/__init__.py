"""Open-Unmix (UMX / UMX-HQ / UMX-L): four per-target BiLSTM spectrogram networks and the
multichannel Wiener post-filter, read from Open-Unmix's own model folder.

Written from the published description of the model and the package's behaviour
(../shared/reference/umx/README.md); the ``openunmix`` package itself is not needed.
"""
from .filtering import wiener
from ..formats import looks_like_umx_folder
from .loading import UmxError, UmxModel, load_umx_folder
from .network import UmxConfig, UmxNetwork

__all__ = ["UmxConfig", "UmxError", "UmxModel", "UmxNetwork", "load_umx_folder", "looks_like_umx_folder", "wiener"]
