"""Hi-ResNet (Chen et al.): funnel module, multi-branch module of IA blocks, feature refinement (coarse + OCR).

- Funnel: [B,bands,H,W] -> 2 x (BN + 3x3 stride-2 conv) -> [B,C1,H/4,W/4] -> blocks[0] inverted bottlenecks.
- Layer 1: branches at 1/4, 1/8 (C1, C2), modules[0] modules of blocks[1] IA blocks per branch; layer 2:
  branches at 1/4, 1/8, 1/16 (C1, C2, C3), modules[1] modules of blocks[2] IA blocks per branch. Each
  module ends with cross-resolution fusion (up: BN + 1x1 + bilinear, down: BN + 3x3 stride 2).
- Refinement: the 3 branches upsampled to 1/4 and concatenated -> coarse logits (1x1 convs); OCR (soft object
  regions from the coarse logits, pixel-region attention, as HRNet-OCR) -> refined logits.
- Eval: probs = softmax of the mean of coarse and refined logits (1:1), bilinear x4 to the input size.
- Train: per head (coarse, refined) 0.3923 GD + 0.3923 LSCE (smoothing 0.1) + 0.2153 CEA on logits
  upsampled x4 -> {"loss_coarse_gd", "loss_coarse_lsce", "loss_coarse_cea", "loss_refined_*"}.
- Ablation switches: "ia_blocks" False = plain residual blocks; "ocr" False = no OCR and no refined head
  (coarse logits alone, only the loss_coarse_* losses); "edge_loss" False = no CEA terms.
Contract: engine.tasks.semantic (SemanticModel pads the batch to a multiple of 32 and crops back).
"""
from __future__ import annotations

from dataclasses import dataclass
from functools import partial
from typing import Any, Literal

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from engine.models.config import parse_config
from engine.models.layers.conv import conv_norm_relu
from engine.models.layers.norm import Norm, paired_group_norm
from engine.models.losses.hi_resnet import cea_loss, generalised_dice_loss, label_smoothing_ce
from engine.models.semantic.common import SemanticModel, pad_batch
from engine.models.semantic.hi_resnet_blocks import BasicBlock, Funnel, IABlock, MultiResolutionModule, down_fuse
from engine.spec import ModelSpec

# The sizes of the config's own "preset" key: "light" (CPU-friendly default) and "paper" (Table II: channels
# (48, 96, 192), blocks (4, 4, 12), modules (1, 4)). Size keys set explicitly in spec.config win.
SIZE_PRESETS: dict[str, dict[str, Any]] = {
    "light": {"channels": (24, 48, 96), "blocks": (1, 1, 2), "modules": (1, 1),
              "ocr_channels": 64, "ocr_key_channels": 32},
    "paper": {"channels": (48, 96, 192), "blocks": (4, 4, 12), "modules": (1, 4),
              "ocr_channels": 512, "ocr_key_channels": 256},
}


@dataclass(frozen=True)
class HiResNetConfig:
    """Hi-ResNet settings (the keys of spec.config). The five size keys left out (None) take the sizes of
    `preset` (SIZE_PRESETS), so {"preset": "paper"} stored in older checkpoints keeps building the paper's model.

    Presets (engine.models.MODELS["hi_resnet"].presets):
    - "paper": the paper's sizes (Table II);
    - "cpu": the light sizes with GroupNorm (from scratch at batch 2, BatchNorm's batch statistics stall the
      overfit proof: docs/overfit.md), as the `hi_resnet` row of research/train_nwpu_semantic.sh trains it.
    """

    preset: Literal["light", "paper"] = "light"  # sets channels, blocks, modules, ocr_channels, ocr_key_channels
    channels: tuple[int, int, int] | None = None  # C1, C2, C3 of the branches at 1/4, 1/8, 1/16
    blocks: tuple[int, int, int] | None = None  # funnel IB, layer-1 IA per branch, layer-2 IA per branch
    modules: tuple[int, int] | None = None  # multi-resolution modules of layers 1 and 2
    ocr_channels: int | None = None
    ocr_key_channels: int | None = None
    window_size: int = 8  # L: IA block self-attention windows of L x L pixels
    attention_head_channels: int = 8  # channels per attention head (C_i must be a multiple)
    depthwise_kernel: int = 7
    se_reduction: int = 4
    ia_blocks: bool = True  # False: plain residual blocks in the multi-branch module
    ocr: bool = True  # False: coarse head only (no OCR, no refined head)
    edge_loss: bool = True  # False: no CEA loss
    loss_weights: tuple[float, float, float] = (0.3923, 0.3923, 0.2153)  # GD, LSCE, CEA (per head)
    label_smoothing: float = 0.1
    cea_iterations: int = 10  # max-pool dilations: distances to edges capped at this many pixels
    cea_alpha: float = 2.0
    norm: Norm = "bn"  # "gn": every BatchNorm becomes a GroupNorm (paired_group_norm), batch-size independent

    def __post_init__(self) -> None:
        for key, value in SIZE_PRESETS[self.preset].items():
            if getattr(self, key) is None:
                object.__setattr__(self, key, value)


PRESETS: dict[str, dict[str, Any]] = {"paper": {"preset": "paper"}, "cpu": {"preset": "light", "norm": "gn"}}


@dataclass(frozen=True)
class HiResNetLosses:
    """Per head: weights[0] GD + weights[1] LSCE (`label_smoothing`) + weights[2] CEA (when `edge_loss`)."""

    weights: tuple[float, float, float] = (0.3923, 0.3923, 0.2153)
    label_smoothing: float = 0.1
    edge_loss: bool = True
    cea_iterations: int = 10
    cea_alpha: float = 2.0


def conv_bn_relu(in_channels: int, out_channels: int, kernel_size: int = 1) -> nn.Sequential:
    """[B,in,H,W] -> [B,out,H,W]: 'same' conv without bias, BatchNorm, ReLU."""
    return conv_norm_relu(in_channels, out_channels, kernel_size, "bn")


class ObjectContext(nn.Module):
    """OCR (Yuan et al.): features [B,C,h,w] + coarse logits [B,R,h,w] -> context-augmented [B,C,h,w].

    Soft object regions: region r's representation = sum over pixels of softmax_pixels(logits_r) * feature.
    Pixel-region attention: softmax over regions of <query(pixel), key(region)> / sqrt(key channels) weights
    the regions' values; the context is projected back to C and fused with the pixel's features (1x1 conv).
    """

    def __init__(self, channels: int, key_channels: int) -> None:
        super().__init__()
        self.key_channels = key_channels
        self.query = nn.Sequential(conv_bn_relu(channels, key_channels), conv_bn_relu(key_channels, key_channels))
        self.key = nn.Sequential(conv_bn_relu(channels, key_channels), conv_bn_relu(key_channels, key_channels))
        self.value = conv_bn_relu(channels, key_channels)
        self.up = conv_bn_relu(key_channels, channels)
        self.fuse = conv_bn_relu(2 * channels, channels)

    def forward(self, features: Tensor, coarse_logits: Tensor) -> Tensor:
        batch, channels, height, width = features.shape
        region_weights = torch.softmax(coarse_logits.flatten(2), dim=2)  # [B,R,hw]
        regions = torch.bmm(region_weights, features.flatten(2).transpose(1, 2))  # [B,R,C]
        regions = regions.transpose(1, 2).unsqueeze(3)  # [B,C,R,1]
        query = self.query(features).flatten(2).transpose(1, 2)  # [B,hw,key]
        key = self.key(regions).flatten(2)  # [B,key,R]
        value = self.value(regions).flatten(2).transpose(1, 2)  # [B,R,key]
        attention = torch.softmax(torch.bmm(query, key) / self.key_channels ** 0.5, dim=2)  # [B,hw,R]
        context = torch.bmm(attention, value).transpose(1, 2).reshape(batch, self.key_channels, height, width)
        return self.fuse(torch.cat([self.up(context), features], dim=1))


class HiResNet(SemanticModel):
    """[B,bands,H,W] (H, W multiples of 32) -> {"coarse", "refined"?} logits [B,K+1,H/4,W/4]; see module doc.

    Parts: funnel, to_eighth (the 1/8 branch), layer1, to_sixteenth (the 1/16 branch), layer2, coarse_head,
    and with OCR ocr_features, ocr, refined_head (all three or none); `losses` weighs the training losses.
    """

    def __init__(self, funnel: Funnel, to_eighth: nn.Module, layer1: nn.Sequential, to_sixteenth: nn.Module,
                 layer2: nn.Sequential, coarse_head: nn.Module, ocr_features: nn.Module | None = None,
                 ocr: ObjectContext | None = None, refined_head: nn.Module | None = None,
                 losses: HiResNetLosses = HiResNetLosses()) -> None:
        super().__init__()
        self.funnel = funnel
        self.to_eighth = to_eighth
        self.layer1 = layer1
        self.to_sixteenth = to_sixteenth
        self.layer2 = layer2
        self.coarse_head = coarse_head
        ocr_parts = (ocr_features, ocr, refined_head)
        if any(p is None for p in ocr_parts) and any(p is not None for p in ocr_parts):
            raise ValueError("Hi-ResNet's OCR needs ocr_features, ocr and refined_head together (or none)")
        self.use_ocr = ocr is not None
        if self.use_ocr:
            self.ocr_features, self.ocr, self.refined_head = ocr_parts
        self.loss_settings = losses

    def features(self, batch: Tensor) -> Tensor:
        """[B,bands,H,W] -> the three branches at 1/4 concatenated: [B,C1+C2+C3,H/4,W/4]."""
        quarter = self.funnel(batch)
        branches = [quarter, self.to_eighth(quarter)]
        for module in self.layer1:
            branches = module(branches)
        branches = [*branches, self.to_sixteenth(branches[1])]
        for module in self.layer2:
            branches = module(branches)
        size = branches[0].shape[-2:]
        upsampled = [F.interpolate(b, size=size, mode="bilinear", align_corners=False) for b in branches[1:]]
        return torch.cat([branches[0], *upsampled], dim=1)

    def head_logits(self, batch: Tensor) -> dict[str, Tensor]:
        """-> {"coarse": [B,K+1,H/4,W/4], "refined": same (only with OCR)}."""
        features = self.features(batch)
        coarse = self.coarse_head(features)
        if not self.use_ocr:
            return {"coarse": coarse}
        refined = self.refined_head(self.ocr(self.ocr_features(features), coarse))
        return {"coarse": coarse, "refined": refined}

    def logits(self, batch: Tensor) -> Tensor:
        """Mean of the heads' logits (coarse and refined 1:1), bilinear x4 -> [B,K+1,H,W]."""
        heads = list(self.head_logits(batch).values())
        combined = torch.stack(heads).mean(dim=0)
        return F.interpolate(combined, size=batch.shape[-2:], mode="bilinear", align_corners=False)

    def head_losses(self, heads: dict[str, Tensor], target_map: Tensor) -> dict[str, Tensor]:
        """Per head: weighted GD, LSCE and (with edge_loss) CEA on logits upsampled to the target size."""
        settings = self.loss_settings
        gd_weight, lsce_weight, cea_weight = settings.weights
        losses: dict[str, Tensor] = {}
        for name, logits in heads.items():
            full = F.interpolate(logits, size=target_map.shape[-2:], mode="bilinear", align_corners=False)
            losses[f"loss_{name}_gd"] = gd_weight * generalised_dice_loss(full, target_map)
            losses[f"loss_{name}_lsce"] = lsce_weight * label_smoothing_ce(full, target_map, settings.label_smoothing)
            if settings.edge_loss:
                losses[f"loss_{name}_cea"] = cea_weight * cea_loss(full, target_map, settings.cea_iterations,
                                                                   settings.cea_alpha)
        return losses

    def forward(self, images: list[Tensor], targets: list[dict] | None = None):
        """Train: images [C,h,w] + targets -> {name: weighted scalar loss}. Eval: -> [{"probs": [K+1,h,w]}]."""
        if not self.training:
            return super().forward(images)
        if targets is None:
            raise ValueError("training mode needs targets with a 'semantic' class map")
        batch, target_map, _ = pad_batch(images, targets, self.pad_multiple)
        return self.head_losses(self.head_logits(batch), target_map)


def build_hi_resnet(spec: ModelSpec) -> HiResNet:
    """Hi-ResNet for `spec.bands` bands and `spec.num_classes` foreground classes (+ background)."""
    cfg = parse_config(HiResNetConfig, spec.config, spec.architecture)
    c1, c2, c3 = cfg.channels
    funnel_blocks, layer1_blocks, layer2_blocks = cfg.blocks
    layer1_modules, layer2_modules = cfg.modules
    if cfg.ia_blocks:
        make_block = partial(IABlock, window=cfg.window_size, head_channels=cfg.attention_head_channels,
                             kernel=cfg.depthwise_kernel, se_reduction=cfg.se_reduction)
    else:
        make_block = BasicBlock
    funnel = Funnel(spec.bands, c1, funnel_blocks)
    to_eighth = nn.Sequential(down_fuse(c1, c2, 1), nn.ReLU(inplace=True))
    layer1 = nn.Sequential(*(MultiResolutionModule([c1, c2], layer1_blocks, make_block)
                             for _ in range(layer1_modules)))
    to_sixteenth = nn.Sequential(down_fuse(c2, c3, 1), nn.ReLU(inplace=True))
    layer2 = nn.Sequential(*(MultiResolutionModule([c1, c2, c3], layer2_blocks, make_block)
                             for _ in range(layer2_modules)))
    concat, outputs = c1 + c2 + c3, spec.num_classes + 1
    coarse_head = nn.Sequential(conv_bn_relu(concat, concat), nn.Conv2d(concat, outputs, 1))
    ocr_parts: tuple[nn.Module | None, ...] = (None, None, None)
    if cfg.ocr:
        ocr_parts = (conv_bn_relu(concat, cfg.ocr_channels, 3), ObjectContext(cfg.ocr_channels, cfg.ocr_key_channels),
                     nn.Conv2d(cfg.ocr_channels, outputs, 1))
    losses = HiResNetLosses(cfg.loss_weights, cfg.label_smoothing, cfg.edge_loss, cfg.cea_iterations, cfg.cea_alpha)
    model = HiResNet(funnel, to_eighth, layer1, to_sixteenth, layer2, coarse_head, *ocr_parts, losses=losses)
    return batchnorm_to_groupnorm(model) if cfg.norm == "gn" else model


def batchnorm_to_groupnorm(module: nn.Module) -> nn.Module:
    """`module` with every BatchNorm2d replaced, in place, by `paired_group_norm` of its channels (a model trained
    from scratch at batch 2 on differently padded images: statistics per image, the same in training and eval)."""
    for name, child in module.named_children():
        if isinstance(child, nn.BatchNorm2d):
            setattr(module, name, paired_group_norm(child.num_features))
        else:
            batchnorm_to_groupnorm(child)
    return module
