"""Inference benchmark: our streaming pipeline vs SAHI's sliced prediction on generated SAR scenes.

    python -m benchmarks.benchmark_inference [--sizes 2000,8000,16000] [--no-sahi] [--out-dir out/benchmark]

For each size: a synthetic scene (benchmarks.make_large_scene, cached), then in separate fresh
processes (so each peak RSS is its own): ``rsseg segment``'s pipeline with the shipped model, and the
same model on the same tiles through ``sahi.predict.get_sliced_prediction`` (whole image in memory,
one slice per forward pass, GREEDYNMM/IOS 0.5 merge, no full-image pass) followed by writing the same
GeoPackage. Columns: ships in the scene, tiles, megapixels per second, pipeline efficiency (sum of
pure model forward time / end-to-end wall time), peak RSS, objects written and their recall /
precision against the scene's ships (a feature is a hit when its centroid lies within a ship's half
length of the ship's centre, ``make_large_scene.match_to_ships``), SAHI's wall, model share (its
forward time / its wall: with the same model on the same tiles no pipeline can beat SAHI by more than
1 / share), RSS, objects, recall / precision, and the ratios. Writes ``benchmark.md`` and
``benchmark.json`` to --out-dir. SAHI is a benchmark-only dependency:
``pip install -r requirements-bench.txt`` (``make benchmark`` does it).
"""
from __future__ import annotations

import argparse
import json
import platform
import resource
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
MODULE = "benchmarks.benchmark_inference"


def _peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0  # Linux: kB


def _load(model: str, device: str, threads: int):
    import torch

    from engine.inference.predictor import Predictor
    from engine.zoo import resolve_model

    if threads > 0:
        torch.set_num_threads(threads)
    label, ckpt = resolve_model(model)
    return label, Predictor(ckpt, device)


def run_ours(scene: str, out: str, model: str, device: str, threads: int, batch: int) -> dict:
    """Our pipeline on `scene`, in this process."""
    from engine.inference.segment import SegmentOptions, segment_raster

    label, predictor = _load(model, device, threads)
    start = time.perf_counter()
    result = segment_raster(scene, out, predictor, SegmentOptions(batch_size=batch or None), model_label=label)
    wall = time.perf_counter() - start
    return {"wall_s": wall, "forward_s": result.forward_seconds, "tiles": result.tiles,
            "tiles_run": result.tiles_run, "objects": result.features, "peak_rss_mb": _peak_rss_mb(),
            "peak_pending": result.peak_pending}


def run_sahi(scene: str, out: str, model: str, device: str, threads: int) -> dict:
    """SAHI sliced prediction with the same model, tiles and thresholds, then the same GeoPackage output."""
    import numpy as np
    import rasterio
    import torch
    from sahi.models.torchvision import TorchVisionDetectionModel
    from sahi.predict import get_sliced_prediction
    from shapely.geometry import MultiPolygon, Polygon

    from engine.normalise import normalise
    from engine.vector import VectorWriter

    label, predictor = _load(model, device, threads)
    spec = predictor.spec
    forward = {"s": 0.0}

    class EngineModel(TorchVisionDetectionModel):
        """SAHI wrapper: our normalisation, our model (it does not resize), forward time measured."""

        def set_model(self, model, **kwargs):
            self.model = model
            self.category_mapping = {str(c.id): c.name for c in spec.classes}

        def perform_inference(self, image, image_size=None):
            pixels = image[None] if image.ndim == 2 else np.transpose(image, (2, 0, 1))[: spec.bands]
            tensor = torch.from_numpy(normalise(pixels, spec.normalisation)).to(predictor.device)
            begin = time.perf_counter()
            with torch.no_grad():
                self._original_predictions = self.model([tensor])
            forward["s"] += time.perf_counter() - begin

    start = time.perf_counter()
    with rasterio.open(scene) as ds:
        image = ds.read(1)  # SAHI works on the whole image in memory
        transform, crs = ds.transform, ds.crs.to_wkt()
    sahi_model = EngineModel(model=predictor.model, device=str(predictor.device),
                             confidence_threshold=spec.score_threshold, mask_threshold=spec.mask_threshold)
    with predictor.min_score(spec.score_threshold):
        result = get_sliced_prediction(
            image, sahi_model, slice_height=spec.tile_size, slice_width=spec.tile_size,
            overlap_height_ratio=spec.overlap / spec.tile_size, overlap_width_ratio=spec.overlap / spec.tile_size,
            perform_standard_pred=False, postprocess_type="GREEDYNMM", postprocess_match_metric="IOS",
            postprocess_match_threshold=0.5, verbose=0)
    n = 0
    with VectorWriter(out, crs, layer_name="sahi") as writer:
        for pred in result.object_prediction_list:  # one feature per prediction, as ours writes
            rings = [np.asarray(ring, float).reshape(-1, 2) for ring in (pred.mask.segmentation if pred.mask else [])]
            polys = [Polygon([transform * (x, y) for x, y in xy]) for xy in rings if len(xy) >= 3]
            if not polys:
                continue
            geom = polys[0] if len(polys) == 1 else MultiPolygon(polys)
            writer.write(geom, {"class_id": pred.category.id, "class_name": pred.category.name,
                                "score": float(pred.score.value), "area_m2": geom.area, "n_tiles": 1,
                                "merged": 0, "model": label, "source": Path(scene).name})
            n += 1
    wall = time.perf_counter() - start
    return {"wall_s": wall, "forward_s": forward["s"], "objects": n, "peak_rss_mb": _peak_rss_mb()}


def _worker(kind: str, scene: Path, out: Path, args: argparse.Namespace) -> dict:
    """Run one measurement in a fresh Python process and return its JSON result."""
    cmd = [sys.executable, "-m", MODULE, "--worker", kind, "--scene", str(scene), "--worker-out", str(out),
           "--model", args.model, "--device", args.device, "--threads", str(args.threads),
           "--batch-size", str(args.batch_size)]
    proc = subprocess.run(cmd, capture_output=True, text=True)
    if proc.returncode != 0:
        raise SystemExit(f"{kind} run on {scene} failed:\n{proc.stderr[-3000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def score_against_truth(vectors: Path, scene: Path, ships) -> dict:
    """Features of `vectors` (centroid, score) matched to the scene's ships (make_large_scene.match_to_ships)."""
    import fiona
    import numpy as np
    import rasterio
    from shapely.geometry import shape

    from benchmarks.make_large_scene import match_to_ships

    with rasterio.open(scene) as ds:
        to_pixel = ~ds.transform
    centres, scores = [], []
    with fiona.open(vectors) as src:
        for feature in src:
            point = shape(feature["geometry"]).centroid
            col, row = to_pixel * (point.x, point.y)
            centres.append((row, col))
            scores.append(feature["properties"]["score"])
    return match_to_ships(np.array(centres).reshape(-1, 2), np.array(scores), ships)


def _truth_cell(run: dict) -> str:
    truth = run.get("truth")
    return f"{truth['recall']:.3f} / {truth['precision']:.3f}" if truth else "-"


def _table(rows: list[dict], sahi: bool) -> str:
    head = ["scene (px)", "ships", "tiles (run)", "MP/s", "efficiency", "peak RSS (MB)", "objects",
            "recall / precision", "wall (s)"]
    if sahi:
        head += ["SAHI wall (s)", "SAHI model share", "SAHI RSS (MB)", "SAHI objects", "SAHI recall / precision",
                 "speed-up vs SAHI", "SAHI / our RSS"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in rows:
        o = r["ours"]
        cells = [f"{r['size']} x {r['size']}", str(r.get("ships", "-")), f"{o['tiles']} ({o['tiles_run']})",
                 f"{r['megapixels'] / o['wall_s']:.2f}",
                 f"{o['forward_s'] / o['wall_s']:.3f}", f"{o['peak_rss_mb']:.0f}", str(o["objects"]), _truth_cell(o),
                 f"{o['wall_s']:.1f}"]
        if sahi and "sahi" in r:
            s = r["sahi"]
            cells += [f"{s['wall_s']:.1f}", f"{s['forward_s'] / s['wall_s']:.3f}", f"{s['peak_rss_mb']:.0f}",
                      str(s["objects"]), _truth_cell(s),
                      f"{s['wall_s'] / o['wall_s']:.2f}x", f"{s['peak_rss_mb'] / o['peak_rss_mb']:.2f}"]
        elif sahi:
            cells += ["-"] * 7
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="2000,8000,16000", help="scene sizes in pixels a side")
    parser.add_argument("--sahi-max-size", type=int, default=8000, help="largest scene also run through SAHI")
    parser.add_argument("--no-sahi", action="store_true")
    parser.add_argument("--swath", action="store_true", help="scenes with a slanted swath footprint and nodata")
    parser.add_argument("--model", default="ssdd-ship-maskrcnn")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--threads", type=int, default=0, help="torch CPU threads (0 = torch's default)")
    parser.add_argument("--batch-size", type=int, default=0, help="0: the engine's default (1 on CPU, 8 on CUDA)")
    parser.add_argument("--out-dir", default=str(ROOT / "out" / "benchmark"))
    parser.add_argument("--tag", default="benchmark", help="output file stem")
    parser.add_argument("--worker", choices=["ours", "sahi"], help=argparse.SUPPRESS)
    parser.add_argument("--scene", help=argparse.SUPPRESS)
    parser.add_argument("--worker-out", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.worker:
        run = run_ours(args.scene, args.worker_out, args.model, args.device, args.threads, args.batch_size) \
            if args.worker == "ours" else run_sahi(args.scene, args.worker_out, args.model, args.device, args.threads)
        print(json.dumps(run))
        return 0

    from benchmarks.make_large_scene import scene_ships, write_synthetic_scene

    out_dir = Path(args.out_dir)
    (out_dir / "scenes").mkdir(parents=True, exist_ok=True)
    rows = []
    for size in (int(s) for s in args.sizes.split(",")):
        scene = out_dir / "scenes" / f"scene_{size}{'_swath' if args.swath else ''}.tif"
        if not scene.exists():
            print(f"generating {scene} ...", file=sys.stderr)
            write_synthetic_scene(scene, size, seed=0, swath=args.swath)
        ships = scene_ships(size, seed=0, swath=args.swath)
        row = {"size": size, "megapixels": size * size / 1e6, "ships": len(ships)}
        runs = [("ours", "ours")]
        if not args.no_sahi and size <= args.sahi_max_size:
            runs.append(("sahi", "SAHI"))
        for kind, name in runs:
            print(f"{size}: {name} ...", file=sys.stderr)
            vectors = out_dir / f"{kind}_{size}.gpkg"
            row[kind] = _worker(kind, scene, vectors, args)
            row[kind]["truth"] = score_against_truth(vectors, scene, ships)
        rows.append(row)
        print(json.dumps(row), file=sys.stderr)
    table = _table(rows, not args.no_sahi)
    meta = {"model": args.model, "device": args.device, "threads": args.threads, "batch_size": args.batch_size,
            "cpu": platform.processor() or platform.machine(), "python": platform.python_version(),
            "command": " ".join(["python", "-m", MODULE, *sys.argv[1:]])}
    (out_dir / f"{args.tag}.json").write_text(json.dumps({"meta": meta, "rows": rows}, indent=2) + "\n")
    (out_dir / f"{args.tag}.md").write_text(f"{table}\n\n`{meta['command']}`\n")
    print(table)
    return 0


if __name__ == "__main__":
    sys.exit(main())
