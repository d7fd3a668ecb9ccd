"""Writer stage of segment_raster for semantic models (spec.task == "semantic").

Per tile {"probs": [K+1,h,w]} -> blended into a rolling strip of rows (engine.semantic.stitch; nodata
pixels get no weight and end as background) -> rows no later tile can touch are final: argmax class and
its probability -> connected components per class joined across strips (engine.semantic.vectorise) ->
one polygon per component in the raster's CRS, written with the instance path's attributes (class_id,
class_name, score = mean class probability inside it, area_m2, n_tiles = tile cores it overlaps,
merged = joined across strips). Reading, the model call, cancel and the atomic output are
engine.inference.segment's, shared with the instance models.
"""
from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from shapely import affinity

from engine.inference.segment import SegmentOptions, row_frontiers, write_feature
from engine.raster.source import RasterSource
from engine.semantic.stitch import StripStitcher, tile_weights
from engine.semantic.vectorise import Component, StripVectoriser, class_map, core_cells, count_components
from engine.spec import ModelSpec
from engine.tiling import Tile, tiles_area
from engine.vector import VectorWriter
from engine.vector.tile_grid import TileRecord


class SemanticVectoriser:
    """Writer stage for semantic models: `__call__(batch)` with the batches of engine.inference.segment."""

    def __init__(self, writer: VectorWriter, src: RasterSource, spec: ModelSpec, tiles: list[Tile], overlap: int,
                 options: SegmentOptions, model_label: str, raster: str,
                 progress: Callable[[int, int], None] | None) -> None:
        self.writer, self.src, self.spec, self.options, self.overlap = writer, src, spec, options, overlap
        self.model_label, self.source = model_label or spec.name, str(Path(raster).name)
        self.area = area = tiles_area(tiles)
        self.stitcher = StripStitcher(area, spec.num_classes + 1)
        self.components = StripVectoriser(area[1], area[0], *core_cells(tiles, area), min_area=options.min_area)
        self.frontiers = row_frontiers(tiles)
        self.total, self.done, self.last_frontier = len(tiles), 0, -1
        self.records: list[TileRecord] = []  # per tile, for the optional QA grid
        self.counts: dict[str, int] = {}
        self.progress = progress

    @property
    def peak_pending(self) -> int:
        """Most components held at once across a strip boundary."""
        return self.components.peak_pending

    def __call__(self, batch) -> None:
        self.records.extend(TileRecord(t, "nodata", 0) for t in batch.skipped)
        for tile, output, valid in zip(batch.tiles, batch.outputs or [], batch.valid):
            probs = output["probs"]
            if probs.shape != (self.spec.num_classes + 1, tile.height, tile.width):
                raise ValueError(f"model '{self.spec.name}' returned probs {probs.shape} for a tile of "
                                 f"{tile.height}x{tile.width} with {self.spec.num_classes} classes")
            weights = tile_weights(tile, self.overlap, self.area)
            if valid is not None:
                weights = weights * valid
            self.stitcher.add(tile, probs, weights)
            # per-tile region count: QA grid only (tracing a tile's regions is not free)
            self.records.append(TileRecord(tile, "run", count_components(probs) if self.options.tile_grid else 0))
        self.done += batch.size
        frontier = self.frontiers[self.done] if self.done < self.total else None
        if frontier != self.last_frontier:  # a tile row is complete (None: all are): trace the final rows
            row0, probs = self.stitcher.release(frontier)
            classes, scores = class_map(probs)
            for component in self.components.add_strip(row0, classes, scores, last=frontier is None):
                self._write(component)
            self.last_frontier = frontier
        if self.progress:
            self.progress(self.done, self.total)

    def _write(self, component: Component) -> None:
        threshold = self.options.score_threshold  # only when asked for: argmax regions have no natural cut
        if threshold is not None and component.score < threshold:
            return
        t = self.src.work.transform
        geom = affinity.affine_transform(component.geometry, [t.a, t.b, t.d, t.e, t.c, t.f])
        if self.options.simplify > 0:  # map units, topology kept
            geom = geom.simplify(self.options.simplify, preserve_topology=True)
            geom = geom if geom.is_valid else geom.buffer(0)
        write_feature(self, geom, component.class_id, component.score, len(component.cells), component.merged)
