"""Task: what differs between instance and semantic segmentation, behind one interface.

A task gives the trainer its datasets, evaluator and validation score; the Predictor its output
conversion; segment_raster its writer stage; the CLI its metric tables. engine.tasks.TASKS maps
ModelSpec.task to one instance of each.
"""
from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import torch

from engine.data.coco import CocoInstanceDataset, Sample
from engine.data.copy_paste import CrowdPaste
from engine.evaluation.loop import DatasetEvaluator, inference_on_dataset
from engine.progress import Progress
from engine.spec import ModelSpec
from engine.tasks.stage import FeatureSink, RowStreamingStage, WriterSettings
from engine.tiling import Tile


class Task(ABC):
    """One segmentation task. Stateless: TASKS holds one instance per task name."""

    name: str  # ModelSpec.task
    score_name: str  # the validation metric best.pt is chosen by, e.g. "mask AP"

    # ------------------------------------------------------------------------------------------ data
    @abstractmethod
    def train_dataset(self, spec: ModelSpec, coco: str, images: str, bands: list[int] | None,
                      transforms: Callable[[Sample], Sample] | None = None,
                      radiometric: Callable[[np.ndarray], np.ndarray] | None = None,
                      paste: CrowdPaste | None = None) -> CocoInstanceDataset:
        """Training items (image, target) from a COCO file, with the targets the task's models learn from."""

    def eval_dataset(self, spec: ModelSpec, coco: str, images: str,
                     bands: list[int] | None = None) -> CocoInstanceDataset:
        """Evaluation images and instance truth, no augmentation (`bands`: 1-based, default the spec's count)."""
        return CocoInstanceDataset(coco, images, spec.normalisation, bands or list(range(1, spec.bands + 1)))

    # ------------------------------------------------------------------------------------ evaluation
    @abstractmethod
    def evaluator(self, dataset: CocoInstanceDataset) -> DatasetEvaluator:
        """A fresh evaluator (reset / process / evaluate) for `dataset`."""

    def evaluate(self, model: torch.nn.Module, dataset: CocoInstanceDataset, device: torch.device | str = "cpu",
                 progress: Callable[[int, int], None] | None = None, input_scale: float = 1.0) -> dict[str, Any]:
        """The evaluator's metrics of `model` on `dataset` plus "images" and "seconds_per_image"."""
        return inference_on_dataset(model, dataset, self.evaluator(dataset), device, progress, input_scale)

    @abstractmethod
    def headline(self, metrics: dict[str, Any]) -> dict[str, float | None]:
        """The metrics worth one line, e.g. {"mask AP": 41.2, "box AP": 45.0}; the first is `score_name`'s."""

    def validation_score(self, metrics: dict[str, Any]) -> float:
        """The score best.pt is chosen by (percent; 0 when undefined)."""
        value = self.headline(metrics)[self.score_name]
        return float(value) if value is not None else 0.0

    @abstractmethod
    def report(self, metrics: dict[str, Any]) -> str:
        """Metric tables for people (engine.evaluation.report)."""

    # ------------------------------------------------------------------------------------- inference
    @abstractmethod
    def convert_outputs(self, outputs: list[dict[str, torch.Tensor]]) -> list[dict[str, np.ndarray]]:
        """Eval-mode model outputs (one dict per tile) -> numpy dicts that the writer stage reads."""

    @abstractmethod
    def default_score_threshold(self, spec: ModelSpec) -> float | None:
        """The score cut when segment is given none (None: keep everything)."""

    @abstractmethod
    def tile_result(self, spec: ModelSpec, settings: WriterSettings, area: tuple[int, int, int, int], tile: Tile,
                    output: dict[str, np.ndarray], valid: np.ndarray | None) -> Any:
        """One tile's converted output -> the compact, picklable result its writer stage's `add_result` takes
        (`area`: the tiled area (row0, col0, row1, col1); what a Dask worker sends back, engine.distributed)."""

    @abstractmethod
    def writer_stage(self, sink: FeatureSink, tiles: Sequence[Tile], settings: WriterSettings,
                     progress: Progress) -> RowStreamingStage:
        """segment_raster's writer stage for this task's outputs."""


def format_headline(metrics: dict[str, float | None], digits: int = 1, prefix: str = "") -> str:
    """{"mIoU": 40.0, "mask AP": None} -> "mIoU 40.0, mask AP n/a" (each name after `prefix`)."""
    return ", ".join(f"{prefix}{name} {value:.{digits}f}" if value is not None else f"{prefix}{name} n/a"
                     for name, value in metrics.items())
