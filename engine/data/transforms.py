"""Joint image/target augmentations on (image [C,H,W] float32, {"masks": [N,H,W] uint8, "labels": [N]}).

Boxes are not transformed: the dataset derives them from the masks afterwards, which stays exact
under rotation and cropping.
"""
from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

Sample = tuple[np.ndarray, dict[str, np.ndarray]]


def _rng(rng: np.random.Generator | None) -> np.random.Generator:
    """The given generator, else one drawn from numpy's global state (seeded per DataLoader worker)."""
    return rng if rng is not None else np.random.default_rng(np.random.randint(0, 2**31 - 1))


@dataclass
class Compose:
    transforms: Sequence[Callable[[Sample], Sample]]

    def __call__(self, sample: Sample) -> Sample:
        for t in self.transforms:
            sample = t(sample)
        return sample


@dataclass
class RandomFlip:
    """Flip left-right and (independently) up-down, each with probability p."""

    p: float = 0.5
    rng: np.random.Generator | None = None

    def __call__(self, sample: Sample) -> Sample:
        image, target = sample
        rng = _rng(self.rng)
        for axis in (2, 1):
            if rng.random() < self.p:
                image = np.flip(image, axis)
                target = {**target, "masks": np.flip(target["masks"], axis)}
        return image, target


@dataclass
class RandomRot90:
    """Rotate by k x 90 degrees, k uniform in 0..3 (top-down imagery has no preferred 'up')."""

    rng: np.random.Generator | None = None

    def __call__(self, sample: Sample) -> Sample:
        image, target = sample
        k = int(_rng(self.rng).integers(4))
        if k == 0:
            return sample
        return np.rot90(image, k, (1, 2)), {**target, "masks": np.rot90(target["masks"], k, (1, 2))}


def resize(image: np.ndarray, masks: np.ndarray, size: tuple[int, int]) -> tuple[np.ndarray, np.ndarray]:
    """image [C,H,W] float32 (bilinear) and masks [N,H,W] (nearest) -> the same at `size` (h, w); masks uint8."""
    img = F.interpolate(torch.from_numpy(np.ascontiguousarray(image))[None], size, mode="bilinear",
                        align_corners=False)[0].numpy()
    if not len(masks):
        return img, np.zeros((0, *size), np.uint8)
    return img, F.interpolate(torch.from_numpy(np.ascontiguousarray(masks))[None].float(), size,
                              mode="nearest-exact")[0].to(torch.uint8).numpy()


@dataclass
class ScaleJitter:
    """Resize by a factor uniform in [min_scale, max_scale] (bilinear image, nearest masks)."""

    min_scale: float = 0.8
    max_scale: float = 1.25
    rng: np.random.Generator | None = None

    def __call__(self, sample: Sample) -> Sample:
        image, target = sample
        s = float(_rng(self.rng).uniform(self.min_scale, self.max_scale))
        h, w = image.shape[1:]
        size = (max(8, round(h * s)), max(8, round(w * s)))
        if size == (h, w):
            return sample
        img, masks = resize(image, target["masks"], size)
        return img, {**target, "masks": masks}


@dataclass
class RandomCrop:
    """Crop to at most `size` x `size` pixels at a random position (no-op for smaller images)."""

    size: int = 512
    rng: np.random.Generator | None = None

    def __call__(self, sample: Sample) -> Sample:
        image, target = sample
        h, w = image.shape[1:]
        if h <= self.size and w <= self.size:
            return sample
        rng = _rng(self.rng)
        r0 = int(rng.integers(h - min(h, self.size) + 1))
        c0 = int(rng.integers(w - min(w, self.size) + 1))
        rs, cs = slice(r0, r0 + self.size), slice(c0, c0 + self.size)
        return image[:, rs, cs], {**target, "masks": target["masks"][:, rs, cs]}


def training_transforms(crop_size: int = 512, min_scale: float = 0.8, max_scale: float = 1.25) -> Compose:
    """The default augmentation: flips, 90-degree rotations, scale jitter, crop."""
    return Compose([RandomFlip(), RandomRot90(), ScaleJitter(min_scale, max_scale), RandomCrop(crop_size)])


@dataclass(frozen=True)
class SarAugment:
    """Radiometric jitter of SAR amplitude in [0, 1] units, so a model trained on one sensor carries to others.

    Each image, independently with probability `p` per step:
    - gain: x * g, g log-uniform in `gain` (scenes differ in calibration and 8-bit scaling by several x);
    - gamma: x ** y, y log-uniform in `gamma` (linear vs square-root vs log-like amplitude stretches);
    - speckle: x * n, n ~ Gamma(L, 1/L) (mean 1) with L uniform in `looks` (multiplicative, fully developed).
    Output clipped to [0, 1]. `__call__(image [C,H,W] float32 in [0,1], rng) -> same shape`.
    """

    gain: tuple[float, float] = (0.5, 4.0)
    gamma: tuple[float, float] = (0.6, 1.6)
    looks: tuple[float, float] = (2.0, 16.0)
    p: float = 0.5

    def __call__(self, image: np.ndarray, rng: np.random.Generator | None = None) -> np.ndarray:
        rng = _rng(rng)
        x = image.astype(np.float32, copy=True)
        if rng.random() < self.p:
            x *= float(np.exp(rng.uniform(np.log(self.gain[0]), np.log(self.gain[1]))))
        if rng.random() < self.p:
            np.clip(x, 0.0, 1.0, out=x)
            x **= float(np.exp(rng.uniform(np.log(self.gamma[0]), np.log(self.gamma[1]))))
        if rng.random() < self.p:
            looks = float(rng.uniform(*self.looks))
            x *= rng.gamma(looks, 1.0 / looks, size=x.shape).astype(np.float32)
        return np.clip(x, 0.0, 1.0, out=x)
