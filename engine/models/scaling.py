"""Run a model at its trained zoom: images resized by `ModelSpec.input_scale`, outputs mapped back.

A model trained on chips upsampled 2x (small SAR ships become larger than the trunk's stride) must see
every tile upsampled 2x too; its boxes, masks and probabilities are returned in the tile's own pixels.
"""
from __future__ import annotations

import torch.nn.functional as F
from torch import Tensor, nn


def resize_image(image: Tensor, scale: float) -> Tensor:
    """[C,H,W] -> [C,round(H*scale),round(W*scale)] bilinear (the same resampling as ScaleJitter)."""
    h, w = image.shape[-2:]
    size = (max(1, round(h * scale)), max(1, round(w * scale)))
    if size == (h, w):
        return image
    return F.interpolate(image[None], size, mode="bilinear", align_corners=False)[0]


def rescale_output(output: dict[str, Tensor], size: tuple[int, int], scaled_size: tuple[int, int]) -> dict[str, Tensor]:
    """One image's output on the resized image -> the same on the original `size` (H, W).

    boxes [N,4] xyxy are divided by the per-axis factor; masks [N,1,h,w] and probs / logits [K+1,h,w] are
    resampled bilinearly (probabilities stay in [0, 1]).
    """
    if size == scaled_size:
        return output
    fy, fx = scaled_size[0] / size[0], scaled_size[1] / size[1]
    out = dict(output)
    if "boxes" in out:
        out["boxes"] = out["boxes"] / out["boxes"].new_tensor([fx, fy, fx, fy])
    if "masks" in out:
        masks = out["masks"]
        out["masks"] = (F.interpolate(masks.float(), size, mode="bilinear", align_corners=False).to(masks.dtype)
                        if masks.shape[0] else masks.new_zeros((0, masks.shape[1], *size)))
    for key in ("probs", "logits"):
        if key in out:
            out[key] = F.interpolate(out[key][None].float(), size, mode="bilinear", align_corners=False)[0]
    return out


def forward_scaled(model: nn.Module, images: list[Tensor], scale: float) -> list[dict[str, Tensor]]:
    """Eval-mode `model(images)` with every image resized by `scale`; outputs in the input images' pixels."""
    if scale == 1.0:
        return model(images)
    scaled = [resize_image(im, scale) for im in images]
    outputs = model(scaled)
    return [rescale_output(o, tuple(im.shape[-2:]), tuple(s.shape[-2:])) for o, im, s in zip(outputs, images, scaled)]

