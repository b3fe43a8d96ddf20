"""Re-estimating BatchNorm statistics: the plain mean over batches, weights untouched, a loadable file."""
from __future__ import annotations

import json

import pytest
import torch

from models.checkpoint import load_checkpoint, save_lightning_checkpoint
from models.spectral import Spectral
from tests.helpers import TINY_CONFIG, random_network, write_stem_folder
from tests.test_training_train import CROP_FRAMES, _songs
from training import precise_bn
from training.dataset import Augment, CropSampler
from training.train import crop_samples_for


def _batches(n, seed=0):
    sampler = CropSampler(_songs(), crop_samples_for(TINY_CONFIG, CROP_FRAMES), Augment(), seed=seed)
    return [sampler.batch(4) for _ in range(n)]


def _spectral():
    return Spectral(TINY_CONFIG.n_fft, TINY_CONFIG.hop_length)


def test_statistics_are_the_mean_over_batches_of_each_batchs_statistics():
    net = random_network(seed=3)
    layers = precise_bn.batchnorm_layers(net)
    seen = {id(m): [] for m in layers}

    def record(module, inputs, _output):
        x = inputs[0].detach().double()
        dims = [0] + list(range(2, x.dim()))  # every axis but the channels
        seen[id(module)].append((x.mean(dim=dims), x.var(dim=dims, unbiased=True)))

    hooks = [m.register_forward_hook(record) for m in layers]
    used = precise_bn.recalibrate_batchnorm(net, _spectral(), _batches(5))
    for h in hooks:
        h.remove()
    assert used == 5
    for m in layers:
        assert len(seen[id(m)]) >= 5
        means = torch.stack([mean for mean, _ in seen[id(m)]]).mean(0)
        variances = torch.stack([var for _, var in seen[id(m)]]).mean(0)
        torch.testing.assert_close(m.running_mean.double(), means, rtol=1e-4, atol=1e-6)
        torch.testing.assert_close(m.running_var.double(), variances, rtol=1e-4, atol=1e-6)
        assert m.momentum == 0.1  # restored for anyone who trains on from here
    assert not net.training


def test_weights_stay_and_the_old_statistics_do_not_matter():
    a, b = random_network(seed=5), random_network(seed=5)
    with torch.no_grad():  # same weights, different running statistics
        for m in precise_bn.batchnorm_layers(b):
            m.running_mean.add_(3.0)
            m.running_var.mul_(7.0)
    weights = {k: v.clone() for k, v in a.named_parameters()}
    batches = _batches(3)
    for net in (a, b):
        torch.manual_seed(0)  # the same dropout masks
        precise_bn.recalibrate_batchnorm(net, _spectral(), batches)
    for key, value in a.named_parameters():
        assert torch.equal(value, weights[key]), key
    for ma, mb in zip(precise_bn.batchnorm_layers(a), precise_bn.batchnorm_layers(b)):
        torch.testing.assert_close(ma.running_mean, mb.running_mean, rtol=0, atol=0)
        torch.testing.assert_close(ma.running_var, mb.running_var, rtol=0, atol=0)
    before = random_network(seed=5).state_dict()
    assert any(not torch.equal(v, before[k]) for k, v in a.state_dict().items() if k.endswith("running_var"))


def test_no_batch_is_an_error():
    with pytest.raises(ValueError, match="no batch"):
        precise_bn.recalibrate_batchnorm(random_network(), _spectral(), [])


def test_cli_writes_a_loadable_checkpoint_and_refuses_bad_calls(tmp_path, capsys):
    write_stem_folder(tmp_path / "data" / "song", 12000)
    src = tmp_path / "in.ckpt"
    net = random_network(seed=2)
    save_lightning_checkpoint(src, net, global_step=1234)
    out = tmp_path / "out.ckpt"
    common = ["--data", str(tmp_path / "data"), "--crop-frames", str(CROP_FRAMES), "--threads", "1"]
    assert precise_bn.main([str(src), str(out), "--batches", "3", *common]) == 0
    loaded = load_checkpoint(out)
    assert loaded.config == TINY_CONFIG
    for key, value in net.named_parameters():
        assert torch.equal(loaded.network.state_dict()[key], value), key
    assert any(not torch.equal(loaded.network.state_dict()[k], v)
               for k, v in net.state_dict().items() if k.endswith("running_mean"))
    raw = torch.load(out, weights_only=True)
    assert raw["global_step"] == 1234 and raw["optimizer_states"] == []
    assert raw["mdxkit_precise_bn"]["batches"] == 3 and raw["mdxkit_precise_bn"]["source"] == str(src)
    assert "re-estimated over 3 batches" in capsys.readouterr().out

    missing = tmp_path / "never.ckpt"
    assert precise_bn.main([str(src), str(missing), "--data", str(tmp_path / "none")]) == 2
    assert "not found" in capsys.readouterr().err and not missing.exists()
    bad_crop = [str(src), str(missing), "--data", str(tmp_path / "data"), "--crop-frames", "10", "--threads", "1"]
    assert precise_bn.main(bad_crop) == 2
    assert "multiple of" in capsys.readouterr().err and not missing.exists()
    with pytest.raises(SystemExit):
        precise_bn.main([str(src), str(src), *common])
    with pytest.raises(SystemExit):
        precise_bn.main([str(src), str(missing), "--batches", "0", *common])
    assert not missing.exists()
    json.dumps(raw["mdxkit_precise_bn"])  # plain data: readable without the kit
