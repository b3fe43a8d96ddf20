"""Extract the MIDI music lumps of Doom-engine WAD files (for example Debian's ``freedoom``).

A WAD is a 12-byte header (``IWAD``/``PWAD``, lump count, directory offset) and a directory of
16-byte entries (offset, size, 8-byte name). Music lumps are named ``D_*``; Freedoom stores them
as standard MIDI files (``MThd``). Lumps in the older MUS format are skipped: they would need a
converter, and Freedoom has none.

    python -m training.wad_music --out data/midi/freedoom /usr/share/games/doom/freedoom1.wad \
        /usr/share/games/doom/freedoom2.wad
"""
from __future__ import annotations

import argparse
import struct
import sys
from pathlib import Path

from core.files import atomic_write_bytes

FREEDOOM_WADS = (Path("/usr/share/games/doom/freedoom1.wad"), Path("/usr/share/games/doom/freedoom2.wad"))
MUSIC_PREFIX = "D_"
MIDI_MAGIC = b"MThd"


class WadError(ValueError):
    """A file that is not a readable WAD; the message names it."""


def music_lumps(wad: Path) -> dict[str, bytes]:
    """``{lump name: MIDI bytes}`` of a WAD's music lumps that are standard MIDI files."""
    data = Path(wad).read_bytes()
    if len(data) < 12 or data[:4] not in (b"IWAD", b"PWAD"):
        raise WadError(f"{wad}: not a WAD file (no IWAD/PWAD header)")
    n_lumps, directory = struct.unpack_from("<ii", data, 4)
    if n_lumps < 0 or directory < 0 or directory + 16 * n_lumps > len(data):
        raise WadError(f"{wad}: directory runs past the end of the file")
    lumps = {}
    for i in range(n_lumps):
        offset, size, raw = struct.unpack_from("<ii8s", data, directory + 16 * i)
        name = raw.split(b"\0", 1)[0].decode("ascii", "replace")
        if not name.startswith(MUSIC_PREFIX) or offset < 0 or size <= 0 or offset + size > len(data):
            continue
        body = data[offset:offset + size]
        if body[:4] == MIDI_MAGIC:
            lumps[name] = body
    return lumps


def extract(wads: list[Path], out_dir: Path) -> dict[str, Path]:
    """Write every distinct MIDI music lump as ``OUT/<wad stem>_<lump>.mid``, lower case.

    A lump whose bytes an earlier one already had (Freedoom reuses tracks) is skipped, so the
    same music cannot land in two splits. Returns ``{song name: path}``.
    """
    written: dict[str, Path] = {}
    seen: set[bytes] = set()  # music lumps are a few kB: the bytes themselves are the key
    for wad in wads:
        for lump, body in music_lumps(wad).items():
            if body in seen:
                continue
            seen.add(body)
            name = f"{Path(wad).stem}_{lump}".lower()
            path = Path(out_dir) / f"{name}.mid"
            atomic_write_bytes(path, body)
            written[name] = path
    return written


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("wads", type=Path, nargs="*", default=list(FREEDOOM_WADS),
                        help="WAD files (default: Debian freedoom's two IWADs)")
    parser.add_argument("--out", type=Path, required=True, help="folder for the .mid files")
    args = parser.parse_args(argv)
    absent = [str(w) for w in args.wads if not w.is_file()]
    if absent:
        print(f"WAD not found: {', '.join(absent)}; install it: apt-get install freedoom", file=sys.stderr)
        return 2
    written = extract(args.wads, args.out)
    print(f"{len(written)} MIDI songs written to {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
