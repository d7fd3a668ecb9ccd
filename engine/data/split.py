"""Seeded train/validation split of a COCO file (by image)."""
from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import numpy as np

from engine.data.coco_checks import check_coco, load_json, skip_warnings
from engine.errors import UserError


def split_coco(
    coco_file: str | Path, out_dir: str | Path, val_fraction: float = 0.2, seed: int = 0,
    warn: Callable[[str], None] | None = None,
) -> tuple[Path, Path]:
    """Write `train.json` and `val.json` under out_dir; images are shuffled with `seed`.

    The file is checked first (engine.data.coco_checks; what it would skip is passed to `warn`), and written
    as it is: ids are kept as in the source file (the dataset renumbers at load time).
    """
    if not 0.0 < val_fraction < 1.0:
        raise UserError(f"--val-fraction {val_fraction}: must be between 0 and 1")
    data = load_json(coco_file)
    for line in skip_warnings(coco_file, check_coco(data, coco_file)):
        (warn or (lambda _: None))(line)
    images = data["images"]
    order = np.random.default_rng(seed).permutation(len(images))
    n_val = max(1, round(len(images) * val_fraction))
    if n_val >= len(images):
        raise UserError(f"--val-fraction {val_fraction}: leaves no training images out of {len(images)}")
    val_ids = {images[i]["id"] for i in order[:n_val]}
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = []
    for name, keep in (("train", lambda i: i not in val_ids), ("val", lambda i: i in val_ids)):
        subset = dict(data)
        subset["images"] = [im for im in images if keep(im["id"])]
        subset["annotations"] = [a for a in data.get("annotations", []) if keep(a["image_id"])]
        subset["info"] = {**(data.get("info") or {}), "split": name, "seed": seed, "val_fraction": val_fraction,
                          "source": str(coco_file)}
        path = out_dir / f"{name}.json"
        tmp = path.with_suffix(".json.tmp")
        try:
            tmp.write_text(json.dumps(subset))
            tmp.replace(path)
        except BaseException:
            tmp.unlink(missing_ok=True)
            raise
        paths.append(path)
    return paths[0], paths[1]
