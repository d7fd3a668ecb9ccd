"""Torch device selection shared by training and inference."""
from __future__ import annotations

import torch

from engine.errors import UserError


def pick_device(name: str = "auto") -> torch.device:
    """'auto' -> first CUDA GPU if any, else CPU; validates explicit names."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(name)
    except RuntimeError:
        raise UserError(f"--device '{name}': not a device; use auto, cpu, cuda or cuda:N") from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise UserError(f"--device '{name}': no CUDA GPU is available; use --device cpu")
    if device.type == "cuda" and device.index is not None and device.index >= torch.cuda.device_count():
        count = torch.cuda.device_count()
        raise UserError(f"--device '{name}': this machine has {count} GPU(s), cuda:0 to cuda:{count - 1}; "
                        "choose one of them")
    return device
