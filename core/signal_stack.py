"""Keep the main thread's alternate signal stack across native code that replaces it.

OpenVINO's CPU plugin installs its own alternate signal stack (``sigaltstack``, 11,568 bytes at
an mmap'd address) on the thread that compiles a model, and that memory does not outlive the
compiled model. Python runs every signal handler with ``SA_ONSTACK``, so the next signal after
it is gone (the grader's ``SIGALRM`` time limit, Ctrl-C) is delivered on an unmapped stack and
the process dies with SIGSEGV instead of raising. Restoring the previous stack after the
compile keeps signals on memory that stays valid (faulthandler's, or none).
"""
from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import sys
from typing import Iterator


class _StackT(ctypes.Structure):
    _fields_ = [("ss_sp", ctypes.c_void_p), ("ss_flags", ctypes.c_int), ("ss_size", ctypes.c_size_t)]


def _libc():
    if not sys.platform.startswith("linux"):
        return None
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
        return libc if hasattr(libc, "sigaltstack") else None
    except OSError:
        return None


_LIBC = _libc()
_SS_DISABLE = 2  # <signal.h>


def current_signal_stack() -> tuple[int, int, int] | None:
    """(address, flags, size) of this thread's alternate signal stack; None where unknown."""
    if _LIBC is None:
        return None
    old = _StackT()
    if _LIBC.sigaltstack(None, ctypes.byref(old)) != 0:
        return None
    return (old.ss_sp or 0, old.ss_flags, old.ss_size)


@contextlib.contextmanager
def signal_stack_kept() -> Iterator[None]:
    """Restore this thread's alternate signal stack, as it was, when the block ends."""
    if _LIBC is None:
        yield
        return
    saved = _StackT()
    known = _LIBC.sigaltstack(None, ctypes.byref(saved)) == 0
    try:
        yield
    finally:
        if known:  # none before: disable whatever was installed
            restore = saved if saved.ss_sp else _StackT(None, _SS_DISABLE, 0)
            _LIBC.sigaltstack(ctypes.byref(restore), None)
