"""Average the weights of several saves of one run into one weights-only checkpoint.

Saves taken while the learning rate winds down sit close together; their mean usually
generalises a little better than any one of them and is less at the mercy of which 10-minute
save happened to land where (stochastic weight averaging without the extra epoch).

    python -m training.average OUT.ckpt RUN/saves/step_055872.ckpt RUN/saves/step_056501.ckpt ...

Every floating-point tensor (weights and the batch-norm running statistics) is the plain mean
over the inputs, computed in float64; the integer counters (``num_batches_tracked``) are the
last input's. The inputs must share one configuration, one set of keys and one STFT window.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Sequence

import torch

from models.checkpoint import (CheckpointError, build_network, safe_torch_load, save_lightning_checkpoint,
                               split_state_dict)
from models.config import LightSAFTConfig
from models.lightsaft import LightSAFTNet


def average_checkpoints(paths: Sequence[Path]) -> tuple[LightSAFTNet, torch.Tensor | None, list[int]]:
    """The network whose weights are the mean of ``paths``' weights, the shared window, their steps."""
    if len(paths) < 2:
        raise CheckpointError("give at least two checkpoints to average")
    configs, states, windows, steps = [], [], [], []
    for path in paths:
        ckpt = safe_torch_load(path)
        if "hyper_parameters" not in ckpt or "state_dict" not in ckpt:
            raise CheckpointError(f"{path}: not a Lightning checkpoint of the kit (no hyper_parameters/state_dict)")
        configs.append(LightSAFTConfig.from_hyper_parameters(ckpt["hyper_parameters"]))
        net_state, window = split_state_dict(ckpt["state_dict"])
        states.append(net_state)
        windows.append(window)
        steps.append(int(ckpt.get("global_step", 0)))
    for path, cfg, state, window in zip(paths[1:], configs[1:], states[1:], windows[1:]):
        if cfg != configs[0]:
            raise CheckpointError(f"{path} has another configuration than {paths[0]}; cannot average them")
        if state.keys() != states[0].keys():
            raise CheckpointError(f"{path} has other state_dict keys than {paths[0]}; cannot average them")
        if (window is None) != (windows[0] is None) or (window is not None and not torch.equal(window, windows[0])):
            raise CheckpointError(f"{path} has another STFT window than {paths[0]}; cannot average them")
    mean: dict[str, torch.Tensor] = {}
    for key, last in states[-1].items():
        if last.is_floating_point():
            total = sum(state[key].double() for state in states)
            mean[key] = (total / len(states)).float()
        else:
            mean[key] = last.clone()
    return build_network(configs[0], mean), windows[0], steps


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out", type=Path, help="where to write the averaged checkpoint")
    parser.add_argument("checkpoints", type=Path, nargs="+", help="two or more saves of one run")
    args = parser.parse_args(argv)
    if args.out.resolve() in {p.resolve() for p in args.checkpoints}:
        parser.error(f"{args.out} is also an input; write the average elsewhere")
    try:
        network, window, steps = average_checkpoints(args.checkpoints)
    except CheckpointError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    save_lightning_checkpoint(args.out, network, window=window, global_step=max(steps),
                              mdxkit_averaged_steps=steps)
    print(f"wrote {args.out}: mean of {len(steps)} checkpoints, steps {', '.join(map(str, steps))}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
