"""Atomic file writes (the kit's one way to write a file) and file hashes.

Every file the kit writes goes to :func:`temporary_path` beside its destination and is renamed
into place only when complete, so a crash never leaves half a file under the final name.
"""
from __future__ import annotations

import hashlib
import json
import math
import os
from pathlib import Path
from contextlib import contextmanager
from typing import Any, Iterator


def temporary_path(path: str | os.PathLike[str]) -> Path:
    """The hidden name beside ``path`` that a write in progress uses (``.<name>.tmp-<pid>``)."""
    path = Path(path)
    return path.with_name(f".{path.name}.tmp-{os.getpid()}")


@contextmanager
def atomic_path(path: str | os.PathLike[str]) -> Iterator[Path]:
    """Yield a temporary path to write ``path``'s content to; rename it into place on success.

    On any exception the temporary file (or folder) is removed and ``path`` is left untouched.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = temporary_path(path)
    try:
        yield tmp
        os.replace(tmp, path)
    finally:
        if tmp.is_dir() and not tmp.is_symlink():
            import shutil

            shutil.rmtree(tmp, ignore_errors=True)
        else:
            tmp.unlink(missing_ok=True)


def atomic_write_bytes(path: str | os.PathLike[str], data: bytes) -> None:
    """Write ``data`` to a temporary file beside ``path``, fsync it, then rename it into place."""
    with atomic_path(path) as tmp:
        with open(tmp, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())


def atomic_write_text(path: str | os.PathLike[str], text: str) -> None:
    atomic_write_bytes(path, text.encode("utf-8"))


def _json_safe(value: Any) -> Any:
    """NaN and infinities become null: JSON has no spelling for them."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: _json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_json_safe(v) for v in value]
    return value


def atomic_write_json(path: str | os.PathLike[str], data: Any) -> None:
    atomic_write_text(path, json.dumps(_json_safe(data), indent=2, allow_nan=False) + "\n")


def read_json(path: str | os.PathLike[str]) -> Any | None:
    """The JSON in ``path``, or None when it is missing or unreadable (e.g. cut short)."""
    try:
        return json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None


def size_bytes(path: str | os.PathLike[str]) -> int:
    """Bytes of a file, or of every file under a folder."""
    if Path(path).is_dir():
        return sum(p.stat().st_size for p in Path(path).rglob("*") if p.is_file())
    return Path(path).stat().st_size


def sha256_file(path: str | os.PathLike[str], block: int = 1 << 20) -> str:
    """sha256 of a file; of a folder (a model stored as several files, e.g. Open-Unmix's): of every
    file's relative name and sha256, in sorted order."""
    if Path(path).is_dir():
        root = Path(path)
        digest = hashlib.sha256()
        for item in sorted(p for p in root.rglob("*") if p.is_file()):
            digest.update(f"{item.relative_to(root).as_posix()}\0{sha256_file(item)}\n".encode())
        return digest.hexdigest()
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(block), b""):
            digest.update(chunk)
    return digest.hexdigest()
