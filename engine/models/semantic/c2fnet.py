"""C2FNet (Chen et al., "Look Twice and Closer"): a coarse-to-fine wrapper around any two semantic models.

Pipeline (eval): the coarse model gives class probabilities P_c [K+1,H,W]; the pixels whose argmax is a
small class form the small-object map; a `window` x `window` window sliding with `stride` counts its
small-object pixels (integral image, windows clamped to the image, the last window flush with the
bottom/right edge, an image smaller than the window = one window); the `top_k` windows with a count > 0
are cut from the image, upsampled by `zoom`, segmented by the fine binary model (small object vs rest),
its probability p_f brought back to patch size, and merged with P_c by `aggregate` (the paper's Eq. 1).

Choices where the paper is ambiguous (documented here, switches where they matter):
- Eq. 1, case 1 (p_f < 0.5, coarse says small object) reads "1 - p_f + p_c" without saying which class c.
  Adding 1 - p_f to a small class could never change the decision, so by default (`case1_rule`
  "other") the fine model's background vote 1 - p_f goes to the most probable NON-small class, mirroring
  case 2 (its foreground vote p_f goes to the most probable small class). `case1_rule` "literal": the
  coarse (small) class gets 1 - p_f + p_c, as the sentence reads.
- The softmax renormalisation is applied at the pixels where case 1 or case 2 fired, over all K+1
  classes; every other pixel keeps P_c unchanged ("we directly use p_c"), as does a patch whose coarse
  map holds no small class.
- Overlapping patches: the fine probabilities are averaged over the patches covering a pixel, then
  aggregated once (order-independent). Optional NMS on the windows (`window_nms_iou`), off in the paper.
- Training runs both stages in one module (the trainer sums the losses): the coarse model's losses on the
  whole images ("coarse_" prefix, skipped when `train_coarse` is False, i.e. the paper's schedule with a
  trained, fixed coarse model) + the fine model's losses ("fine_" prefix) on patches chosen from the
  GROUND-TRUTH small-object pixels (top `train_top_k` windows by count, one random window for an image
  without any), binary targets (1 small class, 0 other, IGNORE_INDEX kept), zoom applied (image
  bilinear, labels nearest). `refine` only switches the eval path (False = coarse model only, same weights).
"""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal, get_args

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torchvision.ops import nms

from engine.models.config import SubModel, parse_config
from engine.spec import IGNORE_INDEX, ClassInfo, ModelSpec

Case1Rule = Literal["other", "literal"]
CASE1_RULES = get_args(Case1Rule)


@dataclass(frozen=True)
class C2FNetConfig:
    """C2FNet settings (the keys of spec.config); defaults are the paper's window sizes.

    `coarse` and `fine` name any semantic architecture and its config ({"architecture": ..., "config": {...}});
    their configs are checked by their own parsers when built (and by engine.models.resolve_config).
    Presets (engine.models.MODELS["c2fnet"].presets):
    - "paper": 128 px windows at stride 32, 32 patches, zoom 2 (the paper's best), both models Semantic FPN at
      its paper sizes (ResNet-50, FPN 256), all foreground classes small (name them with `small_classes`);
    - "cpu": the `c2fnet` row of scripts/train_nwpu_semantic.sh: Semantic FPN on the EfficientNet-Lite0 ImageNet
      trunk as both models, NWPU VHR-10's small classes (vehicle, ship, storage_tank), 128 px windows at
      stride 32, 32 patches at inference and 4 in training, no zoom, the coarse model kept fixed (trained first).
    """

    coarse: SubModel = SubModel()  # any semantic architecture, all K+1 classes
    fine: SubModel = SubModel()  # binary: built with one class "small object"
    small_classes: tuple[str, ...] | None = None  # class NAMES from spec.classes; None = every foreground class
    window: int = 128  # pixels, square sliding window (paper: 128)
    stride: int = 32  # pixels (paper: 32)
    top_k: int = 32  # patches per image at inference (paper: 32)
    train_top_k: int | None = None  # patches per image in training; None = top_k
    zoom: float = 1.0  # patch upsampling factor before the fine model (paper: 1-4, 2 best by a hair)
    window_nms_iou: float | None = None  # None = no suppression (paper); else IoU above which a window drops
    refine: bool = True  # False = coarse model only at inference
    train_coarse: bool = True  # False = coarse model kept fixed (no coarse losses)
    case1_rule: Case1Rule = "other"  # see the module docstring
    fine_batch_size: int = 32  # patches per fine-model forward at inference

    def __post_init__(self) -> None:
        if min(self.window, self.stride, self.top_k, self.fine_batch_size, self.train_top_k or 1) < 1:
            raise ValueError("c2fnet config: window, stride, top_k, train_top_k and fine_batch_size must be >= 1")
        if self.zoom < 1.0:
            raise ValueError(f"c2fnet config 'zoom': must be >= 1 (patches are enlarged), got {self.zoom}")


_LITE0_FPN = {"architecture": "semantic_fpn", "config": {"backbone": "efficientnet_lite0", "pretrained": True}}
_PAPER_FPN = {"architecture": "semantic_fpn", "config": {"backbone": "resnet50", "fpn_channels": 256}}
PRESETS: dict[str, dict[str, Any]] = {
    "paper": {"coarse": _PAPER_FPN, "fine": _PAPER_FPN, "window": 128, "stride": 32, "top_k": 32, "zoom": 2.0},
    "cpu": {"coarse": _LITE0_FPN, "fine": _LITE0_FPN, "small_classes": ["vehicle", "ship", "storage_tank"],
            "window": 128, "stride": 32, "top_k": 32, "train_top_k": 4, "zoom": 1.0, "train_coarse": False},
}


def aggregate(coarse_probs: Tensor, fine_prob: Tensor, small_ids: list[int], case1_rule: str = "other") -> Tensor:
    """The paper's probabilistic aggregation (Eq. 1) of one patch -> probabilities [K+1,h,w].

    coarse_probs [K+1,h,w] (softmax of the coarse model), fine_prob [h,w] (fine model's small-object
    probability), small_ids: class indices of the small classes. Per pixel, with c* = coarse argmax:
    - case 1, c* small and p_f < 0.5: score(c') = p_c(c') + 1 - p_f for c' = the most probable non-small
      class (`case1_rule` "other") or c' = c* ("literal");
    - case 2, c* not small and p_f >= 0.5: score(s) = p_c(s) + p_f for s = the most probable small class;
    - other classes keep score = p_c; the case pixels become softmax(score) over the K+1 classes;
    - any other pixel (no conflict), or every pixel when no pixel's c* is small: p_c unchanged.
    """
    if case1_rule not in CASE1_RULES:
        raise ValueError(f"unknown case1_rule '{case1_rule}'; choose one of {', '.join(CASE1_RULES)}")
    num_classes = coarse_probs.shape[0]
    is_small = torch.zeros(num_classes, dtype=torch.bool, device=coarse_probs.device)
    is_small[list(small_ids)] = True
    if not bool(is_small.any()) or bool(is_small.all()):
        return coarse_probs.clone()
    coarse_class = coarse_probs.argmax(0)
    coarse_small = is_small[coarse_class]
    if not bool(coarse_small.any()):
        return coarse_probs.clone()
    fine_small = fine_prob >= 0.5
    case1 = coarse_small & ~fine_small
    case2 = ~coarse_small & fine_small
    neg_inf = torch.finfo(coarse_probs.dtype).min
    best_small = coarse_probs.masked_fill(~is_small[:, None, None], neg_inf).argmax(0)
    best_other = coarse_probs.masked_fill(is_small[:, None, None], neg_inf).argmax(0)
    case1_class = best_other if case1_rule == "other" else coarse_class
    scores = coarse_probs.clone()
    scores.scatter_add_(0, case1_class[None], ((1.0 - fine_prob) * case1)[None].to(scores.dtype))
    scores.scatter_add_(0, best_small[None], (fine_prob * case2)[None].to(scores.dtype))
    return torch.where((case1 | case2)[None], torch.softmax(scores, dim=0), coarse_probs)


def window_starts(length: int, window: int, stride: int) -> list[int]:
    """Start offsets of a window sliding over `length` pixels: 0, stride, ..., the last one flush with the
    end (length - window); [0] when the window is longer than the axis."""
    if length <= window:
        return [0]
    starts = list(range(0, length - window + 1, stride))
    if starts[-1] != length - window:
        starts.append(length - window)
    return starts


def window_grid(height: int, width: int, window: int, stride: int, device=None) -> Tensor:
    """All sliding-window boxes of an image, raster order -> int64 [N,4] (x0, y0, x1, y1), pixels,
    each window clamped to the image (min(window, size) wide)."""
    ys = torch.tensor(window_starts(height, window, stride), device=device)
    xs = torch.tensor(window_starts(width, window, stride), device=device)
    y0, x0 = torch.meshgrid(ys, xs, indexing="ij")
    y0, x0 = y0.reshape(-1), x0.reshape(-1)
    return torch.stack([x0, y0, x0 + min(window, width), y0 + min(window, height)], dim=1)


def window_counts(small_map: Tensor, boxes: Tensor) -> Tensor:
    """small_map [H,W] (bool or 0/1), boxes int64 [N,4] xyxy -> number of small pixels per box [N] (int64),
    from an integral image."""
    integral = F.pad(small_map.to(torch.int64).cumsum(0).cumsum(1), (1, 0, 1, 0))
    x0, y0, x1, y1 = boxes.unbind(1)
    return integral[y1, x1] - integral[y0, x1] - integral[y1, x0] + integral[y0, x0]


def select_windows(small_map: Tensor, window: int, stride: int, top_k: int,
                   nms_iou: float | None = None) -> tuple[Tensor, Tensor]:
    """small_map [H,W] -> (boxes int64 [n,4] xyxy, counts [n]): the top_k windows with the most small-object
    pixels (count > 0), highest first (ties: raster order); with `nms_iou`, a window overlapping a
    higher-count one by IoU > nms_iou is dropped first."""
    height, width = small_map.shape[-2:]
    boxes = window_grid(height, width, window, stride, small_map.device)
    counts = window_counts(small_map, boxes)
    keep = counts > 0
    boxes, counts = boxes[keep], counts[keep]
    order = torch.sort(counts, descending=True, stable=True).indices
    boxes, counts = boxes[order], counts[order]
    if nms_iou is not None and len(boxes) > 1:
        # scores strictly decreasing with the sort order, so nms keeps the count/raster priority
        priority = torch.arange(len(boxes), 0, -1, device=boxes.device, dtype=torch.float32)
        kept = nms(boxes.float(), priority, float(nms_iou))
        boxes, counts = boxes[kept], counts[kept]
    return boxes[:top_k], counts[:top_k]


def zoom_image(image: Tensor, zoom: float) -> Tensor:
    """[C,h,w] -> [C,round(h*zoom),round(w*zoom)] bilinear (unchanged for zoom 1)."""
    if zoom == 1.0:
        return image
    size = (round(image.shape[-2] * zoom), round(image.shape[-1] * zoom))
    return F.interpolate(image[None], size=size, mode="bilinear", align_corners=False)[0]


def zoom_labels(labels: Tensor, zoom: float) -> Tensor:
    """int64 [h,w] -> [round(h*zoom),round(w*zoom)] nearest (IGNORE_INDEX kept)."""
    if zoom == 1.0:
        return labels
    size = (round(labels.shape[-2] * zoom), round(labels.shape[-1] * zoom))
    return F.interpolate(labels[None, None].float(), size=size, mode="nearest")[0, 0].to(torch.int64)


class C2FNet(nn.Module):
    """Coarse model + binary fine model on the small-object windows; forward follows engine.tasks.semantic."""

    def __init__(self, coarse: nn.Module, fine: nn.Module, small_ids: list[int], window: int = 128,
                 stride: int = 32, top_k: int = 32, train_top_k: int | None = None, zoom: float = 1.0,
                 window_nms_iou: float | None = None, refine: bool = True, train_coarse: bool = True,
                 case1_rule: str = "other", fine_batch_size: int = 32) -> None:
        super().__init__()
        if window < 1 or stride < 1 or top_k < 1 or fine_batch_size < 1:
            raise ValueError("window, stride, top_k and fine_batch_size must be >= 1")
        if zoom < 1.0:
            raise ValueError(f"zoom must be >= 1 (patches are enlarged), got {zoom}")
        if case1_rule not in CASE1_RULES:
            raise ValueError(f"unknown case1_rule '{case1_rule}'; choose one of {', '.join(CASE1_RULES)}")
        if not small_ids:
            raise ValueError("C2FNet needs at least one small class")
        self.coarse = coarse
        self.fine = fine
        self.small_ids = [int(i) for i in small_ids]
        self.window, self.stride, self.top_k = int(window), int(stride), int(top_k)
        self.train_top_k = int(train_top_k) if train_top_k is not None else self.top_k
        self.zoom = float(zoom)
        self.window_nms_iou = window_nms_iou
        self.refine = bool(refine)
        self.train_coarse = bool(train_coarse)
        self.case1_rule = case1_rule
        self.fine_batch_size = int(fine_batch_size)

    def is_small(self, class_map: Tensor) -> Tensor:
        """int64 class map [H,W] -> bool [H,W]: pixel in a small class (IGNORE_INDEX is not)."""
        return torch.isin(class_map, torch.tensor(self.small_ids, device=class_map.device))

    def forward(self, images: list[Tensor], targets: list[dict] | None = None):
        """Train: list of [C,h,w] + targets -> {"coarse_*", "fine_*"} losses. Eval: -> [{"probs": [K+1,h,w]}]."""
        if self.training:
            if targets is None:
                raise ValueError("training mode needs targets with a 'semantic' class map")
            return self.train_losses(images, targets)
        coarse_outputs = self.coarse(images)
        if not self.refine:
            return coarse_outputs
        return [{"probs": self.refine_image(image, out["probs"])} for image, out in zip(images, coarse_outputs)]

    def refine_image(self, image: Tensor, coarse_probs: Tensor) -> Tensor:
        """image [C,H,W], coarse probs [K+1,H,W] -> aggregated probs [K+1,H,W] (unchanged outside the patches)."""
        small_map = self.is_small(coarse_probs.argmax(0))
        boxes, _ = select_windows(small_map, self.window, self.stride, self.top_k, self.window_nms_iou)
        if len(boxes) == 0:
            return coarse_probs
        fine_sum = torch.zeros_like(coarse_probs[0])
        cover = torch.zeros_like(coarse_probs[0])
        box_list = boxes.tolist()
        for first in range(0, len(box_list), self.fine_batch_size):
            chunk = box_list[first:first + self.fine_batch_size]
            patches = [zoom_image(image[:, y0:y1, x0:x1], self.zoom) for x0, y0, x1, y1 in chunk]
            for (x0, y0, x1, y1), out in zip(chunk, self.fine(patches)):
                fine_prob = out["probs"][1]
                if fine_prob.shape != (y1 - y0, x1 - x0):
                    fine_prob = F.interpolate(fine_prob[None, None], size=(y1 - y0, x1 - x0), mode="bilinear",
                                              align_corners=False)[0, 0]
                fine_sum[y0:y1, x0:x1] += fine_prob.to(fine_sum.dtype)
                cover[y0:y1, x0:x1] += 1.0
        covered = cover > 0
        fine_mean = fine_sum / cover.clamp(min=1.0)
        merged = aggregate(coarse_probs, fine_mean, self.small_ids, self.case1_rule)
        return torch.where(covered[None], merged, coarse_probs)

    def train_losses(self, images: list[Tensor], targets: list[dict]) -> dict[str, Tensor]:
        """Coarse losses on the images + fine losses on ground-truth small-object windows (binary targets)."""
        losses: dict[str, Tensor] = {}
        if self.train_coarse:
            losses.update({f"coarse_{name}": value for name, value in self.coarse(images, targets).items()})
        patches: list[Tensor] = []
        patch_targets: list[dict] = []
        for image, target in zip(images, targets):
            if "semantic" not in target:
                raise KeyError("semantic models need targets with a 'semantic' [H, W] class map")
            labels = target["semantic"].to(device=image.device, dtype=torch.int64)
            small = self.is_small(labels)
            boxes, _ = select_windows(small, self.window, self.stride, self.train_top_k, self.window_nms_iou)
            if len(boxes) == 0:  # no small object: one random window as a negative example
                grid = window_grid(*labels.shape, self.window, self.stride, image.device)
                boxes = grid[torch.randint(len(grid), (1,))]
            binary = torch.where(labels == IGNORE_INDEX, torch.full_like(labels, IGNORE_INDEX), small.long())
            for x0, y0, x1, y1 in boxes.tolist():
                patches.append(zoom_image(image[:, y0:y1, x0:x1], self.zoom))
                patch_targets.append({"semantic": zoom_labels(binary[y0:y1, x0:x1], self.zoom)})
        losses.update({f"fine_{name}": value for name, value in self.fine(patches, patch_targets).items()})
        return losses


def small_class_ids(spec: ModelSpec, names: list[str] | None) -> list[int]:
    """Small class names -> model labels (1..K) via spec.classes; None -> every foreground class."""
    if names is None:
        return [c.id for c in spec.classes]
    by_name = {c.name: c.id for c in spec.classes}
    missing = [n for n in names if n not in by_name]
    if missing:
        raise ValueError(f"small_classes {missing} not among the spec's classes {sorted(by_name)}")
    return [by_name[n] for n in names]


def build_c2fnet(spec: ModelSpec, build_part: Callable[[ModelSpec], nn.Module]) -> C2FNet:
    """C2FNet for `spec`: coarse = spec's classes, fine = one class "small object", each built by `build_part`
    from a copy of `spec` naming its architecture and config (engine.models passes its semantic builder)."""
    cfg = parse_config(C2FNetConfig, spec.config, spec.architecture)
    coarse = build_part(spec.with_updates(architecture=cfg.coarse.architecture, config=dict(cfg.coarse.config)))
    fine = build_part(spec.with_updates(architecture=cfg.fine.architecture, config=dict(cfg.fine.config),
                                        classes=(ClassInfo(id=1, name="small object"),)))
    small = None if cfg.small_classes is None else list(cfg.small_classes)
    return C2FNet(coarse, fine, small_class_ids(spec, small), cfg.window, cfg.stride, cfg.top_k, cfg.train_top_k,
                  cfg.zoom, cfg.window_nms_iou, cfg.refine, cfg.train_coarse, cfg.case1_rule, cfg.fine_batch_size)
