"""Does tiling cost accuracy? COCO mask AP of tiled inference (tiles smaller than the images) vs whole images.

    python -m benchmarks.seam_accuracy --checkpoint ssdd-ship-maskrcnn --coco runs/splits/ssdd/val.json \
        --images $DATA/ssdd/images --tile-size 256 --overlap 64 [--out out/seams_ssdd.json]

Both modes go through the production path (engine.inference.segment_raster: tiling, seam merge,
vectorisation); "whole" uses one tile as large as the image. Polygons are rasterised back to masks
and scored with COCOeval against the COCO ground truth (ids renumbered from 1 as in rsseg evaluate).
The score threshold is 0.05 in both modes (as in AP evaluation), not the model's display threshold.
"""
from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

import fiona
import numpy as np
from pycocotools import mask as mask_utils
from rasterio.features import rasterize
from shapely.geometry import shape
from tqdm import tqdm

from engine.data.coco import CocoInstanceDataset
from engine.evaluation.coco_eval import coco_metrics, ground_truth_coco
from engine.inference.predictor import Predictor
from engine.inference.segment import SegmentOptions, segment_raster
from engine.zoo import resolve_model


def polygons_to_results(path: Path, image_id: int, height: int, width: int) -> list[dict]:
    """Polygons in pixel coordinates (x = column, y = row) -> COCO result dicts with RLE masks."""
    results = []
    with fiona.open(path) as layer:
        for feat in layer:
            geom = shape(feat["geometry"])
            mask = rasterize([geom], out_shape=(height, width), dtype="uint8")
            if not mask.any():
                continue
            rle = mask_utils.encode(np.asfortranarray(mask))
            rle["counts"] = rle["counts"].decode("ascii")
            x0, y0, x1, y1 = geom.bounds
            props = feat["properties"]
            results.append({"image_id": image_id, "category_id": int(props["class_id"]),
                            "score": float(props["score"]), "bbox": [x0, y0, x1 - x0, y1 - y0],
                            "segmentation": rle})
    return results


def evaluate(predictor: Predictor, dataset: CocoInstanceDataset, tile_size: int | None, overlap: int,
             bands: list[int], desc: str, containment: float | None) -> tuple[dict, dict]:
    """COCO metrics of one mode over the dataset, and tile statistics."""
    results: list[dict] = []
    tiles = merged = 0
    with tempfile.TemporaryDirectory() as tmp:
        for i, info in enumerate(tqdm(dataset.index.images, desc=desc, unit="img", file=sys.stderr)):
            h, w = info["height"], info["width"]
            size = tile_size or max(h, w)
            options = SegmentOptions(tile_size=size, overlap=overlap if tile_size else 0, score_threshold=0.05,
                                     bands=bands, resample=False, duplicate_containment=containment)
            out = Path(tmp) / f"{i}.geojson"
            res = segment_raster(dataset.images_dir / info["file_name"], out, predictor, options)
            tiles += res.tiles
            results.extend(polygons_to_results(out, i + 1, h, w))
            with fiona.open(out) as layer:
                merged += sum(int(f["properties"]["merged"]) for f in layer)
    metrics = coco_metrics(ground_truth_coco(dataset), results)
    return metrics, {"tiles": tiles, "merged_objects": merged, "detections": len(results)}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--checkpoint", required=True, help="shipped model name or checkpoint path")
    parser.add_argument("--coco", required=True)
    parser.add_argument("--images", required=True)
    parser.add_argument("--tile-size", type=int, default=256)
    parser.add_argument("--overlap", type=int, default=64)
    parser.add_argument("--bands", help="1-based image bands (default: 1..the model's band count)")
    parser.add_argument("--device", default="auto")
    parser.add_argument("--duplicate-containment", default=str(SegmentOptions.duplicate_containment),
                        help="drop a tile's detection this much inside a stronger one (SegmentOptions); 'none': keep")
    parser.add_argument("--out", help="JSON with both modes' metrics")
    args = parser.parse_args(argv)
    label, ckpt = resolve_model(args.checkpoint)
    predictor = Predictor(ckpt, args.device)
    bands = [int(b) for b in args.bands.split(",")] if args.bands else list(range(1, ckpt.spec.bands + 1))
    dataset = CocoInstanceDataset(args.coco, args.images, ckpt.spec.normalisation, bands)
    containment = None if args.duplicate_containment.lower() == "none" else float(args.duplicate_containment)
    whole, whole_stats = evaluate(predictor, dataset, None, 0, bands, "whole images", containment)
    tiled, tiled_stats = evaluate(predictor, dataset, args.tile_size, args.overlap, bands,
                                  f"tiles {args.tile_size}/{args.overlap}", containment)
    report = {"model": label, "coco": args.coco, "images": len(dataset), "tile_size": args.tile_size,
              "overlap": args.overlap, "duplicate_containment": containment,
              "whole": {**whole, **whole_stats}, "tiled": {**tiled, **tiled_stats},
              "mask_AP_drop": round(whole["segm"]["AP"] - tiled["segm"]["AP"], 2)}
    print("| mode | tiles | mask AP | AP50 | AP75 | box AP | merged across seams |\n|---|---|---|---|---|---|---|")
    for name, m, s in (("whole image", whole, whole_stats), (f"tiles {args.tile_size}/{args.overlap}", tiled,
                                                              tiled_stats)):
        print(f"| {name} | {s['tiles']} | {m['segm']['AP']} | {m['segm']['AP50']} | {m['segm']['AP75']} | "
              f"{m['bbox']['AP']} | {s['merged_objects']} |")
    print(f"mask AP drop (whole - tiled): {report['mask_AP_drop']} points")
    if args.out:
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.out).write_text(json.dumps(report, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
