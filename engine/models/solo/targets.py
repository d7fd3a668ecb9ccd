"""SOLOv2 target assignment: which grid cells of which pyramid level own which ground-truth object.

For an object with box (x0, y0, x1, y1) and mask, in the padded image of size (H, W):
- scale s = sqrt((x1 - x0) * (y1 - y0)) pixels; the object goes to every level whose range holds s
  (lower <= s <= upper; the default ranges overlap, so most objects train two levels);
- centre (cx, cy) = the mask's centre of mass in pixel-centre coordinates (pixel (r, c) sits at
  (c + 0.5, r + 0.5)), so it matches the boxes' convention (x1, y1 exclusive);
- on a level with S x S cells, the centre cell is (floor(cy * S / H), floor(cx * S / W)); the positive
  region is the centre +- sigma * half the box, in cells, clipped to the 3 x 3 cells around the centre cell
  and to the grid.
Where regions of several objects overlap, the smaller object keeps the cell (objects are written from the
largest down; mmdetection writes them in annotation order). Mask targets are the masks at stride 4 as the
fraction of each 4 x 4 block covered (soft targets: objects thinner than 4 pixels keep a target).
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor


@dataclass(frozen=True)
class LevelTargets:
    """One image, one level: `labels` [S, S] int64 (0 background, 1..K), `cells` [P] flat indices of the
    positive cells (row * S + col, ascending), `objects` [P] int64 index of the object owning each cell."""

    labels: Tensor
    cells: Tensor
    objects: Tensor


def centres_of_mass(masks: Tensor) -> Tensor:
    """[N, H, W] binary masks -> [N, 2] (cx, cy) in pixel-centre coordinates; empty masks give (0, 0)."""
    m = masks.float()
    h, w = masks.shape[-2:]
    area = m.sum(dim=(1, 2)).clamp(min=1.0)
    xs = torch.arange(w, dtype=torch.float32, device=masks.device) + 0.5
    ys = torch.arange(h, dtype=torch.float32, device=masks.device) + 0.5
    cx = (m.sum(dim=1) * xs).sum(dim=1) / area
    cy = (m.sum(dim=2) * ys).sum(dim=1) / area
    return torch.stack([cx, cy], dim=1)


def positive_cell_range(centre: float, half_extent: float, size: int, grid: int) -> tuple[int, int]:
    """First and last positive cell index (inclusive) along one axis of length `size` pixels, `grid` cells."""
    centre_cell = min(grid - 1, math.floor(centre * grid / size))
    first = max(0, math.floor((centre - half_extent) * grid / size), centre_cell - 1)
    last = min(grid - 1, math.floor((centre + half_extent) * grid / size), centre_cell + 1)
    return first, last


def assign_levels(boxes: Tensor, labels: Tensor, masks: Tensor, padded_size: tuple[int, int],
                  grids: tuple[int, ...], scale_ranges: tuple[tuple[float, float], ...],
                  sigma: float = 0.2) -> list[LevelTargets]:
    """Grid targets of one image for every level.

    boxes [N, 4] xyxy pixels, labels [N] int64 1..K, masks [N, h, w] binary with h <= H, w <= W
    (the unpadded image; padding adds no foreground). Returns one LevelTargets per level.
    """
    height, width = padded_size
    device = labels.device
    n = len(labels)
    scales = ((boxes[:, 2] - boxes[:, 0]).clamp(min=0) * (boxes[:, 3] - boxes[:, 1]).clamp(min=0)).sqrt()
    valid = masks.flatten(1).any(dim=1) if n else torch.zeros(0, dtype=torch.bool, device=device)
    centres = centres_of_mass(masks).tolist() if n else []
    half_sizes = (0.5 * sigma * (boxes[:, 2:] - boxes[:, :2])).tolist()
    scale_list, valid_list, label_list = scales.tolist(), valid.tolist(), labels.tolist()
    largest_first = sorted(range(n), key=lambda k: -scale_list[k])
    out = []
    for grid, (lower, upper) in zip(grids, scale_ranges):
        owner = torch.full((grid, grid), -1, dtype=torch.int64)
        grid_labels = torch.zeros((grid, grid), dtype=torch.int64)
        for k in largest_first:
            if not (valid_list[k] and lower <= scale_list[k] <= upper):
                continue
            (cx, cy), (half_w, half_h) = centres[k], half_sizes[k]
            top, bottom = positive_cell_range(cy, half_h, height, grid)
            left, right = positive_cell_range(cx, half_w, width, grid)
            owner[top:bottom + 1, left:right + 1] = k
            grid_labels[top:bottom + 1, left:right + 1] = label_list[k]
        cells = (owner.flatten() >= 0).nonzero().flatten()
        out.append(LevelTargets(grid_labels.to(device), cells.to(device), owner.flatten()[cells].to(device)))
    return out


def mask_targets(masks: Tensor, padded_size: tuple[int, int], stride: int = 4) -> Tensor:
    """[N, h, w] binary -> [N, H / stride, W / stride] float: covered fraction of each stride x stride block."""
    height, width = padded_size
    if len(masks) == 0:
        return masks.new_zeros((0, height // stride, width // stride), dtype=torch.float32)
    padded = F.pad(masks.float(), (0, width - masks.shape[-1], 0, height - masks.shape[-2]))
    return F.avg_pool2d(padded[:, None], stride)[:, 0]
