"""`rsseg` command line: argument parsing only; each command is a thin call into the engine modules.

Exit codes: 0 success, 2 a user error (one line on stderr naming the input and the fix: bad arguments,
bad data, and what the system says: disk full, permission denied, name too long, out of memory), 1 a bug
(a traceback and a line asking for a report), 3 `env` found missing packages, 130 cancelled (SIGTERM or
SIGHUP on POSIX, or Ctrl-C). With `--progress jsonl` every failure is also an `error` event on stdout.
"""
from __future__ import annotations

import argparse
import json
import os
import signal
import sys
import traceback
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import replace
from pathlib import Path

from engine import cli_checks
from engine.errors import Cancelled, UserError, environment_error

DEFAULT_DATA = Path(__file__).resolve().parent.parent.parent / "shared" / "data"
REPORT_URL = "https://example.org/rsseg/issues"  # metadata.txt's tracker


class _Parser(argparse.ArgumentParser):
    """argparse with its errors as UserError: one line, exit 2, and an `error` event under --progress jsonl."""

    def error(self, message: str) -> None:  # type: ignore[override]
        raise UserError(f"{message}; see '{self.prog} --help'")


def _add_train(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("train", help="train a model on a COCO instance dataset (semantic architectures: class maps); "
                                     "under torchrun --nproc_per_node N: DistributedDataParallel")
    p.add_argument("--coco", required=True, help="training COCO json")
    p.add_argument("--images", required=True, help="folder with the training images")
    p.add_argument("--val-coco", help="validation COCO json (evaluated each --eval-every epochs)")
    p.add_argument("--val-images", help="validation images folder (default: --images)")
    p.add_argument("--out", required=True, help="run folder: last.pt, best.pt, log.jsonl, loss.png")
    p.add_argument("--name", help="model name stored in the spec (default: the run folder's name)")
    p.add_argument("--arch", default="mask_rcnn", help="architecture (see 'rsseg models --architectures')")
    p.add_argument("--backbone", help="backbone name; default: the architecture's own (mask_rcnn: resnet18)")
    p.add_argument("--pretrained", action="store_true", help="ImageNet weights (efficientnet_lite0)")
    p.add_argument("--preset", help="named config of the architecture (see 'rsseg models --architectures')")
    p.add_argument("--config", default="{}", help="JSON object of architecture config overrides (over --preset)")
    p.add_argument("--bands", help="comma-separated 1-based bands to read, e.g. '1' for SAR JPEGs")
    p.add_argument("--band-names", help="comma-separated names of the model's input bands")
    p.add_argument("--sensor", choices=["sar", "sar-db", "optical"], default="sar")
    p.add_argument("--mean", default="0.5", help="comma-separated per-band means after scaling to [0,1]")
    p.add_argument("--std", default="0.5", help="comma-separated per-band stds")
    p.add_argument("--scale", type=float, default=1 / 255, help="raw value -> [0,1] factor (1/255 for 8-bit)")
    p.add_argument("--gsd", type=float, default=1.0, help="ground sample distance of the training data, m/pixel")
    p.add_argument("--tile-size", type=int, help="inference tile size stored in the model, pixels (default: 512)")
    p.add_argument("--overlap", type=int, help="inference tile overlap stored in the model, pixels (default: 128)")
    p.add_argument("--score-threshold", type=float, default=0.5)
    p.add_argument("--description", default="")
    p.add_argument("--epochs", type=int, default=12)
    p.add_argument("--batch-size", type=int, default=2, help="images per step (under torchrun: over all processes)")
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
    p.add_argument("--input-scale", type=float, default=1.0, metavar="FACTOR",
                   help="zoom the model works at: images resized by FACTOR in training, tiles at inference "
                        "(2 for small SAR ships)")
    p.add_argument("--sar-augment", action="store_true", help="gain, gamma and speckle jitter of SAR amplitude")
    p.add_argument("--checkpoint-every", type=int, default=100, metavar="ITERS",
                   help="save OUT/last.pt every ITERS iterations inside an epoch, for resume (0: epoch ends only)")
    p.add_argument("--max-iters-per-epoch", type=int, default=0)
    p.add_argument("--stop-at", type=int, metavar="ITERS",
                   help="stop after ITERS iterations in all, last.pt saved there (run again to resume), e.g. to fit "
                        "a cluster job's time limit")
    p.add_argument("--device", default="auto", help="auto | cpu | cuda | cuda:N")
    p.add_argument("--threads", type=int, default=0, help="CPU threads (0 = torch default)")
    p.add_argument("--no-resume", action="store_true", help="start over even if OUT/last.pt exists")
    p.add_argument("--init", help="checkpoint whose weights start the run (c2fnet: a semantic checkpoint "
                                  "becomes the coarse model)")


def _add_split(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("split", help="seeded train/validation split of a COCO file")
    p.add_argument("--coco", default=str(DEFAULT_DATA / "ssdd" / "train.json"))
    p.add_argument("--out", required=True, help="folder for train.json and val.json")
    p.add_argument("--val-fraction", type=float, default=0.2)
    p.add_argument("--seed", type=int, default=0)


def _add_segment(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("segment", help="segment rasters into polygons (GeoPackage, Shapefile, GeoJSON)")
    p.add_argument("rasters", nargs="+", metavar="RASTER",
                   help="input raster (GeoTIFF or anything GDAL reads); several: paths, globs ('scenes/*.tif') or "
                        "@FILE with one path or GDAL URI per line")
    p.add_argument("--model", default=None, help="shipped model name or checkpoint path (default: %(default)s)")
    p.add_argument("--out", required=True, help="output vector file: .gpkg, .shp or .geojson (an existing GeoPackage "
                                                "keeps its other layers); with several rasters (or an existing folder) "
                                                "a folder getting NAME.gpkg per raster")
    p.add_argument("--layer", help="GeoPackage layer to add or replace (default: MODEL_RASTER, from the model's and "
                                   "the raster's names)")
    p.add_argument("--overwrite", action="store_true",
                   help="replace an existing output file as a whole (a GeoPackage loses its other layers)")
    p.add_argument("--dask", metavar="ADDRESS",
                   help="run the tiles on Dask: local:N (N worker processes on this machine) or a running "
                        "scheduler, tcp://HOST:8786 (see docs/cluster.md)")
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


def _add_score(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("score", help="object precision, recall and F1 of a polygon layer against a reference layer")
    p.add_argument("prediction", help="polygon layer to score (any vector file GDAL reads)")
    p.add_argument("reference", help="reference (truth) polygon layer")
    p.add_argument("--iou", type=float, default=0.5, help="IoU for a hit, one-to-one (default: %(default)s)")
    p.add_argument("--class-field", default="class_name", help="attribute holding the class (default: %(default)s)")
    p.add_argument("--score-field", default="score", help="attribute ordering the predictions (default: %(default)s)")
    p.add_argument("--prediction-layer", help="layer of a multi-layer prediction file")
    p.add_argument("--reference-layer", help="layer of a multi-layer reference file")
    p.add_argument("--out", help="write the scores as JSON")


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


def _load_model(name_or_path: str, input_scale: float | None):
    """(label, checkpoint) of a shipped model name or checkpoint path; `--input-scale` replaces the spec's zoom."""
    from engine.zoo import resolve_model

    label, ckpt = resolve_model(name_or_path)
    if cli_checks.input_scale(input_scale) is None:
        return label, ckpt
    return label, replace(ckpt, spec=ckpt.spec.with_updates(input_scale=input_scale))


def cmd_segment(args: argparse.Namespace) -> int:
    from engine.progress import Reporter

    reporter = Reporter(args.progress, desc="segment")
    try:
        return _segment(args, reporter)
    finally:
        reporter.close()  # main() reports a failure (and its `error` event)


def _segment_options(args: argparse.Namespace):
    from engine import validation
    from engine.inference.segment import SegmentOptions

    options = SegmentOptions(
        tile_size=args.tile_size, overlap=args.overlap, score_threshold=args.score_threshold,
        mask_threshold=args.mask_threshold, batch_size=args.batch_size, bands=validation.bands(args.bands),
        simplify=args.simplify, min_area=args.min_area, extent=cli_checks.extent(args.extent),
        tile_grid=args.tile_grid, resample=not args.no_resample, gsd_tolerance=args.gsd_tolerance,
        value_range=cli_checks.value_range(args.value_range), sar_input=args.sar_input,
        duplicate_containment=args.duplicate_containment, layer=args.layer, overwrite=args.overwrite,
    )
    validation.segment_options(options)
    return options


def _segment(args: argparse.Namespace, reporter) -> int:
    from engine.inference.rasters import expand_rasters, folder_output

    rasters = expand_rasters(args.rasters)
    cli_checks.segment(args, rasters)
    if args.dask or folder_output(rasters, args.out):
        return _segment_many(args, rasters, reporter)
    return _segment_one(args, rasters[0], reporter)


def _segment_one(args: argparse.Namespace, raster: str, reporter) -> int:
    """One raster into one file, in this process; every check that needs no pixels runs before the model loads."""
    from engine import validation
    from engine.inference.predictor import Predictor
    from engine.inference.segment import segment_raster
    from engine.raster.source import raster_band_count
    from engine.vector.writer import check_output
    from engine.zoo import DEFAULT_MODEL

    options = _segment_options(args)
    notes = check_output(args.out, args.layer, args.overwrite)[1]
    if args.tile_grid:
        notes += check_output(args.tile_grid, "tiles", args.overwrite)[1]
    band_count = raster_band_count(raster)
    label, ckpt = _load_model(args.model or DEFAULT_MODEL, args.input_scale)
    spec = ckpt.spec
    validation.tiling(options.tile_size, options.overlap, spec.tile_size, spec.overlap)
    validation.band_selection(raster, band_count, options.bands, spec.name, spec.bands, spec.band_names)
    if args.threads > 0:
        import torch

        torch.set_num_threads(args.threads)
    predictor = Predictor(ckpt, args.device)
    for note in notes:
        reporter.warning(note)
    reporter.start_fields = {
        "raster": raster, "model": label, "output": args.out, "device": str(predictor.device),
        "classes": [{"id": c.id, "name": c.name, "colour": c.colour} for c in spec.classes],
    }
    result = segment_raster(raster, args.out, predictor, options, model_label=label, progress=reporter)
    reporter.done(output=result.output, layer=result.layer, features=result.features, tiles=result.tiles,
                  seconds=result.seconds, classes=result.class_counts)
    counts = ", ".join(f"{n} {c}" for c, n in result.class_counts.items()) or "no objects"
    print(f"{result.features} objects ({counts}) from {result.tiles} tiles in {result.seconds:.1f} s -> "
          f"{result.output}" + (f" (layer {result.layer})" if Path(result.output).suffix.lower() == ".gpkg" else ""),
          file=sys.stderr)
    return 0


def _segment_many(args: argparse.Namespace, rasters: list[str], reporter) -> int:
    """Several rasters (one output each, in a folder), or any on Dask (`--dask`)."""
    import time

    from engine.inference.rasters import folder_output, make_folder, plan_jobs, remove_if_empty, summary
    from engine.zoo import DEFAULT_MODEL

    options = _segment_options(args)
    if options.tile_grid and len(rasters) > 1:
        raise UserError(f"--tile-grid {options.tile_grid}: works with one raster; segment the rasters one by one "
                        "to get their tile grids")
    jobs = plan_jobs(rasters, args.out)
    label, ckpt = _load_model(args.model or DEFAULT_MODEL, args.input_scale)
    classes = [{"id": c.id, "name": c.name, "colour": c.colour} for c in ckpt.spec.classes]
    reporter.start_fields = {"rasters" if len(jobs) > 1 else "raster": rasters if len(jobs) > 1 else rasters[0],
                             "model": label, "output": args.out, "classes": classes}
    start = time.perf_counter()
    created = make_folder(jobs) if folder_output(rasters, args.out) else None
    try:
        if args.dask:
            results = _run_dask(args, jobs, label, ckpt, options, reporter)
        else:
            results = _run_local(args, jobs, label, ckpt, options, reporter)
    except BaseException:
        remove_if_empty(created)
        raise
    totals = summary(results, time.perf_counter() - start)
    outputs = [{"raster": job.raster, "output": r.output, "features": r.features} for job, r in zip(jobs, results)]
    reporter.done(output=args.out if len(jobs) > 1 else results[0].output, **totals, outputs=outputs)
    counts = ", ".join(f"{n} {c}" for c, n in totals["classes"].items()) or "no objects"
    print(f"{totals['features']} objects ({counts}) from {totals['tiles']} tiles of {len(jobs)} raster(s) in "
          f"{totals['seconds']:.1f} s -> {args.out}", file=sys.stderr)
    return 0


def _run_local(args: argparse.Namespace, jobs, label: str, ckpt, options, reporter) -> list:
    from engine.inference.predictor import Predictor
    from engine.inference.rasters import segment_rasters

    if args.threads > 0:
        import torch

        torch.set_num_threads(args.threads)
    predictor = Predictor(ckpt, args.device)
    reporter.start_fields["device"] = str(predictor.device)
    return segment_rasters(jobs, predictor, options, model_label=label, progress=reporter)


def _run_dask(args: argparse.Namespace, jobs, label: str, ckpt, options, reporter) -> list:
    from engine.distributed.cluster import dask_client
    from engine.distributed.segment import segment_rasters_dask
    from engine.distributed.signals import signals_cancel
    from engine.distributed.work import ModelRef
    from engine.zoo import DEFAULT_MODEL, shipped_models

    name = args.model or DEFAULT_MODEL  # workers load a shipped model from their engine, a checkpoint by its path
    model = ModelRef(name if name in shipped_models() else str(Path(name).resolve()), args.input_scale,
                     args.device, args.threads)
    reporter.start_fields["dask"] = args.dask
    with signals_cancel(reporter) as progress, dask_client(args.dask) as client:
        if progress.cancelled():  # a signal while the cluster started
            raise Cancelled()
        reporter.start_fields["workers"] = len(client.nthreads())
        return segment_rasters_dask(client, jobs, model, ckpt.spec, options, model_label=label,
                                    progress=progress).results


def cmd_evaluate(args: argparse.Namespace) -> int:
    from engine.evaluation.report import speed_line, write_json
    from engine.inference.predictor import Predictor
    from engine.progress import Reporter

    bands = cli_checks.evaluate(args)
    label, ckpt = _load_model(args.checkpoint, args.input_scale)
    if bands and len(bands) != ckpt.spec.bands:
        raise UserError(f"--bands {args.bands}: model '{ckpt.spec.name}' takes {ckpt.spec.bands} band(s) "
                        f"({', '.join(ckpt.spec.band_names)}); give {ckpt.spec.bands}, e.g. --bands "
                        f"{','.join(str(i + 1) for i in range(ckpt.spec.bands))}")
    predictor = Predictor(ckpt, args.device)
    task = predictor.task
    dataset = task.eval_dataset(ckpt.spec, args.coco, args.images, bands)
    for line in dataset.index.warnings():
        print(f"warning: {line}", file=sys.stderr)
    if not any(dataset.index.annotations.values()):
        raise UserError(f"--coco '{args.coco}': has no annotations to evaluate against; give the ground truth "
                        "COCO file of these images")
    bar = Reporter("bar", desc="evaluate", unit="img")
    try:
        metrics = task.evaluate(predictor.model, dataset, predictor.device, progress=bar.advance,
                                input_scale=ckpt.spec.input_scale)
    finally:
        bar.close()
    metrics = {"model": label, "coco": args.coco, **metrics}
    print(task.report(metrics))
    print(speed_line(metrics, str(predictor.device)))
    if args.out:
        print(f"written to {write_json(args.out, metrics)}", file=sys.stderr)
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


def cmd_train(args: argparse.Namespace) -> int:
    from engine.training.spec_builder import parse_overrides, training_spec
    from engine.training.trainer import TrainConfig, Trainer

    checked = cli_checks.train(args)
    overrides = {**({"backbone": args.backbone} if args.backbone else {}),
                 **({"pretrained": True} if args.pretrained else {}), **parse_overrides(args.config)}
    bands = checked["bands"]
    spec = training_spec(
        name=args.name or Path(args.out).name, arch=args.arch, coco=args.coco, images=args.images,
        preset=args.preset, overrides=overrides, bands=bands, band_names=checked["band_names"], sensor=args.sensor,
        scale=args.scale, mean=checked["mean"], std=checked["std"], gsd_m=args.gsd,
        input_scale=args.input_scale, tile_size=checked["tile_size"], overlap=checked["overlap"],
        score_threshold=args.score_threshold, description=args.description,
    )
    cli_checks.normalisation_bands(args, checked["mean"], checked["std"], spec.bands)
    jitter = checked["jitter"]
    cfg = TrainConfig(
        coco=args.coco, images=args.images, out_dir=args.out, val_coco=args.val_coco, val_images=args.val_images,
        bands=bands, epochs=args.epochs, batch_size=args.batch_size, optimizer=args.optimizer, lr=args.lr,
        weight_decay=args.weight_decay, warmup_iters=args.warmup_iters, schedule=args.schedule,
        steps=checked["steps"], clip_grad=args.clip_grad, amp=not args.no_amp, seed=args.seed,
        workers=args.workers, eval_every=args.eval_every, crop_size=args.crop_size, min_scale=jitter[0],
        max_scale=jitter[1], max_iters_per_epoch=args.max_iters_per_epoch, device=args.device,
        resume=not args.no_resume, threads=args.threads, init=args.init, checkpoint_every=args.checkpoint_every,
        sar_augment=args.sar_augment,
    )
    trainer = Trainer(spec, cfg, log=lambda m: print(m, file=sys.stderr))  # under torchrun: one rank of a DDP job
    try:
        best = trainer.fit(stop_at=args.stop_at)
    finally:
        trainer.dist.close()
    if trainer.dist.is_main:
        print(f"trained: {best}", file=sys.stderr)
    return 0


def cmd_split(args: argparse.Namespace) -> int:
    from engine.data.split import split_coco

    cli_checks.split(args)
    train, val = split_coco(args.coco, args.out, args.val_fraction, args.seed,
                            warn=lambda line: print(f"warning: {line}", file=sys.stderr))
    print(f"wrote {train} and {val}", file=sys.stderr)
    return 0


def cmd_score(args: argparse.Namespace) -> int:
    from engine.evaluation.report import write_json
    from engine.vector.score import format_score, score_files

    cli_checks.score(args)
    score = score_files(args.prediction, args.reference, args.iou, args.class_field, args.score_field,
                        args.prediction_layer, args.reference_layer)
    print(format_score(score))
    if args.out:
        out = write_json(args.out, {"prediction": args.prediction, "reference": args.reference, **score.to_dict()})
        print(f"written to {out}", file=sys.stderr)
    return 0


COMMANDS = {"train": cmd_train, "score": cmd_score, "split": cmd_split, "segment": cmd_segment,
            "evaluate": cmd_evaluate,
            "models": cmd_models, "info": cmd_info, "env": cmd_env}


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="rsseg", description="Remote-sensing segmentation engine")
    sub = parser.add_subparsers(dest="command", required=True)
    _add_segment(sub)
    _add_train(sub)
    _add_evaluate(sub)
    _add_split(sub)
    _add_score(sub)
    _add_models(sub)
    _add_info(sub)
    _add_env(sub)
    return parser


_CANCEL_SIGNALS = ("SIGTERM", "SIGHUP")  # a terminate, or the terminal (ssh session) going away


@contextmanager
def _signals_cancel() -> Iterator[None]:
    """While active, SIGTERM and SIGHUP raise Cancelled in the main thread (once), so atomic writers clean up
    (POSIX)."""
    signals = [getattr(signal, name) for name in _CANCEL_SIGNALS if hasattr(signal, name)]
    if os.name != "posix" or not signals:
        yield
        return

    def cancel(signum: int, frame: object) -> None:
        for sig in signals:  # a second signal must not interrupt the cleanup
            signal.signal(sig, signal.SIG_IGN)
        raise Cancelled("cancelled")

    try:
        previous = {sig: signal.signal(sig, cancel) for sig in signals}
    except ValueError:  # not the main thread (main() called from a worker thread): leave signals alone
        yield
        return
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def _progress_mode(argv: list[str]) -> str:
    """The --progress value in `argv` as typed (found even when the arguments do not parse)."""
    for i, arg in enumerate(argv):
        if arg == "--progress" and i + 1 < len(argv):
            return argv[i + 1]
        if arg.startswith("--progress="):
            return arg.split("=", 1)[1]
    return "bar"


def _fail(code: int, message: str, jsonl: bool) -> int:
    """One `error:` line on stderr (and an `error` event on stdout under --progress jsonl) -> `code`."""
    message = " ".join(message.split())  # one line, whatever the message held
    print(f"error: {message}", file=sys.stderr)
    if jsonl:
        try:
            sys.stdout.write(json.dumps({"event": "error", "message": message}) + "\n")
            sys.stdout.flush()
        except (OSError, ValueError):  # stdout closed (the reading program went away)
            pass
    return code


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    jsonl = _progress_mode(argv) == "jsonl"
    try:
        with _signals_cancel():
            args = build_parser().parse_args(argv)
            return COMMANDS[args.command](args)
    except UserError as exc:
        return _fail(2, str(exc), jsonl)
    except Cancelled:
        return _fail(130, "cancelled", jsonl)
    except KeyboardInterrupt:
        return _fail(130, "interrupted", jsonl)
    except MemoryError:
        return _fail(2, "out of memory; use a smaller --tile-size or --batch-size (train: --batch-size or "
                        "--crop-size), or close other programs", jsonl)
    except OSError as exc:
        return _fail(2, str(environment_error(None, exc, "failed")), jsonl)
    except Exception as exc:  # noqa: BLE001 - the last line of defence: a bug
        if type(exc).__name__ == "OutOfMemoryError":  # torch.cuda.OutOfMemoryError, without importing torch
            return _fail(2, "the GPU ran out of memory; use a smaller --batch-size or --tile-size, or --device cpu",
                         jsonl)
        traceback.print_exc()
        return _fail(1, f"internal error ({type(exc).__name__}: {exc}); this is a bug in rsseg: please report it "
                        f"with the command line and the output above at {REPORT_URL}", jsonl)


if __name__ == "__main__":
    raise SystemExit(main())
