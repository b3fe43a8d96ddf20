"""Inference-only rewrites of a loaded network that keep its outputs (to float32 rounding).

``fold_batchnorm`` merges every eval-mode BatchNorm that directly follows a convolution into
that convolution's weight and bias, removing one full pass over the feature map per layer.
"""
from __future__ import annotations

import copy

import torch
from torch import nn


def _fold(conv: nn.Conv2d | nn.ConvTranspose2d, bn: nn.BatchNorm2d) -> None:
    """In place: conv <- bn(conv(.)) for eval-mode statistics."""
    scale = bn.weight / torch.sqrt(bn.running_var + bn.eps)
    shift = bn.bias - bn.running_mean * scale
    with torch.no_grad():
        if isinstance(conv, nn.ConvTranspose2d):  # weight (in, out, kT, kF)
            conv.weight.mul_(scale.view(1, -1, 1, 1))
        else:  # weight (out, in, kT, kF)
            conv.weight.mul_(scale.view(-1, 1, 1, 1))
        bias = conv.bias if conv.bias is not None else torch.zeros_like(shift)
        new_bias = bias * scale + shift
        if conv.bias is None:
            conv.bias = nn.Parameter(new_bias)
        else:
            conv.bias.copy_(new_bias)


def _fold_sequential(seq: nn.Sequential) -> int:
    folded = 0
    for i in range(len(seq) - 1):
        conv, bn = seq[i], seq[i + 1]
        if isinstance(conv, (nn.Conv2d, nn.ConvTranspose2d)) and isinstance(bn, nn.BatchNorm2d) and bn.affine:
            _fold(conv, bn)
            seq[i + 1] = nn.Identity()
            folded += 1
    return folded


def fold_batchnorm(network: nn.Module) -> nn.Module:
    """A copy of ``network`` with conv-BatchNorm pairs merged (eval mode only)."""
    if network.training:
        raise ValueError("fold_batchnorm needs an eval-mode network")
    net = copy.deepcopy(network)
    for module in net.modules():
        if isinstance(module, nn.Sequential):
            _fold_sequential(module)
    for p in net.parameters():
        p.requires_grad_(False)
    return net.eval()
