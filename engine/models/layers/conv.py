"""Conv + norm + activation blocks."""
from __future__ import annotations

from torch import nn

from engine.models.layers.norm import group_norm, make_norm, paired_group_norm


def conv_norm_act(in_channels: int, out_channels: int, kernel_size: int = 3, dilation: int = 1,
                  norm: bool = True, act: bool = True) -> nn.Sequential:
    """[B, in, H, W] -> [B, out, H, W]: 'same' conv (bias only without norm), `group_norm`, ReLU."""
    layers: list[nn.Module] = [nn.Conv2d(in_channels, out_channels, kernel_size,
                                         padding=dilation * (kernel_size - 1) // 2, dilation=dilation, bias=not norm)]
    if norm:
        layers.append(group_norm(out_channels))
    if act:
        layers.append(nn.ReLU(inplace=True))
    return nn.Sequential(*layers)


def conv_norm_relu(in_channels: int, out_channels: int, kernel_size: int, norm: str) -> nn.Sequential:
    """[B,in,H,W] -> [B,out,H,W]: 'same' conv without bias, norm ("gn": `paired_group_norm` | "bn"), ReLU."""
    return nn.Sequential(nn.Conv2d(in_channels, out_channels, kernel_size, padding=kernel_size // 2, bias=False),
                         make_norm(norm, out_channels, paired_group_norm), nn.ReLU(inplace=True))
