"""Re-estimate a checkpoint's BatchNorm statistics over many training batches ("precise BN").

During training each BatchNorm keeps an exponential moving average (momentum 0.1) of the
statistics of batches of only four crops, so a save's running statistics mostly describe the
last twenty or so batches before it. This tool keeps the weights, resets every BatchNorm's
running statistics and replaces them with the plain mean over ``--batches`` batches drawn
exactly as training draws them (same crops, augmentation and four conditions per batch, the
network in training mode, no gradient), then writes a weights-only checkpoint. (For step 46560,
the default before leg 12, this moved the validation score by -0.01 dB, see
``docs/history/TRAINING_LOG.md``: its moving averages were already close.)

    python -m training.precise_bn IN.ckpt OUT.ckpt --data data/openmsx/train --batches 250
"""
from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Iterable
from pathlib import Path

import numpy as np
import torch
from torch import nn

from models.checkpoint import CheckpointError, load_checkpoint, save_lightning_checkpoint
from models.lightsaft import LightSAFTNet
from models.spectral import Spectral

from .dataset import Augment, CropSampler, DatasetError
from .train import add_data_arguments, batch_conditions, crop_samples_for, songs_from_arguments

_BatchNorm = nn.modules.batchnorm._BatchNorm


def batchnorm_layers(network: nn.Module) -> list[_BatchNorm]:
    """Every BatchNorm (1d and 2d) of ``network`` that tracks running statistics."""
    return [m for m in network.modules() if isinstance(m, _BatchNorm) and m.track_running_stats]


def recalibrate_batchnorm(network: LightSAFTNet, spectral: Spectral,
                          batches: Iterable[tuple[np.ndarray, np.ndarray]],
                          progress: Callable[[int], None] | None = None) -> int:
    """Replace the running statistics by their plain mean over ``batches``; returns how many were used.

    Each batch is (mixture (B, samples, 2), stems (B, n_sources, samples, 2)) as
    :meth:`CropSampler.batch` returns it, and goes through the network as in training (crop ``i``
    for condition ``i % n_sources``, training mode, dropout included), so the statistics are those
    of the training distribution. With ``momentum=None`` PyTorch keeps the cumulative mean of the
    batch means and of the (unbiased) batch variances. The network is left in eval mode with its
    original momenta.
    """
    layers = batchnorm_layers(network)
    if not layers:
        raise ValueError("the network has no BatchNorm layer with running statistics")
    momenta = [m.momentum for m in layers]
    for m in layers:
        m.reset_running_stats()
        m.momentum = None
    network.train()
    used = 0
    try:
        with torch.no_grad():
            for mixture, stems in batches:
                # only the forward pass moves the statistics: no targets, no loss
                network(spectral.to_spec(torch.from_numpy(mixture)), batch_conditions(*stems.shape[:2]))
                used += 1
                if progress is not None:
                    progress(used)
    finally:
        for m, momentum in zip(layers, momenta):
            m.momentum = momentum
        network.eval()
    if used == 0:
        raise ValueError("no batch given: the running statistics were reset and not re-estimated")
    return used


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("checkpoint", type=Path, help="weights to keep (any checkpoint the kit loads)")
    parser.add_argument("out", type=Path, help="where to write the checkpoint with re-estimated statistics")
    add_data_arguments(parser)
    parser.add_argument("--batches", type=int, default=250, help="batches to average over (default 250)")
    parser.add_argument("--batch-size", type=int, default=4, help="crops per batch, as in training (default 4)")
    parser.add_argument("--crop-frames", type=int, default=64, help="frames per crop, as in training (default 64)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the crops drawn")
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args(argv)
    if args.batches < 1:
        parser.error("--batches must be at least 1")
    if args.out.resolve() == args.checkpoint.resolve():
        parser.error(f"{args.out} is also the input; write the result elsewhere")
    torch.set_num_threads(args.threads)
    torch.set_flush_denormal(True)
    try:
        loaded = load_checkpoint(args.checkpoint)
        cfg = loaded.config
        crop = crop_samples_for(cfg, args.crop_frames)
        sampler = CropSampler(songs_from_arguments(args, crop), crop, Augment(), seed=args.seed)
    except (CheckpointError, DatasetError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    torch.manual_seed(args.seed)  # dropout masks
    batches = (sampler.batch(args.batch_size) for _ in range(args.batches))

    def progress(done: int) -> None:
        if done % 25 == 0 or done == args.batches:
            print(f"batch {done}/{args.batches}", flush=True)

    used = recalibrate_batchnorm(loaded.network, Spectral(cfg.n_fft, cfg.hop_length), batches, progress)
    save_lightning_checkpoint(args.out, loaded.network, window=loaded.window, global_step=loaded.global_step,
                              mdxkit_precise_bn={"batches": used, "batch_size": args.batch_size,
                                                 "crop_frames": args.crop_frames, "seed": args.seed,
                                                 "source": str(args.checkpoint)})
    print(f"wrote {args.out}: BatchNorm statistics of {args.checkpoint} re-estimated over {used} batches")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
