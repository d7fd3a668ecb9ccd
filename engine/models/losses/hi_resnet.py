"""Hi-ResNet's training losses: generalised Dice, label-smoothing cross-entropy, class-agnostic edge-aware (CEA).

Pure functions of logits [B,K+1,H,W] (any float dtype; computed in float32) and a target class map [B,H,W]
int64 with values in {0..K, ignore_index}. Pixels equal to `ignore_index` change no loss: neither their
target nor the logits there enter the result. Each loss is a scalar; when every pixel is ignored it is 0
(still attached to the logits' graph so backward works).
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from engine.spec import IGNORE_INDEX


def _valid_one_hot(logits: Tensor, target: Tensor, ignore_index: int) -> tuple[Tensor, Tensor]:
    """-> (valid [B,1,H,W] float 0/1, one-hot target [B,K+1,H,W] float, zero at ignored pixels)."""
    valid = target != ignore_index
    safe_target = torch.where(valid, target, torch.zeros_like(target))
    one_hot = F.one_hot(safe_target, logits.shape[1]).permute(0, 3, 1, 2).to(torch.float32)
    valid_map = valid.unsqueeze(1).to(torch.float32)
    return valid_map, one_hot * valid_map


def _zero_loss(logits: Tensor) -> Tensor:
    return logits.float().sum() * 0.0


def generalised_dice_loss(logits: Tensor, target: Tensor, ignore_index: int = IGNORE_INDEX,
                          eps: float = 1e-6) -> Tensor:
    """Generalised Dice (Sudre et al. 2017) over the whole batch -> scalar in [0, 1].

    1 - 2 sum_l w_l sum_n r_ln p_ln / sum_l w_l sum_n (r_ln + p_ln), w_l = 1 / (sum_n r_ln)^2 for the
    classes present in the target; absent classes (whose weight would be infinite) are clamped to the
    largest weight of a present class. Weights are rescaled so the largest is 1 (the ratio is unchanged).
    """
    valid, one_hot = _valid_one_hot(logits, target, ignore_index)
    if not bool(valid.any()):
        return _zero_loss(logits)
    probs = torch.softmax(logits.float(), dim=1) * valid
    class_pixels = one_hot.sum(dim=(0, 2, 3))  # [K+1]
    present = class_pixels > 0
    weights = torch.zeros_like(class_pixels)
    weights[present] = 1.0 / class_pixels[present] ** 2
    weights = torch.where(present, weights, weights.max())
    weights = weights / weights.max()
    intersection = (one_hot * probs).sum(dim=(0, 2, 3))
    total = (one_hot + probs).sum(dim=(0, 2, 3))
    dice = 2.0 * (weights * intersection).sum() / ((weights * total).sum() + eps)
    return (1.0 - dice).clamp(0.0, 1.0)


def label_smoothing_ce(logits: Tensor, target: Tensor, smoothing: float = 0.1,
                       ignore_index: int = IGNORE_INDEX) -> Tensor:
    """Label-smoothing cross-entropy, mean over non-ignored pixels -> scalar.

    Target distribution (1 - smoothing) one-hot + smoothing / (K+1) on every class, as
    F.cross_entropy(label_smoothing=smoothing, ignore_index=ignore_index) defines it.
    """
    valid, one_hot = _valid_one_hot(logits, target, ignore_index)
    pixels = valid.sum()
    if not bool(pixels > 0):
        return _zero_loss(logits)
    log_probs = torch.log_softmax(logits.float(), dim=1)
    nll = -(one_hot * log_probs).sum(dim=1, keepdim=True)
    uniform = -log_probs.mean(dim=1, keepdim=True)
    per_pixel = (1.0 - smoothing) * nll + smoothing * uniform
    return (per_pixel * valid).sum() / pixels


def _dilate_cross(mask: Tensor) -> Tensor:
    """One Manhattan (4-neighbour) dilation of [N,1,H,W] maps in [0, 1]: max over the pixel and its 4 neighbours."""
    horizontal = F.max_pool2d(mask, kernel_size=(1, 3), stride=1, padding=(0, 1))
    vertical = F.max_pool2d(mask, kernel_size=(3, 1), stride=1, padding=(1, 0))
    return torch.maximum(horizontal, vertical)


def boundary_map(mask: Tensor, valid: Tensor) -> Tensor:
    """Binary mask [N,1,H,W] (0/1) -> its boundary pixels (0/1): valid pixels whose 4-neighbourhood holds
    both values. Ignored pixels (valid == 0) count as inside for the erosion and outside for the dilation,
    so they never create a boundary whatever the mask holds there."""
    dilated = _dilate_cross(mask * valid)
    eroded = 1.0 - _dilate_cross((1.0 - mask) * valid)
    return (dilated - eroded).clamp(min=0.0) * valid


def boundary_distance(boundary: Tensor, iterations: int) -> Tensor:
    """Boundary map [N,1,H,W] (0/1) -> approximate Manhattan distance to the nearest boundary pixel by
    cascaded max-pool dilations, as (steps + 1) / (iterations + 1) in (0, 1]: 1/(iterations+1) on the
    boundary, 1 at `iterations` or more pixels away (and everywhere when there is no boundary)."""
    reached = boundary
    steps = 1.0 - reached
    for _ in range(iterations - 1):
        reached = _dilate_cross(reached)
        steps = steps + (1.0 - reached)
    return (steps + 1.0) / (iterations + 1.0)


def cea_loss(logits: Tensor, target: Tensor, iterations: int = 10, alpha: float = 2.0,
             ignore_index: int = IGNORE_INDEX) -> Tensor:
    """Class-agnostic edge-aware loss: Hausdorff-distance loss (Karimi & Salcudean 2019) extended to classes.

    Every class c in turn is the foreground and all others background (the paper draws one such class at
    random per step; the mean over all classes is that draw's expectation, without its noise). For
    foreground probability P_c and target foreground T_c, the per-pixel term is
    (P_c - T_c)^2 * (D_T^alpha + D_P^alpha) with D_T, D_P the distances to the boundaries of T_c and of the
    thresholded prediction (P_c > 0.5), from `boundary_distance` (capped at `iterations` pixels, scaled to
    (0, 1]). Distances are weights without gradient; the loss is differentiable through (P - T)^2.
    Mean over non-ignored pixels and classes -> scalar in [0, 2]; exactly 0 when the probabilities equal
    the one-hot target, > 0 whenever they differ at a non-ignored pixel.
    """
    if iterations < 1:
        raise ValueError(f"cea iterations must be >= 1, got {iterations}")
    valid, one_hot = _valid_one_hot(logits, target, ignore_index)
    pixels = valid.sum()
    if not bool(pixels > 0):
        return _zero_loss(logits)
    batch, classes, height, width = logits.shape
    probs = torch.softmax(logits.float(), dim=1)
    with torch.no_grad():
        valid_per_class = valid.expand(-1, classes, -1, -1).reshape(batch * classes, 1, height, width)
        target_maps = one_hot.reshape(batch * classes, 1, height, width)
        predicted_maps = (probs > 0.5).to(torch.float32).reshape(batch * classes, 1, height, width)
        target_distance = boundary_distance(boundary_map(target_maps, valid_per_class), iterations)
        predicted_distance = boundary_distance(boundary_map(predicted_maps, valid_per_class), iterations)
        weight = (target_distance ** alpha + predicted_distance ** alpha).reshape(batch, classes, height, width)
    per_pixel = (probs - one_hot) ** 2 * weight * valid
    return per_pixel.sum() / (pixels * classes)
