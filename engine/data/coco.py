"""COCO instance-segmentation dataset for any image size and band count.

Ids in published files may start at 0 (pycocotools then never matches that ground truth), so the
dataset renumbers: images by their position, categories to contiguous labels 1..K (sorted by id).
"""
from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image
from pycocotools import mask as mask_utils

from engine.errors import UserError
from engine.normalise import normalise
from engine.spec import Normalisation

Sample = tuple[np.ndarray, dict[str, np.ndarray]]


@dataclass(frozen=True)
class CocoIndex:
    """Parsed COCO file: images in file order, categories sorted by id, annotations per image."""

    images: list[dict[str, Any]]
    category_ids: list[int]
    category_names: list[str]
    annotations: dict[int, list[dict[str, Any]]]  # original image id -> annotations

    @property
    def label_of(self) -> dict[int, int]:
        """Original category id -> contiguous label 1..K."""
        return {cid: i + 1 for i, cid in enumerate(self.category_ids)}


def read_coco(path: str | Path) -> CocoIndex:
    path = Path(path)
    try:
        data = json.loads(path.read_text())
        cats = sorted(data["categories"], key=lambda c: c["id"])
        anns: dict[int, list[dict[str, Any]]] = {im["id"]: [] for im in data["images"]}
        for a in data.get("annotations", []):
            anns.setdefault(a["image_id"], []).append(a)
    except FileNotFoundError:
        raise UserError(f"COCO file '{path}': not found") from None
    except (json.JSONDecodeError, KeyError, TypeError) as exc:
        raise UserError(f"COCO file '{path}': not a COCO instance file ({type(exc).__name__}: {exc})") from None
    return CocoIndex(data["images"], [c["id"] for c in cats], [c["name"] for c in cats], anns)


def read_image(path: Path, bands: list[int] | None = None) -> np.ndarray:
    """Image file -> [C,H,W] raw values; `bands` are 1-based indices (None = all)."""
    if path.suffix.lower() in (".tif", ".tiff"):
        import rasterio

        with rasterio.open(path) as src:
            if bands and (max(bands) > src.count or min(bands) < 1):
                raise UserError(f"image '{path}': has {src.count} bands, bands {bands} requested (1-based)")
            arr = src.read(bands) if bands else src.read()
        return arr
    with Image.open(path) as im:
        arr = np.asarray(im)
    arr = arr[None] if arr.ndim == 2 else arr.transpose(2, 0, 1)
    if bands:
        if max(bands) > arr.shape[0] or min(bands) < 1:
            raise UserError(f"image '{path}': has {arr.shape[0]} bands, bands {bands} requested (1-based)")
        arr = arr[[b - 1 for b in bands]]
    return arr


def polygons_to_mask(segmentation: list[list[float]], height: int, width: int) -> np.ndarray:
    """COCO polygon list (one or several parts) -> [H,W] uint8 mask (parts unioned)."""
    parts = [p for p in segmentation if len(p) >= 6]
    if not parts:  # frPyObjects([]) raises IndexError
        return np.zeros((height, width), np.uint8)
    return mask_utils.decode(mask_utils.merge(mask_utils.frPyObjects(parts, height, width)))


def masks_to_boxes(masks: np.ndarray) -> np.ndarray:
    """[N,H,W] masks -> [N,4] float32 xyxy boxes in pixels (exclusive max edge)."""
    boxes = np.zeros((len(masks), 4), np.float32)
    for i, m in enumerate(masks):
        rows, cols = np.any(m, axis=1), np.any(m, axis=0)
        r = np.flatnonzero(rows)
        c = np.flatnonzero(cols)
        if r.size:
            boxes[i] = (c[0], r[0], c[-1] + 1, r[-1] + 1)
    return boxes


class CocoInstanceDataset(torch.utils.data.Dataset):
    """Item i -> (image [C,H,W] float32 normalised tensor, target dict of tensors).

    target: boxes [N,4] xyxy float32, labels [N] int64 in 1..K, masks [N,H,W] uint8,
    image_id int (= i + 1, so ids start at 1 for COCOeval).
    """

    def __init__(
        self,
        coco_file: str | Path,
        images_dir: str | Path,
        normalisation: Normalisation,
        bands: list[int] | None = None,
        transforms: Callable[[Sample], Sample] | None = None,
        radiometric: Callable[[np.ndarray], np.ndarray] | None = None,
    ) -> None:
        self.index = read_coco(coco_file)
        self.images_dir = Path(images_dir)
        if not self.images_dir.is_dir():
            raise UserError(f"images folder '{images_dir}': not found")
        self.normalisation = normalisation
        self.bands = bands
        self.transforms = transforms
        self.radiometric = radiometric  # [C,H,W] values in [0, 1] -> same, before mean/std (e.g. SarAugment)
        self.sample_seed: int | None = None  # set: item i's augmentation draws depend on (sample_seed, i) only

    def __len__(self) -> int:
        return len(self.index.images)

    @property
    def class_names(self) -> list[str]:
        return self.index.category_names

    def load_raw(self, i: int) -> Sample:
        """(raw image [C,H,W], {"masks": [N,H,W] uint8, "labels": [N] int64}) before normalisation."""
        info = self.index.images[i]
        path = self.images_dir / info["file_name"]
        if not path.is_file():
            raise UserError(f"image '{path}' listed in the COCO file is missing")
        image = read_image(path, self.bands)
        h, w = image.shape[1:]
        label_of = self.index.label_of
        anns = [a for a in self.index.annotations.get(info["id"], []) if not a.get("iscrowd", 0)]
        masks = np.zeros((len(anns), h, w), np.uint8)
        for k, a in enumerate(anns):
            seg = a["segmentation"]
            masks[k] = mask_utils.decode(seg) if isinstance(seg, dict) else polygons_to_mask(seg, h, w)
        labels = np.array([label_of[a["category_id"]] for a in anns], np.int64)
        return image, {"masks": masks, "labels": labels}

    def __getitem__(self, i: int) -> tuple[torch.Tensor, dict[str, Any]]:
        if self.sample_seed is not None:  # same draws whichever worker or position loads item i (exact resume)
            np.random.seed((self.sample_seed * 1_000_003 + i) % 2**32)
        image, target = self.load_raw(i)
        image = normalise(image, self.normalisation)
        if self.radiometric is not None:
            mean, std = (np.asarray(v, np.float32).reshape(-1, 1, 1)
                         for v in (self.normalisation.mean, self.normalisation.std))
            image = (self.radiometric(image * std + mean) - mean) / std
        if self.transforms is not None:
            image, target = self.transforms((image, target))
        keep = target["masks"].any(axis=(1, 2))  # [N] bool; works for N == 0
        masks, labels = target["masks"][keep], target["labels"][keep]
        h, w = image.shape[1:]
        return torch.from_numpy(np.ascontiguousarray(image)), {
            "boxes": torch.from_numpy(masks_to_boxes(masks)).reshape(-1, 4),
            "labels": torch.from_numpy(labels),
            "masks": torch.from_numpy(np.ascontiguousarray(masks)).reshape(-1, h, w),
            "image_id": i + 1,
        }


def collate(batch: list) -> tuple[list, list]:
    """Detection batches are lists (images differ in size)."""
    return [b[0] for b in batch], [b[1] for b in batch]
