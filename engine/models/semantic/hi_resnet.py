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
Contract: engine.semantic (SemanticModel pads the batch to a multiple of 32 and crops back).
"""
from __future__ import annotations

from functools import partial
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from engine.models.semantic.common import SemanticModel, merged_config, pad_batch
from engine.models.semantic.hi_resnet_blocks import BasicBlock, Funnel, IABlock, MultiResolutionModule, down_fuse
from engine.semantic.hi_resnet_losses import cea_loss, generalised_dice_loss, label_smoothing_ce
from engine.spec import ModelSpec

# Sizes: "light" (CPU-friendly default) and "paper" (Table II: channels (48, 96, 192), blocks (4, 4, 12),
# modules (1, 4)). Keys set explicitly in spec.config override the preset.
PRESETS: dict[str, dict[str, Any]] = {
    "light": {"channels": [24, 48, 96], "blocks": [1, 1, 2], "modules": [1, 1],
              "ocr_channels": 64, "ocr_key_channels": 32},
    "paper": {"channels": [48, 96, 192], "blocks": [4, 4, 12], "modules": [1, 4],
              "ocr_channels": 512, "ocr_key_channels": 256},
}

DEFAULT_CONFIG: dict[str, Any] = {
    "preset": "light",  # light | paper: sets channels, blocks, modules, ocr_channels, ocr_key_channels
    **PRESETS["light"],  # channels (C1, C2, C3); blocks (funnel IB, layer-1 IA per branch, layer-2 IA per branch)
    "window_size": 8,  # L: IA block self-attention windows of L x L pixels
    "attention_head_channels": 8,  # channels per attention head (C_i must be a multiple)
    "depthwise_kernel": 7,
    "se_reduction": 4,
    "ia_blocks": True,  # False: plain residual blocks in the multi-branch module
    "ocr": True,  # False: coarse head only (no OCR, no refined head)
    "edge_loss": True,  # False: no CEA loss
    "loss_weights": [0.3923, 0.3923, 0.2153],  # GD, LSCE, CEA (per head)
    "label_smoothing": 0.1,
    "cea_iterations": 10,  # max-pool dilations: distances to edges capped at this many pixels
    "cea_alpha": 2.0,
}


def hi_resnet_config(spec: ModelSpec) -> dict[str, Any]:
    """DEFAULT_CONFIG, then the preset's sizes, then spec.config's explicit keys."""
    cfg = merged_config(DEFAULT_CONFIG, spec)
    if cfg["preset"] not in PRESETS:
        raise ValueError(f"unknown hi_resnet preset '{cfg['preset']}'; choose one of {', '.join(PRESETS)}")
    preset = {k: v for k, v in PRESETS[cfg["preset"]].items() if k not in spec.config}
    cfg = {**cfg, **preset}
    for key, length in (("channels", 3), ("blocks", 3), ("modules", 2), ("loss_weights", 3)):
        if len(cfg[key]) != length:
            raise ValueError(f"hi_resnet config '{key}' needs {length} values, got {cfg[key]}")
    return cfg


def conv_bn_relu(in_channels: int, out_channels: int, kernel_size: int = 1) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(in_channels, out_channels, kernel_size, padding=kernel_size // 2, bias=False),
                         nn.BatchNorm2d(out_channels), nn.ReLU(inplace=True))


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
    """[B,bands,H,W] (H, W multiples of 32) -> {"coarse", "refined"?} logits [B,K+1,H/4,W/4]; see module doc."""

    def __init__(self, bands: int, num_classes: int, cfg: dict[str, Any]) -> None:
        super().__init__()
        self.cfg = cfg
        c1, c2, c3 = (int(c) for c in cfg["channels"])
        funnel_blocks, layer1_blocks, layer2_blocks = (int(b) for b in cfg["blocks"])
        layer1_modules, layer2_modules = (int(m) for m in cfg["modules"])
        if cfg["ia_blocks"]:
            make_block = partial(IABlock, window=int(cfg["window_size"]),
                                 head_channels=int(cfg["attention_head_channels"]),
                                 kernel=int(cfg["depthwise_kernel"]), se_reduction=int(cfg["se_reduction"]))
        else:
            make_block = BasicBlock
        self.funnel = Funnel(bands, c1, funnel_blocks)
        self.to_eighth = nn.Sequential(down_fuse(c1, c2, 1), nn.ReLU(inplace=True))
        self.layer1 = nn.Sequential(*(MultiResolutionModule([c1, c2], layer1_blocks, make_block)
                                      for _ in range(layer1_modules)))
        self.to_sixteenth = nn.Sequential(down_fuse(c2, c3, 1), nn.ReLU(inplace=True))
        self.layer2 = nn.Sequential(*(MultiResolutionModule([c1, c2, c3], layer2_blocks, make_block)
                                      for _ in range(layer2_modules)))
        concat = c1 + c2 + c3
        outputs = num_classes + 1
        self.coarse_head = nn.Sequential(conv_bn_relu(concat, concat), nn.Conv2d(concat, outputs, 1))
        self.use_ocr = bool(cfg["ocr"])
        if self.use_ocr:
            ocr_channels = int(cfg["ocr_channels"])
            self.ocr_features = conv_bn_relu(concat, ocr_channels, 3)
            self.ocr = ObjectContext(ocr_channels, int(cfg["ocr_key_channels"]))
            self.refined_head = nn.Conv2d(ocr_channels, outputs, 1)

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
        gd_weight, lsce_weight, cea_weight = (float(w) for w in self.cfg["loss_weights"])
        losses: dict[str, Tensor] = {}
        for name, logits in heads.items():
            full = F.interpolate(logits, size=target_map.shape[-2:], mode="bilinear", align_corners=False)
            losses[f"loss_{name}_gd"] = gd_weight * generalised_dice_loss(full, target_map)
            losses[f"loss_{name}_lsce"] = lsce_weight * label_smoothing_ce(
                full, target_map, float(self.cfg["label_smoothing"]))
            if self.cfg["edge_loss"]:
                losses[f"loss_{name}_cea"] = cea_weight * cea_loss(
                    full, target_map, int(self.cfg["cea_iterations"]), float(self.cfg["cea_alpha"]))
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
    return HiResNet(spec.bands, spec.num_classes, hi_resnet_config(spec))
