"""Point NMS on category grids and Matrix NMS on masks (SOLOv2, Wang et al. 2020, Sec. 3.3.4).

Matrix NMS decays scores instead of removing masks. With masks sorted by descending score, for mask j:

    decay_j = min(1, min over i < j with label_i == label_j of f(iou_ij) / f(comp_i))
    comp_i  = max over k < i with label_k == label_i of iou_ki      (0 when there is none)
    f(x)    = exp(-sigma * x^2) (gaussian)  or  1 - x (linear)

and the new score is score_j * decay_j. Computed here for all pairs at once with triangular matrices.
"""
from __future__ import annotations

from typing import Literal, get_args

import torch
import torch.nn.functional as F
from torch import Tensor

NMSKernel = Literal["gaussian", "linear"]
NMS_KERNELS = get_args(NMSKernel)


def point_nms(heat: Tensor) -> Tensor:
    """[B, C, S, S] probabilities -> the same with every cell that is not a 2 x 2 local maximum set to 0.

    A cell survives when it equals the max over the 2 x 2 window anchored above-left of it (SOLO's rule).
    """
    window_max = F.max_pool2d(heat, 2, stride=1, padding=1)[..., :-1, :-1]
    return heat * (window_max == heat)


def matrix_nms(masks: Tensor, labels: Tensor, scores: Tensor, kernel: str = "gaussian", sigma: float = 2.0,
               areas: Tensor | None = None) -> Tensor:
    """Decayed scores [N] for masks [N, h, w] (binary), labels [N] and scores [N] sorted descending."""
    if kernel not in NMS_KERNELS:
        raise ValueError(f"unknown Matrix NMS kernel '{kernel}'; choose one of {', '.join(NMS_KERNELS)}")
    n = len(scores)
    if n == 0:
        return scores
    flat = masks.reshape(n, -1).float()
    areas = flat.sum(dim=1) if areas is None else areas.float()
    intersection = flat @ flat.t()
    union = areas[:, None] + areas[None, :] - intersection
    iou = (intersection / union.clamp(min=1e-6)).triu(diagonal=1)  # iou[i, j], i above j in the ranking
    same_label = (labels[:, None] == labels[None, :]).triu(diagonal=1)
    decay_iou = iou * same_label
    compensate = decay_iou.max(dim=0).values  # [N]: max IoU of each mask with a higher-scored same-label mask
    compensate = compensate[:, None].expand(n, n)  # row i holds comp_i
    if kernel == "gaussian":
        ratio = torch.exp(-sigma * (decay_iou**2 - compensate**2))
    else:
        ratio = (1 - decay_iou) / (1 - compensate).clamp(min=1e-6)
    return scores * ratio.min(dim=0).values.clamp(max=1.0)
