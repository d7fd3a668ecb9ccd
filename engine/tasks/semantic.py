"""Semantic segmentation: a class for every pixel; objects are the connected regions of one class.

Contract shared by every semantic model (engine.models.SEMANTIC_ARCHITECTURES), the trainer, the
evaluator and the tiled inference:

- Labels: 0 = background, 1..K = spec.classes (K = spec.num_classes), engine.spec.IGNORE_INDEX =
  padding/ignored pixels.
- Targets: each target dict carries "semantic": int64 Tensor [H, W] with values in {0..K, IGNORE_INDEX},
  the same H, W as its image (instance keys "boxes"/"labels"/"masks" may also be present: ignore them).
  They are painted from COCO instance polygons (engine.data.class_maps).
- Train mode: `model(images: list[float Tensor [C,H,W]], targets: list[dict])` -> dict of named scalar
  losses (the trainer sums them).
- Eval mode: `model(images)` -> one dict per image {"probs": float Tensor [K+1, H, W]}, softmax class
  probabilities (sum 1 over the class axis) at that image's own size. Models pad a batch to a common
  multiple of 32 internally (targets padded with IGNORE_INDEX) and crop back.

Evaluated by mIoU, F1, OA and the COCO AP of the class components (best.pt: mIoU). In segment, each
tile's probabilities are blended into a rolling strip of rows (engine.merge.stitch; nodata pixels get no
weight and end as background); rows no later tile can touch are final: argmax class and its probability
-> connected components per class joined across strips (engine.vector.components) -> one polygon per
component, with the instance path's attributes (score = mean class probability inside it, n_tiles = tile
cores it overlaps, merged = joined across strips).
"""
from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from shapely import affinity

from engine.data.class_maps import CocoSemanticDataset
from engine.data.coco import CocoInstanceDataset, Sample
from engine.data.copy_paste import CrowdPaste
from engine.evaluation.report import coco_table, semantic_table
from engine.evaluation.semantic_eval import SemanticEvaluator
from engine.merge.stitch import StripStitcher, tile_weights
from engine.progress import Progress
from engine.spec import ModelSpec
from engine.tasks.base import Task
from engine.tasks.stage import Feature, FeatureSink, RowStreamingStage, WriterSettings
from engine.tiling import Tile
from engine.vector.components import Component, StripVectoriser, class_map, core_cells, count_components


@dataclass(frozen=True)
class SemanticTileResult:
    """One tile's class probabilities and validity, picklable (a Dask worker's tile result). The probabilities
    stay float32, as the model gave them: the client blends them in the single-process order, so the stitched
    map is the same to the bit."""

    probs: np.ndarray  # [K+1, h, w] float32
    valid_bits: np.ndarray | None  # np.packbits of the [h, w] bool validity; None: every pixel valid
    regions: int  # connected class regions in the tile (QA grid; 0 unless counted)

    def valid(self) -> np.ndarray | None:
        """[h, w] bool validity, None when every pixel is valid."""
        if self.valid_bits is None:
            return None
        h, w = self.probs.shape[1:]
        return np.unpackbits(self.valid_bits, count=h * w).reshape(h, w) > 0


def semantic_tile_result(output: dict[str, np.ndarray], tile: Tile, valid: np.ndarray | None, spec: ModelSpec,
                         settings: WriterSettings) -> SemanticTileResult:
    """One tile's model output -> its probabilities (shape checked), packed validity and region count (QA)."""
    probs, channels = output["probs"], spec.num_classes + 1
    if probs.shape != (channels, tile.height, tile.width):
        raise ValueError(f"model '{spec.name}' returned probs {probs.shape} for a tile of "
                         f"{tile.height}x{tile.width} with {channels - 1} classes")
    return SemanticTileResult(probs, None if valid is None else np.packbits(valid),
                              count_components(probs) if settings.count_regions else 0)


class SemanticStage(RowStreamingStage):
    """Per tile: probabilities [K+1,h,w] blended into the strip; final rows -> class components -> polygons."""

    def __init__(self, sink: FeatureSink, tiles: Sequence[Tile], settings: WriterSettings,
                 progress: Progress) -> None:
        super().__init__(sink, tiles, settings, progress)
        self.channels = sink.spec.num_classes + 1
        self.stitcher = StripStitcher(self.area, self.channels)
        row_band, col_band = core_cells(list(tiles), self.area)
        self.components = StripVectoriser(self.area[1], self.area[0], row_band, col_band, min_area=settings.min_area)

    @property
    def peak_pending(self) -> int:
        """Most components held at once across a strip boundary."""
        return self.components.peak_pending

    def tile_result(self, tile: Tile, output: dict[str, np.ndarray], valid: np.ndarray | None) -> SemanticTileResult:
        return semantic_tile_result(output, tile, valid, self.sink.spec, self.settings)

    def add_result(self, tile: Tile, result: SemanticTileResult) -> int:
        weights = tile_weights(tile, self.settings.overlap, self.area)
        valid = result.valid()
        if valid is not None:
            weights = weights * valid
        self.stitcher.add(tile, result.probs, weights)
        return result.regions

    def release(self, frontier: int | None) -> Iterator[Feature]:
        row0, probs = self.stitcher.release(frontier)
        classes, scores = class_map(probs)
        for component in self.components.add_strip(row0, classes, scores, last=frontier is None):
            feature = self._feature(component)
            if feature is not None:
                yield feature

    def _feature(self, component: Component) -> Feature | None:
        threshold = self.settings.score_threshold  # only when asked for: argmax regions have no natural cut
        if threshold is not None and component.score < threshold:
            return None
        t = self.sink.src.work.transform
        geom = affinity.affine_transform(component.geometry, [t.a, t.b, t.d, t.e, t.c, t.f])
        if self.settings.simplify > 0:  # map units, topology kept
            geom = geom.simplify(self.settings.simplify, preserve_topology=True)
            geom = geom if geom.is_valid else geom.buffer(0)
        return Feature(geom, component.class_id, component.score, len(component.cells), component.merged)


class SemanticTask(Task):
    name = "semantic"
    score_name = "mIoU"

    def train_dataset(self, spec: ModelSpec, coco: str, images: str, bands: list[int] | None,
                      transforms: Callable[[Sample], Sample] | None = None,
                      radiometric: Callable[[np.ndarray], np.ndarray] | None = None,
                      paste: CrowdPaste | None = None) -> CocoSemanticDataset:
        return CocoSemanticDataset(coco, images, spec.normalisation, bands, transforms, radiometric, paste=paste)

    def evaluator(self, dataset: CocoInstanceDataset) -> SemanticEvaluator:
        return SemanticEvaluator(dataset)

    def headline(self, metrics: dict[str, Any]) -> dict[str, float | None]:
        return {"mIoU": metrics["semantic"]["mIoU"], "mask AP": metrics["segm"]["AP"],
                "box AP": metrics["bbox"]["AP"]}

    def report(self, metrics: dict[str, Any]) -> str:
        return semantic_table(metrics["semantic"]) + "\n" + coco_table(metrics)

    def convert_outputs(self, outputs: list[dict[str, torch.Tensor]]) -> list[dict[str, np.ndarray]]:
        """-> per tile {"probs": [K+1,h,w] float32}."""
        return [{"probs": o["probs"].float().cpu().numpy()} for o in outputs]

    def default_score_threshold(self, spec: ModelSpec) -> None:
        return None

    def tile_result(self, spec: ModelSpec, settings: WriterSettings, area: tuple[int, int, int, int], tile: Tile,
                    output: dict[str, np.ndarray], valid: np.ndarray | None) -> SemanticTileResult:
        return semantic_tile_result(output, tile, valid, spec, settings)

    def writer_stage(self, sink: FeatureSink, tiles: Sequence[Tile], settings: WriterSettings,
                     progress: Progress) -> SemanticStage:
        return SemanticStage(sink, tiles, settings, progress)
