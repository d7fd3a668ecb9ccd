"""SOLOv2 inference for one image: grid cells -> scored, de-duplicated instance masks.

1. category probabilities after point NMS; candidates = (cell, class) pairs with p > score_thresh;
2. mask = sigmoid(F * kernel of the cell); binary = mask > mask_thresh; drop masks whose area (stride-4
   pixels) is not larger than the level's stride (8, 8, 16, 32, 32 for P2..P6 as SOLOv2 sets them);
3. score = p * mean mask probability inside the binary mask; keep the nms_pre best;
4. Matrix NMS (decayed scores), keep scores >= update_thresh, at most detections_per_img;
5. masks upsampled bilinearly x4 to the padded image, cropped to the image; boxes are the extents of
   mask >= mask_thresh (x1, y1 exclusive); a mask left empty by the crop is dropped.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor
from torchvision.ops import masks_to_boxes

from engine.models.solo.losses import dynamic_masks
from engine.models.solo.matrix_nms import matrix_nms


@dataclass(frozen=True)
class InferenceSettings:
    score_thresh: float = 0.1
    mask_thresh: float = 0.5
    nms_pre: int = 500
    update_thresh: float = 0.05
    detections_per_img: int = 100
    nms_kernel: str = "gaussian"
    nms_sigma: float = 2.0
    level_strides: tuple[int, ...] = (8, 8, 16, 32, 32)
    mask_stride: int = 4


def empty_prediction(height: int, width: int, device: torch.device) -> dict[str, Tensor]:
    return {"boxes": torch.zeros((0, 4), device=device), "labels": torch.zeros(0, dtype=torch.int64, device=device),
            "scores": torch.zeros(0, device=device), "masks": torch.zeros((0, 1, height, width), device=device)}


def predict_instances(kernels: list[Tensor], category_probs: list[Tensor], mask_feature: Tensor,
                      image_size: tuple[int, int], settings: InferenceSettings) -> dict[str, Tensor]:
    """One image: kernels[l] [E, S, S], category_probs[l] [C, S, S] (after point NMS), mask_feature [E, h, w].

    Returns {"boxes" [N, 4] xyxy, "labels" [N] int64 1..K, "scores" [N], "masks" [N, 1, H, W]} at image_size.
    """
    height, width = image_size
    device = mask_feature.device
    num_classes = category_probs[0].shape[0]
    probs = torch.cat([p.float().permute(1, 2, 0).reshape(-1, num_classes) for p in category_probs])
    cell_kernels = torch.cat([k.float().flatten(1).t() for k in kernels])  # [M, E]
    strides = torch.cat([torch.full((p.shape[1] * p.shape[2],), float(s), device=device)
                         for p, s in zip(category_probs, settings.level_strides)])
    cells, classes = (probs > settings.score_thresh).nonzero(as_tuple=True)
    if len(cells) == 0:
        return empty_prediction(height, width, device)
    soft = dynamic_masks(mask_feature.float(), cell_kernels[cells]).sigmoid()  # [n, h, w]
    binary = soft > settings.mask_thresh
    areas = binary.sum(dim=(1, 2)).float()
    keep = areas > strides[cells]
    if not keep.any():
        return empty_prediction(height, width, device)
    soft, binary, areas, classes = soft[keep], binary[keep], areas[keep], classes[keep]
    scores = probs[cells[keep], classes] * (soft * binary).sum(dim=(1, 2)) / areas
    order = scores.argsort(descending=True)[: settings.nms_pre]
    soft, binary, areas, classes, scores = soft[order], binary[order], areas[order], classes[order], scores[order]
    scores = matrix_nms(binary, classes, scores, settings.nms_kernel, settings.nms_sigma, areas)
    keep = (scores >= settings.update_thresh).nonzero().flatten()
    keep = keep[scores[keep].argsort(descending=True)][: settings.detections_per_img]
    if len(keep) == 0:
        return empty_prediction(height, width, device)
    stride = settings.mask_stride
    full = F.interpolate(soft[keep][None], scale_factor=stride, mode="bilinear", align_corners=False)[0]
    full = full[:, :height, :width]
    visible = (full >= settings.mask_thresh).flatten(1).any(dim=1)
    full, keep = full[visible], keep[visible]
    boxes = masks_to_boxes(full >= settings.mask_thresh) + torch.tensor([0.0, 0.0, 1.0, 1.0], device=device)
    return {"boxes": boxes, "labels": classes[keep] + 1, "scores": scores[keep], "masks": full[:, None]}
