"""Checks of a COCO instance file, run completely before the first training or evaluation step.

What stops the run (one line naming the file and the image or annotation id, and the fix): a file that
is not JSON or not a COCO object; no images; no categories; an image without id or file name, or a
duplicate id; a category without id or name, or a duplicate id; an annotation that is not an object,
has no image_id, or a category_id that is not a category; an annotation with no segmentation (a
bbox-only annotation: instance models learn masks, and skipping it would teach that object as
background); a malformed polygon (not numbers, NaN, an odd count) or RLE (size other than its image's).

What is skipped with a counted warning (the data are still usable, the annotation carries no object):
a polygon part of fewer than 3 points or of zero area (dropped; the annotation is skipped when no part
is left); an annotation of an image id the file does not list. A bbox missing or malformed is computed
from the segmentation. A flat polygon list [x0, y0, ...] is read as one part.
The image files themselves are checked by engine.data.coco.check_images.
"""
from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from engine.errors import UserError

SKIP_REASONS = {
    "degenerate": "whose polygon has fewer than 3 points or no area",
    "orphan": "of an image id the file does not list",
}


@dataclass(frozen=True)
class CocoContent:
    """A checked COCO file: images in file order, categories sorted by id, usable annotations per image id."""

    images: list[dict[str, Any]]
    categories: list[dict[str, Any]]
    annotations: dict[Any, list[dict[str, Any]]]
    skipped: dict[str, list[Any]] = field(default_factory=dict)  # reason (SKIP_REASONS) -> annotation ids
    parts_dropped: int = 0  # degenerate parts dropped from annotations that kept other parts


def load_json(path: str | Path) -> dict[str, Any]:
    """The JSON object of a COCO file; UserError when it is missing, unreadable or not an object."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise UserError(f"COCO file '{path}': not found; check the path") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise UserError(f"COCO file '{path}': cannot be read ({exc}); give a COCO JSON file") from None
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise UserError(f"COCO file '{path}': not valid JSON ({exc.msg} at line {exc.lineno}, column {exc.colno}); "
                        "fix the file or export it again") from None
    if not isinstance(data, dict):
        raise UserError(f"COCO file '{path}': not a COCO object (the JSON is a {type(data).__name__}); give a file "
                        'with "images", "annotations" and "categories"')
    return data


def _list(data: dict[str, Any], key: str, path: Path, required: bool = True) -> list[Any]:
    value = data.get(key, None if required else [])
    if not isinstance(value, list):
        raise UserError(f"COCO file '{path}': \"{key}\" is {'missing' if value is None else 'not a list'}; "
                        "give a COCO instance file (images, annotations, categories)")
    return value


def _positive_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value > 0


def _images(data: dict[str, Any], path: Path) -> list[dict[str, Any]]:
    images = _list(data, "images", path)
    if not images:
        raise UserError(f"COCO file '{path}': lists no images; give a COCO file with at least one image")
    seen: set[Any] = set()
    for k, im in enumerate(images):
        where = f"COCO file '{path}': image #{k + 1}"
        if not isinstance(im, dict) or "id" not in im or isinstance(im["id"], (dict, list)):
            raise UserError(f"{where}: has no id; give every image an \"id\"")
        if not isinstance(im.get("file_name"), str) or not im["file_name"].strip():
            raise UserError(f"{where} (id {im['id']}): has no file_name; give the image file's name")
        if im["id"] in seen:
            raise UserError(f"{where}: id {im['id']} is used twice; give every image its own id")
        seen.add(im["id"])
        for key in ("height", "width"):
            if im.get(key) is not None and not _positive_int(im[key]):
                raise UserError(f"{where} (id {im['id']}): {key} {im[key]!r} is not a positive whole number; fix it "
                                "or remove it (it is then read from the image)")
    return images


def _categories(data: dict[str, Any], path: Path) -> list[dict[str, Any]]:
    cats = _list(data, "categories", path)
    if not cats:
        raise UserError(f"COCO file '{path}': lists no categories; give the classes in \"categories\"")
    seen: set[int] = set()
    for k, c in enumerate(cats):
        if not isinstance(c, dict) or not isinstance(c.get("id"), int) or isinstance(c.get("id"), bool):
            raise UserError(f"COCO file '{path}': category #{k + 1} has no whole-number id; fix \"categories\"")
        if not isinstance(c.get("name"), str) or not c["name"].strip():
            raise UserError(f"COCO file '{path}': category {c['id']} has no name; give it a \"name\"")
        if c["id"] in seen:
            raise UserError(f"COCO file '{path}': category id {c['id']} is used twice; give every category its own id")
        seen.add(c["id"])
    return sorted(cats, key=lambda c: c["id"])


def _number(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


def _part_area(part: list[float]) -> float:
    xs, ys = part[0::2], part[1::2]
    n = len(xs)
    return 0.5 * abs(sum(xs[i] * ys[(i + 1) % n] - xs[(i + 1) % n] * ys[i] for i in range(n)))


def _polygon(seg: list[Any], where: str) -> tuple[list[list[float]], int]:
    """Checked polygon parts -> (usable parts, parts dropped as degenerate)."""
    parts = [seg] if seg and all(not isinstance(v, list) for v in seg) else seg  # a flat list is one part
    kept = []
    for part in parts:
        if not isinstance(part, list) or not all(_number(v) for v in part):
            raise UserError(f"{where}: polygon holds something other than finite numbers; fix its segmentation")
        if len(part) % 2:
            raise UserError(f"{where}: polygon has an odd number of coordinates ({len(part)}); give x,y pairs")
        if len(part) >= 6 and _part_area(part) > 0:
            kept.append([float(v) for v in part])
    return kept, len(parts) - len(kept)


def _rle(seg: dict[str, Any], image: dict[str, Any], where: str) -> None:
    size = seg.get("size")
    counts = seg.get("counts")
    if (not isinstance(size, list) or len(size) != 2 or not all(_positive_int(v) for v in size)
            or not isinstance(counts, (str, list))):
        raise UserError(f"{where}: RLE segmentation needs \"size\" [height, width] and \"counts\"; fix it")
    expected = [image.get("height"), image.get("width")]
    if None not in expected and size != expected:
        raise UserError(f"{where}: RLE size {size} differs from its image's {expected}; fix the annotation")


def _bbox(parts: list[list[float]] | None, seg: dict | None) -> list[float]:
    if seg is not None:
        from pycocotools import mask as mask_utils

        rle = mask_utils.frPyObjects(seg, *seg["size"]) if isinstance(seg["counts"], list) else seg
        return [float(v) for v in mask_utils.toBbox(rle)]
    xs = [v for p in parts or [] for v in p[0::2]]
    ys = [v for p in parts or [] for v in p[1::2]]
    return [min(xs), min(ys), max(xs) - min(xs), max(ys) - min(ys)]


def check_coco(data: dict[str, Any], path: str | Path) -> CocoContent:
    """Check a COCO object completely (module doc) -> its images, categories and usable annotations."""
    path = Path(path)
    images = _images(data, path)
    cats = _categories(data, path)
    known_images = {im["id"]: im for im in images}
    known_cats = {c["id"] for c in cats}
    per_image: dict[Any, list[dict[str, Any]]] = {im["id"]: [] for im in images}
    skipped: dict[str, list[Any]] = {}
    dropped = 0
    for k, a in enumerate(_list(data, "annotations", path, required=False)):
        if not isinstance(a, dict):
            raise UserError(f"COCO file '{path}': annotation #{k + 1} is not an object; fix \"annotations\"")
        ann_id = a.get("id", f"#{k + 1}")
        where = f"COCO file '{path}': annotation {ann_id}"
        if "image_id" not in a or isinstance(a["image_id"], (dict, list)):
            raise UserError(f"{where}: has no image_id; give the id of its image")
        cid = a.get("category_id")
        if not isinstance(cid, int) or isinstance(cid, bool) or cid not in known_cats:
            raise UserError(f"{where}: category_id {a.get('category_id')!r} is not one of the categories "
                            f"{', '.join(map(str, sorted(known_cats)))}; fix the annotation or add the category")
        image = known_images.get(a["image_id"])
        if image is None:
            skipped.setdefault("orphan", []).append(ann_id)
            continue
        seg = a.get("segmentation")
        if not seg:
            raise UserError(f"{where} (image {a['image_id']}): has no segmentation, only a bbox; instance models learn "
                            "masks: add a polygon or remove the annotation")
        if isinstance(seg, dict):
            _rle(seg, image, where)
            parts, rle = None, seg
        elif isinstance(seg, list):
            parts, lost = _polygon(seg, where)
            rle = None
            if not parts:
                skipped.setdefault("degenerate", []).append(ann_id)
                continue
            dropped += lost
        else:
            raise UserError(f"{where}: segmentation is neither polygons nor RLE; fix it")
        clean = {**a, "segmentation": parts if parts is not None else rle}
        bbox = a.get("bbox")
        if not (isinstance(bbox, list) and len(bbox) == 4 and all(_number(v) for v in bbox) and min(bbox[2:]) >= 0):
            clean["bbox"] = _bbox(parts, rle)
        per_image[a["image_id"]].append(clean)
    return CocoContent(images, cats, per_image, skipped, dropped)


def skip_warnings(path: str | Path, content: CocoContent) -> list[str]:
    """One line per kind of annotation skipped (and parts dropped), naming a few ids."""
    lines = []
    for reason, ids in content.skipped.items():
        shown = ", ".join(map(str, ids[:5])) + (", ..." if len(ids) > 5 else "")
        lines.append(f"COCO file '{path}': skipped {len(ids)} annotation(s) {SKIP_REASONS[reason]} (ids {shown})")
    if content.parts_dropped:
        lines.append(f"COCO file '{path}': dropped {content.parts_dropped} polygon part(s) of fewer than 3 points "
                     "or no area from annotations that keep their other parts")
    return lines
