"""Seeded train/validation split of a COCO file (by image)."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from engine.errors import UserError


def split_coco(
    coco_file: str | Path, out_dir: str | Path, val_fraction: float = 0.2, seed: int = 0
) -> tuple[Path, Path]:
    """Write `train.json` and `val.json` under out_dir; images are shuffled with `seed`.

    Ids are kept as in the source file (the dataset renumbers at load time).
    """
    if not 0.0 < val_fraction < 1.0:
        raise UserError(f"--val-fraction {val_fraction}: must be between 0 and 1")
    data = json.loads(Path(coco_file).read_text())
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
        tmp.write_text(json.dumps(subset))
        tmp.replace(path)
        paths.append(path)
    return paths[0], paths[1]
