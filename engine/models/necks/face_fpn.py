"""FACE-FPN of FACENet (Zhao et al., ITC 2025, Sec. 3.2; built on CE-FPN, Luo et al. 2021).

C2..C5 (strides 4..32) -> P2..P6 (strides 4..64), all with D channels:

    F2 = 1x1(C2);  F3 = 1x1(C3) + 1x1(PixelShuffle2(C4));  F4 = 1x1(C4) + 1x1(PixelShuffle2(C5))
    F'i = ASPP(Fi)                                         (1x1 + three dilated 3x3 + image pooling, concat, 1x1)
    SCE(C5) = PS2(3x3(C5)) + PS4(1x1(maxpool(C5))) + 1x1(GAP(C5))
    I = GN(maxpool(F'2) + maxpool(F'3) + F'4 + SCE(C5))    at stride 16 (the paper: their mean)
    R5 = maxpool(I);  R4 = I + F'4;  R3 = up(I) + F'3;  R2 = up(I) + F'2
    CA = sigmoid(fc1(GAP(I)) + fc2(GMP(I)));  Pi = CA * Ri;  P6 = maxpool_s2(P5)

Choices where the paper and CE-FPN leave room (documented, not switches):
- I lives at stride 16 (C4's size). The paper's Eq. 2 max-pools I for R4 and upsamples it for R3, R2,
  which only fits I at P4's size; CE-FPN builds I there too. Finer levels reach it by adaptive max
  pooling, the SCE output is resized to it bilinearly.
- SCE's middle branch: the paper writes global max pooling, yet a 1x1 map cannot become an H x W map
  by a 4x sub-pixel shuffle; CE-FPN uses a 3x3 max pool with stride 2, then 1x1 to 16D and PS4 (back to
  2x C5's size), which is what is built here. The image-pooling branch is broadcast.
- The sub-pixel shuffles are channel reorganisations only (C -> C/4); the 1x1 after them sets D channels.
- One ASPP per level (no weight sharing), dilations from the config, GroupNorm + ReLU in its branches,
  GroupNorm without ReLU after its 1x1 projection, and a GroupNorm on the SCE sum: the pyramid is then
  signed and zero-centred like an FPN's; I is normalised too (the max pools of the finer levels
  shift its mean up). With DeepLab's ReLU there and an unnormalised SCE, every level
  was non-negative (mean ~0.5, std ~0.5 at start) and SOLOv2's Dice mask branch collapsed within 40
  iterations: the dynamic kernels pushed all logits down along the features' constant component.
- No 3x3 output convs: the paper's CAG output Pi is the head's input (Eq. 5).
- No top-down sums before I: the paper integrates "P2 - P4" (never defined there) and calls R2 - R4 "a
  top-down hierarchy with F'2 - F'4 side connections"; its Eq. 2 adds F'i to the rescaled I only, which is
  what is built (I is summed from F'2..F'4 directly, not from FPN-style P4 = F'4, P3 = F'3 + up(P4), ...).
- The GroupNorms after ASPP's projection, on the SCE sum and on I remove each channel's spatially
  constant part as far as a group allows: with one channel per group (fpn_channels <= 32, the tiny test
  configs) ASPP's image pooling, SCE's GAP branch and CAG's average-pool input are cancelled exactly and
  get no gradient; from 2 channels per group on (4 at fpn_channels 128, 8 at 256) they act.
"""
from __future__ import annotations

from collections import OrderedDict

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from engine.models.layers.conv import conv_norm_act
from engine.models.layers.norm import group_norm


class ASPP(nn.Module):
    """Atrous spatial pyramid pooling: [B, C, H, W] -> [B, C, H, W]."""

    def __init__(self, channels: int, dilations: tuple[int, ...], norm: bool) -> None:
        super().__init__()
        self.branches = nn.ModuleList(
            [conv_norm_act(channels, channels, 1, norm=norm)]
            + [conv_norm_act(channels, channels, 3, dilation=d, norm=norm) for d in dilations])
        self.image_pool = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Conv2d(channels, channels, 1),
                                        nn.ReLU(inplace=True))
        # GroupNorm without ReLU: the pyramid stays signed and zero-centred like an FPN's outputs (see module doc)
        self.project = conv_norm_act(channels * (len(dilations) + 2), channels, 1, norm=norm, act=False)

    def forward(self, x: Tensor) -> Tensor:
        pooled = self.image_pool(x).expand(-1, -1, *x.shape[-2:])
        return self.project(torch.cat([branch(x) for branch in self.branches] + [pooled], dim=1))


class SubPixelContextEnhancement(nn.Module):
    """SCE: C5 [B, C5, h, w] -> [B, D, 2h, 2w] (local, pooled-context and global branches summed)."""

    def __init__(self, in_channels: int, channels: int, norm: bool = True) -> None:
        super().__init__()
        self.local = nn.Sequential(nn.Conv2d(in_channels, 4 * channels, 3, padding=1), nn.PixelShuffle(2))
        self.context = nn.Sequential(nn.MaxPool2d(3, stride=2, padding=1), nn.Conv2d(in_channels, 16 * channels, 1),
                                     nn.PixelShuffle(4))
        self.globe = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Conv2d(in_channels, channels, 1))
        self.norm = group_norm(channels) if norm else nn.Identity()

    def forward(self, c5: Tensor) -> Tensor:
        local = self.local(c5)
        context = self.context(c5)
        if context.shape[-2:] != local.shape[-2:]:  # odd C5 size: the stride-2 pool rounded up
            context = F.interpolate(context, size=local.shape[-2:], mode="bilinear", align_corners=False)
        return self.norm(local + context + self.globe(c5))


class ChannelAttentionGuidance(nn.Module):
    """CAG: I [B, D, H, W] -> channel weights [B, D, 1, 1] = sigmoid(fc1(GAP(I)) + fc2(GMP(I)))."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.fc_avg = nn.Conv2d(channels, channels, 1)
        self.fc_max = nn.Conv2d(channels, channels, 1)

    def forward(self, integrated: Tensor) -> Tensor:
        avg = self.fc_avg(F.adaptive_avg_pool2d(integrated, 1))
        peak = self.fc_max(F.adaptive_max_pool2d(integrated, 1))
        return (avg + peak).sigmoid()


class _SubPixelSkip(nn.Module):
    """F = 1x1(C_i) + 1x1(PixelShuffle2(C_{i+1})): [B, Ci, H, W], [B, Ci+1, H/2, W/2] -> [B, D, H, W]."""

    def __init__(self, channels_here: int, channels_above: int, out_channels: int, norm: bool) -> None:
        super().__init__()
        if channels_above % 4:
            raise ValueError(f"sub-pixel skip needs a channel count divisible by 4, got {channels_above}")
        self.lateral = conv_norm_act(channels_here, out_channels, 1, norm=norm, act=False)
        self.shuffle = nn.PixelShuffle(2)
        self.skip = conv_norm_act(channels_above // 4, out_channels, 1, norm=norm, act=False)

    def forward(self, here: Tensor, above: Tensor) -> Tensor:
        return self.lateral(here) + self.skip(self.shuffle(above))


class FaceFPN(nn.Module):
    """{"c2".."c5"} -> {"c2","c3","c4","c5","pool"} = P2..P6 with `out_channels` channels (BackboneWithFPN's keys)."""

    def __init__(self, in_channels: list[int], out_channels: int, aspp_dilations: tuple[int, ...],
                 norm: bool = True) -> None:
        super().__init__()
        c2, c3, c4, c5 = in_channels
        self.lateral2 = conv_norm_act(c2, out_channels, 1, norm=norm, act=False)
        self.skip3 = _SubPixelSkip(c3, c4, out_channels, norm)
        self.skip4 = _SubPixelSkip(c4, c5, out_channels, norm)
        self.aspp = nn.ModuleList(ASPP(out_channels, aspp_dilations, norm) for _ in range(3))
        self.sce = SubPixelContextEnhancement(c5, out_channels, norm)
        self.cag = ChannelAttentionGuidance(out_channels)
        self.integration_norm = group_norm(out_channels) if norm else nn.Identity()

    def forward(self, features: OrderedDict[str, Tensor]) -> OrderedDict[str, Tensor]:
        c2, c3, c4, c5 = (features[k] for k in ("c2", "c3", "c4", "c5"))
        f2 = self.aspp[0](self.lateral2(c2))
        f3 = self.aspp[1](self.skip3(c3, c4))
        f4 = self.aspp[2](self.skip4(c4, c5))
        size4, size5 = c4.shape[-2:], c5.shape[-2:]
        sce = F.interpolate(self.sce(c5), size=size4, mode="bilinear", align_corners=False)
        integrated = self.integration_norm(
            F.adaptive_max_pool2d(f2, size4) + F.adaptive_max_pool2d(f3, size4) + f4 + sce)
        weights = self.cag(integrated)
        r5 = F.adaptive_max_pool2d(integrated, size5)
        r4 = integrated + f4
        r3 = _upsample(integrated, f3) + f3
        r2 = _upsample(integrated, f2) + f2
        p2, p3, p4, p5 = (weights * r for r in (r2, r3, r4, r5))
        p6 = F.max_pool2d(p5, 1, stride=2)
        return OrderedDict(c2=p2, c3=p3, c4=p4, c5=p5, pool=p6)


class BackboneWithFaceFPN(nn.Module):
    """Trunk (C2..C5) + FACE-FPN -> {"c2".."c5", "pool"} (P2..P6), like mask_rcnn.BackboneWithFPN."""

    def __init__(self, body: nn.Module, in_channels: list[int], out_channels: int,
                 aspp_dilations: tuple[int, ...], norm: bool = True) -> None:
        super().__init__()
        self.body = body
        self.fpn = FaceFPN(in_channels, out_channels, aspp_dilations, norm)
        self.out_channels = out_channels

    def forward(self, x: Tensor) -> OrderedDict[str, Tensor]:
        return self.fpn(self.body(x))


def _upsample(x: Tensor, like: Tensor) -> Tensor:
    return F.interpolate(x, size=like.shape[-2:], mode="bilinear", align_corners=False)
