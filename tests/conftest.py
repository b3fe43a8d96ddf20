"""Shared fixtures: the reference folder (skip, or fail on CI, when absent) and tiny models."""
from __future__ import annotations

import atexit
import os
import shutil
import tempfile
from pathlib import Path

import pytest

# The kit's cache (calibration, OpenVINO's compiled models) of this run, child processes included,
# goes to a folder of its own instead of the user's ~/.cache, removed at the end.
os.environ["XDG_CACHE_HOME"] = tempfile.mkdtemp(prefix="mdxkit-test-cache-")
atexit.register(shutil.rmtree, os.environ["XDG_CACHE_HOME"], True)

from models.lightsaft import LightSAFTNet
from tests.helpers import REFERENCE_CKPT, REFERENCE_DIR, random_network, require


@pytest.fixture(scope="session")
def reference_dir() -> Path:
    """../shared/reference; skipped with a reason when absent, a failure when CI=true."""
    require(REFERENCE_CKPT)
    return REFERENCE_DIR


@pytest.fixture(scope="session")
def reference_model(reference_dir):
    from models.checkpoint import load_checkpoint

    return load_checkpoint(reference_dir / "lightsaft_small_random.ckpt")


@pytest.fixture()
def tiny_network() -> LightSAFTNet:
    return random_network()


@pytest.fixture()
def tiny_ckpt(tmp_path, tiny_network) -> Path:
    from models.checkpoint import save_lightning_checkpoint

    path = tmp_path / "tiny.ckpt"
    save_lightning_checkpoint(path, tiny_network)
    return path


@pytest.fixture(scope="module")
def tiny_ckpt_module(tmp_path_factory) -> Path:
    """The tiny checkpoint, once per test module (for module-scoped runs)."""
    from models.checkpoint import save_lightning_checkpoint

    path = tmp_path_factory.mktemp("tiny") / "tiny.ckpt"
    save_lightning_checkpoint(path, random_network())
    return path
