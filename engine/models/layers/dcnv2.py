"""DCNv2: modulated deformable convolution (Zhu et al., CVPR 2019) over torchvision.ops.deform_conv2d.

y(p) = sum_k w_k * x(p + p_k + dp_k) * m_k: a plain conv whose k sampling points move by learnt offsets
dp_k and are weighted by learnt modulation scalars m_k in [0, 1]. A 3x3 conv (same stride/padding/dilation
as the main one) predicts 2*K offsets and K mask logits per output pixel; it starts at zero, so at
initialisation offsets are 0 and masks sigmoid(0) = 0.5 (mmcv's `ModulatedDeformConv2dPack` does the same).
"""
from __future__ import annotations

import math

import torch
from torch import Tensor, nn
from torchvision.ops import deform_conv2d


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
        out = deform_conv2d(x.float(), offset.float(), self.weight.float(),
                            None if self.bias is None else self.bias.float(),
                            stride=self.stride, padding=self.padding, dilation=self.dilation, mask=mask.float())
        return out.to(dtype)

    def extra_repr(self) -> str:
        return (f"{self.in_channels}, {self.out_channels}, kernel_size={self.kernel_size}, stride={self.stride}, "
                f"padding={self.padding}, dilation={self.dilation}, bias={self.bias is not None}")
