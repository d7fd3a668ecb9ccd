"""`rsseg segment`: one raster into one file in this process, or several rasters (a folder of outputs), or
any on a Dask cluster (`--dask`)."""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

from engine import cli_checks
from engine.commands.common import load_model
from engine.errors import Cancelled, UserError


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
        aoi=args.aoi, exclude=args.exclude,
    )
    validation.segment_options(options)
    return options


def _masks(args: argparse.Namespace) -> dict[str, str]:
    """The area masks given (`aoi`, `exclude`: their paths), for the run's `start` event."""
    return {key: value for key, value in (("aoi", args.aoi), ("exclude", args.exclude)) if value}


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
    label, ckpt = load_model(args.model or DEFAULT_MODEL, args.input_scale)
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
        "classes": [{"id": c.id, "name": c.name, "colour": c.colour} for c in spec.classes], **_masks(args),
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
    label, ckpt = load_model(args.model or DEFAULT_MODEL, args.input_scale)
    classes = [{"id": c.id, "name": c.name, "colour": c.colour} for c in ckpt.spec.classes]
    reporter.start_fields = {"rasters" if len(jobs) > 1 else "raster": rasters if len(jobs) > 1 else rasters[0],
                             "model": label, "output": args.out, "classes": classes, **_masks(args)}
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

