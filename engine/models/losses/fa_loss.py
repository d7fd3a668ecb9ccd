"""FarSeg's foreground-aware (F-A) optimisation loss, and the plain softmax focal loss of its ablation.

Per valid pixel i: cross-entropy l_i, focal weight w_i = (1 - p_t,i)^gamma, normaliser
Z = sum(l) / sum(w * l) so that sum(Z * w * l) = sum(l) (the batch sum is unchanged, only its
distribution over pixels moves towards hard pixels). Annealed blend with plain CE:

    loss_i = [(1 - s(t)) + s(t) * Z * w_i] * l_i,    s(t) in [0, 1] rising from 0 at t=0 to 1 at t=T

(paper eq. 7 with zeta_paper = 1 - s). At t=0 the loss is plain CE; from t >= T it is the normalised
focal loss. Weights and Z are detached (as in the authors' code): they redistribute the CE gradient,
they are not differentiated. The scalar is the sum over valid pixels divided by their count, so it
equals F.cross_entropy(..., ignore_index) at t=0 and keeps that value (not gradient) at every t.
"""
from __future__ import annotations

import math
from typing import Literal, get_args

import torch
import torch.nn.functional as F
from torch import Tensor

from engine.spec import IGNORE_INDEX

Annealing = Literal["cosine", "linear", "poly"]
SCHEDULES = get_args(Annealing)
POLY_DECAY = 0.9  # the paper's decay_factor for the poly schedule


def focal_share(step: int, annealing_steps: int, schedule: str = "cosine") -> float:
    """s(t) in [0, 1]: 0 at step 0 (plain CE), 1 from `annealing_steps` on (normalised focal loss).

    cosine 0.5 (1 - cos(pi t/T)); linear t/T; poly 1 - (1 - t/T)^0.9 (paper Table 1 as 1 - zeta).
    """
    if schedule not in SCHEDULES:
        raise ValueError(f"unknown annealing schedule '{schedule}'; choose one of {', '.join(SCHEDULES)}")
    if annealing_steps <= 0:
        return 1.0
    fraction = min(max(step, 0), annealing_steps) / annealing_steps
    if schedule == "cosine":
        return 0.5 * (1.0 - math.cos(math.pi * fraction))
    if schedule == "linear":
        return fraction
    return 1.0 - (1.0 - fraction) ** POLY_DECAY


def _pixel_ce_and_pt(logits: Tensor, target: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    """-> (CE [B,H,W] (0 at ignored), p_t [B,H,W] (probability of the true class), valid mask [B,H,W])."""
    valid = target != IGNORE_INDEX
    safe_target = torch.where(valid, target, torch.zeros_like(target))
    log_probs = F.log_softmax(logits.float(), dim=1)
    log_pt = log_probs.gather(1, safe_target.unsqueeze(1)).squeeze(1)
    ce = torch.where(valid, -log_pt, torch.zeros_like(log_pt))
    return ce, log_pt.exp(), valid


def fa_pixel_weights(logits: Tensor, target: Tensor, step: int, annealing_steps: int, gamma: float = 2.0,
                     schedule: str = "cosine") -> Tensor:
    """Detached per-pixel weights [B,H,W] of the F-A loss: (1 - s) + s * Z * (1 - p_t)^gamma, 0 at ignored.

    logits [B,K,H,W], target [B,H,W] int64 in {0..K-1, IGNORE_INDEX}.
    """
    with torch.no_grad():
        ce, pt, valid = _pixel_ce_and_pt(logits, target)
        focal = (1.0 - pt).clamp(min=0.0).pow(gamma) * valid
        weighted_sum = (focal * ce).sum()
        normaliser = ce.sum() / weighted_sum if weighted_sum > 0 else torch.ones_like(weighted_sum)
        share = focal_share(step, annealing_steps, schedule)
        return ((1.0 - share) + share * normaliser * focal) * valid


def fa_loss(logits: Tensor, target: Tensor, step: int, annealing_steps: int, gamma: float = 2.0,
            schedule: str = "cosine") -> Tensor:
    """F-A loss scalar: sum over valid pixels of weight * CE / number of valid pixels (0 if none).

    logits [B,K,H,W], target [B,H,W] int64 in {0..K-1, IGNORE_INDEX}; `step` the training step t,
    `annealing_steps` T.
    """
    ce, _, valid = _pixel_ce_and_pt(logits, target)
    count = valid.sum()
    if count == 0:
        return logits.sum() * 0.0
    weights = fa_pixel_weights(logits, target, step, annealing_steps, gamma, schedule)
    return (weights * ce).sum() / count


def focal_loss(logits: Tensor, target: Tensor, gamma: float = 2.0) -> Tensor:
    """Plain softmax focal loss (no normalisation, no annealing, weights differentiated): mean over
    valid pixels of (1 - p_t)^gamma * CE. logits [B,K,H,W], target [B,H,W]."""
    ce, pt, valid = _pixel_ce_and_pt(logits, target)
    count = valid.sum()
    if count == 0:
        return logits.sum() * 0.0
    return ((1.0 - pt).clamp(min=0.0).pow(gamma) * ce).sum() / count
