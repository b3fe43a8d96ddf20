"""When this process started, on the ``time.monotonic`` clock.

A budget that counts "the command as a whole" starts when the process did, not when the kit's
code first runs: interpreter start-up and imports count too.
"""
from __future__ import annotations

import os
import time
from pathlib import Path

_IMPORTED_AT = time.monotonic()


def process_started_monotonic() -> float:
    """``time.monotonic()`` at this process's start (Linux: from ``/proc``; elsewhere: when this
    module was first imported, a slight overestimate of the time left)."""
    try:
        # Field 22 of /proc/self/stat: start time in clock ticks after boot; the command name
        # (field 2) may hold spaces, so split after its closing parenthesis.
        fields = Path("/proc/self/stat").read_text().rsplit(")", 1)[1].split()
        started_after_boot = int(fields[19]) / os.sysconf("SC_CLK_TCK")
        uptime = float(Path("/proc/uptime").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return _IMPORTED_AT
    age = max(0.0, uptime - started_after_boot)
    return min(_IMPORTED_AT, time.monotonic() - age)
