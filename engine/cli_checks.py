"""Argument checks of each `rsseg` command, run before anything heavy (a model, a raster, a data set) starts.

Each function takes the parsed argparse namespace and returns the typed values the command needs, or
raises engine.errors.UserError with one line naming the flag as the user typed it and a fix. Checks that
need a model or a raster (tile size against the model's overlap, bands against the raster) run once
those are known: engine.validation, called by the pipelines themselves.
"""
from __future__ import annotations

import argparse
import math
from pathlib import Path

from engine import validation as check
from engine.errors import UserError

RUN_FILES = ("last.pt", "best.pt", "log.jsonl", "loss.png")  # what `rsseg train` writes into --out
TRAIN_TILE, TRAIN_OVERLAP = 512, 128  # `rsseg train`'s inference defaults stored in the spec (pixels)


def value_range(text: str | None) -> tuple[float, float] | None:
    """'MIN,MAX' -> (MIN, MAX), finite with MIN < MAX."""
    if text is None:
        return None
    values = check.numbers("--value-range", text, 2, "0,4000") if text.strip() else ()
    if len(values) != 2 or not values[0] < values[1]:
        raise UserError(f"--value-range {text}: give MIN,MAX with MIN < MAX, e.g. --value-range 0,4000")
    return values[0], values[1]


def extent(text: str | None) -> tuple[float, float, float, float] | None:
    """'XMIN,YMIN,XMAX,YMAX' -> four finite floats (None stays None)."""
    if text is None:
        return None
    try:
        values = tuple(float(v) for v in text.split(","))
    except ValueError:
        values = ()
    if len(values) != 4 or not all(math.isfinite(v) for v in values):
        raise UserError(f"--extent '{text}': give four comma-separated numbers XMIN,YMIN,XMAX,YMAX "
                        "in the raster's CRS units")
    return values


def input_scale(scale: float | None) -> float | None:
    if scale is not None and not (0.1 <= scale <= 8.0):  # NaN fails both comparisons
        raise UserError(f"--input-scale {scale}: give a factor between 0.1 and 8, e.g. --input-scale 2")
    return scale


def segment(args: argparse.Namespace, rasters: list[str]) -> None:
    """The checks of `rsseg segment` that need neither the model nor the rasters' pixels."""
    from engine.inference.area_masks import mask_inputs
    from engine.raster.source import is_gdal_uri
    from engine.vector.writer import check_layer_name

    check.device(args.device)
    check.integer("--threads", args.threads, 0, 1024, "2")
    input_scale(args.input_scale)
    if args.layer is not None:
        check_layer_name(args.layer)
        if Path(args.out).suffix.lower() != ".gpkg":
            raise UserError(f"--layer {args.layer}: only a GeoPackage output holds named layers, '{args.out}' "
                            "is one layer named after its file; drop --layer or write a .gpkg")
    for raster in rasters:
        if not is_gdal_uri(raster):
            check.input_file("raster", raster, "raster")
    masks = mask_inputs(args.aoi, args.exclude)
    for flag, path in masks:
        check.input_file(flag, path, "polygon layer")
    check.distinct_files([("--out", args.out), ("--tile-grid", args.tile_grid)],
                         [*(("raster", r) for r in rasters), *masks])


def evaluate(args: argparse.Namespace) -> list[int] | None:
    """The checks of `rsseg evaluate` -> the 1-based bands to read (None: the model's count)."""
    check.device(args.device)
    input_scale(args.input_scale)
    check.input_file("--coco", args.coco, "COCO file")
    check.input_folder("--images", args.images, "images folder")
    inputs = [("--coco", args.coco)] + ([("--checkpoint", args.checkpoint)] if Path(args.checkpoint).exists() else [])
    check.distinct_files([("--out", args.out)], inputs)
    _json_output("--out", args.out)
    return check.bands(args.bands)


def _json_output(flag: str, path: str | None) -> None:
    """A JSON file the command will write: its folder may be created, but it may not be a folder itself."""
    if path is not None and Path(path).is_dir():
        raise UserError(f"{flag} '{path}': is a folder; give a file name, e.g. {flag} metrics.json")


def split(args: argparse.Namespace) -> None:
    """The checks of `rsseg split`."""
    check.input_file("--coco", args.coco, "COCO file")
    check.number("--val-fraction", args.val_fraction, 0.0, 1.0, lo_open=True, hi_open=True, example="0.2")
    check.integer("--seed", args.seed, 0, 2**32 - 1, "0")
    out = Path(args.out)
    if out.exists() and not out.is_dir():
        raise UserError(f"--out '{args.out}': is a file; give the folder for train.json and val.json")
    check.distinct_files([("--out", out / "train.json"), ("--out", out / "val.json")], [("--coco", args.coco)])


def score(args: argparse.Namespace) -> None:
    """The checks of `rsseg score`."""
    check.input_file("prediction", args.prediction, "vector file")
    check.input_file("reference", args.reference, "vector file")
    check.number("--iou", args.iou, 0.0, 1.0, lo_open=True, example="0.5")
    check.number("--min-score", args.min_score, 0.0, 1.0, example="0.3")
    check.distinct_files([("--out", args.out)], [("prediction", args.prediction), ("reference", args.reference)])
    _json_output("--out", args.out)


def train(args: argparse.Namespace) -> dict:
    """The checks of `rsseg train` -> the parsed values {"bands", "band_names", "mean", "std", "steps", "jitter"}
    (None where not given: a fine-tuned model keeps its own, a new one takes the defaults)."""
    check.device(args.device)
    check.input_file("--coco", args.coco, "COCO file")
    check.input_folder("--images", args.images, "images folder")
    if args.val_coco is not None:
        check.input_file("--val-coco", args.val_coco, "COCO file")
    if args.val_images is not None:
        check.input_folder("--val-images", args.val_images, "images folder")
    if args.init is not None and (Path(args.init).exists() or args.init.endswith(".pt") or "/" in args.init):
        check.input_file("--init", args.init, "checkpoint")  # otherwise a shipped model's name, resolved later
    out = Path(args.out)
    if out.exists() and not out.is_dir():
        raise UserError(f"--out '{args.out}': is a file; give the run folder (last.pt, best.pt and the log go there)")
    inputs = [("--coco", args.coco), ("--val-coco", args.val_coco)]
    check.distinct_files([("--out", out / name) for name in RUN_FILES], inputs)
    for flag, value, lo in (("--epochs", args.epochs, 1), ("--batch-size", args.batch_size, 1),
                            ("--warmup-iters", args.warmup_iters, 0), ("--workers", args.workers, 0),
                            ("--eval-every", args.eval_every, 0), ("--checkpoint-every", args.checkpoint_every, 0),
                            ("--max-iters-per-epoch", args.max_iters_per_epoch, 0)):
        check.integer(flag, value, lo)
    check.integer("--threads", args.threads, 0, 1024, "2")
    check.integer("--seed", args.seed, 0, 2**32 - 1, "0")
    check.integer("--crop-size", args.crop_size, check.MIN_TILE, check.MAX_TILE, "512")
    check.number("--lr", args.lr, 0.0, lo_open=True, example="0.01")
    check.number("--weight-decay", args.weight_decay, 0.0, example="0.0001")
    check.number("--clip-grad", args.clip_grad, 0.0, lo_open=True, example="10")
    check.number("--scale", args.scale, 0.0, lo_open=True, example="0.00392")
    check.number("--gsd", args.gsd, 0.0, lo_open=True, example="1")
    check.number("--score-threshold", args.score_threshold, 0.0, 1.0, example="0.5")
    check.number("--crowd-paste", args.crowd_paste, 0.0, 1.0, example="0.5")
    input_scale(args.input_scale)
    std = check.numbers("--std", args.std, example="0.5") if args.std is not None else None
    if std is not None and min(std) <= 0:
        raise UserError(f"--std {args.std}: every standard deviation must be above 0, e.g. --std 0.25")
    jitter = check.numbers("--scale-jitter", args.scale_jitter, 2, "0.8,1.25")
    if not 0 < jitter[0] <= jitter[1]:
        raise UserError(f"--scale-jitter {args.scale_jitter}: give MIN,MAX with 0 < MIN <= MAX, e.g. "
                        "--scale-jitter 0.8,1.25")
    bands = check.bands(args.bands)
    names = args.band_names.split(",") if args.band_names else None
    if names is not None and (not all(n.strip() for n in names) or (bands and len(names) != len(bands))):
        raise UserError(f"--band-names {args.band_names}: give one non-empty name per band"
                        + (f" ({len(bands)} with --bands {args.bands})" if bands else ""))
    check.tiling(args.tile_size, args.overlap, TRAIN_TILE, TRAIN_OVERLAP, "the default")
    mean = check.numbers("--mean", args.mean, example="0.5") if args.mean is not None else None
    return {"bands": bands, "band_names": names, "mean": mean, "std": std, "jitter": jitter,
            "steps": check.ints("--steps", args.steps, 1, "8,11")}


def normalisation_bands(args: argparse.Namespace, mean: tuple[float, ...] | None, std: tuple[float, ...] | None,
                        n_bands: int) -> None:
    """--mean and --std (where given) give one value for all bands or one per band."""
    for flag, values in (("--mean", mean), ("--std", std)):
        if values is not None and len(values) not in (1, n_bands):
            raise UserError(f"{flag} {getattr(args, flag[2:])}: give one value for all bands or {n_bands} "
                            f"(one per band), e.g. {flag} {','.join(['0.5'] * n_bands)}")


def chips(args: argparse.Namespace):
    """The checks of `rsseg chips` that need no file -> its ChipOptions (make_chips checks the ranges)."""
    from engine.data.chips import ChipOptions

    classes = tuple(c.strip() for c in args.classes.split(",")) if args.classes else None
    bands = check.bands(args.bands)
    for flag, value in (("--empty-fraction", args.empty_fraction), ("--val-fraction", args.val_fraction),
                        ("--gsd", args.gsd), ("--gsd-tolerance", args.gsd_tolerance)):
        check.number(flag, value, example="0.2")  # finite; the ranges are make_chips' own
    check.integer("--seed", args.seed, 0, 2**32 - 1, "0")
    return ChipOptions(
        class_field=args.class_field, classes=classes, layer=args.layer, aoi=args.aoi, extent=extent(args.extent),
        bands=tuple(bands) if bands else None, tile_size=args.tile_size, overlap=args.overlap,
        empty_fraction=args.empty_fraction, min_object_pixels=args.min_object_pixels,
        val_fraction=args.val_fraction, seed=args.seed, gsd_m=args.gsd, gsd_tolerance=args.gsd_tolerance,
        overwrite=args.overwrite)
