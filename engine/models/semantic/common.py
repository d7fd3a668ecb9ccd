"""Shared parts of the semantic models (contract: engine.tasks.semantic).

- `pad_batch(images, targets, multiple=32)`: list of [C,h,w] images -> zero-padded batch [B,C,Hp,Wp]
  (Hp, Wp multiples of `multiple`), their "semantic" targets padded with IGNORE_INDEX -> [B,Hp,Wp] int64,
  and the original sizes [(h, w), ...].
- `per_image_probs(logits, sizes)`: logits [B,K+1,Hp,Wp] -> softmax, cropped
  back to each image's size -> [{"probs": [K+1,h,w]}, ...] (the eval output).
- `SemanticModel`: base class; a subclass implements `logits(batch) -> [B,K+1,Hp,Wp]` (full padded
  resolution) and may override `losses(logits, target_map) -> dict` (default: cross-entropy with
  ignore_index -> {"loss_ce"}). Its forward does the padding, the train/eval switch and the cropping.
- `Stride4Decoder`: per level log2(stride/4) x [3x3 conv, norm, ReLU, bilinear x2] (the stride-4 level:
  one block, no upsampling), then sum or mean over levels -> [B,out,H/4,W/4] (Semantic FPN, FarSeg).
The trunk + FPN of Semantic FPN and FarSeg is engine.models.necks.fpn.TrunkFPN; their conv + norm + ReLU
blocks are engine.models.layers.conv.conv_norm_relu.
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from engine.models.layers.conv import conv_norm_relu
from engine.spec import IGNORE_INDEX


def pad_batch(images: list[Tensor], targets: list[dict] | None = None,
              multiple: int = 32) -> tuple[Tensor, Tensor | None, list[tuple[int, int]]]:
    """Images [C,h,w] -> (batch [B,C,Hp,Wp] zero-padded bottom/right, target map [B,Hp,Wp] int64 or None,
    sizes [(h, w)]). Hp, Wp: the largest h, w rounded up to `multiple`; padded target pixels = IGNORE_INDEX."""
    if not images:
        raise ValueError("pad_batch needs at least one image")
    sizes = [(int(img.shape[-2]), int(img.shape[-1])) for img in images]
    height = -(-max(h for h, _ in sizes) // multiple) * multiple
    width = -(-max(w for _, w in sizes) // multiple) * multiple
    first = images[0]
    batch = first.new_zeros((len(images), first.shape[0], height, width))
    for i, img in enumerate(images):
        batch[i, :, : sizes[i][0], : sizes[i][1]] = img
    if targets is None:
        return batch, None, sizes
    if len(targets) != len(images):
        raise ValueError(f"{len(images)} images but {len(targets)} targets")
    target_map = torch.full((len(images), height, width), IGNORE_INDEX, dtype=torch.int64, device=first.device)
    for i, target in enumerate(targets):
        if "semantic" not in target:
            raise KeyError("semantic models need targets with a 'semantic' [H, W] class map")
        semantic = target["semantic"]
        if tuple(semantic.shape[-2:]) != sizes[i]:
            raise ValueError(f"target {i}: semantic map {tuple(semantic.shape)} does not match image size {sizes[i]}")
        target_map[i, : sizes[i][0], : sizes[i][1]] = semantic.to(device=first.device, dtype=torch.int64)
    return batch, target_map, sizes


def per_image_probs(logits: Tensor, sizes: list[tuple[int, int]]) -> list[dict[str, Tensor]]:
    """Logits [B,K+1,Hp,Wp] -> [{"probs": float32 [K+1,h,w]}] per image: softmax over classes, cropped."""
    probs = torch.softmax(logits.float(), dim=1)
    return [{"probs": probs[i, :, :h, :w].contiguous()} for i, (h, w) in enumerate(sizes)]



class Stride4Decoder(nn.Module):
    """Pyramid [B,in,H/s,W/s] for strides `strides` (4, 8, ...) -> [B,out,H/4,W/4], summed or averaged."""

    def __init__(self, in_channels: int, out_channels: int, strides: tuple[int, ...] = (4, 8, 16, 32),
                 norm: str = "gn", reduce: str = "sum") -> None:
        super().__init__()
        if reduce not in ("sum", "mean"):
            raise ValueError(f"unknown reduce '{reduce}'; choose sum or mean")
        self.reduce = reduce
        self.branches = nn.ModuleList()
        for stride in strides:
            upsamplings = int(round(math.log2(stride / 4)))
            if upsamplings < 0 or 4 * 2**upsamplings != stride:
                raise ValueError(f"stride {stride} is not 4 * a power of 2")
            blocks: list[nn.Module] = []
            for k in range(max(upsamplings, 1)):
                blocks.append(conv_norm_relu(in_channels if k == 0 else out_channels, out_channels, 3, norm))
                if upsamplings:
                    blocks.append(nn.Upsample(scale_factor=2, mode="bilinear", align_corners=False))
            self.branches.append(nn.Sequential(*blocks))

    def forward(self, features: list[Tensor]) -> Tensor:
        out = sum(branch(f) for branch, f in zip(self.branches, features, strict=True))
        return out / len(self.branches) if self.reduce == "mean" else out


class SemanticModel(nn.Module):
    """Base of the semantic models: forward(images, targets) follows engine.tasks.semantic's contract.

    Subclasses implement `logits(batch [B,C,Hp,Wp]) -> [B,K+1,Hp,Wp]` and may override `losses`.
    """

    pad_multiple = 32

    def logits(self, batch: Tensor) -> Tensor:
        raise NotImplementedError

    def losses(self, logits: Tensor, target_map: Tensor) -> dict[str, Tensor]:
        """Cross-entropy over non-ignored pixels (mean) -> {"loss_ce"}; 0 (with a graph) if all are ignored."""
        if not bool((target_map != IGNORE_INDEX).any()):
            return {"loss_ce": logits.sum() * 0.0}
        return {"loss_ce": F.cross_entropy(logits, target_map, ignore_index=IGNORE_INDEX)}

    def forward(self, images: list[Tensor], targets: list[dict] | None = None):
        """Train: list of [C,h,w] + targets -> {name: scalar loss}. Eval: -> [{"probs": [K+1,h,w]}]."""
        if self.training:
            if targets is None:
                raise ValueError("training mode needs targets with a 'semantic' class map")
            batch, target_map, _ = pad_batch(images, targets, self.pad_multiple)
            return self.losses(self.logits(batch), target_map)
        batch, _, sizes = pad_batch(images, None, self.pad_multiple)
        return per_image_probs(self.logits(batch), sizes)
