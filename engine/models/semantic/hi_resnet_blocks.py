"""Hi-ResNet's building blocks: funnel (BN-before-conv downsampling + inverted bottlenecks), the IA block
(SE + window self-attention + large-kernel depth-wise conv), a plain residual block for the ablation, and
the multi-resolution module with cross-resolution fusion. Every block keeps [B,C,H,W] shapes unless noted."""
from __future__ import annotations

import torch.nn.functional as F
from torch import Tensor, nn


def bn_conv(in_channels: int, out_channels: int, kernel_size: int, stride: int = 1) -> nn.Sequential:
    """BN then conv (the paper puts BN before the conv when resampling): [B,in,H,W] -> [B,out,H/s,W/s]."""
    return nn.Sequential(nn.BatchNorm2d(in_channels),
                         nn.Conv2d(in_channels, out_channels, kernel_size, stride, kernel_size // 2, bias=False))


class InvertedBottleneck(nn.Module):
    """3x3 conv, 1x1 expanding `expansion`x, 1x1 back; residual add with no activation after it (linear)."""

    def __init__(self, channels: int, expansion: int = 4) -> None:
        super().__init__()
        wide = channels * expansion
        self.body = nn.Sequential(
            nn.Conv2d(channels, channels, 3, padding=1, bias=False), nn.BatchNorm2d(channels),
            nn.Conv2d(channels, wide, 1, bias=False), nn.BatchNorm2d(wide), nn.GELU(),
            nn.Conv2d(wide, channels, 1, bias=False), nn.BatchNorm2d(channels))

    def forward(self, x: Tensor) -> Tensor:
        return x + self.body(x)


class Funnel(nn.Module):
    """[B,bands,H,W] -> [B,C,H/4,W/4]: 2 x (BN + 3x3 stride-2 conv + ReLU), then `blocks` inverted bottlenecks."""

    def __init__(self, bands: int, channels: int, blocks: int) -> None:
        super().__init__()
        self.down1 = nn.Sequential(bn_conv(bands, channels, 3, 2), nn.ReLU(inplace=True))
        self.down2 = nn.Sequential(bn_conv(channels, channels, 3, 2), nn.ReLU(inplace=True))
        self.stem = nn.Sequential(*(InvertedBottleneck(channels) for _ in range(blocks)))

    def forward(self, x: Tensor) -> Tensor:
        return self.stem(self.down2(self.down1(x)))


class SqueezeExcitation(nn.Module):
    """Channel attention: x * sigmoid(MLP(global average of x))."""

    def __init__(self, channels: int, reduction: int = 4) -> None:
        super().__init__()
        hidden = max(channels // reduction, 4)
        self.mlp = nn.Sequential(nn.Linear(channels, hidden), nn.ReLU(inplace=True), nn.Linear(hidden, channels))

    def forward(self, x: Tensor) -> Tensor:
        return x * self.mlp(x.mean(dim=(2, 3))).sigmoid()[:, :, None, None]


class WindowSelfAttention(nn.Module):
    """Multi-head self-attention inside non-overlapping L x L windows: C x H x W is reshaped into
    (H W / L^2) windows of L^2 tokens. H, W not divisible by L are zero-padded bottom/right and the padded
    tokens are masked out as keys, so the output at real pixels ignores the padding. Shape kept."""

    def __init__(self, channels: int, window: int, head_channels: int) -> None:
        super().__init__()
        if channels % head_channels:
            raise ValueError(f"{channels} channels do not split into heads of {head_channels} channels")
        self.window = window
        self.attention = nn.MultiheadAttention(channels, channels // head_channels, batch_first=True)

    def forward(self, x: Tensor) -> Tensor:
        batch, channels, height, width = x.shape
        size = self.window
        pad_h, pad_w = -height % size, -width % size
        padded = F.pad(x, (0, pad_w, 0, pad_h))
        rows, cols = (height + pad_h) // size, (width + pad_w) // size
        # [B,C,rows*L,cols*L] -> [B*rows*cols, L*L, C]
        tokens = (padded.reshape(batch, channels, rows, size, cols, size)
                  .permute(0, 2, 4, 3, 5, 1).reshape(batch * rows * cols, size * size, channels))
        mask = None
        if pad_h or pad_w:
            is_pad = x.new_ones((1, 1, height, width))
            is_pad = F.pad(is_pad, (0, pad_w, 0, pad_h)) == 0
            mask = (is_pad.reshape(1, rows, size, cols, size).permute(0, 1, 3, 2, 4)
                    .reshape(rows * cols, size * size).repeat(batch, 1))
        out, _ = self.attention(tokens, tokens, tokens, key_padding_mask=mask, need_weights=False)
        out = (out.reshape(batch, rows, cols, size, size, channels).permute(0, 5, 1, 3, 2, 4)
               .reshape(batch, channels, rows * size, cols * size))
        return out[:, :, :height, :width]


class IABlock(nn.Module):
    """Information aggregation block: SE attention; BN + window MHSA with a skip; BN + depth-wise
    `kernel` x `kernel` conv with a skip; 1x1 conv + BN + GELU; a skip over the whole block."""

    def __init__(self, channels: int, window: int = 8, head_channels: int = 8, kernel: int = 7,
                 se_reduction: int = 4) -> None:
        super().__init__()
        self.se = SqueezeExcitation(channels, se_reduction)
        self.attention_norm = nn.BatchNorm2d(channels)
        self.attention = WindowSelfAttention(channels, window, head_channels)
        self.depthwise = nn.Sequential(nn.BatchNorm2d(channels),
                                       nn.Conv2d(channels, channels, kernel, padding=kernel // 2, groups=channels))
        self.pointwise = nn.Sequential(nn.Conv2d(channels, channels, 1, bias=False), nn.BatchNorm2d(channels),
                                       nn.GELU())

    def forward(self, x: Tensor) -> Tensor:
        y = self.se(x)
        y = y + self.attention(self.attention_norm(y))
        y = y + self.depthwise(y)
        return x + self.pointwise(y)


class BasicBlock(nn.Module):
    """Plain residual block (the "ia_blocks": False ablation): 2 x (3x3 conv + BN), skip, ReLU."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.body = nn.Sequential(
            nn.Conv2d(channels, channels, 3, padding=1, bias=False), nn.BatchNorm2d(channels), nn.ReLU(inplace=True),
            nn.Conv2d(channels, channels, 3, padding=1, bias=False), nn.BatchNorm2d(channels))

    def forward(self, x: Tensor) -> Tensor:
        return F.relu(x + self.body(x))


class UpFuse(nn.Module):
    """Lower-resolution branch -> higher one: BN + 1x1 conv, then bilinear resize to the target size."""

    def __init__(self, in_channels: int, out_channels: int) -> None:
        super().__init__()
        self.project = bn_conv(in_channels, out_channels, 1)

    def forward(self, x: Tensor, size: tuple[int, int]) -> Tensor:
        return F.interpolate(self.project(x), size=size, mode="bilinear", align_corners=False)


def down_fuse(in_channels: int, out_channels: int, steps: int) -> nn.Sequential:
    """Higher-resolution branch -> `steps` halvings lower: (BN + 3x3 stride-2 conv) per step, ReLU between."""
    layers: list[nn.Module] = []
    for step in range(steps):
        last = step == steps - 1
        layers.append(bn_conv(in_channels, out_channels if last else in_channels, 3, 2))
        if not last:
            layers.append(nn.ReLU(inplace=True))
    return nn.Sequential(*layers)


class MultiResolutionModule(nn.Module):
    """Parallel branches (channels[i] at 1/(4 * 2^i)), `blocks` blocks each, then every output sums all
    branches resampled to its resolution (identity / UpFuse / down_fuse), then ReLU.
    list of [B,C_i,H_i,W_i] -> same shapes."""

    def __init__(self, channels: list[int], blocks: int, make_block) -> None:
        super().__init__()
        self.branches = nn.ModuleList(nn.Sequential(*(make_block(c) for _ in range(blocks))) for c in channels)
        self.fuse = nn.ModuleList()
        for i, out_channels in enumerate(channels):
            row = nn.ModuleList()
            for j, in_channels in enumerate(channels):
                if j == i:
                    row.append(nn.Identity())
                elif j > i:
                    row.append(UpFuse(in_channels, out_channels))
                else:
                    row.append(down_fuse(in_channels, out_channels, i - j))
            self.fuse.append(row)

    def forward(self, features: list[Tensor]) -> list[Tensor]:
        features = [branch(x) for branch, x in zip(self.branches, features, strict=True)]
        fused = []
        for i, row in enumerate(self.fuse):
            size = features[i].shape[-2:]
            total = features[i]
            for j, layer in enumerate(row):
                if j < i:
                    total = total + layer(features[j])
                elif j > i:
                    total = total + layer(features[j], size)
            fused.append(F.relu(total))
        return fused
