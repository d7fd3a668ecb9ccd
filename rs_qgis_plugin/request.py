"""What one segmentation run needs, as plain data (no QGIS objects), and its engine command line."""
from __future__ import annotations

from dataclasses import dataclass

OUTPUT_EXTENSIONS = (".gpkg", ".shp", ".geojson")


@dataclass(frozen=True)
class SegmentRequest:
    """One `rsseg segment` run.

    raster: local raster file; model: shipped model name or checkpoint path; output: vector file path
    (.gpkg, .shp, .geojson); bands: 1-based raster bands fed to the model, in model order (None = all);
    extent: (xmin, ymin, xmax, ymax) in the raster's CRS (None = whole raster); None thresholds and
    tile settings mean "the model's default". aoi / exclude: polygon files (any CRS; 'f.gpkg|layername=x' for one
    layer): only objects inside the AOI and outside the exclude polygons are kept (None = no such mask).
    """

    raster: str
    model: str
    output: str
    bands: tuple[int, ...] | None = None
    extent: tuple[float, float, float, float] | None = None
    score_threshold: float | None = None
    tile_size: int | None = None
    overlap: int | None = None
    device: str = "auto"
    aoi: str | None = None
    exclude: str | None = None

    def engine_args(self) -> list[str]:
        """Arguments after `python -m engine`."""
        args = ["segment", self.raster, "--model", self.model, "--out", self.output, "--progress", "jsonl",
                "--device", self.device]
        if self.bands:
            args += ["--bands", ",".join(str(b) for b in self.bands)]
        if self.extent:
            args.append("--extent=" + ",".join(repr(float(v)) for v in self.extent))  # "=": XMIN may be negative
        if self.score_threshold is not None:
            args += ["--score-threshold", repr(float(self.score_threshold))]
        if self.tile_size:
            args += ["--tile-size", str(int(self.tile_size))]
        if self.overlap is not None:
            args += ["--overlap", str(int(self.overlap))]
        if self.aoi:
            args += ["--aoi", self.aoi]
        if self.exclude:
            args += ["--exclude", self.exclude]
        return args


@dataclass(frozen=True)
class RasterExport:
    """A non-file raster layer (WMS, XYZ, virtual) to write to `path` as a GeoTIFF before the run.

    extent in the layer's CRS; width/height in pixels. `provider` is a cloned QgsRasterDataProvider
    (made on the main thread), `crs` a QgsCoordinateReferenceSystem.
    """

    provider: object
    crs: object
    extent: object
    width: int
    height: int
    path: str


@dataclass(frozen=True)
class SegmentJob:
    """A request plus how to present its result in QGIS."""

    request: SegmentRequest
    layer_name: str
    classes: tuple[dict, ...] = ()  # spec classes: {"id", "name", "colour"}
    temporary: bool = True  # load the result as a temporary (memory) layer and drop the file
    labels: bool = False
    export: RasterExport | None = None
    area_folder: str | None = None  # a temporary folder of polygon layers written for --aoi/--exclude
