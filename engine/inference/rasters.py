"""Several rasters in one `segment` call: the inputs (paths, globs, @list files), one output file per raster
in a folder, and the single-process loop over them with one progress count.

Output layout (docs/cli.md): with several rasters, or when `--out` is an existing folder, `--out` is a folder
and raster `NAME.EXT` (a path or a GDAL URI) is written to `FOLDER/NAME.gpkg`, layer `NAME`. Two rasters with
the same name are an error (give them different names or segment them in two calls).
"""
from __future__ import annotations

import glob
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from engine.errors import UserError
from engine.inference.predictor import Predictor
from engine.inference.segment import SegmentOptions, SegmentResult, open_source, plan_tiles, resolve_settings
from engine.progress import NoProgress, Progress
from engine.raster.source import is_gdal_uri
from engine.spec import ModelSpec
from engine.vector.writer import driver_for_path

_GLOB_CHARS = set("*?[")


@dataclass(frozen=True)
class RasterJob:
    """One raster (path or GDAL URI) and its output vector file."""

    raster: str
    out: Path


def _list_file(item: str) -> list[str]:
    """`@list.txt` -> its lines: one path or GDAL URI each; blank lines and lines starting with # are skipped."""
    path = Path(item[1:])
    try:
        lines = path.read_text().splitlines()
    except OSError as exc:
        raise UserError(f"raster list '{path}': cannot be read ({exc.strerror}); give a text file with one raster "
                        "path or GDAL URI per line") from None
    found = [line.strip() for line in lines if line.strip() and not line.strip().startswith("#")]
    if not found:
        raise UserError(f"raster list '{path}': holds no raster; give one path or GDAL URI per line")
    return found


def expand_rasters(items: Sequence[str]) -> list[str]:
    """Command-line rasters -> the rasters to segment, in order, each once.

    An item is a path or GDAL URI (taken as is), a glob pattern (`scenes/*.tif`, its matches sorted; one that
    matches nothing is an error), or `@FILE`: a text file with one path or GDAL URI per line (taken as is).
    """
    found: list[str] = []
    for item in items:
        if item.startswith("@"):
            found.extend(_list_file(item))
        elif _GLOB_CHARS & set(item) and not is_gdal_uri(item) and not Path(item).exists():
            matches = sorted(glob.glob(item))
            if not matches:
                raise UserError(f"raster pattern '{item}': matches no file; check the folder and the pattern")
            found.extend(matches)
        else:
            found.append(item)
    return list(dict.fromkeys(found))


def raster_name(raster: str) -> str:
    """The name of a raster's output: its file name without the extension (for a URI: its last path part)."""
    text = raster.split("?", 1)[0].rstrip("/") if is_gdal_uri(raster) else raster
    name = PurePosixPath(text.replace("\\", "/")).stem if is_gdal_uri(raster) else Path(text).stem
    return name.strip('"') or "raster"


def folder_output(rasters: Sequence[str], out: str | Path) -> bool:
    """Whether `out` is a folder of outputs (several rasters, or an existing folder not named like a vector
    file: a folder called x.gpkg is a mistaken file name, refused as such) rather than one file."""
    out = Path(out)
    if len(rasters) > 1:
        return True
    try:
        return out.is_dir() and out.suffix.lower() not in (".gpkg", ".shp", ".geojson", ".json")
    except OSError:  # e.g. a name too long for the file system: the output checks say so in their own words
        return False


def plan_jobs(rasters: Sequence[str], out: str | Path) -> list[RasterJob]:
    """Each raster's output: `out` itself for one raster and a file `out`, else `out/NAME.gpkg`.

    UserError when several rasters go to a vector file name, or two rasters share a name."""
    out = Path(out)
    if not folder_output(rasters, out):
        return [RasterJob(rasters[0], out)]
    try:
        driver_for_path(out)
        is_file_name = True
    except ValueError:
        is_file_name = False
    if is_file_name:
        raise UserError(f"--out {out}: {len(rasters)} rasters need a folder (each raster gets FOLDER/NAME.gpkg); "
                        f"give a folder name, e.g. --out {out.with_suffix('')}")
    if out.exists() and not out.is_dir():
        raise UserError(f"--out {out}: is a file; give a folder for the outputs of several rasters")
    by_name: dict[str, str] = {}
    for raster in rasters:
        name = raster_name(raster)
        if name in by_name:
            raise UserError(f"rasters '{by_name[name]}' and '{raster}' would both be written to {out / name}.gpkg; "
                            "rename one or segment them in separate calls")
        by_name[name] = raster
    return [RasterJob(raster, out / f"{name}.gpkg") for name, raster in by_name.items()]


def count_tiles(jobs: Sequence[RasterJob], spec: ModelSpec, options: SegmentOptions) -> list[int]:
    """Tiles of each job's raster (opens each raster; UserError on a raster that cannot be segmented)."""
    tile_size, settings = resolve_settings(spec, options)
    counts = []
    for job in jobs:
        with open_source(job.raster, spec, options) as src:
            counts.append(len(plan_tiles(job.raster, src, spec, options, tile_size, settings.overlap).tiles))
    return counts


class OffsetProgress(NoProgress):
    """One raster's progress inside a run over several: `started` is dropped (the run reports the total once),
    `advance` is shifted by the tiles of the rasters before it; warnings and cancel pass through."""

    def __init__(self, progress: Progress, offset: int, total: int) -> None:
        self.progress, self.offset, self.total = progress, offset, total

    def advance(self, done: int, total: int) -> None:
        self.progress.advance(self.offset + done, self.total)

    def warning(self, text: str) -> None:
        self.progress.warning(text)

    def cancelled(self) -> bool:
        return self.progress.cancelled()


def make_folder(jobs: Sequence[RasterJob]) -> Path | None:
    """Create the output folder of `jobs` when missing -> the folder created (None: it existed)."""
    folder = jobs[0].out.parent
    if folder.exists() or len({job.out.parent for job in jobs}) != 1:
        return None
    if not folder.parent.is_dir():
        raise UserError(f"--out {folder}: folder '{folder.parent}' does not exist; create it or choose another path")
    folder.mkdir()
    return folder


def remove_if_empty(folder: Path | None) -> None:
    """Remove a folder this run created, when nothing was written into it (a failed or cancelled run)."""
    if folder is not None and folder.is_dir() and not any(folder.iterdir()):
        folder.rmdir()


def segment_rasters(jobs: Sequence[RasterJob], predictor: Predictor, options: SegmentOptions = SegmentOptions(),
                    model_label: str = "", progress: Progress | None = None) -> list[SegmentResult]:
    """Segment each job's raster in this process, one after the other (engine.inference.segment.segment_raster).

    `progress.started` gets the tiles of all rasters, `advance` counts across them. Outputs already finished stay
    when a later raster fails or the run is cancelled; the raster in progress leaves nothing.
    """
    from engine.inference.segment import segment_raster

    progress = progress or NoProgress()
    counts = count_tiles(jobs, predictor.spec, options)
    total = sum(counts)
    progress.started(total)
    results, offset = [], 0
    for job, count in zip(jobs, counts):
        results.append(segment_raster(job.raster, job.out, predictor, options, model_label,
                                      OffsetProgress(progress, offset, total)))
        offset += count
    return results


def summary(results: Sequence[SegmentResult], seconds: float | None = None) -> dict:
    """Totals over several rasters for the `done` event: features, tiles, seconds and features per class."""
    classes: dict[str, int] = {}
    for r in results:
        for name, n in r.class_counts.items():
            classes[name] = classes.get(name, 0) + n
    return {"features": sum(r.features for r in results), "tiles": sum(r.tiles for r in results),
            "seconds": round(seconds if seconds is not None else sum(r.seconds for r in results), 3),
            "classes": classes}
