"""Train LightSAFT+GPoCM with the original's spectrogram MSE objective.

Each step draws random crops, mixes their stems, and asks the network for one source per crop,
cycling through the four conditions so that every batch of four holds all of them; the loss is the mean squared error between the
predicted spectrograms and the targets' STFTs in the (batch, 4, frames, bins) layout. State is
saved in the original Lightning checkpoint layout (with Adam's state, for ``--resume``) every
``--save-every-min`` minutes and at the end; ``--export`` writes weights only.

    python -m training.train --data data/openmsx/train --out-dir runs/mdxkit --max-minutes 100
"""
from __future__ import annotations

import argparse
import csv
import dataclasses
import io
import json
import math
import os
import sys
import time
from pathlib import Path
from typing import Callable, Sequence

import numpy as np
import torch

from core.files import atomic_write_text
from models.checkpoint import safe_torch_load, save_lightning_checkpoint, split_state_dict
from models.config import LightSAFTConfig
from core.constants import SOURCES
from models.lightsaft import LightSAFTNet
from models.spectral import Spectral

from .dataset import Augment, CropSampler, DatasetError, SongStems, find_songs, match_level, set_share

STATE_NAME = "last.ckpt"
LOG_NAME = "loss_log.csv"
LOG_FIELDS = ["step", "elapsed_s", "loss"] + [f"loss_{s}" for s in SOURCES] + ["val_loss", "lr"]
PRECISIONS = ("fp32", "bf16")


def _check_precision(precision: str) -> None:
    if precision not in PRECISIONS:
        raise ValueError(f"precision must be one of {PRECISIONS}, got {precision!r}")


def cpu_has_fast_bf16() -> bool:
    """Whether oneDNN has bfloat16 kernels for this CPU (AVX-512 or AMX).

    Without them bfloat16 autocast falls back to reference code: on a 2-core AVX2 EPYC a training
    step took 146 s in bf16 against 3.6 s in fp32 (docs/history/TRAINING_LOG.md), not the 1.7x speed-up
    measured on an AVX512-BF16 CPU.
    """
    try:
        return bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
    except (AttributeError, RuntimeError):  # a build without oneDNN has no fast path either
        return False


def crop_samples_for(cfg: LightSAFTConfig, n_frames: int) -> int:
    """Samples of a crop whose centred STFT has exactly ``n_frames`` frames."""
    if n_frames % cfg.frame_multiple:
        raise ValueError(f"crop frames must be a multiple of {cfg.frame_multiple}, got {n_frames}")
    return (n_frames - 1) * cfg.hop_length


def batch_conditions(batch_size: int, n_sources: int) -> torch.Tensor:
    """Condition of each crop: ``0, 1, .., n_sources-1, 0, ..`` so a batch of 4 holds all four."""
    return torch.arange(batch_size) % n_sources


def learning_rate(step: int, peak: float, final: float | None = None, decay_start: int = 0,
                  decay_end: int | None = None) -> float:
    """Rate for the step after ``step``: ``peak`` until ``decay_start``, then a cosine down to ``final``.

    A pure function of the step, so a resumed run continues the same schedule.
    """
    if final is None or decay_end is None:
        return peak
    if decay_end <= decay_start:
        raise ValueError(f"decay ends at step {decay_end}, not after its start {decay_start}")
    if step < decay_start:
        return peak
    progress = min(1.0, (step - decay_start) / (decay_end - decay_start))
    return final + 0.5 * (peak - final) * (1.0 + math.cos(math.pi * progress))


def spectral_loss(network: LightSAFTNet, spectral: Spectral, mixture: torch.Tensor,
                  stems: torch.Tensor, precision: str = "fp32") -> tuple[torch.Tensor, torch.Tensor]:
    """The original objective: MSE between estimated and target spectrograms.

    mixture (B, samples, 2), stems (B, n_sources, samples, 2). Crop ``i`` is separated for
    condition ``i % n_sources`` (one network pass per crop, as the original trains). Returns
    (mean loss, per-source losses (n_sources,); NaN for a source absent from the batch).
    ``precision="bf16"`` runs the network under bfloat16 autocast (weights, STFT and loss stay
    fp32); on CPUs with AVX512-BF16 that makes a training step about 1.7x faster.
    """
    _check_precision(precision)
    batch, n_src = stems.shape[:2]
    condition = batch_conditions(batch, n_src)
    target = spectral.to_spec(stems[torch.arange(batch), condition])  # (B, 4, T, F)
    spec = spectral.to_spec(mixture)
    with torch.autocast(spec.device.type, dtype=torch.bfloat16, enabled=precision == "bf16"):
        estimate = network(spec, condition)
    estimate = estimate.float()
    per_crop = (estimate - target).pow(2).mean(dim=(1, 2, 3))
    per_source = torch.stack([per_crop[condition == s].mean() for s in range(n_src)]).detach()
    return per_crop.mean(), per_source


def demo_songs(count: int, first_seed: int, duration_s: float) -> list[SongStems]:
    """``count`` songs of the kit's synthetic demo generator, seeds ``first_seed`` upwards."""
    try:
        from evaluator.demo import make_demo_song
    except ImportError as exc:
        raise DatasetError(f"--demo-songs needs evaluator.demo.make_demo_song ({exc})") from exc
    return [SongStems.from_arrays(f"demo-{seed}", make_demo_song(seed, duration_s))
            for seed in range(first_seed, first_seed + count)]


def save_state(path: Path, network: LightSAFTNet, optimizer: torch.optim.Optimizer | None,
               step: int, sampler: CropSampler | None, **extra: object) -> None:
    """Lightning-layout checkpoint; with the optimizer and data RNG when given (resumable)."""
    was_training = network.training
    network.eval()
    kwargs: dict[str, object] = dict(global_step=step, **extra)
    if optimizer is not None:
        kwargs["optimizer_states"] = [optimizer.state_dict()]
    if sampler is not None:
        kwargs["mdxkit_rng"] = json.dumps(sampler.rng.bit_generator.state)
    save_lightning_checkpoint(path, network, **kwargs)
    network.train(was_training)


def load_state(path: Path, network: LightSAFTNet, optimizer: torch.optim.Optimizer,
               sampler: CropSampler) -> int:
    """Restore a :func:`save_state` checkpoint; returns the step it was saved at."""
    ckpt = safe_torch_load(path)
    hparams = ckpt.get("hyper_parameters")
    if hparams is not None and LightSAFTConfig.from_hyper_parameters(hparams) != network.cfg:
        raise ValueError(f"{path} was trained with another configuration; refusing to resume")
    net_state, _ = split_state_dict(ckpt["state_dict"])
    network.load_state_dict(net_state, strict=True)
    if ckpt.get("optimizer_states"):
        optimizer.load_state_dict(ckpt["optimizer_states"][0])
    if "mdxkit_rng" in ckpt:
        sampler.rng.bit_generator.state = json.loads(ckpt["mdxkit_rng"])
    return int(ckpt.get("global_step", 0))


def train(cfg: LightSAFTConfig, songs: Sequence[SongStems], out_dir: Path, *, crop_frames: int = 64,
          batch_size: int = 4, lr: float = 1e-3, max_steps: int | None = None,
          max_minutes: float | None = None, save_every_min: float = 5.0,
          validation: Sequence[SongStems] = (), val_crops: int = 8, seed: int = 0, resume: bool = True,
          lr_final: float | None = None, decay_start: int = 0, precision: str = "fp32",
          keep_saves: bool = False, log: Callable[[str], None] = print) -> int:
    """Train (or continue) a network in ``out_dir``; returns the final step.

    Stops at ``max_steps`` or after ``max_minutes`` of wall-clock time, whichever comes first.
    With ``lr_final`` the rate follows :func:`learning_rate`'s cosine from ``decay_start`` to
    ``max_steps``. With ``keep_saves`` every save also leaves the weights of that step in
    ``out_dir/saves/step_NNNNNN.ckpt`` (weights only, as ``--export`` writes them), so that a state
    from inside a leg can be scored and shipped, not only the last one.
    """
    if max_steps is None and max_minutes is None:
        raise ValueError("give max_steps or max_minutes, or training never ends")
    if lr_final is not None and max_steps is None:
        raise ValueError("a decaying learning rate needs max_steps: the cosine ends there")
    _check_precision(precision)  # before any data is read, not at the first step
    out_dir.mkdir(parents=True, exist_ok=True)
    crop = crop_samples_for(cfg, crop_frames)
    torch.manual_seed(seed)
    network = LightSAFTNet(cfg)
    spectral = Spectral(cfg.n_fft, cfg.hop_length)
    optimizer = torch.optim.Adam(network.parameters(), lr=lr)
    sampler = CropSampler(songs, crop, Augment(), seed=seed)
    val_batch = None
    if validation:
        val_batch = CropSampler(validation, crop, None, seed=seed + 1).batch(val_crops)
    state_path = out_dir / STATE_NAME

    if keep_saves:
        saved_weights_path(out_dir, 0).parent.mkdir(exist_ok=True)

    def save(at_step: int) -> None:
        save_state(state_path, network, optimizer, at_step, sampler)
        if keep_saves:  # from the network in memory: no read-back of the state just written
            save_state(saved_weights_path(out_dir, at_step), network, None, at_step, None)

    step = 0
    if resume and state_path.is_file():
        step = load_state(state_path, network, optimizer, sampler)
        log(f"resumed from {state_path} at step {step}")
    log_path = out_dir / LOG_NAME
    if step and log_path.is_file():
        _truncate_log(log_path, step)
    new_log = not log_path.is_file()
    t_start = time.monotonic()
    t_saved = t_start
    network.train()
    with open(log_path, "a", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=LOG_FIELDS)
        if new_log:
            writer.writeheader()
        while True:
            elapsed = time.monotonic() - t_start
            done = (max_steps is not None and step >= max_steps) or \
                   (max_minutes is not None and elapsed >= 60 * max_minutes)
            if done:
                break
            rate = learning_rate(step, lr, lr_final, decay_start, max_steps)
            for group in optimizer.param_groups:  # the schedule wins over a resumed state's rate
                group["lr"] = rate
            mixture, stems = (torch.from_numpy(a) for a in sampler.batch(batch_size))
            loss, per_source = spectral_loss(network, spectral, mixture, stems, precision)
            if not math.isfinite(loss.item()):
                raise FloatingPointError(f"loss became {loss.item()} at step {step}")
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            step += 1
            row = {"step": step, "elapsed_s": f"{elapsed:.1f}", "loss": f"{loss.item():.6g}", "val_loss": "",
                   "lr": f"{rate:.4g}"}
            row.update({f"loss_{s}": f"{v:.6g}" for s, v in zip(SOURCES, per_source.tolist())})
            now = time.monotonic()
            if now - t_saved >= 60 * save_every_min:
                if val_batch is not None:
                    row["val_loss"] = f"{validation_loss(network, spectral, val_batch):.6g}"
                save(step)
                t_saved = now
                log(f"step {step}: saved {state_path} (val_loss {row['val_loss'] or '-'})")
            writer.writerow(row)
            fh.flush()
            if step % 10 == 0:
                log(f"step {step} {elapsed / 60:.1f} min lr {rate:.3g} loss {loss.item():.4g} "
                    + " ".join(f"{s}={v:.3g}" for s, v in zip(SOURCES, per_source.tolist())))
    save(step)
    log(f"finished at step {step}; state in {state_path}")
    return step


def _truncate_log(path: Path, last_step: int) -> None:
    """Drop log rows past ``last_step``: steps a killed run took after its last save are redone."""
    with open(path, newline="") as fh:
        rows = [r for r in csv.DictReader(fh) if int(r["step"]) <= last_step]
    text = io.StringIO(newline="")
    writer = csv.DictWriter(text, fieldnames=LOG_FIELDS)
    writer.writeheader()
    writer.writerows(rows)
    atomic_write_text(path, text.getvalue())


def validation_loss(network: LightSAFTNet, spectral: Spectral, batch: tuple[np.ndarray, np.ndarray]) -> float:
    """Loss on fixed validation crops with the network in eval mode (running BatchNorm stats)."""
    network.eval()
    with torch.no_grad():
        loss, _ = spectral_loss(network, spectral, *(torch.from_numpy(a) for a in batch))
    network.train()
    return float(loss)


def saved_weights_path(out_dir: Path, step: int) -> Path:
    """Where ``--keep-saves`` leaves the weights of the save at ``step``."""
    return out_dir / "saves" / f"step_{step:06d}.ckpt"


def export_weights(state_path: Path, out_path: Path, **card: object) -> None:
    """Weights-only fp32 Lightning checkpoint (no optimizer state) from a training state."""
    ckpt = safe_torch_load(state_path)
    cfg = LightSAFTConfig.from_hyper_parameters(ckpt["hyper_parameters"])
    network = LightSAFTNet(cfg)
    net_state, window = split_state_dict(ckpt["state_dict"])
    network.load_state_dict({k: v.float() for k, v in net_state.items()}, strict=True)
    network.eval()
    save_lightning_checkpoint(out_path, network, window=window, global_step=int(ckpt.get("global_step", 0)),
                              **card)


def add_data_arguments(parser: argparse.ArgumentParser) -> None:
    """The options that say which songs the crops come from (shared with ``training.precise_bn``)."""
    parser.add_argument("--data", type=Path, action="append", default=[],
                        help="folder of MDX-layout song folders (repeatable)")
    parser.add_argument("--extra-data", type=Path, action="append", default=[],
                        help="folder of further songs that get --extra-share of the crops (repeatable)")
    parser.add_argument("--extra-share", type=float, default=0.5,
                        help="fraction of crops drawn from --extra-data (positions equally likely within each group)")
    parser.add_argument("--extra-level", choices=("match", "keep"), default="match",
                        help="match: scale --extra-data to the main data's median mixture RMS (default)")
    parser.add_argument("--demo-songs", type=int, default=0, help="add this many synthetic demo songs")
    parser.add_argument("--demo-first-seed", type=int, default=1000,
                        help="first demo seed; keep clear of the evaluation demo set's seeds")
    parser.add_argument("--demo-seconds", type=float, default=30.0)


def songs_from_arguments(args: argparse.Namespace, crop_samples: int) -> list[SongStems]:
    """The songs :func:`add_data_arguments`' options name, extra data weighted and levelled.

    Raises :class:`DatasetError` when a folder is missing or no song is named at all.
    """
    songs = find_songs(args.data)
    if args.demo_songs:
        songs += demo_songs(args.demo_songs, args.demo_first_seed, args.demo_seconds)
    if args.extra_data:
        extra = find_songs(args.extra_data)
        set_share(songs, extra, args.extra_share, crop_samples)
        if args.extra_level == "match":
            gain = match_level(songs, extra)
            print(f"extra data scaled by {gain:.3f} ({20 * math.log10(gain):+.1f} dB) to the main data's "
                  "median mixture RMS", flush=True)
        songs += extra
    if not songs:
        raise DatasetError("no training songs; pass --data and/or --demo-songs")
    return songs


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Train the kit's LightSAFT+GPoCM (lightsaft_small).")
    add_data_arguments(parser)
    parser.add_argument("--validation", type=Path, action="append", default=[],
                        help="folder of validation songs (repeatable)")
    parser.add_argument("--out-dir", type=Path, required=True, help="state, logs (resumes from here)")
    parser.add_argument("--config", type=Path, help="JSON of LightSAFTConfig fields; default lightsaft_small")
    parser.add_argument("--spec-est-mode", choices=("mapping", "masking"),
                        help="override the configuration's estimation mode (same network, same cost)")
    parser.add_argument("--crop-frames", type=int, default=64)
    parser.add_argument("--batch-size", type=int, default=4)
    parser.add_argument("--lr", type=float, default=1e-3, help="learning rate (the peak with --lr-final)")
    parser.add_argument("--lr-final", type=float,
                        help="cosine-decay the rate to this by --max-steps (needs --max-steps)")
    parser.add_argument("--decay-start", type=int, default=0, help="step where the cosine decay begins")
    parser.add_argument("--precision", choices=PRECISIONS, default="fp32",
                        help="bf16: bfloat16 autocast for the network (about 1.7x faster on AVX512-BF16 CPUs; "
                             "refused on CPUs without fast bfloat16 kernels)")
    parser.add_argument("--allow-slow-bf16", action="store_true",
                        help="run --precision bf16 even where this CPU has no fast bfloat16 kernels")
    parser.add_argument("--max-steps", type=int)
    parser.add_argument("--max-minutes", type=float)
    parser.add_argument("--save-every-min", type=float, default=5.0)
    parser.add_argument("--keep-saves", action="store_true",
                        help="also keep each save's weights as OUT_DIR/saves/step_NNNNNN.ckpt (weights only)")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--no-resume", action="store_true")
    parser.add_argument("--export", type=Path, help="only write weights-only OUT from --out-dir's state")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    torch.set_flush_denormal(True)  # denormal floats make CPU convolutions crawl
    if args.export:
        export_weights(args.out_dir / STATE_NAME, args.export)
        print(f"wrote {args.export}")
        return 0
    if args.precision == "bf16" and not args.allow_slow_bf16 and not cpu_has_fast_bf16():
        print("error: this CPU has no fast bfloat16 kernels (no AVX-512 or AMX), so --precision bf16 "
              "would run about 40x slower than fp32; use --precision fp32 (or --allow-slow-bf16 to "
              "run it anyway)", file=sys.stderr)
        return 2
    cfg = LightSAFTConfig.from_hyper_parameters(json.loads(args.config.read_text())) if args.config \
        else LightSAFTConfig()
    if args.spec_est_mode:
        cfg = dataclasses.replace(cfg, spec_est_mode=args.spec_est_mode)
    try:
        songs = songs_from_arguments(args, crop_samples_for(cfg, args.crop_frames))
        validation = find_songs(args.validation)
    except DatasetError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(f"{len(songs)} training songs, {len(validation)} validation songs; pid {os.getpid()}", flush=True)
    train(cfg, songs, args.out_dir, crop_frames=args.crop_frames, batch_size=args.batch_size, lr=args.lr,
          max_steps=args.max_steps, max_minutes=args.max_minutes, save_every_min=args.save_every_min,
          validation=validation, seed=args.seed, resume=not args.no_resume, lr_final=args.lr_final,
          decay_start=args.decay_start, precision=args.precision, keep_saves=args.keep_saves,
          log=lambda msg: print(msg, flush=True))
    return 0


if __name__ == "__main__":
    sys.exit(main())
