"""RasterSource: windows, bands, nodata, transform and CRS of a raster file, over rasterio.

Rasters without a CRS are processed in pixel coordinates (x = column, y = row, rasterio's identity
transform) with a warning; areas then come from the model's ground sample distance.
"""
from __future__ import annotations

import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import rasterio
from affine import Affine
from rasterio.errors import NotGeoreferencedWarning, RasterioIOError
from rasterio.windows import Window

from engine.errors import UserError


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


class RasterSource:
    """Open a raster for windowed reads. Use as a context manager.

    `bands`: 1-based band indices to read (None = all bands).
    """

    def __init__(self, path: str | Path, bands: list[int] | None = None) -> None:
        self.path = Path(path)
        if not self.path.exists():
            raise UserError(f"raster '{path}': file not found")
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", NotGeoreferencedWarning)
                self._ds = rasterio.open(self.path)
        except RasterioIOError as exc:
            first = str(exc).splitlines()[0][:150]
            raise UserError(f"raster '{path}': not a readable raster ({first})") from None
        ds = self._ds
        if bands:
            bad = [b for b in bands if not 1 <= b <= ds.count]
            if bad:
                ds.close()
                raise UserError(f"--bands {','.join(map(str, bands))}: raster '{path}' has bands 1..{ds.count}")
        self.bands = list(bands) if bands else list(range(1, ds.count + 1))
        self.info = RasterInfo(
            path=str(self.path), height=ds.height, width=ds.width, count=ds.count, dtype=ds.dtypes[0],
            crs_wkt=ds.crs.to_wkt() if ds.crs else None, transform=ds.transform,
            nodata=ds.nodata,
        )

    def read(self, row_off: int, col_off: int, height: int, width: int) -> np.ndarray:
        """[C,h,w] raw values of the selected bands inside the window (pixels)."""
        try:
            return self._ds.read(self.bands, window=Window(col_off, row_off, width, height))
        except RasterioIOError as exc:
            raise UserError(f"raster '{self.path}': read failed at window "
                            f"({row_off},{col_off},{height},{width}): {str(exc).splitlines()[0][:120]}") from None

    def valid_mask(self, pixels: np.ndarray) -> np.ndarray | None:
        """[h,w] bool, False where every selected band equals nodata; None when the raster has no nodata."""
        if self.info.nodata is None:
            return None
        return ~np.all(pixels == self.info.nodata, axis=0)

    def close(self) -> None:
        self._ds.close()

    def __enter__(self) -> RasterSource:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
