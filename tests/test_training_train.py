"""The training entry point on the tiny configuration: objective, steps, resume, export."""
from __future__ import annotations

import csv
import json

import numpy as np
import pytest
import torch

from models.checkpoint import load_checkpoint, safe_torch_load
from core.constants import SOURCES
from models.spectral import Spectral
from training import train as tr
from training.dataset import SongStems
from tests.helpers import TINY_CONFIG, music_like, random_network, write_stem_folder

CROP_FRAMES = 16


def _songs(n_songs=2, seconds=1.0):
    songs = []
    for k in range(n_songs):
        n = int(seconds * 44100)
        stems = {s: music_like(n, seed=10 * k + i) * (0.2 + 0.1 * i) for i, s in enumerate(SOURCES)}
        # make the stems differ in character, so that there is something to learn
        stems["bass"] = stems["bass"] * np.linspace(0, 1, n, dtype=np.float32)[:, None]
        songs.append(SongStems.from_arrays(f"song{k}", stems))
    return songs


def _rows(path):
    with open(path, newline="") as fh:
        return list(csv.DictReader(fh))


def test_crop_length_must_fit_the_network():
    assert tr.crop_samples_for(TINY_CONFIG, 16) == 15 * TINY_CONFIG.hop_length
    with pytest.raises(ValueError, match="multiple of 4"):
        tr.crop_samples_for(TINY_CONFIG, 18)


def test_every_batch_of_four_holds_all_conditions():
    assert tr.batch_conditions(4, 4).tolist() == [0, 1, 2, 3]
    assert tr.batch_conditions(8, 4).tolist() == [0, 1, 2, 3, 0, 1, 2, 3]


def test_loss_is_the_spectrogram_mse_of_each_crops_condition():
    torch.manual_seed(0)
    net = random_network().train()
    spectral = Spectral(TINY_CONFIG.n_fft, TINY_CONFIG.hop_length)
    n = tr.crop_samples_for(TINY_CONFIG, CROP_FRAMES)
    stems = 0.1 * torch.randn(4, 4, n, 2)
    mixture = stems.sum(dim=1)
    torch.manual_seed(1)  # the condition generator has dropout: same seed, same mask
    loss, per_source = tr.spectral_loss(net, spectral, mixture, stems)
    # the same numbers, spelled out crop by crop (BatchNorm in train mode sees the whole batch)
    cond = torch.arange(4)
    torch.manual_seed(1)
    est = net(spectral.to_spec(mixture), cond)
    manual = [torch.mean((est[i] - spectral.to_spec(stems[i, i][None])[0]) ** 2) for i in range(4)]
    torch.testing.assert_close(per_source, torch.stack(manual).detach())
    torch.testing.assert_close(loss, torch.stack(manual).mean())
    assert loss.requires_grad


def test_learning_rate_holds_then_follows_a_cosine_to_the_final_rate():
    lr = [tr.learning_rate(k, 1e-3, 1e-5, decay_start=10, decay_end=110) for k in range(0, 130)]
    assert lr[:11] == [1e-3] * 11
    assert lr[60] == pytest.approx((1e-3 + 1e-5) / 2)
    assert lr[110:] == [pytest.approx(1e-5)] * 20
    assert all(a >= b for a, b in zip(lr, lr[1:]))
    assert tr.learning_rate(500, 1e-3) == 1e-3  # no final rate: constant
    with pytest.raises(ValueError, match="not after its start"):
        tr.learning_rate(5, 1e-3, 1e-5, decay_start=10, decay_end=10)


def test_bf16_autocast_gives_the_fp32_loss_within_bfloat16_precision():
    torch.manual_seed(0)
    net = random_network().eval()  # eval: no dropout, so both passes see the same network
    spectral = Spectral(TINY_CONFIG.n_fft, TINY_CONFIG.hop_length)
    stems = 0.1 * torch.randn(4, 4, tr.crop_samples_for(TINY_CONFIG, CROP_FRAMES), 2)
    mixture = stems.sum(dim=1)
    loss32, per32 = tr.spectral_loss(net, spectral, mixture, stems)
    loss16, per16 = tr.spectral_loss(net, spectral, mixture, stems, precision="bf16")
    assert loss16.dtype == torch.float32 and loss16.requires_grad
    # bfloat16 keeps 8 significant bits (relative step 2**-8 = 0.4 %); a few layers compound it
    torch.testing.assert_close(per16, per32, rtol=0.03, atol=0.0)
    loss16.backward()
    assert all(p.grad is not None and torch.isfinite(p.grad).all()
               for p in net.parameters() if p.requires_grad and p.grad is not None)
    assert sum(p.grad.abs().sum() for p in net.parameters() if p.grad is not None) > 0
    with pytest.raises(ValueError, match="precision"):
        tr.spectral_loss(net, spectral, mixture, stems, precision="fp16")


def test_schedule_continues_across_a_resume(tmp_path):
    out = tmp_path / "run"
    kwargs = dict(crop_frames=CROP_FRAMES, lr=1e-3, lr_final=1e-4, decay_start=2, max_steps=6,
                  precision="bf16", log=lambda m: None)
    tr.train(TINY_CONFIG, _songs(1), out, **{**kwargs, "max_steps": 3})  # a first run to step 3 ...
    state = safe_torch_load(out / tr.STATE_NAME)
    assert state["global_step"] == 3
    assert tr.train(TINY_CONFIG, _songs(1), out, **kwargs) == 6  # ... resumed with a longer schedule
    logged = [float(r["lr"]) for r in _rows(out / tr.LOG_NAME)]
    assert len(logged) == 6
    # row k is step k; its rate is the schedule's value at step k-1 (the step count before it ran)
    assert logged[3:] == pytest.approx([tr.learning_rate(k, 1e-3, 1e-4, 2, 6) for k in (3, 4, 5)], rel=1e-3)
    with pytest.raises(ValueError, match="needs max_steps"):
        tr.train(TINY_CONFIG, _songs(1), tmp_path / "x", max_minutes=1.0, lr_final=1e-4, log=lambda m: None)


def test_train_resume_and_export(tmp_path):
    out = tmp_path / "run"
    songs = _songs()
    step = tr.train(TINY_CONFIG, songs, out, crop_frames=CROP_FRAMES, max_steps=3, validation=songs[:1],
                    val_crops=2, save_every_min=0.0, log=lambda m: None)
    assert step == 3
    state = safe_torch_load(out / tr.STATE_NAME)
    assert state["global_step"] == 3 and state["optimizer_states"] and "mdxkit_rng" in state
    rows = _rows(out / tr.LOG_NAME)
    assert [r["step"] for r in rows] == ["1", "2", "3"]
    assert all(np.isfinite(float(r["loss"])) for r in rows) and rows[-1]["val_loss"]
    weights_before = load_checkpoint(out / tr.STATE_NAME).network.state_dict()

    with open(out / tr.LOG_NAME, "a") as fh:  # steps of a killed run after its last save
        fh.write("4,9.0,1.0,1,1,1,1,\n")
    messages = []
    assert tr.train(TINY_CONFIG, songs, out, crop_frames=CROP_FRAMES, max_steps=5,
                    log=messages.append) == 5
    assert any("resumed" in m and "step 3" in m for m in messages)
    assert [r["step"] for r in _rows(out / tr.LOG_NAME)] == ["1", "2", "3", "4", "5"]
    weights_after = load_checkpoint(out / tr.STATE_NAME).network.state_dict()
    assert any(not torch.equal(weights_before[k], weights_after[k]) for k in weights_before)

    final = tmp_path / "final.ckpt"
    tr.export_weights(out / tr.STATE_NAME, final)
    exported = safe_torch_load(final)
    assert exported["optimizer_states"] == [] and exported["global_step"] == 5
    assert all(v.dtype == torch.float32 for v in exported["state_dict"].values() if v.is_floating_point())
    loaded = load_checkpoint(final)
    assert loaded.config == TINY_CONFIG and loaded.format == "lightning"
    for k, v in loaded.network.state_dict().items():
        torch.testing.assert_close(v, weights_after[k])


def test_keep_saves_leaves_the_weights_of_every_save(tmp_path):
    out = tmp_path / "run"
    tr.train(TINY_CONFIG, _songs(1), out, crop_frames=CROP_FRAMES, max_steps=2, save_every_min=0.0,
             keep_saves=True, log=lambda m: None)
    assert sorted(p.name for p in (out / "saves").iterdir()) == ["step_000001.ckpt", "step_000002.ckpt"]
    first = safe_torch_load(tr.saved_weights_path(out, 1))
    assert first["global_step"] == 1 and first["optimizer_states"] == []
    last = load_checkpoint(tr.saved_weights_path(out, 2)).network.state_dict()
    for k, v in load_checkpoint(out / tr.STATE_NAME).network.state_dict().items():
        torch.testing.assert_close(last[k], v)  # the final save is the state the run ended in


def test_resume_refuses_another_configuration(tmp_path):
    out = tmp_path / "run"
    tr.train(TINY_CONFIG, _songs(1), out, crop_frames=CROP_FRAMES, max_steps=1, log=lambda m: None)
    other = type(TINY_CONFIG)(**{**TINY_CONFIG.__dict__, "internal_channels": 6})
    with pytest.raises(ValueError, match="another configuration"):
        tr.train(other, _songs(1), out, crop_frames=CROP_FRAMES, max_steps=2, log=lambda m: None)


def test_training_lowers_the_loss(tmp_path):
    # 60 Adam steps on one short song: the loss must fall clearly below where it started
    # (batches of four random crops with dropout are noisy, hence means over several steps)
    tr.train(TINY_CONFIG, _songs(1, 0.5), tmp_path, crop_frames=CROP_FRAMES, max_steps=60, lr=3e-3,
             log=lambda m: None)
    losses = [float(r["loss"]) for r in _rows(tmp_path / tr.LOG_NAME)]
    assert np.mean(losses[-10:]) < 0.75 * np.mean(losses[:10])


def _cli_args(tmp_path, max_steps, *extra):
    """Arguments of ``training.train``'s CLI for a tiny run on one song written in ``tmp_path``."""
    write_stem_folder(tmp_path / "data" / "song", 8000)
    cfg = tmp_path / "tiny.json"
    cfg.write_text(json.dumps(TINY_CONFIG.to_dict()))
    return ["--data", str(tmp_path / "data"), "--out-dir", str(tmp_path / "run"), "--config", str(cfg),
            "--crop-frames", str(CROP_FRAMES), "--max-steps", str(max_steps), "--threads", "1", *extra]


def test_cli_trains_and_exports(tmp_path, capsys):
    run = tmp_path / "run"
    args = _cli_args(tmp_path, 2)
    assert tr.main(args) == 0
    assert (run / tr.STATE_NAME).is_file()
    assert tr.main(args[2:] + ["--export", str(tmp_path / "w.ckpt")]) == 0
    assert load_checkpoint(tmp_path / "w.ckpt").config == TINY_CONFIG
    assert tr.main(["--out-dir", str(run), "--data", str(tmp_path / "none"), "--max-steps", "1"]) == 2
    assert "not found" in capsys.readouterr().err


def test_cli_refuses_bf16_where_the_cpu_would_emulate_it(tmp_path, capsys, monkeypatch):
    run = tmp_path / "run"
    args = _cli_args(tmp_path, 1, "--precision", "bf16")
    monkeypatch.setattr(tr, "cpu_has_fast_bf16", lambda: False)
    assert tr.main(args) == 2
    assert "--precision fp32" in capsys.readouterr().err
    assert not run.exists()  # refused before anything was written
    assert tr.main(args + ["--allow-slow-bf16"]) == 0
    assert safe_torch_load(run / tr.STATE_NAME)["global_step"] == 1
