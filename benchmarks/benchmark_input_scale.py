"""Accuracy per second of SAR ship models at their input zoom: speed on the demo scene beside validation AP.

    python -m benchmarks.benchmark_input_scale --candidate NAME=MODEL_OR_CHECKPOINT@SCALE [...]
        [--scene data/demo/hrsid_demo_scene.tif] [--truth data/demo/hrsid_demo_truth.gpkg]
        [--coco VAL.json --images DIR] [--sweep] [--config NAME='{"box_nms_thresh": 0.6}'] [--threads 2]
        [--out-dir out/benchmark] [--tag input_scale]

Per candidate (a shipped model name or a checkpoint, and the zoom `--input-scale` it runs at), in this process
one after another: `rsseg segment` of the scene (no resampling: the scene keeps its pixels, the zoom is the
candidate's), timed from the model loaded to the file written -> MPix/s of the scene; `rsseg score` of the
result against the scene's reference ships -> precision, recall, F1 (one-to-one, IoU >= 0.5); and, with
`--coco`/`--images`, `rsseg evaluate` -> validation mask and box AP at that zoom; with `--sweep`, the scene
segmented again at score >= 0.05 and scored at every threshold (`rsseg score --sweep`) -> the scene's own
best threshold and F1, an optimistic bound beside the model's default threshold. `--config NAME=JSON` changes
inference settings of the architecture config for that candidate (e.g. the box NMS IoU of a crowded scene).
Speeds are only comparable from an otherwise idle machine. Writes `<tag>.md` and `<tag>.json` to --out-dir and
prints the table.
"""
from __future__ import annotations

import argparse
import json
import platform
import sys
import time
from dataclasses import replace
from pathlib import Path

import rasterio


def parse_candidate(text: str) -> tuple[str, str, float]:
    """'NAME=MODEL@SCALE' -> (name, model, scale)."""
    name, _, rest = text.partition("=")
    model, _, scale = rest.rpartition("@")
    if not name or not model or not scale:
        raise SystemExit(f"--candidate {text!r}: give NAME=MODEL_OR_CHECKPOINT@SCALE, e.g. lite0=ssdd-ship-maskrcnn@1")
    return name, model, float(scale)


def parse_configs(texts: list[str], names: list[str]) -> dict[str, dict]:
    """['NAME={"key": value}', ...] -> {NAME: {key: value}}; every NAME must be a candidate's."""
    configs = {}
    for text in texts:
        name, _, body = text.partition("=")
        try:
            configs[name] = json.loads(body)
        except json.JSONDecodeError as exc:
            example = "crowd='{\"box_nms_thresh\": 0.6}'"
            raise SystemExit(f"--config {text!r}: give NAME=JSON, e.g. {example} ({exc})") from None
        if name not in names or not isinstance(configs[name], dict):
            raise SystemExit(f"--config {text!r}: NAME must be one of the candidates ({', '.join(names)}) and JSON "
                             "an object of config keys")
    return configs


def measure(name: str, model: str, scale: float, args: argparse.Namespace, out_dir: Path,
            config: dict | None = None) -> dict:
    import torch

    from engine.evaluation.coco_eval import evaluate_model
    from engine.inference.predictor import Predictor
    from engine.inference.segment import SegmentOptions, segment_raster
    from engine.models import resolve_config
    from engine.tasks import task_of
    from engine.vector.score import score_files
    from engine.zoo import resolve_model

    torch.set_num_threads(args.threads)
    label, ckpt = resolve_model(model)
    updates = {"input_scale": scale}
    if config:
        try:  # checked by the architecture's typed config: an unknown key or a bad value names the valid ones
            updates["config"] = resolve_config(ckpt.spec.architecture, None, {**ckpt.spec.config, **config})
        except ValueError as exc:
            raise SystemExit(f"--config {name}: {exc}") from None
    ckpt = replace(ckpt, spec=ckpt.spec.with_updates(**updates))
    predictor = Predictor(ckpt, "cpu")
    out = out_dir / f"{args.tag}_{name}.gpkg"
    out.unlink(missing_ok=True)
    with rasterio.open(args.scene) as src:
        mpix = src.width * src.height / 1e6
    start = time.perf_counter()
    result = segment_raster(args.scene, str(out), predictor, SegmentOptions(resample=False), model_label=label)
    seconds = time.perf_counter() - start
    score = score_files(str(out), args.truth).to_dict()["overall"]
    row = {"candidate": name, "model": model, "input_scale": scale, "trunk": ckpt.spec.config.get("backbone"),
           "config": config or {},
           "objects": result.features, "seconds": round(seconds, 1), "mpix_per_s": round(mpix / seconds, 3),
           "score_threshold": ckpt.spec.score_threshold,
           "precision": score["precision"], "recall": score["recall"], "f1": score["f1"]}
    if args.sweep:  # the scene once more at a low threshold, scored at every threshold: what suits this scene
        from engine.vector.score import best_of_sweep, read_polygons, sweep

        low = out_dir / f"{args.tag}_{name}_low.gpkg"
        low.unlink(missing_ok=True)
        segment_raster(args.scene, str(low), predictor, SegmentOptions(resample=False, score_threshold=0.05),
                       model_label=label)
        reference = read_polygons(args.truth)
        threshold, counts = best_of_sweep(sweep(read_polygons(low, to_crs=reference.crs), reference))
        row.update(scene_best_threshold=threshold, scene_best_f1=round(counts.f1 or 0.0, 4),
                   scene_best_precision=round(counts.precision or 0.0, 4), scene_best_recall=round(counts.recall, 4))
    if args.coco:
        dataset = task_of(ckpt.spec).eval_dataset(ckpt.spec, args.coco, args.images)
        metrics = evaluate_model(predictor.model, dataset, predictor.device, input_scale=scale)
        row.update(mask_ap=round(metrics["segm"]["AP"], 2), box_ap=round(metrics["bbox"]["AP"], 2))
    return row


def table(rows: list[dict]) -> str:
    swept = any("scene_best_f1" in r for r in rows)
    head = ("| candidate | trunk | zoom | val mask AP | val box AP | demo MPix/s | demo s | score >= | objects | P | R "
            "| F1 |" + (" scene-best score >= | its P | R | F1 |" if swept else ""))
    lines = [head, "|" + "---|" * (head.count("|") - 1)]
    for r in rows:
        line = (f"| {r['candidate']} | {r['trunk']} | {r['input_scale']:g} | {r.get('mask_ap', 'n/a')} | "
                f"{r.get('box_ap', 'n/a')} | {r['mpix_per_s']:.3f} | {r['seconds']:.1f} | {r['score_threshold']:g} | "
                f"{r['objects']} | {r['precision']:.3f} | {r['recall']:.3f} | {r['f1']:.3f} |")
        if swept:
            line += (f" {r['scene_best_threshold']:g} | {r['scene_best_precision']:.3f} | {r['scene_best_recall']:.3f} "
                     f"| {r['scene_best_f1']:.3f} |" if "scene_best_f1" in r else " n/a | n/a | n/a | n/a |")
        lines.append(line)
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--candidate", action="append", required=True, help="NAME=MODEL_OR_CHECKPOINT@SCALE")
    p.add_argument("--scene", default="data/demo/hrsid_demo_scene.tif")
    p.add_argument("--truth", default="data/demo/hrsid_demo_truth.gpkg")
    p.add_argument("--coco", help="validation COCO file (with --images): adds mask and box AP at each zoom")
    p.add_argument("--images")
    p.add_argument("--sweep", action="store_true",
                   help="also segment the scene at score >= 0.05 and report the threshold of the best F1 on it "
                        "(chosen on the scene itself: an optimistic bound, not the model's default)")
    p.add_argument("--config", action="append", default=[], metavar="NAME=JSON",
                   help="inference config overrides for candidate NAME, e.g. crowd='{\"box_nms_thresh\": 0.6}'")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--out-dir", type=Path, default=Path("out/benchmark"))
    p.add_argument("--tag", default="input_scale")
    args = p.parse_args(argv)
    args.out_dir.mkdir(parents=True, exist_ok=True)
    candidates = [parse_candidate(text) for text in args.candidate]
    configs = parse_configs(args.config, [name for name, _, _ in candidates])
    rows = []
    for name, model, scale in candidates:
        rows.append(measure(name, model, scale, args, args.out_dir, configs.get(name)))
        print(json.dumps(rows[-1]), file=sys.stderr, flush=True)
    text = table(rows)
    print(text)
    command = "python -m benchmarks.benchmark_input_scale " + " ".join(sys.argv[1:] if argv is None else argv)
    meta = {"command": command, "machine": platform.processor() or platform.machine(), "threads": args.threads}
    (args.out_dir / f"{args.tag}.json").write_text(json.dumps({"meta": meta, "rows": rows}, indent=2) + "\n")
    (args.out_dir / f"{args.tag}.md").write_text(f"{text}\n\n`{command}`\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
