"""Batching without resizing: images arrive normalised by the data pipeline, at their ground sample distance."""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor
from torchvision.models.detection.transform import GeneralizedRCNNTransform

SIZE_DIVISOR = 32  # the trunks' largest stride


class NoResizeTransform(GeneralizedRCNNTransform):
    """GeneralizedRCNNTransform that only pads (to a multiple of 32): no resizing, no normalisation.

    Boxes and masks of its postprocess stay in the input images' pixels. Has no parameters or buffers.
    """

    def __init__(self, bands: int, size_divisible: int = SIZE_DIVISOR) -> None:
        super().__init__(1, 1, [0.0] * bands, [1.0] * bands, size_divisible=size_divisible)

    def normalize(self, image: Tensor) -> Tensor:
        return image

    def resize(self, image: Tensor, target: dict[str, Tensor] | None = None):
        return image, target


def pad_to_batch(images: list[Tensor], divisor: int = SIZE_DIVISOR) -> tuple[Tensor, list[tuple[int, int]]]:
    """[C, H_i, W_i] images -> zero-padded batch [B, C, H, W] (H, W multiples of `divisor`) and the sizes."""
    if not images:
        raise ValueError("no images")
    sizes = [(int(im.shape[-2]), int(im.shape[-1])) for im in images]
    height = -(-max(h for h, _ in sizes) // divisor) * divisor
    width = -(-max(w for _, w in sizes) // divisor) * divisor
    return torch.stack([F.pad(im, (0, width - im.shape[-1], 0, height - im.shape[-2])) for im in images]), sizes
