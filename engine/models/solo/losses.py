"""SOLOv2 losses: sigmoid focal loss on the category grids, Dice loss on the masks of positive cells.

    loss_category = focal(alpha 0.25, gamma 2) summed over cells and classes / (num_positive_cells + 1)
    loss_mask     = mask_weight * mean over positive cells of Dice(sigmoid(F * kernel), target)
    Dice(p, t)    = 1 - 2 sum(p t) / (sum p^2 + sum t^2)        (eps 1e-3 in each denominator term)

An image batch without any positive cell gives loss_mask = 0 (still attached to the graph, so every
parameter that fed it gets a zero gradient rather than none).
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor
from torchvision.ops import sigmoid_focal_loss

from engine.models.solo.targets import LevelTargets


def dice_loss(probabilities: Tensor, targets: Tensor, eps: float = 1e-3) -> Tensor:
    """[P, h, w] probabilities and [P, h, w] targets in [0, 1] -> [P] Dice losses in [0, 1]."""
    p, t = probabilities.flatten(1), targets.flatten(1)
    overlap = (p * t).sum(dim=1)
    return 1 - 2 * overlap / ((p * p).sum(dim=1) + eps + (t * t).sum(dim=1) + eps)


def dynamic_masks(mask_feature: Tensor, kernels: Tensor) -> Tensor:
    """One image's mask feature [E, h, w] convolved with P dynamic 1x1 kernels [P, E] -> logits [P, h, w]."""
    return F.conv2d(mask_feature[None], kernels[:, :, None, None])[0]


def solo_losses(kernels: list[Tensor], categories: list[Tensor], mask_features: Tensor,
                targets: list[list[LevelTargets]], masks: list[Tensor], alpha: float = 0.25, gamma: float = 2.0,
                mask_weight: float = 3.0) -> dict[str, Tensor]:
    """Losses of a batch.

    kernels[l] [B, E, S_l, S_l], categories[l] [B, C, S_l, S_l] logits, mask_features [B, E, h, w];
    targets[b][l] the LevelTargets of image b on level l; masks[b] [N_b, h, w] that image's mask targets.
    Returns {"loss_category": scalar, "loss_mask": scalar}.
    """
    num_classes = categories[0].shape[1]
    mask_features = mask_features.float()
    dice_terms = []
    for b, image_targets in enumerate(targets):
        level_kernels, level_objects = [], []
        for level, level_targets in enumerate(image_targets):
            flat = kernels[level][b].float().flatten(1)  # [E, S*S]
            level_kernels.append(flat[:, level_targets.cells].t())
            level_objects.append(level_targets.objects)
        objects = torch.cat(level_objects)
        if len(objects):
            logits = dynamic_masks(mask_features[b], torch.cat(level_kernels))
            dice_terms.append(dice_loss(logits.sigmoid(), masks[b][objects].to(logits)))
    num_positive = sum(len(t.cells) for image_targets in targets for t in image_targets)
    if dice_terms:
        loss_mask = torch.cat(dice_terms).mean() * mask_weight
    else:  # zero, but connected to the mask branch and the kernels
        loss_mask = mask_features.sum() * 0.0 + sum(k.float().sum() for k in kernels) * 0.0

    logits = torch.cat([c.float().permute(0, 2, 3, 1).reshape(-1, num_classes) for c in categories])
    labels = torch.cat([torch.stack([t[level].labels for t in targets]).flatten() for level in range(len(categories))])
    one_hot = F.one_hot(labels, num_classes + 1)[:, 1:].to(logits)  # class 0 = background: all-zero row
    loss_category = sigmoid_focal_loss(logits, one_hot, alpha, gamma, reduction="sum") / (num_positive + 1)
    return {"loss_category": loss_category, "loss_mask": loss_mask}
