"""DCNv2: modulated deformable convolution (Zhu et al., CVPR 2019) over torchvision.ops.deform_conv2d.

y(p) = sum_k w_k * x(p + p_k + dp_k) * m_k: a plain conv whose k sampling points move by learnt offsets
dp_k and are weighted by learnt modulation scalars m_k in [0, 1]. A 3x3 conv (same stride/padding/dilation
as the main one) predicts 2*K offsets and K mask logits per output pixel; it starts at zero, so at
initialisation offsets are 0 and masks sigmoid(0) = 0.5 (mmcv's `ModulatedDeformConv2dPack` does the same).

On CUDA the op is torchvision's kernel. On the CPU it is `sampled_deform_conv2d`: the same bilinear sampling
through `grid_sample` and one matrix product: the same result, about 3x faster than torchvision's CPU kernel
for forward + backward (one thread, [2, 256, 40, 40] -> 256 channels: 0.46 s vs 1.53 s), which took 8 of the
13 s of a FACENet training step.
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torchvision.ops import deform_conv2d


def sampled_deform_conv2d(x: Tensor, offset: Tensor, weight: Tensor, bias: Tensor | None, stride: int,
                          padding: int, dilation: int, mask: Tensor) -> Tensor:
    """`torchvision.ops.deform_conv2d` (one offset group) as bilinear `grid_sample` + matmul.

    x [B, C, H, W]; offset [B, 2K, H', W'] as (dy, dx) per kernel point k = ky * kw + kx; weight
    [O, C, kh, kw]; mask [B, K, H', W'] -> [B, O, H', W']. Samples outside the image read 0, as torchvision's.
    """
    batch, channels, height, width = x.shape
    out_channels, _, kh, kw = weight.shape
    out_h, out_w = offset.shape[-2:]
    points = kh * kw
    dev, dt = x.device, x.dtype
    base_y = (torch.arange(out_h, device=dev, dtype=dt) * stride - padding).view(1, 1, out_h, 1)
    base_x = (torch.arange(out_w, device=dev, dtype=dt) * stride - padding).view(1, 1, 1, out_w)
    tap_y = (torch.arange(kh, device=dev, dtype=dt) * dilation).repeat_interleave(kw).view(1, points, 1, 1)
    tap_x = (torch.arange(kw, device=dev, dtype=dt) * dilation).repeat(kh).view(1, points, 1, 1)
    offset = offset.view(batch, points, 2, out_h, out_w)
    y = base_y + tap_y + offset[:, :, 0]  # [B, K, H', W'] pixel rows
    x_pos = base_x + tap_x + offset[:, :, 1]
    # align_corners=False: pixel p's centre is at (2p + 1) / size - 1 (valid for one-pixel sides too)
    grid = torch.stack(((2 * x_pos + 1) / width - 1, (2 * y + 1) / height - 1), dim=-1)
    sampled = F.grid_sample(x, grid.view(batch, points * out_h, out_w, 2), mode="bilinear",
                            padding_mode="zeros", align_corners=False)  # [B, C, K*H', W']
    columns = (sampled.view(batch, channels, points, out_h, out_w) * mask.unsqueeze(1)).view(
        batch, channels * points, out_h * out_w)
    out = torch.matmul(weight.view(out_channels, channels * points), columns)  # [B, O, H'*W']
    if bias is not None:
        out = out + bias.view(1, -1, 1)
    return out.view(batch, out_channels, out_h, out_w)


class ModulatedDeformConv2d(nn.Module):
    """Drop-in for `nn.Conv2d(in_channels, out_channels, kernel_size, stride, padding, dilation, bias)`.

    forward: [B, in_channels, H, W] -> [B, out_channels, H', W'] with H', W' as the plain conv's.
    """

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int = 3, stride: int = 1,
                 padding: int = 1, dilation: int = 1, bias: bool = True) -> None:
        super().__init__()
        self.in_channels, self.out_channels = in_channels, out_channels
        self.kernel_size, self.stride, self.padding, self.dilation = kernel_size, stride, padding, dilation
        self.weight = nn.Parameter(torch.empty(out_channels, in_channels, kernel_size, kernel_size))
        self.bias = nn.Parameter(torch.zeros(out_channels)) if bias else None
        nn.init.kaiming_uniform_(self.weight, a=math.sqrt(5))  # nn.Conv2d's default
        points = kernel_size * kernel_size
        self.offset_mask = nn.Conv2d(in_channels, 3 * points, kernel_size, stride, padding, dilation)
        nn.init.zeros_(self.offset_mask.weight)
        nn.init.zeros_(self.offset_mask.bias)

    def forward(self, x: Tensor) -> Tensor:
        points = self.kernel_size * self.kernel_size
        offset_mask = self.offset_mask(x)
        offset, mask_logits = offset_mask.split([2 * points, points], dim=1)
        return self.modulated_conv(x, offset, mask_logits.sigmoid())

    def modulated_conv(self, x: Tensor, offset: Tensor, mask: Tensor) -> Tensor:
        """The deformable conv with given offsets [B, 2K, H', W'] (dy, dx per point) and masks [B, K, H', W']."""
        # deform_conv2d has no fp16 CPU kernel and its CUDA autocast casts to fp32: keep one dtype
        dtype = x.dtype
        conv = sampled_deform_conv2d if x.device.type == "cpu" else deform_conv2d
        out = conv(x.float(), offset.float(), self.weight.float(), None if self.bias is None else self.bias.float(),
                   stride=self.stride, padding=self.padding, dilation=self.dilation, mask=mask.float())
        return out.to(dtype)

    def extra_repr(self) -> str:
        return (f"{self.in_channels}, {self.out_channels}, kernel_size={self.kernel_size}, stride={self.stride}, "
                f"padding={self.padding}, dilation={self.dilation}, bias={self.bias is not None}")
