"""`rsseg` command line: argument parsing only; each command is a thin call into the engine modules.

Exit codes: 0 success, 2 a user error (one line on stderr naming the input and the fix), 1 a crash,
3 `env` found missing packages, 130 cancelled (SIGTERM on POSIX, or Ctrl-C).
"""
from __future__ import annotations

import argparse
import json
import os
import signal
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import replace
from pathlib import Path

from engine.errors import Cancelled, UserError

DEFAULT_DATA = Path(__file__).resolve().parent.parent.parent / "shared" / "data"


# `train` defaults of a new model; with --init and no architecture flag, the base model's spec gives these instead
TRAIN_DEFAULTS = {"arch": "mask_rcnn", "sensor": "sar", "mean": "0.5", "std": "0.5", "scale": 1 / 255, "gsd": 1.0,
                  "input_scale": 1.0, "tile_size": 512, "overlap": 128, "score_threshold": 0.5}
ARCHITECTURE_FLAGS = ("arch", "backbone", "pretrained", "preset", "config")


def _add_train(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("train", help="train a model on a COCO instance dataset (semantic architectures: class maps)")
    p.add_argument("--coco", required=True, help="training COCO json")
    p.add_argument("--images", required=True, help="folder with the training images")
    p.add_argument("--val-coco", help="validation COCO json (evaluated each --eval-every epochs)")
    p.add_argument("--val-images", help="validation images folder (default: --images)")
    p.add_argument("--out", required=True, help="run folder: last.pt, best.pt, log.jsonl, loss.png")
    p.add_argument("--name", help="model name stored in the spec (default: the run folder's name)")
    p.add_argument("--init", metavar="MODEL",
                   help="shipped model name or checkpoint whose weights start the run. Without architecture flags "
                        "(--arch, --backbone, --pretrained, --preset, --config) the run fine-tunes it: it keeps its "
                        "architecture, config, bands, normalisation, GSD and zoom; classes other than its own get "
                        "a new head. c2fnet: a semantic checkpoint becomes the coarse model")
    p.add_argument("--arch", help="architecture (see 'rsseg models --architectures'; default: mask_rcnn)")
    p.add_argument("--backbone", help="backbone name; default: the architecture's own (mask_rcnn: resnet18)")
    p.add_argument("--pretrained", action="store_true", help="ImageNet weights (efficientnet_lite0)")
    p.add_argument("--preset", help="named config of the architecture (see 'rsseg models --architectures')")
    p.add_argument("--config", help="JSON object of architecture config overrides (over --preset)")
    p.add_argument("--bands", help="comma-separated 1-based bands to read, e.g. '1' for SAR JPEGs")
    p.add_argument("--band-names", help="comma-separated names of the model's input bands")
    p.add_argument("--sensor", choices=["sar", "sar-db", "optical"], help="default: sar")
    p.add_argument("--mean", help="comma-separated per-band means after scaling to [0,1] (default: 0.5)")
    p.add_argument("--std", help="comma-separated per-band stds (default: 0.5)")
    p.add_argument("--scale", type=float, help="raw value -> [0,1] factor (default: 1/255, for 8-bit)")
    p.add_argument("--gsd", type=float, help="ground sample distance of the training data, m/pixel (default: 1)")
    p.add_argument("--tile-size", type=int, help="inference tile size stored in the spec (default: 512)")
    p.add_argument("--overlap", type=int, help="inference tile overlap stored in the spec (default: 128)")
    p.add_argument("--score-threshold", type=float, help="inference score threshold stored in the spec "
                                                         "(default: 0.5)")
    p.add_argument("--description", default="")
    p.add_argument("--epochs", type=int, default=12)
    p.add_argument("--batch-size", type=int, default=2)
    p.add_argument("--optimizer", choices=["sgd", "adamw"], default="sgd")
    p.add_argument("--lr", type=float, default=0.01)
    p.add_argument("--weight-decay", type=float, default=1e-4)
    p.add_argument("--warmup-iters", type=int, default=200)
    p.add_argument("--schedule", choices=["cosine", "step"], default="cosine")
    p.add_argument("--steps", default="8,11", help="epochs where the step schedule divides lr by 10")
    p.add_argument("--clip-grad", type=float, default=10.0)
    p.add_argument("--no-amp", action="store_true", help="disable mixed precision on CUDA")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--workers", type=int, default=1)
    p.add_argument("--eval-every", type=int, default=1)
    p.add_argument("--crop-size", type=int, default=512)
    p.add_argument("--scale-jitter", default="0.8,1.25", help="min,max resize factor (times --input-scale)")
    p.add_argument("--input-scale", type=float, metavar="FACTOR",
                   help="zoom the model works at: images resized by FACTOR in training, tiles at inference "
                        "(2 for small SAR ships; default: 1)")
    p.add_argument("--sar-augment", action="store_true", help="gain, gamma and speckle jitter of SAR amplitude")
    p.add_argument("--checkpoint-every", type=int, default=100, metavar="ITERS",
                   help="save OUT/last.pt every ITERS iterations inside an epoch, for resume (0: epoch ends only)")
    p.add_argument("--max-iters-per-epoch", type=int, default=0)
    p.add_argument("--device", default="auto", help="auto | cpu | cuda | cuda:N")
    p.add_argument("--threads", type=int, default=0, help="CPU threads (0 = torch default)")
    p.add_argument("--no-resume", action="store_true", help="start over even if OUT/last.pt exists")
    p.add_argument("--progress", choices=["bar", "jsonl", "none"], default="bar",
                   help="bar on stderr, or JSON lines on stdout (iterations) for programs (the QGIS plugin)")


def _add_chips(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("chips", help="training chips (GeoTIFF) and COCO files from a raster and a polygon layer")
    p.add_argument("raster", help="raster to cut (any GDAL raster)")
    p.add_argument("polygons", help="polygon layer of the objects (GeoPackage, Shapefile, GeoJSON; "
                                    "'file.gpkg|layername=x')")
    p.add_argument("--out", required=True, help="output folder: OUT/images/, OUT/all.json, OUT/train.json, "
                                                "OUT/val.json")
    p.add_argument("--class-field", help="attribute with each polygon's class (default: every polygon is one class)")
    p.add_argument("--classes", help="comma-separated class names in this order, e.g. a base model's "
                                     "(default: the sorted names found)")
    p.add_argument("--layer", help="layer inside POLYGONS when the file holds several")
    p.add_argument("--aoi", help="polygon layer: only chips touching it are written")
    p.add_argument("--extent", metavar="XMIN,YMIN,XMAX,YMAX",
                   help="only chips touching this rectangle, in the raster's CRS (write --extent=... when XMIN is "
                        "negative)")
    p.add_argument("--bands", help="comma-separated 1-based raster bands, as the base model reads them "
                                   "(e.g. 1,1,1; default: all)")
    p.add_argument("--tile-size", type=int, default=512, help="chip size in pixels (default: %(default)s)")
    p.add_argument("--overlap", type=int, default=0, help="pixels shared by neighbouring chips (default: %(default)s)")
    p.add_argument("--empty-fraction", type=float, default=0.2,
                   help="at most this fraction of the written chips hold no object (default: %(default)s)")
    p.add_argument("--min-object-pixels", type=int, default=4,
                   help="drop pieces of polygons covering fewer pixels of a chip (default: %(default)s)")
    p.add_argument("--val-fraction", type=float, default=0.2,
                   help="fraction of the chips in val.json (0: none; default: %(default)s)")
    p.add_argument("--seed", type=int, default=0, help="seed of the empty-chip draw and of the split")
    p.add_argument("--gsd", type=float, metavar="METRES",
                   help="resample to this GSD, as segment does for a model of this GSD (default: keep the pixels)")
    p.add_argument("--gsd-tolerance", type=float, default=0.25,
                   help="with --gsd: relative GSD difference taken as is (default: %(default)s)")
    p.add_argument("--overwrite", action="store_true", help="replace chips already in OUT")
    p.add_argument("--progress", choices=["bar", "jsonl", "none"], default="bar",
                   help="bar on stderr, or JSON lines on stdout for programs (the QGIS plugin)")


def _add_split(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("split", help="seeded train/validation split of a COCO file")
    p.add_argument("--coco", default=str(DEFAULT_DATA / "ssdd" / "train.json"))
    p.add_argument("--out", required=True, help="folder for train.json and val.json")
    p.add_argument("--val-fraction", type=float, default=0.2)
    p.add_argument("--seed", type=int, default=0)


def _add_segment(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("segment", help="segment a raster into polygons (GeoPackage, Shapefile, GeoJSON)")
    p.add_argument("raster", help="input raster (GeoTIFF or anything GDAL reads)")
    p.add_argument("--model", default=None, help="shipped model name or checkpoint path (default: %(default)s)")
    p.add_argument("--out", required=True, help="output vector file: .gpkg, .shp or .geojson")
    p.add_argument("--bands", help="comma-separated 1-based raster bands fed to the model (default: all)")
    p.add_argument("--score-threshold", type=float, help="minimum score (default: the model's)")
    p.add_argument("--mask-threshold", type=float, help="mask probability threshold (default: the model's)")
    p.add_argument("--tile-size", type=int, help="tile size in pixels (default: the model's)")
    p.add_argument("--overlap", type=int, help="tile overlap in pixels (default: the model's)")
    p.add_argument("--batch-size", type=int, help="tiles per model call (default: 1 on CPU, 8 on CUDA)")
    p.add_argument("--tile-grid", help="QA output: the tile windows as a polygon layer (.gpkg, .shp, .geojson) "
                                       "with core bounds, status (run/nodata) and predictions per tile")
    p.add_argument("--simplify", type=float, default=0.0, help="polygon simplification tolerance, map units")
    p.add_argument("--min-area", type=int, default=4, metavar="PIXELS",
                   help="semantic models: drop class regions smaller than this many pixels (default: %(default)s)")
    p.add_argument("--duplicate-containment", type=float, default=0.8, metavar="FRACTION",
                   help="instance models: drop a tile's detection lying this much inside a stronger one of its "
                        "class (a half-object duplicate); above 1 keeps all (default: %(default)s)")
    p.add_argument("--input-scale", type=float, metavar="FACTOR",
                   help="resize every tile by FACTOR before the model (default: the zoom the model was trained at)")
    p.add_argument("--device", default="auto", help="auto | cpu | cuda | cuda:N")
    p.add_argument("--extent", metavar="XMIN,YMIN,XMAX,YMAX",
                   help="segment only this rectangle, in the raster's CRS units (pixels x,y if it has no CRS); "
                        "write --extent=... when XMIN is negative")
    p.add_argument("--no-resample", action="store_true",
                   help="keep the raster's pixel size even when it is outside the model's GSD range")
    p.add_argument("--gsd-tolerance", type=float, default=0.25,
                   help="relative GSD difference taken as is when the model declares no GSD range "
                        "(default: %(default)s)")
    p.add_argument("--value-range", metavar="MIN,MAX",
                   help="raw values mapped to 0..1 (default: the model's scaling for its dtype, else a "
                        "percentile stretch)")
    p.add_argument("--sar-input", choices=["auto", "amplitude", "db"], default="auto",
                   help="SAR values in the raster (auto: float with negative values = dB)")
    p.add_argument("--threads", type=int, default=0, help="CPU threads for the model (0 = torch's default)")
    p.add_argument("--progress", choices=["bar", "jsonl", "none"], default="bar",
                   help="bar on stderr, or JSON lines on stdout for programs (the QGIS plugin)")


def _add_evaluate(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("evaluate", help="COCO bbox and mask AP of a model on a COCO dataset "
                                        "(semantic models: also mIoU, F1, OA)")
    p.add_argument("--checkpoint", required=True, help="shipped model name or checkpoint path")
    p.add_argument("--coco", required=True, help="COCO json with the ground truth")
    p.add_argument("--images", required=True, help="folder with the images")
    p.add_argument("--bands", help="comma-separated 1-based bands read from the images (default: the model's count)")
    p.add_argument("--out", help="metrics JSON (default: print only)")
    p.add_argument("--input-scale", type=float, metavar="FACTOR",
                   help="resize every image by FACTOR before the model (default: the zoom the model was trained at)")
    p.add_argument("--device", default="auto")
    p.add_argument("--progress", choices=["bar", "jsonl", "none"], default="bar",
                   help="bar on stderr, or JSON lines on stdout (images; the metrics in the done event)")


def _add_score(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("score", help="object precision, recall and F1 of a polygon layer against a reference layer")
    p.add_argument("prediction", help="polygon layer to score (any vector file GDAL reads)")
    p.add_argument("reference", help="reference (truth) polygon layer")
    p.add_argument("--iou", type=float, default=0.5, help="IoU for a hit, one-to-one (default: %(default)s)")
    p.add_argument("--class-field", default="class_name", help="attribute holding the class (default: %(default)s)")
    p.add_argument("--reference-class-field", help="the reference layer's class attribute (default: --class-field)")
    p.add_argument("--score-field", default="score", help="attribute ordering the predictions (default: %(default)s)")
    p.add_argument("--prediction-layer", help="layer of a multi-layer prediction file")
    p.add_argument("--reference-layer", help="layer of a multi-layer reference file")
    p.add_argument("--out", help="write the scores as JSON")
    p.add_argument("--misses", metavar="PATH", help="write the reference polygons no prediction matched "
                                                    "(.gpkg, .shp, .geojson)")
    p.add_argument("--false-alarms", metavar="PATH", help="write the predictions that matched no reference polygon "
                                                          "(.gpkg, .shp, .geojson)")
    p.add_argument("--progress", choices=["bar", "jsonl", "none"], default="bar",
                   help="jsonl: the scores as a done event on stdout, for programs (the QGIS plugin)")


def _add_models(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("models", help="list the shipped models and their specs")
    p.add_argument("--json", action="store_true", help="machine-readable output")
    p.add_argument("--architectures", action="store_true",
                   help="list the buildable architectures, their tasks and config presets")


def _add_info(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("info", help="spec, metrics and provenance of a shipped model or checkpoint")
    p.add_argument("model", help="shipped model name or checkpoint path")
    p.add_argument("--json", action="store_true", help="machine-readable output")


def _add_env(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("env", help="check the engine's Python, packages, CUDA and GPUs (exit 3 if incomplete)")
    p.add_argument("--json", action="store_true", help="machine-readable output")


def _value_range(text: str | None) -> tuple[float, float] | None:
    if text is None:
        return None
    try:
        lo, hi = (float(v) for v in text.split(","))
    except ValueError:
        lo = hi = 0.0
    if not lo < hi:
        raise UserError(f"--value-range {text}: give MIN,MAX with MIN < MAX, e.g. --value-range 0,4000")
    return (lo, hi)


def _extent(text: str | None) -> tuple[float, float, float, float] | None:
    """'XMIN,YMIN,XMAX,YMAX' -> four floats (None stays None)."""
    if text is None:
        return None
    try:
        values = tuple(float(v) for v in text.split(","))
    except ValueError:
        values = ()
    if len(values) != 4:
        raise UserError(f"--extent '{text}': give four comma-separated numbers XMIN,YMIN,XMAX,YMAX "
                        "in the raster's CRS units")
    return values


def _floats(text: str) -> tuple[float, ...]:
    return tuple(float(v) for v in text.split(",") if v.strip())


def _ints(text: str | None) -> list[int] | None:
    return [int(v) for v in text.split(",") if v.strip()] if text else None


def _input_scale(scale: float | None) -> float | None:
    if scale is not None and not (0.1 <= scale <= 8.0):
        raise UserError(f"--input-scale {scale}: give a factor between 0.1 and 8, e.g. --input-scale 2")
    return scale


def _load_model(name_or_path: str, input_scale: float | None):
    """(label, checkpoint) of a shipped model name or checkpoint path; `--input-scale` replaces the spec's zoom."""
    from engine.zoo import resolve_model

    label, ckpt = resolve_model(name_or_path)
    if _input_scale(input_scale) is None:
        return label, ckpt
    return label, replace(ckpt, spec=ckpt.spec.with_updates(input_scale=input_scale))


@contextmanager
def _reported(reporter) -> Iterator[None]:
    """A command's failure also goes to its Reporter as an "error" event (JSON-lines mode), then on as raised."""
    try:
        yield
    except UserError as exc:
        reporter.error(str(exc))
        raise
    except (Cancelled, KeyboardInterrupt):
        reporter.error("cancelled")
        raise
    except Exception as exc:
        reporter.error(f"{type(exc).__name__}: {exc}")
        raise


def cmd_segment(args: argparse.Namespace) -> int:
    from engine.progress import Reporter

    reporter = Reporter(args.progress, desc="segment")
    try:
        return _segment(args, reporter)
    except UserError as exc:
        reporter.error(str(exc))
        raise
    except (Cancelled, KeyboardInterrupt):
        reporter.error("cancelled")
        raise
    except Exception as exc:
        reporter.error(f"{type(exc).__name__}: {exc}")
        raise


def _segment(args: argparse.Namespace, reporter) -> int:
    from engine.inference.predictor import Predictor
    from engine.inference.segment import SegmentOptions, segment_raster
    from engine.zoo import DEFAULT_MODEL

    extent = _extent(args.extent)
    value_range = _value_range(args.value_range)
    if args.threads > 0:
        import torch

        torch.set_num_threads(args.threads)
    label, ckpt = _load_model(args.model or DEFAULT_MODEL, args.input_scale)
    predictor = Predictor(ckpt, args.device)
    options = SegmentOptions(
        tile_size=args.tile_size, overlap=args.overlap, score_threshold=args.score_threshold,
        mask_threshold=args.mask_threshold, batch_size=args.batch_size, bands=_ints(args.bands),
        simplify=args.simplify, min_area=args.min_area, extent=extent, tile_grid=args.tile_grid,
        resample=not args.no_resample, gsd_tolerance=args.gsd_tolerance, value_range=value_range,
        sar_input=args.sar_input, duplicate_containment=args.duplicate_containment,
    )
    reporter.start_fields = {
        "raster": args.raster, "model": label, "output": args.out, "device": str(predictor.device),
        "classes": [{"id": c.id, "name": c.name, "colour": c.colour} for c in ckpt.spec.classes],
    }
    result = segment_raster(args.raster, args.out, predictor, options, model_label=label, progress=reporter)
    reporter.done(output=result.output, features=result.features, tiles=result.tiles, seconds=result.seconds,
                  classes=result.class_counts)
    counts = ", ".join(f"{n} {c}" for c, n in result.class_counts.items()) or "no objects"
    print(f"{result.features} objects ({counts}) from {result.tiles} tiles in {result.seconds:.1f} s -> "
          f"{result.output}", file=sys.stderr)
    return 0


def cmd_evaluate(args: argparse.Namespace) -> int:
    from engine.evaluation.report import speed_line, write_json
    from engine.inference.predictor import Predictor
    from engine.progress import Reporter

    reporter = Reporter(args.progress, desc="evaluate", unit="img")
    with _reported(reporter):
        label, ckpt = _load_model(args.checkpoint, args.input_scale)
        predictor = Predictor(ckpt, args.device)
        task = predictor.task
        dataset = task.eval_dataset(ckpt.spec, args.coco, args.images, _ints(args.bands))
        reporter.start_fields = {"message": f"Evaluating {label} on {len(dataset)} images"}
        reporter.started(len(dataset))
        metrics = task.evaluate(predictor.model, dataset, predictor.device, progress=reporter.advance,
                                input_scale=ckpt.spec.input_scale)
        metrics = {"model": label, "coco": args.coco, **metrics}
        out = write_json(args.out, metrics) if args.out else None
        reporter.done(model=label, images=metrics.get("images"), headline=task.headline(metrics),
                      score_name=task.score_name, output=str(out) if out else None)
    print(task.report(metrics), file=sys.stderr if args.progress == "jsonl" else sys.stdout)
    print(speed_line(metrics, str(predictor.device)), file=sys.stderr if args.progress == "jsonl" else sys.stdout)
    if out:
        print(f"written to {out}", file=sys.stderr)
    return 0


def cmd_models(args: argparse.Namespace) -> int:
    from engine.zoo import describe_architectures, describe_model, model_listing

    if args.architectures:
        print(describe_architectures())
        return 0
    listing = model_listing()
    if args.json:
        print(json.dumps(listing, indent=2))
        return 0
    if not listing:
        print("no shipped models installed")
    for m in listing:
        print(describe_model(m["name"] + (" (default)" if m["default"] else ""), m["spec"], m["metrics"]))
    return 0


def cmd_info(args: argparse.Namespace) -> int:
    from engine.zoo import describe_model, model_info

    info = model_info(args.model)
    if args.json:
        print(json.dumps(info, indent=2, default=str))
        return 0
    print(describe_model(info["name"], info["spec"], info["metrics"]))
    print(f"    {info['path']}")
    return 0


def cmd_env(args: argparse.Namespace) -> int:
    from engine.environment import engine_environment, summary

    report = engine_environment()
    print(json.dumps(report, indent=2) if args.json else summary(report))
    return 0 if report["ok"] else 3


def _finetune_spec(args: argparse.Namespace):
    """`train --init MODEL` without architecture flags: the base model's spec, the COCO file's classes, and the
    spec fields the user set."""
    from engine.data.coco import read_coco
    from engine.training.finetune import finetune_spec
    from engine.training.spec_builder import SAR_MODES, first_image_bands
    from engine.zoo import resolve_model

    label, base = resolve_model(args.init)
    index = read_coco(args.coco)
    bands = _ints(args.bands)
    given = {"band_names": tuple(args.band_names.split(",")) if args.band_names else None, "gsd_m": args.gsd,
             "input_scale": _input_scale(args.input_scale), "tile_size": args.tile_size, "overlap": args.overlap,
             "score_threshold": args.score_threshold, "description": args.description or None}
    norm = {"sar": SAR_MODES[args.sensor] if args.sensor else None, "scale": args.scale,
            "mean": _floats(args.mean) if args.mean else None, "std": _floats(args.std) if args.std else None}
    return finetune_spec(
        base.spec, name=args.name or Path(args.out).name, class_names=index.category_names,
        image_bands=len(bands) if bands else first_image_bands(index, args.coco, args.images), base_label=label,
        updates={k: v for k, v in given.items() if v is not None},
        normalisation={k: v for k, v in norm.items() if v is not None})


def _train_spec(args: argparse.Namespace):
    """The spec of the run: a fine-tuned base model (--init, no architecture flag) or a new model."""
    from engine.training.spec_builder import parse_overrides, training_spec

    if args.init and not any(getattr(args, flag) not in (None, False) for flag in ARCHITECTURE_FLAGS):
        return _finetune_spec(args)
    d = {k: (v if getattr(args, k) is None else getattr(args, k)) for k, v in TRAIN_DEFAULTS.items()}
    overrides = {**({"backbone": args.backbone} if args.backbone else {}),
                 **({"pretrained": True} if args.pretrained else {}), **parse_overrides(args.config or "{}")}
    return training_spec(
        name=args.name or Path(args.out).name, arch=d["arch"], coco=args.coco, images=args.images,
        preset=args.preset, overrides=overrides, bands=_ints(args.bands),
        band_names=args.band_names.split(",") if args.band_names else None, sensor=d["sensor"],
        scale=d["scale"], mean=_floats(d["mean"]), std=_floats(d["std"]), gsd_m=d["gsd"],
        input_scale=d["input_scale"], tile_size=d["tile_size"], overlap=d["overlap"],
        score_threshold=d["score_threshold"], description=args.description,
    )


def cmd_train(args: argparse.Namespace) -> int:
    from engine.progress import Reporter
    from engine.training.trainer import TrainConfig, Trainer

    reporter = Reporter(args.progress, desc="train", unit="iteration")
    with _reported(reporter):
        spec = _train_spec(args)
        jitter = _floats(args.scale_jitter)
        cfg = TrainConfig(
            coco=args.coco, images=args.images, out_dir=args.out, val_coco=args.val_coco,
            val_images=args.val_images, bands=_ints(args.bands), epochs=args.epochs, batch_size=args.batch_size,
            optimizer=args.optimizer, lr=args.lr, weight_decay=args.weight_decay, warmup_iters=args.warmup_iters,
            schedule=args.schedule, steps=_ints(args.steps) or [], clip_grad=args.clip_grad, amp=not args.no_amp,
            seed=args.seed, workers=args.workers, eval_every=args.eval_every, crop_size=args.crop_size,
            min_scale=jitter[0], max_scale=jitter[1], max_iters_per_epoch=args.max_iters_per_epoch,
            device=args.device, resume=not args.no_resume, threads=args.threads, init=args.init,
            checkpoint_every=args.checkpoint_every, sar_augment=args.sar_augment,
        )
        trainer = Trainer(spec, cfg, log=lambda m: print(m, file=sys.stderr), progress=reporter,
                          bar=args.progress == "bar")
        reporter.start_fields = {"device": str(trainer.device), "message": (
            f"Training {spec.name} ({spec.architecture}, classes {', '.join(c.name for c in spec.classes)}) on "
            f"{len(trainer.train_set)} images, {cfg.epochs} epoch{'s' if cfg.epochs != 1 else ''}")}
        best = trainer.fit()
        reporter.done(output=str(best), best_score=trainer.best_score if trainer.best_score >= 0 else None,
                      score_name=trainer.task.score_name, epochs=trainer.epoch, iterations=trainer.iteration)
    print(f"trained: {best}", file=sys.stderr)
    return 0


def cmd_split(args: argparse.Namespace) -> int:
    from engine.data.split import split_coco

    train, val = split_coco(args.coco, args.out, args.val_fraction, args.seed)
    print(f"wrote {train} and {val}", file=sys.stderr)
    return 0


def cmd_score(args: argparse.Namespace) -> int:
    from engine.evaluation.report import write_json
    from engine.progress import Reporter
    from engine.vector.score import format_score, score_layers, write_unmatched

    reporter = Reporter(args.progress, desc="score")
    with _reported(reporter):
        score, pred, ref = score_layers(args.prediction, args.reference, args.iou, args.class_field,
                                        args.score_field, args.prediction_layer, args.reference_layer,
                                        args.reference_class_field)
        written = {}
        for flag, path, layer, other, indices in (("--misses", args.misses, ref, pred, score.misses),
                                                  ("--false-alarms", args.false_alarms, pred, ref, score.false_alarms)):
            if path:
                written[flag[2:].replace("-", "_")] = str(write_unmatched(path, layer, indices, other, score, flag))
        out = None
        if args.out:
            out = write_json(args.out, {"prediction": args.prediction, "reference": args.reference,
                                        **score.to_dict()})
        reporter.done(**score.to_dict(), output=str(out) if out else None, **written)
    print(format_score(score), file=sys.stderr if args.progress == "jsonl" else sys.stdout)
    for path in ([out] if out else []) + list(written.values()):
        print(f"written to {path}", file=sys.stderr)
    return 0


def _chip_options(args: argparse.Namespace):
    from engine.data.chips import ChipOptions

    classes = tuple(c.strip() for c in args.classes.split(",")) if args.classes else None
    try:
        bands = tuple(int(b) for b in args.bands.split(",") if b.strip()) if args.bands else None
    except ValueError:
        raise UserError(f"--bands {args.bands}: give comma-separated 1-based band numbers, e.g. --bands 1,1,1") \
            from None
    return ChipOptions(
        class_field=args.class_field, classes=classes, layer=args.layer, aoi=args.aoi, extent=_extent(args.extent),
        bands=bands, tile_size=args.tile_size, overlap=args.overlap, empty_fraction=args.empty_fraction,
        min_object_pixels=args.min_object_pixels, val_fraction=args.val_fraction, seed=args.seed,
        gsd_m=args.gsd, gsd_tolerance=args.gsd_tolerance, overwrite=args.overwrite)


def cmd_chips(args: argparse.Namespace) -> int:
    from engine.data.chips import make_chips
    from engine.progress import Reporter

    reporter = Reporter(args.progress, desc="chips", unit="chip")
    reporter.start_fields = {"message": f"Cutting chips of {args.raster} labelled by {args.polygons}"}

    announced: list[int] = []

    def progress(done: int, total: int) -> None:
        if not announced:  # the first call announces the total
            announced.append(total)
            reporter.started(total)
        reporter.advance(done, total)

    with _reported(reporter):
        summary = make_chips(args.raster, args.polygons, args.out, _chip_options(args), progress=progress)
        reporter.done(**summary.as_dict())
    print(str(summary), file=sys.stderr)
    return 0


COMMANDS = {"train": cmd_train, "score": cmd_score, "split": cmd_split, "segment": cmd_segment,
            "evaluate": cmd_evaluate, "chips": cmd_chips,
            "models": cmd_models, "info": cmd_info, "env": cmd_env}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="rsseg", description="Remote-sensing segmentation engine")
    sub = parser.add_subparsers(dest="command", required=True)
    _add_segment(sub)
    _add_train(sub)
    _add_chips(sub)
    _add_evaluate(sub)
    _add_split(sub)
    _add_score(sub)
    _add_models(sub)
    _add_info(sub)
    _add_env(sub)
    return parser


@contextmanager
def _sigterm_cancels() -> Iterator[None]:
    """While active, SIGTERM raises Cancelled in the main thread (once), so atomic writers clean up (POSIX)."""
    if os.name != "posix" or not hasattr(signal, "SIGTERM"):
        yield
        return

    def cancel(signum: int, frame: object) -> None:
        signal.signal(signal.SIGTERM, signal.SIG_IGN)  # a second SIGTERM must not interrupt the cleanup
        raise Cancelled("cancelled")

    try:
        previous = signal.signal(signal.SIGTERM, cancel)
    except ValueError:  # not the main thread (main() called from a worker thread): leave signals alone
        yield
        return
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        with _sigterm_cancels():
            return COMMANDS[args.command](args)
    except UserError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except Cancelled:
        print("error: cancelled", file=sys.stderr)
        return 130
    except KeyboardInterrupt:
        print("error: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    raise SystemExit(main())
