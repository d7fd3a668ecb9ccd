"""Checks run before any work, shared by the CLI and every pipeline (local or distributed).

Each check raises engine.errors.UserError with one line naming the flag or file the user gave, what is
wrong and a fix that works for that input. Imports only the standard library and engine.errors (the
segment options are read by attribute), so any module may call them.
"""
from __future__ import annotations

import math
import os
import re
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

from engine.errors import UserError

MIN_TILE = 32  # pixels: the models pad to multiples of 32; smaller tiles see too little context
MAX_TILE = 8192  # pixels: a larger tile does not fit in memory at once (bands x tile^2 x 4 bytes per stage)
MAX_BATCH = 256
_SHP_FILES = (".shp", ".shx", ".dbf", ".prj", ".cpg", ".qix", ".sbn", ".sbx", ".qpj")
_DEVICE = re.compile(r"^(auto|cpu|mps|cuda(:\d+)?)$")


def number(flag: str, value: float | None, lo: float | None = None, hi: float | None = None, *,
           lo_open: bool = False, hi_open: bool = False, example: str = "") -> float | None:
    """`value` if it is a finite number inside [lo, hi] (open ends where asked); None stays None."""
    if value is None:
        return None
    bad = not math.isfinite(value)
    bad = bad or (lo is not None and (value < lo or (lo_open and value == lo)))
    bad = bad or (hi is not None and (value > hi or (hi_open and value == hi)))
    if bad:
        raise UserError(f"{flag} {value:g}: give {_interval(lo, hi, lo_open, hi_open)}"
                        + (f", e.g. {flag} {example}" if example else ""))
    return value


def integer(flag: str, value: int | None, lo: int, hi: int | None = None, example: str = "") -> int | None:
    """`value` if lo <= value <= hi; None stays None."""
    if value is None:
        return None
    if value < lo or (hi is not None and value > hi):
        span = f"a whole number from {lo} to {hi}" if hi is not None else f"a whole number of at least {lo}"
        raise UserError(f"{flag} {value}: give {span}" + (f", e.g. {flag} {example}" if example else ""))
    return value


def _interval(lo: float | None, hi: float | None, lo_open: bool, hi_open: bool) -> str:
    if lo is not None and hi is not None:
        if not lo_open and not hi_open:
            return f"a number from {lo:g} to {hi:g}"
        low = f"above {lo:g}" if lo_open else f"of at least {lo:g}"
        return f"a number {low} and {'below' if hi_open else 'at most'} {hi:g}"
    if lo is not None:
        return f"a number {'above' if lo_open else 'of at least'} {lo:g}"
    if hi is not None:
        return f"a number {'below' if hi_open else 'of at most'} {hi:g}"
    return "a finite number"


def numbers(flag: str, text: str, count: int | None = None, example: str = "") -> tuple[float, ...]:
    """'a,b,...' -> finite floats (exactly `count` of them when given)."""
    try:
        values = tuple(float(v) for v in text.split(",") if v.strip())
    except ValueError:
        values = ()
    if not values or (count is not None and len(values) != count) or not all(math.isfinite(v) for v in values):
        what = f"{count} comma-separated numbers" if count else "comma-separated numbers"
        raise UserError(f"{flag} '{text}': give {what}" + (f", e.g. {flag} {example}" if example else ""))
    return values


def bands(text: str | None, flag: str = "--bands") -> list[int] | None:
    """'1,2,3' -> [1, 2, 3] (1-based band numbers; a band may repeat); None or '' -> None."""
    if text is None:
        return None
    try:
        values = [int(v) for v in text.split(",")]
    except ValueError:
        values = []
    if not values or min(values) < 1:
        raise UserError(f"{flag} '{text}': give comma-separated band numbers counted from 1, e.g. {flag} 1,2,3")
    return values


def ints(flag: str, text: str, lo: int = 0, example: str = "") -> list[int]:
    """'8,11' -> [8, 11], each at least `lo` ('' -> [])."""
    try:
        values = [int(v) for v in text.split(",") if v.strip()]
    except ValueError:
        values = [lo - 1]
    if any(v < lo for v in values):
        raise UserError(f"{flag} '{text}': give comma-separated whole numbers of at least {lo}"
                        + (f", e.g. {flag} {example}" if example else ""))
    return values


def device(text: str) -> str:
    """auto | cpu | mps | cuda | cuda:N (what torch can run the models on)."""
    if not _DEVICE.match(text):
        raise UserError(f"--device '{text}': not a device; use auto, cpu, cuda or cuda:N")
    return text


def tiling(tile_size: int | None, overlap: int | None, default_tile: int, default_overlap: int,
           default: str = "the model's") -> tuple[int, int]:
    """(tile size, overlap) in pixels: the flags given, else the defaults (`default` says whose, for the
    message); the message names the flag the user gave."""
    tile = default_tile if tile_size is None else tile_size
    over = default_overlap if overlap is None else overlap
    integer("--tile-size", tile_size, MIN_TILE, MAX_TILE, "512")
    integer("--overlap", overlap, 0, None, "64")
    if over < tile:
        return tile, over
    if tile_size is not None and overlap is None:
        raise UserError(f"--tile-size {tile}: must be larger than {default} overlap of {over} pixels; give a "
                        f"larger --tile-size, or a smaller overlap too, e.g. --overlap {tile // 4}")
    if overlap is not None and tile_size is None:
        raise UserError(f"--overlap {over}: must be smaller than {default} tile size of {tile} pixels, "
                        f"e.g. --overlap {tile // 4}")
    raise UserError(f"--overlap {over}: must be smaller than --tile-size {tile}, e.g. --overlap {tile // 4}")


def band_fix(raster_count: int, model_bands: int) -> str:
    """A --bands value this raster has that gives the model its band count, e.g. "1,1,1" for 1 band into 3."""
    return ",".join(str(min(i + 1, raster_count)) for i in range(model_bands))


def band_selection(raster: str | os.PathLike, raster_count: int, selected: Sequence[int] | None, model: str,
                   model_bands: int, band_names: Sequence[str] = ()) -> list[int]:
    """The 1-based bands read from a raster of `raster_count` bands for a model of `model_bands` inputs."""
    names = f" ({', '.join(band_names)})" if band_names else ""
    fix = band_fix(raster_count, model_bands)
    if selected:
        missing = [b for b in selected if b > raster_count]
        if missing:
            raise UserError(f"--bands {','.join(map(str, selected))}: raster '{raster}' has bands 1..{raster_count}; "
                            f"model '{model}' takes {model_bands}{names}, e.g. --bands {fix}")
    chosen = list(selected) if selected else list(range(1, raster_count + 1))
    if len(chosen) != model_bands:
        given = " with --bands" if selected else " (all it has)"
        raise UserError(f"raster '{raster}': {len(chosen)} band(s) selected{given}, model '{model}' expects "
                        f"{model_bands}{names}; choose them with --bands {fix}")
    return chosen


def files_of(path: str | os.PathLike) -> list[Path]:
    """The files a path stands for: a Shapefile's sidecars, else the path itself (resolved)."""
    p = Path(os.path.realpath(path))
    if p.suffix.lower() == ".shp":
        return [p.with_suffix(ext) for ext in _SHP_FILES]
    return [p]


def _same(a: Path, b: Path) -> bool:
    if a == b:
        return True
    try:
        return a.exists() and b.exists() and os.path.samefile(a, b)
    except OSError:
        return False


def distinct_files(outputs: Iterable[tuple[str, Any]], inputs: Iterable[tuple[str, Any]] = ()) -> None:
    """No output may be an input, nor another output: UserError naming both flags.

    `outputs`, `inputs`: (flag, path) pairs; None paths are skipped. Shapefiles count with their sidecars.
    """
    outs = [(flag, path) for flag, path in outputs if path is not None]
    ins = [(flag, path) for flag, path in inputs if path is not None]
    for i, (flag, path) in enumerate(outs):
        for other_flag, other in [*ins, *outs[:i]]:
            if any(_same(a, b) for a in files_of(path) for b in files_of(other)):
                kind = "an output" if (other_flag, other) in outs else "an input"
                raise UserError(f"{flag} '{path}': is also {kind} ({other_flag} '{other}'), which writing would "
                                f"destroy; give {flag} another file")


def input_file(flag: str, path: str | os.PathLike, what: str = "file") -> Path:
    """An existing, readable file."""
    p = Path(path)
    if not p.exists():
        raise UserError(f"{flag} '{path}': {what} not found; check the path")
    if p.is_dir():
        raise UserError(f"{flag} '{path}': is a folder; give the {what} itself")
    if not os.access(p, os.R_OK):
        raise UserError(f"{flag} '{path}': {what} is not readable; check its permissions")
    return p


def input_folder(flag: str, path: str | os.PathLike, what: str = "folder") -> Path:
    """An existing folder."""
    p = Path(path)
    if not p.is_dir():
        found = "is a file, not a folder" if p.exists() else "not found"
        raise UserError(f"{flag} '{path}': {what} {found}; check the path")
    return p


def segment_options(options: Any) -> None:
    """Range checks of engine.inference.segment.SegmentOptions (None fields: the model's defaults)."""
    number("--score-threshold", options.score_threshold, 0.0, 1.0, example="0.5")
    number("--mask-threshold", options.mask_threshold, 0.0, 1.0, lo_open=True, hi_open=True, example="0.5")
    integer("--tile-size", options.tile_size, MIN_TILE, MAX_TILE, "512")
    integer("--overlap", options.overlap, 0, None, "64")
    integer("--batch-size", options.batch_size, 1, MAX_BATCH, "4")
    number("--simplify", options.simplify, 0.0, example="0.5")
    integer("--min-area", options.min_area, 0, None, "4")
    number("--duplicate-containment", options.duplicate_containment, 0.0, lo_open=True, example="0.8")
    number("--gsd-tolerance", options.gsd_tolerance, 0.0, example="0.25")
    if options.value_range is not None:
        lo, hi = options.value_range
        if not (math.isfinite(lo) and math.isfinite(hi) and lo < hi):
            raise UserError(f"--value-range {lo:g},{hi:g}: give MIN,MAX with MIN < MAX, e.g. --value-range 0,4000")
    if options.extent is not None:
        xmin, ymin, xmax, ymax = options.extent
        if not all(math.isfinite(v) for v in options.extent) or not (xmin < xmax and ymin < ymax):
            text = ",".join(f"{v:.12g}" for v in options.extent)
            raise UserError(f"--extent {text}: give XMIN,YMIN,XMAX,YMAX with XMIN < XMAX and YMIN < YMAX")
    if options.sar_input not in ("auto", "amplitude", "db"):
        raise UserError(f"--sar-input {options.sar_input}: give auto, amplitude or db")
