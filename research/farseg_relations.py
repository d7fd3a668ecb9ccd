"""FarSeg's F-S relation maps on a few images: are they alive, switched off (r ~ 0) or saturated (r ~ 1)?

    python -m research.farseg_relations CHECKPOINT --coco runs/splits/nwpu/val.json --images $DATA/nwpu_vhr10/images
        [--count 3] [--crop 384] [--untrained [--config KEY=JSON ...]]

For each of the first --count images of the COCO file (top-left crop of --crop px, normalised as the
checkpoint's spec says) and each pyramid level P2..P5, prints the mean relation r = sigmoid(<u_i, v_i>), the
share of pixels with r < 0.05 (features switched off) and with r > 0.95 (relation saturated; its gradient
through the sigmoid is below 0.05). --untrained builds the checkpoint's spec with fresh weights (the
pretrained trunk loads as in training), with --config overrides, to see the relation at initialisation.
"""
from __future__ import annotations

import argparse
import dataclasses
import json
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from engine.checkpoint import load_checkpoint
from engine.models import build_model
from engine.models.semantic.farseg import FarSeg
from engine.normalise import normalise
from research.overfit import config_overrides

OFF, SATURATED = 0.05, 0.95


def relation_stats(model: FarSeg, batch: torch.Tensor) -> list[dict[str, float]]:
    """Relation maps of `batch` [B,C,H,W] (H, W multiples of 32) -> per level {mean, off, saturated}:
    the mean r and the shares of pixels with r < 0.05 and r > 0.95."""
    if model.relation is None:
        raise ValueError("this FarSeg has no F-S relation (fs_relation: false)")
    with torch.no_grad():
        pyramid, c5 = model.backbone(batch)
        maps = model.relation.relations(list(pyramid.values()), c5)
    return [{"mean": float(r.mean()), "off": float((r < OFF).float().mean()),
             "saturated": float((r > SATURATED).float().mean())} for r in maps]


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("checkpoint")
    parser.add_argument("--coco", required=True)
    parser.add_argument("--images", required=True)
    parser.add_argument("--count", type=int, default=3)
    parser.add_argument("--crop", type=int, default=384, help="top-left crop side in px (a multiple of 32)")
    parser.add_argument("--untrained", action="store_true", help="fresh weights for the checkpoint's spec")
    parser.add_argument("--config", action="append", default=[], metavar="KEY=JSON",
                        help="config override of the --untrained model")
    args = parser.parse_args(argv)
    torch.manual_seed(0)
    checkpoint = load_checkpoint(args.checkpoint)
    overrides = config_overrides(args.config, parser)
    spec = dataclasses.replace(checkpoint.spec, config={**checkpoint.spec.config, **overrides})
    model = build_model(spec)
    if not isinstance(model, FarSeg):
        parser.error(f"{args.checkpoint} is a {spec.architecture} checkpoint; give a FarSeg one")
    if not args.untrained:
        model.load_state_dict(checkpoint.state_dict)
    model.eval()
    for image in json.loads(Path(args.coco).read_text())["images"][: args.count]:
        pixels = np.asarray(Image.open(Path(args.images) / image["file_name"]).convert("RGB")).transpose(2, 0, 1)
        height, width = (min(side, args.crop) // 32 * 32 for side in pixels.shape[1:])
        crop = normalise(pixels[:, :height, :width], spec.normalisation)
        stats = relation_stats(model, torch.from_numpy(np.ascontiguousarray(crop))[None])
        levels = " | ".join(f"P{i + 2} mean {s['mean']:.2f} r<{OFF} {s['off']:.2f} r>{SATURATED} {s['saturated']:.2f}"
                            for i, s in enumerate(stats))
        print(f"{image['file_name']}: {levels}")


if __name__ == "__main__":
    main()
