"""Averaging saves of one run: the mean of every float tensor, loadable like any checkpoint."""
from __future__ import annotations

import dataclasses

import pytest
import torch

from models.checkpoint import CheckpointError, load_checkpoint, save_lightning_checkpoint
from training import average
from tests.helpers import TINY_CONFIG, random_network


def _saves(tmp_path, seeds=(0, 1, 2)):
    paths = []
    for i, seed in enumerate(seeds):
        net = random_network(seed=seed)
        for m in net.modules():  # distinct counters, to see which input's counter is kept
            if isinstance(m, torch.nn.modules.batchnorm._BatchNorm):
                m.num_batches_tracked.fill_(100 * (i + 1))
        path = tmp_path / f"step_{i:06d}.ckpt"
        save_lightning_checkpoint(path, net, global_step=1000 * (i + 1))
        paths.append(path)
    return paths


def test_average_is_the_mean_of_every_float_tensor(tmp_path):
    paths = _saves(tmp_path)
    out = tmp_path / "avg.ckpt"
    assert average.main([str(out), *map(str, paths)]) == 0
    states = [load_checkpoint(p).network.state_dict() for p in paths]
    loaded = load_checkpoint(out)
    assert loaded.config == TINY_CONFIG
    averaged = loaded.network.state_dict()
    assert averaged.keys() == states[0].keys()
    n_running = 0
    for key, value in averaged.items():
        if value.is_floating_point():
            expected = (states[0][key].double() + states[1][key].double() + states[2][key].double()) / 3
            torch.testing.assert_close(value, expected.float(), rtol=0, atol=1e-6)
            n_running += key.endswith("running_var")
        else:
            assert torch.equal(value, states[-1][key])  # num_batches_tracked: the last save's
    assert n_running > 0  # batch-norm statistics were averaged too
    raw = torch.load(out, weights_only=True)
    assert raw["global_step"] == 3000 and raw["mdxkit_averaged_steps"] == [1000, 2000, 3000]
    assert raw["optimizer_states"] == []


def test_average_of_copies_is_the_same_network(tmp_path):
    net = random_network(seed=4)
    paths = [tmp_path / "a.ckpt", tmp_path / "b.ckpt"]
    for p in paths:
        save_lightning_checkpoint(p, net)
    averaged, _, _ = average.average_checkpoints(paths)
    for key, value in net.state_dict().items():
        assert torch.equal(averaged.state_dict()[key], value), key


def test_mismatched_inputs_are_refused_and_nothing_is_written(tmp_path, capsys):
    paths = _saves(tmp_path, seeds=(0,))
    other = tmp_path / "other.ckpt"
    save_lightning_checkpoint(other, random_network(dataclasses.replace(TINY_CONFIG, n_blocks=3)))
    out = tmp_path / "avg.ckpt"
    assert average.main([str(out), str(paths[0]), str(other)]) == 2
    assert "another configuration" in capsys.readouterr().err and not out.exists()
    with pytest.raises(CheckpointError, match="at least two"):
        average.average_checkpoints(paths)
    with pytest.raises(SystemExit):
        average.main([str(paths[0]), str(paths[0]), str(other)])
    assert "also an input" in capsys.readouterr().err
