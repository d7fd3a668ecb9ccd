"""ResNet-18/50 feature extractor (C2..C5) for training from scratch, any band count.

GroupNorm (32 groups) replaces BatchNorm by default: detection batches of 1-4 images make batch
statistics useless, and no pretrained BN statistics exist here to freeze.
"""
from __future__ import annotations

from collections import OrderedDict

from torch import Tensor, nn
from torchvision.models import resnet18, resnet50

from engine.models.layers.norm import group_norm


class ResNetFeatures(nn.Module):
    """ResNet trunk returning {"c2": [B,C2,H/4,W/4], ..., "c5": [B,C5,H/32,W/32]}."""

    def __init__(self, depth: int = 18, in_channels: int = 1, norm: str = "gn") -> None:
        super().__init__()
        builders = {18: resnet18, 50: resnet50}
        if depth not in builders:
            raise ValueError(f"ResNet depth {depth} not supported; choose one of {sorted(builders)}")
        norm_layer = group_norm if norm == "gn" else nn.BatchNorm2d
        net = builders[depth](weights=None, norm_layer=norm_layer)
        net.conv1 = nn.Conv2d(in_channels, 64, kernel_size=7, stride=2, padding=3, bias=False)
        nn.init.kaiming_normal_(net.conv1.weight, mode="fan_out", nonlinearity="relu")
        self.stem = nn.Sequential(net.conv1, net.bn1, net.relu, net.maxpool)
        self.layer1, self.layer2, self.layer3, self.layer4 = net.layer1, net.layer2, net.layer3, net.layer4
        width = 64 if depth == 18 else 256
        self.out_channels = [width, width * 2, width * 4, width * 8]

    def forward(self, x: Tensor) -> OrderedDict[str, Tensor]:
        c2 = self.layer1(self.stem(x))
        c3 = self.layer2(c2)
        c4 = self.layer3(c3)
        c5 = self.layer4(c4)
        return OrderedDict(c2=c2, c3=c3, c4=c4, c5=c5)

