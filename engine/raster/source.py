"""RasterSource: windows, bands, nodata, transform and CRS of a raster file, over rasterio.

Reads happen on a working grid (engine.raster.working_grid): the raster's own, or a GDAL warped
view (WarpedVRT, bilinear) resampled to the model's GSD or reprojected to UTM; either way only the
requested window is read and warped, never the whole raster. Rasters without a CRS are processed in
pixel coordinates (x = column, y = row, rasterio's identity transform) with a warning; areas then
come from the model's ground sample distance.
"""
from __future__ import annotations

import math
import re
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import rasterio
from affine import Affine
from rasterio.enums import Resampling
from rasterio.errors import NotGeoreferencedWarning, RasterioIOError
from rasterio.vrt import WarpedVRT
from rasterio.warp import calculate_default_transform, transform_bounds
from rasterio.windows import Window

from engine.errors import UserError
from engine.raster.working_grid import (
    GridPlan,
    check_utm_span,
    gsd_accepted,
    plan_resampling,
    resampled_grid,
    utm_epsg,
)

_URI = re.compile(r"^(/vsi[a-z0-9_]+/|[A-Za-z][A-Za-z0-9+.-]*://|[A-Z][A-Z0-9_]+:)")  # driver prefixes: capitals


def is_gdal_uri(path: str | Path) -> bool:
    """True for what GDAL opens but is no local file path: /vsi... paths (/vsis3/bucket/key.tif, /vsicurl/...),
    URLs (https://host/x.tif) and driver-prefixed subdatasets (NETCDF:"file.nc":var). Windows drive letters
    (C:/...) are paths."""
    text = str(path)
    return bool(_URI.match(text)) and not re.match(r"^[A-Za-z]:[\\/]", text)


@dataclass(frozen=True)
class RasterInfo:
    path: str
    height: int
    width: int
    count: int
    dtype: str
    crs_wkt: str | None
    transform: Affine
    nodata: float | None

    @property
    def georeferenced(self) -> bool:
        return self.crs_wkt is not None

    @property
    def pixel_size(self) -> float:
        """Mean absolute pixel size in CRS units (1.0 for pixel coordinates)."""
        return float((abs(self.transform.a) + abs(self.transform.e)) / 2)


@dataclass(frozen=True)
class GsdPolicy:
    """When to resample: the model's GSD (m/pixel) and the raster GSD range (m) it accepts as is."""

    model_gsd_m: float
    accepted_m: tuple[float, float]
    resample: bool = True  # False: always the raster's own grid (geographic rasters are still reprojected)


def _open(path: str | Path) -> rasterio.DatasetReader:
    """rasterio.open with one-line UserErrors for a missing or unreadable file (or GDAL URI)."""
    if not is_gdal_uri(path) and not Path(path).exists():
        raise UserError(f"raster '{path}': file not found")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", NotGeoreferencedWarning)
            return rasterio.open(path)
    except RasterioIOError as exc:
        first = str(exc).splitlines()[0][:150]
        raise UserError(f"raster '{path}': not a readable raster ({first}); give a GeoTIFF or another file "
                        "GDAL reads") from None


def raster_band_count(path: str | Path) -> int:
    """The number of bands of a raster (its header only); UserError when it is missing or unreadable."""
    with _open(path) as ds:
        return ds.count


class RasterSource:
    """Open a raster for windowed reads. Use as a context manager.

    `bands`: 1-based band indices to read (None = all bands).
    """

    def __init__(self, path: str | Path, bands: list[int] | None = None, gsd: GsdPolicy | None = None,
                 extent: tuple[float, float, float, float] | None = None) -> None:
        self.path: str | Path = str(path) if is_gdal_uri(path) else Path(path)
        self._ds = _open(self.path)
        ds = self._ds
        if bands:
            bad = [b for b in bands if not 1 <= b <= ds.count]
            if bad:
                ds.close()
                raise UserError(f"--bands {','.join(map(str, bands))}: raster '{path}' has bands 1..{ds.count}; "
                                f"choose bands from 1 to {ds.count}")
        self.bands = list(bands) if bands else list(range(1, ds.count + 1))
        self.info = RasterInfo(
            path=str(self.path), height=ds.height, width=ds.width, count=ds.count, dtype=ds.dtypes[0],
            crs_wkt=ds.crs.to_wkt() if ds.crs else None, transform=ds.transform,
            nodata=ds.nodata,
        )
        self.plan = GridPlan(self.info.crs_wkt, ds.transform, ds.height, ds.width)
        self._reader = ds
        self._alpha: int | None = None  # band index of the warped view's validity (alpha) band
        if ds.crs is not None and gsd is not None:
            self.plan = self._plan(gsd, extent)
        if not self.plan.native:
            self._open_warped()
        p = self.plan
        self.work = RasterInfo(path=str(self.path), height=p.height, width=p.width, count=ds.count,
                               dtype=ds.dtypes[0], crs_wkt=self.info.crs_wkt if not p.reprojected else p.crs,
                               transform=p.transform, nodata=ds.nodata)

    def _plan(self, gsd: GsdPolicy, extent: tuple[float, float, float, float] | None) -> GridPlan:
        ds = self._ds
        if not ds.crs.is_geographic:
            if not gsd.resample:
                return self.plan
            unit_m = float(ds.crs.linear_units_factor[1])
            return plan_resampling(self.info.crs_wkt, ds.transform, ds.height, ds.width, unit_m,
                                   gsd.model_gsd_m, gsd.accepted_m)
        bounds = tuple(ds.bounds)
        if extent is not None:  # only the part to segment must fit one UTM zone
            bounds = (max(bounds[0], extent[0]), max(bounds[1], extent[1]),
                      min(bounds[2], extent[2]), min(bounds[3], extent[3]))
            if bounds[0] >= bounds[2] or bounds[1] >= bounds[3]:
                return self.plan  # no overlap: the extent check downstream says so
        lon_min, lat_min, lon_max, lat_max = transform_bounds(ds.crs, "EPSG:4326", *bounds)
        why = check_utm_span(lon_min, lat_min, lon_max, lat_max)
        if why:
            raise UserError(f"raster '{self.path}' is in a geographic CRS and {why}; reproject it to a projected "
                            "CRS first (e.g. gdalwarp -t_srs EPSG:326NN) or limit it with --extent")
        epsg = utm_epsg((lon_min + lon_max) / 2, (lat_min + lat_max) / 2)
        crs = f"EPSG:{epsg}"
        transform, width, height = calculate_default_transform(ds.crs, crs, ds.width, ds.height, *ds.bounds)
        gsd_m = (abs(transform.a) + abs(transform.e)) / 2
        reason = f"geographic CRS: processed in UTM ({crs}) at {gsd_m:.3g} m pixels"
        resampled = gsd.resample and not gsd_accepted(gsd_m, gsd.accepted_m)
        if resampled:
            transform, height, width = resampled_grid(transform, height, width, gsd.model_gsd_m / gsd_m)
            reason = (f"geographic CRS: processed in UTM ({crs}) resampled from {gsd_m:.3g} m to the model's "
                      f"{gsd.model_gsd_m:.3g} m pixels")
        return GridPlan(crs, transform, height, width, reprojected=True, resampled=resampled, reason=reason)

    def _open_warped(self) -> None:
        ds, p = self._ds, self.plan
        options = dict(crs=p.crs or ds.crs, transform=p.transform, width=p.width, height=p.height,
                       resampling=Resampling.bilinear)
        if ds.nodata is not None:
            options.update(src_nodata=ds.nodata, nodata=ds.nodata)
        else:
            options.update(add_alpha=True)
            self._alpha = ds.count + 1
        self._reader = WarpedVRT(ds, **options)

    def extent_in_work_crs(self, extent: tuple[float, float, float, float]) -> tuple[float, float, float, float]:
        """An extent in the raster's CRS -> the working grid's CRS (its bounding box)."""
        if not self.plan.reprojected:
            return extent
        return tuple(transform_bounds(self._ds.crs, self.plan.crs, *extent))

    def read(self, row_off: int, col_off: int, height: int, width: int) -> np.ndarray:
        """[C,h,w] raw values of the selected bands inside the window (working-grid pixels).

        Outside a warped view's footprint the values are nodata (or 0, flagged by `valid_mask`).
        """
        return self.read_valid(row_off, col_off, height, width)[0]

    def read_valid(self, row_off: int, col_off: int, height: int, width: int) -> tuple[np.ndarray, np.ndarray | None]:
        """`read` plus the [h,w] bool validity: False where every selected band is nodata or, in a warped
        view of a raster without nodata, outside the raster's footprint; None when all pixels are valid."""
        try:
            bands = self.bands + ([self._alpha] if self._alpha else [])
            pixels = self._reader.read(bands, window=Window(col_off, row_off, width, height))
        except RasterioIOError as exc:
            raise UserError(f"raster '{self.path}': read failed at window ({row_off},{col_off},{height},{width}) "
                            f"({str(exc).splitlines()[0][:120]}); the file may be truncated or damaged: check it "
                            "with gdalinfo -checksum, or copy it again") from None
        if self._alpha:
            valid = pixels[-1] > 0
            pixels = pixels[:-1]
            finite = self._finite(pixels)
            return pixels, valid if finite is None else valid & finite
        return pixels, self.valid_mask(pixels)

    def sample(self, max_side: int = 1024) -> tuple[np.ndarray, np.ndarray | None]:
        """A decimated read of the whole raster's selected bands (at most `max_side` pixels a side, nearest
        neighbour; GDAL uses overviews when present) and its validity, for value statistics."""
        ds = self._ds
        factor = max(1.0, max(ds.height, ds.width) / max_side)
        shape = (len(self.bands), max(1, int(ds.height / factor)), max(1, int(ds.width / factor)))
        try:
            pixels = ds.read(self.bands, out_shape=shape, resampling=Resampling.nearest)
        except RasterioIOError as exc:
            raise UserError(f"raster '{self.path}': read failed ({str(exc).splitlines()[0][:120]}); the file may be "
                            "truncated or damaged: check it with gdalinfo -checksum, or copy it again") from None
        return pixels, self.valid_mask(pixels)

    def valid_mask(self, pixels: np.ndarray) -> np.ndarray | None:
        """[h,w] bool, False where every selected band equals nodata (NaN nodata included) or any band is NaN
        or infinite (never fed to a model); None when every pixel is valid by construction (no nodata value,
        not a float raster) or in fact."""
        invalid = None
        nodata = self.info.nodata
        if nodata is not None:
            invalid = np.all(np.isnan(pixels) if math.isnan(nodata) else pixels == nodata, axis=0)
        finite = self._finite(pixels)
        if finite is not None:
            invalid = ~finite if invalid is None else invalid | ~finite
        return None if invalid is None else ~invalid

    @staticmethod
    def _finite(pixels: np.ndarray) -> np.ndarray | None:
        """[h,w] bool, False where a band is NaN or infinite; None for integer pixels or when all are finite."""
        if pixels.dtype.kind != "f":
            return None
        finite = np.isfinite(pixels).all(axis=0)
        return None if finite.all() else finite

    def close(self) -> None:
        if self._reader is not self._ds:
            self._reader.close()
        self._ds.close()

    def __enter__(self) -> RasterSource:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
