"""What a Dask worker runs: one TileGroup (a run of tiles of one raster row) -> its compact tile results.

The worker opens the raster itself (a path or GDAL URI that every worker can read), reads and normalises its
tiles, runs the model it keeps across tasks (ModelCache, a worker plugin: each model is loaded once per worker
process) and converts each tile's output with its task's `tile_result` (engine.tasks): instances with masks
cropped to their boxes and bit-packed, or a semantic tile's probabilities. No pixel array travels from the
client; the result travels back as one pickled bytes object (its length is what the network carries).
"""
from __future__ import annotations

import pickle
import threading
import time
from contextlib import nullcontext
from dataclasses import dataclass
from typing import Any

import rasterio
from distributed import WorkerPlugin, get_worker

from engine.errors import UserError
from engine.inference.segment import SegmentOptions, open_source, read_batches
from engine.raster.input_values import InputScaling
from engine.tasks.stage import WriterSettings
from engine.tiling import Tile

PLUGIN_NAME = "rsseg-models"


@dataclass(frozen=True)
class ModelRef:
    """The model a worker loads: a shipped model's name or a checkpoint path readable on the worker, the zoom
    that replaces the spec's (`--input-scale`), the device and the torch threads (0: the worker's default)."""

    name_or_path: str
    input_scale: float | None = None
    device: str = "auto"
    threads: int = 0


@dataclass(frozen=True)
class TileGroup:
    """One task: consecutive tiles of one tile row of one raster, and everything needed to run them."""

    raster: str  # path or GDAL URI, as every worker reads it
    tiles: tuple[Tile, ...]  # row-major, working-grid pixels
    area: tuple[int, int, int, int]  # the raster's tiled area (row0, col0, row1, col1)
    grid: tuple[int, int, tuple[float, ...]]  # working grid the client planned on: height, width, transform
    model: ModelRef
    options: SegmentOptions
    scaling: InputScaling
    settings: WriterSettings
    skip: tuple[Tile, ...] = ()  # tiles of `tiles` not to run (left out by the area masks)


@dataclass(frozen=True)
class GroupResult:
    """A TileGroup's outcome: per tile its task's tile result, or None for a tile never run (all nodata, or in
    the group's `skip`)."""

    results: list[Any]
    forward_seconds: float  # pure model time on the worker
    seconds: float  # the task's wall time on the worker
    worker: str  # the worker's address


class ModelCache(WorkerPlugin):
    """A worker plugin holding the Predictors a worker has loaded, by ModelRef (loaded on first use), each with a
    lock: tasks running in several threads of one worker take turns on the model."""

    name = PLUGIN_NAME
    idempotent = True  # registered again by the next run on the same cluster: keep the loaded models

    def __init__(self) -> None:
        self.predictors: dict[ModelRef, tuple[Any, threading.Lock]] = {}
        self.loads = 0  # models loaded by this worker so far
        self._lock = threading.Lock()

    def __getstate__(self) -> dict:
        return {}  # travels to the workers empty

    def __setstate__(self, state: dict) -> None:
        self.__init__()

    def teardown(self, worker: Any = None) -> None:
        self.predictors.clear()

    def predictor(self, ref: ModelRef) -> tuple[Any, threading.Lock]:
        """(the Predictor of `ref`, loaded once; the lock to hold while using it)."""
        with self._lock:
            if ref not in self.predictors:
                self.predictors[ref] = (load_predictor(ref), threading.Lock())
                self.loads += 1
            return self.predictors[ref]


def load_predictor(ref: ModelRef):
    """Build the Predictor of `ref` in this process (torch threads set when `ref.threads` > 0)."""
    from dataclasses import replace

    import torch

    from engine.inference.predictor import Predictor
    from engine.zoo import resolve_model

    if ref.threads > 0:
        torch.set_num_threads(ref.threads)
    _, ckpt = resolve_model(ref.name_or_path)
    if ref.input_scale is not None:
        ckpt = replace(ckpt, spec=ckpt.spec.with_updates(input_scale=ref.input_scale))
    return Predictor(ckpt, ref.device)


def _cache(worker: Any = None) -> ModelCache:
    """The ModelCache of `worker` (default: the worker running this task; a fresh one outside a worker)."""
    try:
        return (worker or get_worker()).plugins[PLUGIN_NAME]
    except (ValueError, KeyError):
        return ModelCache()


def warm_up(ref: ModelRef, dask_worker: Any = None) -> str:
    """Runs on a worker (`client.run(warm_up, ref)`, after the ModelCache is registered; Dask passes
    `dask_worker`): load `ref` now rather than in the first task (benchmarks time the tasks alone). -> device."""
    predictor, _ = _cache(dask_worker).predictor(ref)
    return str(predictor.device)


def model_loads(dask_worker: Any = None) -> int:
    """Runs on a worker (`client.run(model_loads)`): how many models its ModelCache has loaded."""
    return _cache(dask_worker).loads


def _worker_address() -> str:
    try:
        return get_worker().address
    except ValueError:
        return "local"


def run_group(group: TileGroup) -> bytes:
    """Run `group` on this worker -> the pickled GroupResult."""
    start = time.perf_counter()
    predictor, lock = _cache().predictor(group.model)
    spec, task, settings = predictor.spec, predictor.task, group.settings
    forward = 0.0
    by_tile: dict[Tile, Any] = {}
    batch_size = group.options.batch_size or (8 if predictor.device.type == "cuda" else 1)
    with rasterio.Env(GDAL_CACHEMAX=group.options.gdal_cache_mb), \
            open_source(group.raster, spec, group.options) as src:
        grid = (src.work.height, src.work.width, tuple(src.work.transform)[:6])
        if grid != group.grid:
            raise UserError(f"raster '{group.raster}' on worker {_worker_address()}: working grid {grid[:2]} differs "
                            f"from the client's {group.grid[:2]}; every worker must read the same file")
        score_thr = settings.score_threshold
        for batch in read_batches(src, group.tiles, batch_size, spec, group.scaling, frozenset(group.skip)):
            outputs = []
            if batch.images:
                with lock, predictor.min_score(score_thr) if score_thr is not None else nullcontext():
                    before = predictor.forward_seconds
                    outputs = predictor.predict(batch.images)
                    forward += predictor.forward_seconds - before
            for tile, output, valid in zip(batch.tiles, outputs, batch.valid):
                by_tile[tile] = task.tile_result(spec, settings, group.area, tile, output, valid)
    result = GroupResult([by_tile.get(tile) for tile in group.tiles], forward, time.perf_counter() - start,
                         _worker_address())
    return pickle.dumps(result, protocol=pickle.HIGHEST_PROTOCOL)
