"""Instance segmentation: one mask, box, label and score per object.

Model contract (torchvision's): train mode returns a dict of named losses; eval mode one dict per image
{"boxes" [N,4] xyxy, "labels" [N] in 1..K, "scores" [N], "masks" [N,1,H,W] probabilities}.
Trained on CocoInstanceDataset, evaluated by COCO box/mask AP (best.pt: mask AP). In segment, each
tile's detections become Instances in raster pixels (a tile result: PackedInstances, masks cropped to their
boxes and bit-packed) and go through the streaming seam merge (an object is written once no later tile can
touch it).
"""
from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from engine.data.coco import CocoInstanceDataset, Sample
from engine.data.copy_paste import CrowdPaste
from engine.evaluation.coco_eval import CocoEvaluator
from engine.evaluation.operating_point import operating_point_table
from engine.evaluation.report import coco_table
from engine.merge import Instance, StreamingMerger, suppress_nested_duplicates
from engine.progress import Progress
from engine.spec import ModelSpec
from engine.tasks.base import Task
from engine.tasks.stage import Feature, FeatureSink, RowStreamingStage, WriterSettings
from engine.tiling import Tile
from engine.vector import mask_to_geometry


def tile_instances(output: dict[str, np.ndarray], tile: Tile, score_threshold: float,
                   mask_threshold: float, area_bounds: tuple[int, int, int, int] | None = None,
                   edge_margin: int = 2) -> list[Instance]:
    """One tile's model output -> Instances in raster pixels, masks cropped to their bounding boxes.

    Each instance records its tile window and core, and is marked ``truncated`` when its mask comes
    within `edge_margin` pixels of a window edge that is not an edge of `area_bounds`
    ``(row0, col0, row1, col1)``, the tiled area (None: every window edge off raster row/col 0 counts).
    """
    found = []
    window = (tile.row_off, tile.col_off, tile.row_off + tile.height, tile.col_off + tile.width)
    outer = area_bounds or (0, 0, -1, -1)
    for label, score, prob in zip(output["labels"], output["scores"], output["masks"]):
        if score < score_threshold:
            continue
        mask = prob >= mask_threshold
        rows, cols = np.flatnonzero(mask.any(axis=1)), np.flatnonzero(mask.any(axis=0))
        if rows.size == 0:
            continue
        r0, r1, c0, c1 = rows[0], rows[-1] + 1, cols[0], cols[-1] + 1
        truncated = ((r0 <= edge_margin and window[0] != outer[0])
                     or (c0 <= edge_margin and window[1] != outer[1])
                     or (r1 >= tile.height - edge_margin and window[2] != outer[2])
                     or (c1 >= tile.width - edge_margin and window[3] != outer[3]))
        found.append(Instance(int(label), float(score), mask[r0:r1, c0:c1].copy(),
                              tile.row_off + int(r0), tile.col_off + int(c0), window=window, core=tile.core,
                              truncated=bool(truncated)))
    return found


@dataclass(frozen=True)
class PackedInstances:
    """One tile's Instances, compact and picklable (a Dask worker's tile result): masks cropped to their boxes,
    bit-packed and concatenated. `unpack(tile)` gives back the same Instances (window and core from `tile`)."""

    class_ids: np.ndarray  # [N] int64
    scores: np.ndarray  # [N] float64, exactly the Instances' scores
    boxes: np.ndarray  # [N, 4] int64: row_off, col_off, height, width of each mask in raster pixels
    truncated: np.ndarray  # [N] bool
    bits: np.ndarray  # uint8: np.packbits of each mask (row-major), one after the other

    @classmethod
    def pack(cls, instances: Sequence[Instance]) -> PackedInstances:
        bits = [np.packbits(inst.mask) for inst in instances]
        return cls(np.array([i.class_id for i in instances], np.int64), np.array([i.score for i in instances]),
                   np.array([(i.row_off, i.col_off, *i.mask.shape) for i in instances], np.int64).reshape(-1, 4),
                   np.array([i.truncated for i in instances], bool),
                   np.concatenate(bits) if bits else np.zeros(0, np.uint8))

    def __len__(self) -> int:
        return len(self.class_ids)

    def unpack(self, tile: Tile) -> list[Instance]:
        window = (tile.row_off, tile.col_off, tile.row_off + tile.height, tile.col_off + tile.width)
        found, start = [], 0
        for class_id, score, (row_off, col_off, h, w), truncated in zip(self.class_ids, self.scores, self.boxes,
                                                                        self.truncated):
            n = (int(h) * int(w) + 7) // 8
            mask = np.unpackbits(self.bits[start:start + n], count=int(h) * int(w)).reshape(int(h), int(w)) > 0
            start += n
            found.append(Instance(int(class_id), float(score), mask, int(row_off), int(col_off), window=window,
                                  core=tile.core, truncated=bool(truncated)))
        return found


def instance_tile_result(output: dict[str, np.ndarray], tile: Tile, settings: WriterSettings,
                         area: tuple[int, int, int, int]) -> PackedInstances:
    """One tile's detections -> its kept Instances (`tile_instances`, then nested half-object duplicates dropped),
    packed."""
    if settings.score_threshold is None:
        raise ValueError("instance models need a score threshold")
    found = tile_instances(output, tile, settings.score_threshold, settings.mask_threshold, area)
    return PackedInstances.pack(suppress_nested_duplicates(found, settings.duplicate_containment))


class InstanceStage(RowStreamingStage):
    """Per tile: detections -> Instances (nested half-object duplicates dropped) -> streaming seam merge;
    each merged object -> one polygon (its mask traced on the working grid)."""

    def __init__(self, sink: FeatureSink, tiles: Sequence[Tile], settings: WriterSettings,
                 progress: Progress) -> None:
        super().__init__(sink, tiles, settings, progress)
        if settings.score_threshold is None:
            raise ValueError("instance models need a score threshold")
        self.score_threshold = settings.score_threshold
        self.merger = StreamingMerger(settings.merge_threshold)

    @property
    def peak_pending(self) -> int:
        return self.merger.peak_pending

    def tile_result(self, tile: Tile, output: dict[str, np.ndarray], valid: np.ndarray | None) -> PackedInstances:
        return instance_tile_result(output, tile, self.settings, self.area)

    def add_result(self, tile: Tile, result: PackedInstances) -> int:
        self.merger.add(result.unpack(tile))
        return len(result)

    def release(self, frontier: int | None) -> Iterator[Feature]:
        transform = self.sink.src.work.transform
        for inst in self.merger.flush(frontier):
            geom = mask_to_geometry(inst.mask, inst.row_off, inst.col_off, transform, self.settings.simplify)
            if geom is not None:
                yield Feature(geom, inst.class_id, inst.score, inst.n_tiles, inst.merged)


class InstanceTask(Task):
    name = "instance"
    score_name = "mask AP"

    def train_dataset(self, spec: ModelSpec, coco: str, images: str, bands: list[int] | None,
                      transforms: Callable[[Sample], Sample] | None = None,
                      radiometric: Callable[[np.ndarray], np.ndarray] | None = None,
                      paste: CrowdPaste | None = None) -> CocoInstanceDataset:
        return CocoInstanceDataset(coco, images, spec.normalisation, bands, transforms, radiometric, paste=paste)

    def evaluator(self, dataset: CocoInstanceDataset) -> CocoEvaluator:
        return CocoEvaluator(dataset)

    def headline(self, metrics: dict[str, Any]) -> dict[str, float | None]:
        return {"mask AP": metrics["segm"]["AP"], "box AP": metrics["bbox"]["AP"]}

    def report(self, metrics: dict[str, Any]) -> str:
        if "objects" not in metrics:  # metrics of checkpoints evaluated before the object counts existed
            return coco_table(metrics)
        return coco_table(metrics) + "\n" + operating_point_table(metrics["objects"], metrics.get("score_threshold"))

    def convert_outputs(self, outputs: list[dict[str, torch.Tensor]]) -> list[dict[str, np.ndarray]]:
        """-> per tile {"boxes" [N,4], "labels" [N], "scores" [N], "masks" [N,h,w] probabilities}."""
        return [{"boxes": o["boxes"].float().cpu().numpy(), "labels": o["labels"].cpu().numpy(),
                 "scores": o["scores"].float().cpu().numpy(), "masks": o["masks"][:, 0].float().cpu().numpy()}
                for o in outputs]

    def default_score_threshold(self, spec: ModelSpec) -> float:
        return spec.score_threshold

    def tile_result(self, spec: ModelSpec, settings: WriterSettings, area: tuple[int, int, int, int], tile: Tile,
                    output: dict[str, np.ndarray], valid: np.ndarray | None) -> PackedInstances:
        return instance_tile_result(output, tile, settings, area)

    def writer_stage(self, sink: FeatureSink, tiles: Sequence[Tile], settings: WriterSettings,
                     progress: Progress) -> InstanceStage:
        return InstanceStage(sink, tiles, settings, progress)
