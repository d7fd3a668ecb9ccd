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
import shlex
import signal
import sys
import traceback
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from engine.commands.report import cmd_env, cmd_evaluate, cmd_info, cmd_models, cmd_score, cmd_split
from engine.commands.segment import cmd_segment
from engine.commands.train import cmd_chips, cmd_train
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
    p.add_argument("--input-scale", type=float, metavar="FACTOR",
                   help="zoom the model works at: images resized by FACTOR in training, tiles at inference "
                        "(2 for small SAR ships; default: 1)")
    p.add_argument("--sar-augment", action="store_true", help="gain, gamma and speckle jitter of SAR amplitude")
    p.add_argument("--crowd-paste", type=float, default=0.0, metavar="P",
                   help="probability that a training image gets a dense cluster of objects cut from another image, "
                        "pasted on its dark background (copy-paste, for crowded anchorages; 0: off)")
    p.add_argument("--checkpoint-every", type=int, default=100, metavar="ITERS",
                   help="save OUT/last.pt every ITERS iterations inside an epoch, for resume (0: epoch ends only)")
    p.add_argument("--max-iters-per-epoch", type=int, default=0)
    p.add_argument("--stop-at", type=int, metavar="ITERS",
                   help="stop after ITERS iterations in all, last.pt saved there (run again to resume), e.g. to fit "
                        "a cluster job's time limit")
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
                                       "with core bounds, status (run/nodata/outside_aoi/excluded) and predictions "
                                       "per tile")
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
    p.add_argument("--aoi", metavar="PATH",
                   help="area of interest: a polygon layer (any vector file GDAL reads, any CRS; the first layer, or "
                        "'FILE.gpkg|layername=NAME'). An object or class region is kept only if its representative "
                        "point (shapely representative_point(), always inside it) lies inside the polygons; tiles "
                        "not touching them are not run; without --extent only their bounding box is segmented")
    p.add_argument("--exclude", metavar="PATH",
                   help="areas to ignore, e.g. land for ships: a polygon layer (as --aoi). An object or class region "
                        "whose representative point lies inside the polygons is dropped; tiles wholly inside them "
                        "are not run")
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
    p.add_argument("--min-score", type=float, default=0.0,
                   help="score only the predictions scoring at least this (default: all of them)")
    p.add_argument("--sweep", action="store_true",
                   help="also P/R/F1 at score thresholds 0.05, 0.10, ..., 0.95, the best F1 marked: which threshold "
                        "suits this area (segment with a low --score-threshold first)")
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


COMMANDS = {"train": cmd_train, "score": cmd_score, "split": cmd_split, "segment": cmd_segment,
            "evaluate": cmd_evaluate, "chips": cmd_chips,
            "models": cmd_models, "info": cmd_info, "env": cmd_env}


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="rsseg", description="Remote-sensing segmentation engine")
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
            args.command_line = shlex.join(["rsseg", *argv])  # recorded in what it makes (train: provenance)
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
