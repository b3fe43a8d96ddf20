"""Checkpoint loading: Lightning formats, plain state_dicts, and every refusal."""
from __future__ import annotations

import os
import sys
import types
from collections import OrderedDict

import pytest
import torch

from models.checkpoint import (CheckpointError, UnsafeCheckpointError, load_checkpoint,
                               save_lightning_checkpoint)
from models.config import LightSAFTConfig
from tests.helpers import TINY_CONFIG


def _same_weights(a, b) -> bool:
    sa, sb = a.state_dict(), b.state_dict()
    return sa.keys() == sb.keys() and all(torch.equal(sa[k], sb[k]) for k in sa)


@pytest.fixture()
def fake_lightning(monkeypatch):
    """Register importable stand-ins for Lightning classes, as a real training run would have."""
    names = {
        "pytorch_lightning": None,
        "pytorch_lightning.callbacks": None,
        "pytorch_lightning.callbacks.model_checkpoint": "ModelCheckpoint",
        "pytorch_lightning.utilities": None,
        "pytorch_lightning.utilities.parsing": "AttributeDict",
    }
    classes = {}
    for mod_name, cls_name in names.items():
        module = types.ModuleType(mod_name)
        if cls_name == "ModelCheckpoint":
            cls = type(cls_name, (), {"__module__": mod_name})
        elif cls_name == "AttributeDict":
            cls = type(cls_name, (dict,), {"__module__": mod_name})
        else:
            cls = None
        if cls is not None:
            setattr(module, cls_name, cls)
            classes[cls_name] = cls
        monkeypatch.setitem(sys.modules, mod_name, module)
    return classes


def test_lightning_checkpoint_round_trip(tmp_path, tiny_network):
    path = tmp_path / "m.ckpt"
    save_lightning_checkpoint(path, tiny_network)
    loaded = load_checkpoint(path)
    assert loaded.format == "lightning" and loaded.config == TINY_CONFIG
    assert _same_weights(loaded.network, tiny_network)
    assert not loaded.network.training


def test_real_style_checkpoint_with_optimizer_and_class_keyed_callbacks(tmp_path, tiny_network, fake_lightning):
    """What the published 50 MB file very likely holds: Adam state and a class-keyed callbacks dict."""
    opt = torch.optim.Adam(tiny_network.parameters(), lr=5e-4)
    tiny_network.train()
    loss = tiny_network(torch.randn(2, 4, 128, 257), torch.tensor([0, 1])).square().mean()
    loss.backward()
    opt.step()
    tiny_network.eval()
    ckpt_callback = fake_lightning["ModelCheckpoint"]
    hparams = fake_lightning["AttributeDict"](TINY_CONFIG.to_dict(), lr=5e-4, optimizer="adam")
    path = tmp_path / "real_style.ckpt"
    save_lightning_checkpoint(path, tiny_network, epoch=669, global_step=12345,
                              optimizer_states=[opt.state_dict()],
                              callbacks={ckpt_callback: {"best_model_score": torch.tensor(0.1),
                                                         "monitor": "val_loss"}},
                              hyper_parameters=hparams)
    # Drop the stand-ins: the loader must cope without Lightning installed.
    for name in list(sys.modules):
        if name.startswith("pytorch_lightning"):
            del sys.modules[name]
    unsafe = torch.serialization.get_unsafe_globals_in_checkpoint(str(path))
    assert any("ModelCheckpoint" in g for g in unsafe)
    with pytest.raises(Exception):
        torch.load(path, weights_only=True)  # plain weights_only refuses it...
    loaded = load_checkpoint(path)  # ...ours loads it with inert stubs
    assert loaded.config == TINY_CONFIG
    assert _same_weights(loaded.network, tiny_network)


def test_plain_state_dict_files(tmp_path, tiny_network):
    bare = tmp_path / "bare.pt"
    torch.save(tiny_network.state_dict(), bare)
    assert _same_weights(load_checkpoint(bare, config=TINY_CONFIG).network, tiny_network)
    prefixed = tmp_path / "prefixed.pt"
    torch.save(OrderedDict(("spec2spec." + k, v) for k, v in tiny_network.state_dict().items()), prefixed)
    loaded = load_checkpoint(prefixed, config=TINY_CONFIG)
    assert loaded.format == "state_dict" and _same_weights(loaded.network, tiny_network)


def test_plain_state_dict_with_wrong_config_names_the_shapes(tmp_path, tiny_network):
    path = tmp_path / "bare.pt"
    torch.save(tiny_network.state_dict(), path)
    with pytest.raises(CheckpointError, match="missing key|wrong shape"):
        load_checkpoint(path)  # default config is lightsaft_small, not the tiny one


def test_missing_and_unexpected_keys_are_named(tmp_path, tiny_network):
    state = tiny_network.state_dict()
    del state["first_conv.0.weight"]
    state["bogus.weight"] = torch.zeros(1)
    path = tmp_path / "bad.pt"
    torch.save(state, path)
    with pytest.raises(CheckpointError) as err:
        load_checkpoint(path, config=TINY_CONFIG)
    assert "first_conv.0.weight" in str(err.value) and "bogus.weight" in str(err.value)


def test_wrong_shape_is_named(tmp_path, tiny_network):
    state = tiny_network.state_dict()
    state["mid_block.keys"] = torch.zeros(3, 3)
    path = tmp_path / "bad.pt"
    torch.save(state, path)
    with pytest.raises(CheckpointError, match=r"mid_block\.keys \(3, 3\)"):
        load_checkpoint(path, config=TINY_CONFIG)


@pytest.mark.parametrize("content", [b"", b"not a checkpoint at all", b"PK\x03\x04broken zip"])
def test_not_a_checkpoint(tmp_path, content):
    path = tmp_path / "junk.ckpt"
    path.write_bytes(content)
    with pytest.raises(CheckpointError):
        load_checkpoint(path)


def test_missing_file(tmp_path):
    with pytest.raises(CheckpointError, match="not found"):
        load_checkpoint(tmp_path / "nope.ckpt")


def test_bad_hyper_parameters(tmp_path, tiny_network):
    path = tmp_path / "m.ckpt"
    save_lightning_checkpoint(path, tiny_network, hyper_parameters={**TINY_CONFIG.to_dict(), "n_blocks": 4})
    with pytest.raises(CheckpointError, match="n_blocks"):
        load_checkpoint(path)


class _Payload:
    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def test_malicious_pickle_is_refused_and_nothing_runs(tmp_path, tiny_network):
    marker = tmp_path / "pwned"
    path = tmp_path / "evil.ckpt"
    save_lightning_checkpoint(path, tiny_network, callbacks={"x": _Payload(marker)})
    with pytest.raises(UnsafeCheckpointError, match="system"):
        load_checkpoint(path)
    assert not marker.exists()


def test_malicious_lightning_named_global_stays_inert(tmp_path, tiny_network, monkeypatch):
    """A global under a Lightning name is only ever replaced by an inert stub."""
    marker = tmp_path / "pwned"
    module = types.ModuleType("pytorch_lightning.evil")

    def run(cmd):  # pragma: no cover - must never be called at load time
        os.system(cmd)

    run.__module__ = "pytorch_lightning.evil"
    run.__qualname__ = "run"
    module.run = run
    monkeypatch.setitem(sys.modules, "pytorch_lightning", types.ModuleType("pytorch_lightning"))
    monkeypatch.setitem(sys.modules, "pytorch_lightning.evil", module)

    class Payload:
        def __reduce__(self):
            return (run, (f"touch {marker}",))

    path = tmp_path / "evil2.ckpt"
    save_lightning_checkpoint(path, tiny_network, callbacks={"x": Payload()})
    try:
        load_checkpoint(path)
    except CheckpointError:
        pass
    assert not marker.exists()


def test_default_config_is_lightsaft_small():
    cfg = LightSAFTConfig()
    assert (cfg.window_samples, cfg.trim_samples, cfg.hop_samples) == (261_120, 8_192, 244_736)
