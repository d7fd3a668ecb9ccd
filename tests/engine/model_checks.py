"""Shared checks for the detector tests: one training step with the loss contract asserted."""
from __future__ import annotations

import torch


def train_step(model: torch.nn.Module, images, targets, expected_losses: set[str]) -> dict[str, torch.Tensor]:
    """Zero grads, forward in train mode, assert the loss names and that each is a finite scalar, backward.

    Returns the losses, detached.
    """
    model.train()
    model.zero_grad(set_to_none=True)
    losses = model(images, targets)
    assert set(losses) == expected_losses
    for name, value in losses.items():
        assert value.ndim == 0 and torch.isfinite(value), (name, value)
    sum(losses.values()).backward()
    return {name: value.detach() for name, value in losses.items()}
