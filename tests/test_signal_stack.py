"""Signals after an OpenVINO model is gone: the grader's time limit must raise, not crash the process."""
from __future__ import annotations

import subprocess
import sys

import pytest

from core.signal_stack import current_signal_stack
from tests.helpers import REPO_ROOT

CHILD = """
import gc, sys, time
import faulthandler; faulthandler.enable()
if sys.argv[1] == "unprotected":
    import contextlib
    import separation.backends as backends
    backends.signal_stack_kept = contextlib.nullcontext
from core.signal_stack import current_signal_stack
from models import DEFAULT_MODEL
from separation.loading import load_separator
from separation.music_demixing import TimeoutException, time_limit
before = current_signal_stack()
separator = load_separator(DEFAULT_MODEL, backend="openvino")
print("kept" if current_signal_stack() == before else "replaced", flush=True)
del separator
gc.collect()
try:
    with time_limit(0.2, "a busy loop"):
        while True:
            sum(range(1000))
except TimeoutException as exc:
    print("raised:", exc, flush=True)
"""


@pytest.mark.skipif(current_signal_stack() is None, reason="sigaltstack is only read on Linux")
def test_a_time_limit_raises_after_an_openvino_model_was_freed():
    """OpenVINO's compile installs its own alternate signal stack, which does not outlive the model;
    the kit restores the previous one, so SIGALRM (and Ctrl-C) are delivered on valid memory. Alone,
    this child survives either way (the stack is still mapped here); in the suite, the evaluator's
    enforced-budget test after the OpenVINO tests died with SIGSEGV in 4 of 4 runs without the
    restore (the alarm delivered on the plugin's stack) and passed with it."""
    out = subprocess.run([sys.executable, "-c", CHILD, "protected"], cwd=REPO_ROOT, capture_output=True, text=True,
                         timeout=300)
    assert out.returncode == 0, (out.returncode, out.stderr[-2000:])
    assert out.stdout.splitlines()[:2] == ["kept", "raised: a busy loop exceeded its time limit of 0.2 s"]
