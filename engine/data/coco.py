"""COCO instance-segmentation dataset for any image size and band count.

Ids in published files may start at 0 (pycocotools then never matches that ground truth), so the
dataset renumbers: images by their position, categories to contiguous labels 1..K (sorted by id).
"""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image
from pycocotools import mask as mask_utils

from engine.data.coco_checks import CocoContent, check_coco, load_json, skip_warnings
from engine.data.copy_paste import CrowdPaste, object_patches, paste_crowd
from engine.errors import UserError
from engine.normalise import normalise
from engine.spec import Normalisation

Sample = tuple[np.ndarray, dict[str, np.ndarray]]


@dataclass(frozen=True)
class CocoIndex:
    """Parsed and checked COCO file (engine.data.coco_checks): images in file order, categories sorted by id,
    usable annotations per image, and what was skipped."""

    images: list[dict[str, Any]]
    category_ids: list[int]
    category_names: list[str]
    annotations: dict[int, list[dict[str, Any]]]  # original image id -> annotations
    content: CocoContent | None = None  # the check's result (skipped annotations)
    path: str = ""

    @property
    def label_of(self) -> dict[int, int]:
        """Original category id -> contiguous label 1..K."""
        return {cid: i + 1 for i, cid in enumerate(self.category_ids)}

    def warnings(self) -> list[str]:
        """One line per kind of annotation the check skipped (empty when none)."""
        return skip_warnings(self.path, self.content) if self.content is not None else []


def read_coco(path: str | Path) -> CocoIndex:
    """Read and check a COCO instance file completely; UserError (file and annotation id) when it is unusable."""
    content = check_coco(load_json(path), path)
    cats = content.categories
    return CocoIndex(content.images, [c["id"] for c in cats], [c["name"] for c in cats], content.annotations,
                     content, str(path))


def check_images(index: CocoIndex, images_dir: Path, bands: list[int] | None) -> None:
    """Every image of `index` present, decodable, of its listed size and with the `bands` (1-based) asked for;
    missing sizes are filled in from the files. UserError naming the image and the fix otherwise."""
    counts: dict[int, str] = {}
    for info in index.images:
        path = images_dir / info["file_name"]
        where = f"image '{path}' (id {info['id']} in COCO file '{index.path}')"
        if not path.is_file():
            raise UserError(f"{where}: missing; check --images or the file_name")
        try:
            image = read_image(path)
        except UserError:
            raise
        except Exception as exc:  # noqa: BLE001 - any decoder failure means the file is unusable
            first = (str(exc).strip().splitlines() or [type(exc).__name__])[0][:120]
            raise UserError(f"{where}: cannot be read ({first}); replace the file or remove the image") from None
        n, h, w = image.shape
        if (info.get("height"), info.get("width")) not in ((h, w), (None, None)):
            raise UserError(f"{where}: is {h}x{w} pixels, the COCO file says {info.get('height')}x"
                            f"{info.get('width')}; fix the file's height and width")
        info.setdefault("height", h)
        info.setdefault("width", w)
        if bands and (max(bands) > n or min(bands) < 1):
            raise UserError(f"{where}: has {n} bands, --bands {','.join(map(str, bands))} asks for others; choose "
                            f"bands from 1 to {n}")
        counts.setdefault(n, info["file_name"])
    if not bands and len(counts) > 1:
        listed = ", ".join(f"{n} in {name}" for n, name in sorted(counts.items()))
        raise UserError(f"COCO file '{index.path}': its images have different band counts ({listed}); choose the "
                        f"bands to use with --bands, e.g. --bands 1")
    by_id = {im["id"]: im for im in index.images}
    for anns in index.annotations.values():
        for a in anns:
            seg = a["segmentation"]
            if isinstance(seg, dict):
                info = by_id[a["image_id"]]
                if list(seg["size"]) != [info["height"], info["width"]]:
                    raise UserError(f"COCO file '{index.path}': annotation {a.get('id')}: RLE size {seg['size']} "
                                    f"differs from its image's {[info['height'], info['width']]}; fix the annotation")


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


def rle_to_mask(rle: dict[str, Any]) -> np.ndarray:
    """COCO RLE, compressed (string counts) or not (a list of run lengths) -> [H,W] uint8 mask."""
    if isinstance(rle["counts"], list):
        rle = mask_utils.frPyObjects(rle, *rle["size"])
    return mask_utils.decode(rle)


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
        verify_images: bool = True,
        paste: CrowdPaste | None = None,
    ) -> None:
        self.index = read_coco(coco_file)
        self.images_dir = Path(images_dir)
        if not self.images_dir.is_dir():
            raise UserError(f"images folder '{images_dir}': not found")
        if verify_images:  # every file decoded once now, rather than failing at some step hours later
            check_images(self.index, self.images_dir, bands)
        self.normalisation = normalisation
        self.bands = bands
        self.transforms = transforms
        self.radiometric = radiometric  # [C,H,W] values in [0, 1] -> same, before mean/std (e.g. SarAugment)
        self.paste = paste  # crowds of objects from another image of the set, before the other augmentations
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
            masks[k] = rle_to_mask(seg) if isinstance(seg, dict) else polygons_to_mask(seg, h, w)
        labels = np.array([label_of[a["category_id"]] for a in anns], np.int64)
        return image, {"masks": masks, "labels": labels}

    def __getitem__(self, i: int) -> tuple[torch.Tensor, dict[str, Any]]:
        if self.sample_seed is not None:  # same draws whichever worker or position loads item i (exact resume)
            np.random.seed((self.sample_seed * 1_000_003 + i) % 2**32)
        image, target = self.load_raw(i)
        image = normalise(image, self.normalisation)
        if self.paste is not None and np.random.random() < self.paste.p:
            donor, donor_target = self.load_raw(int(np.random.randint(len(self))))
            patches = object_patches((normalise(donor, self.normalisation), donor_target), self.paste.min_side)
            image, target = paste_crowd((image, target), patches, self.paste, np.random.default_rng(
                np.random.randint(0, 2**31 - 1)))
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
