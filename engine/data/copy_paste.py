"""Crowd copy-paste: objects cut from another training image pasted as a dense cluster (pure numpy).

Anchorages and harbours hold tens of ships a ship's length apart, while most SSDD chips hold one to
three; a model that has never seen a crowd takes it for one large object. Copy-paste (Ghiasi et al.,
CVPR 2021, "Simple Copy-Paste is a Strong Data Augmentation Method for Instance Segmentation") adds
objects with their exact masks; here they are laid out as a cluster on a jittered grid, a gap of
`gap` object sizes apart, so crowds of small objects appear in training. Objects are pasted on dark
background only (water, for SAR ships): a ship pasted on a bright quay or town teaches the model that
bright built-up texture is a crowd of ships, and it then finds "ships" all over a port city.

Samples are (image [C,H,W] float32, {"masks": [N,H,W] uint8, "labels": [N] int64}), as in
engine.data.transforms. Pasted objects cover what lies under them: the masks of earlier objects lose
the covered pixels (an object left with none is dropped by the dataset).
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from engine.data.transforms import Sample, resize


@dataclass(frozen=True)
class Patch:
    """One object cut out of an image: its box's pixels [C,h,w], its mask [h,w] bool, its label."""

    pixels: np.ndarray
    mask: np.ndarray
    label: int


@dataclass(frozen=True)
class CrowdPaste:
    """How often and how densely objects are pasted.

    p: probability that an image gets a cluster; count: objects per cluster (min, max), drawn with
    replacement from the donor image's objects; gap: free space between neighbours, in units of the
    largest pasted object's side (min, max); scale: resize of the pasted objects (min, max, one factor
    per cluster); min_side: objects whose box is smaller than this many pixels are not used;
    background_quantile: an object is pasted only where the mean of band 1 under its mask is at most this
    quantile of band 1 over the image (dark background: water), None pastes anywhere; tries: candidate
    cluster centres, the one with the darkest surroundings is used.
    """

    p: float = 0.5
    count: tuple[int, int] = (6, 30)
    gap: tuple[float, float] = (0.15, 1.0)
    scale: tuple[float, float] = (0.5, 1.0)
    min_side: int = 4
    background_quantile: float | None = 0.7
    tries: int = 8

    def __post_init__(self) -> None:
        if not 0.0 <= self.p <= 1.0:
            raise ValueError(f"crowd paste probability {self.p}: give a value from 0 to 1")


def object_patches(sample: Sample, min_side: int = 4) -> list[Patch]:
    """Every object of `sample` with a box of at least `min_side` pixels a side, cut to its box."""
    image, target = sample
    patches = []
    for mask, label in zip(target["masks"], target["labels"]):
        rows, cols = np.nonzero(mask)
        if len(rows) == 0:
            continue
        r0, r1, c0, c1 = rows.min(), rows.max() + 1, cols.min(), cols.max() + 1
        if min(r1 - r0, c1 - c0) < min_side:
            continue
        patches.append(Patch(image[:, r0:r1, c0:c1].copy(), mask[r0:r1, c0:c1] > 0, int(label)))
    return patches


def _resized(patch: Patch, factor: float, k: int, flip: bool) -> Patch:
    """`patch` scaled by `factor` (bilinear pixels, nearest mask), rotated k x 90 degrees, optionally flipped."""
    pixels, mask = patch.pixels, patch.mask
    h, w = mask.shape
    size = (max(1, round(h * factor)), max(1, round(w * factor)))
    if size != (h, w):
        pixels, masks = resize(pixels, mask[None].astype(np.uint8), size)
        mask = masks[0] > 0
    pixels, mask = np.rot90(pixels, k, (1, 2)), np.rot90(mask, k)
    if flip:
        pixels, mask = pixels[:, :, ::-1], mask[:, ::-1]
    return Patch(pixels, mask, patch.label)


def cluster_layout(n: int, cell: float, centre: tuple[float, float],
                   rng: np.random.Generator) -> list[tuple[int, int]]:
    """Centres (row, col) of `n` objects on a jittered grid of `cell` pixels around `centre` (row, col);
    they may fall outside the image (those objects are clipped)."""
    cols = max(1, math.ceil(math.sqrt(n) * rng.uniform(0.6, 1.6)))
    rows = math.ceil(n / cols)
    centre_r, centre_c = centre
    jitter = 0.15 * cell
    slots = [(r, c) for r in range(rows) for c in range(cols)][:n]
    return [(round(centre_r + (r - (rows - 1) / 2) * cell + rng.uniform(-jitter, jitter)),
             round(centre_c + (c - (cols - 1) / 2) * cell + rng.uniform(-jitter, jitter))) for r, c in slots]


def paste_crowd(sample: Sample, patches: list[Patch], cfg: CrowdPaste, rng: np.random.Generator) -> Sample:
    """`sample` with a cluster of objects drawn from `patches` pasted on it (unchanged when `patches` is empty).

    Each pasted object replaces the pixels under its mask and removes them from earlier objects' masks.
    """
    image, target = sample
    if not patches:
        return sample
    n = int(rng.integers(cfg.count[0], cfg.count[1] + 1))
    factor = float(rng.uniform(*cfg.scale))
    chosen = [_resized(patches[int(rng.integers(len(patches)))], factor, int(rng.integers(4)), bool(rng.integers(2)))
              for _ in range(n)]
    side = max(max(p.mask.shape) for p in chosen)
    cell = side * (1.0 + float(rng.uniform(*cfg.gap)))
    height, width = image.shape[1:]
    brightness = image[0]
    limit = (None if cfg.background_quantile is None
             else float(np.quantile(brightness, cfg.background_quantile)))
    centre = _darkest_centre(brightness, cell * math.sqrt(n), cfg.tries if limit is not None else 1, rng)
    image = image.copy()
    pasted, pasted_labels = [], []
    for patch, (row, col) in zip(chosen, cluster_layout(n, cell, centre, rng)):
        h, w = patch.mask.shape
        r0, c0 = row - h // 2, col - w // 2
        rs, cs = slice(max(0, r0), min(height, r0 + h)), slice(max(0, c0), min(width, c0 + w))
        if rs.start >= rs.stop or cs.start >= cs.stop:
            continue
        part = patch.mask[rs.start - r0:rs.stop - r0, cs.start - c0:cs.stop - c0]
        if not part.any() or (limit is not None and brightness[rs, cs][part].mean() > limit):
            continue
        region = image[:, rs, cs]
        region[:, part] = patch.pixels[:, rs.start - r0:rs.stop - r0, cs.start - c0:cs.stop - c0][:, part]
        full = np.zeros((height, width), bool)
        full[rs, cs] = part
        pasted.append(full)
        pasted_labels.append(patch.label)
    if not pasted:
        return image, target
    covered = np.zeros((height, width), bool)  # pixels of objects pasted later than the one at hand
    for k in range(len(pasted) - 1, -1, -1):
        pasted[k], covered = pasted[k] & ~covered, covered | pasted[k]
    masks = np.concatenate([np.asarray(target["masks"], np.uint8) * ~covered, np.stack(pasted).astype(np.uint8)])
    labels = np.concatenate([np.asarray(target["labels"], np.int64), np.asarray(pasted_labels, np.int64)])
    return image, {**target, "masks": masks.astype(np.uint8), "labels": labels}


def _darkest_centre(brightness: np.ndarray, extent: float, tries: int,
                    rng: np.random.Generator) -> tuple[float, float]:
    """Of `tries` uniform candidate centres in the image, the one whose `extent`-pixel window of
    `brightness` [H,W] has the lowest mean (the first candidate when `tries` is 1)."""
    height, width = brightness.shape
    candidates = [(rng.uniform(0, height), rng.uniform(0, width)) for _ in range(max(1, tries))]
    half = max(1, round(extent / 2))

    def window_mean(centre: tuple[float, float]) -> float:
        r, c = round(centre[0]), round(centre[1])
        return float(brightness[max(0, r - half):r + half + 1, max(0, c - half):c + half + 1].mean())

    return min(candidates, key=window_mean)
