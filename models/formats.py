"""Model files told apart by their layout, before anything is loaded (and without torch)."""
from __future__ import annotations

import os
from pathlib import Path

#: The file that makes a folder an Open-Unmix model (its targets' ``.json``/``.pth`` beside it).
UMX_SEPARATOR_FILE = "separator.json"


def looks_like_umx_folder(path: str | os.PathLike[str]) -> bool:
    """True for a folder holding Open-Unmix's ``separator.json``."""
    return (Path(path) / UMX_SEPARATOR_FILE).is_file()


def baseline_format(path: str | os.PathLike[str]) -> str | None:
    """``"umx-folder"`` for an Open-Unmix model folder, ``"demucs-th"`` for a demucs ``.th``
    package, None for the kit's own formats."""
    if looks_like_umx_folder(path):
        return "umx-folder"
    if Path(path).suffix.lower() == ".th":
        return "demucs-th"
    return None
