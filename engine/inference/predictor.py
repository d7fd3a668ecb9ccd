"""A model ready for inference on one device, and one tile's output as Instances in raster pixels.

The tiled raster pipeline that drives it is engine.inference.segment.
"""
from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager

import numpy as np
import torch

from engine.checkpoint import Checkpoint
from engine.device import pick_device
from engine.errors import UserError
from engine.merge import Instance
from engine.models import build_model
from engine.models.scaling import forward_scaled
from engine.spec import ModelSpec
from engine.tiling import Tile


class Predictor:
    """A model ready for inference on one device: `predict(list of [C,H,W] float32) -> list of dicts`."""

    def __init__(self, checkpoint: Checkpoint, device: str = "auto") -> None:
        self.spec: ModelSpec = checkpoint.spec
        self.device = pick_device(device)
        self.model = build_model(self.spec)
        state = {k: v.float() if v.is_floating_point() else v for k, v in checkpoint.state_dict.items()}
        try:
            self.model.load_state_dict(state)
        except RuntimeError as exc:
            raise UserError(f"checkpoint for '{self.spec.name}': weights do not match its spec "
                            f"({str(exc).splitlines()[0][:120]})") from None
        self.model.eval().to(self.device)
        self.channels_last = self.device.type == "cuda"  # faster convolutions with AMP on tensor cores
        if self.channels_last:
            self.model.to(memory_format=torch.channels_last)
        self.forward_seconds = 0.0  # sum of pure model forward time (device synchronised)

    @contextmanager
    def min_score(self, threshold: float) -> Iterator[None]:
        """Within the block, the model drops detections scoring below `threshold` before pasting their masks
        (less memory and time per tile); models without such a setting are unaffected."""
        heads = getattr(self.model, "roi_heads", None)
        previous = getattr(heads, "score_thresh", None)
        if previous is None:
            yield
            return
        heads.score_thresh = max(previous, threshold)
        try:
            yield
        finally:
            heads.score_thresh = previous

    @torch.no_grad()
    def predict(self, images: list[np.ndarray]) -> list[dict[str, np.ndarray]]:
        """Normalised tiles [C,h,w] -> per tile {"boxes" [N,4], "labels" [N], "scores" [N], "masks" [N,h,w] prob}
        for instance models, {"probs" [K+1,h,w] float32} for semantic ones (spec.task == "semantic")."""
        cuda = self.device.type == "cuda"
        tensors = [torch.from_numpy(np.ascontiguousarray(im)) for im in images]
        if cuda:
            tensors = [t.pin_memory().to(self.device, non_blocking=True) for t in tensors]
            torch.cuda.synchronize(self.device)
        start = time.perf_counter()
        with torch.autocast(self.device.type, enabled=cuda):
            outputs = forward_scaled(self.model, tensors, self.spec.input_scale)
        if cuda:
            torch.cuda.synchronize(self.device)
        self.forward_seconds += time.perf_counter() - start
        if self.spec.task == "semantic":
            return [{"probs": o["probs"].float().cpu().numpy()} for o in outputs]
        return [{"boxes": o["boxes"].float().cpu().numpy(), "labels": o["labels"].cpu().numpy(),
                 "scores": o["scores"].float().cpu().numpy(), "masks": o["masks"][:, 0].float().cpu().numpy()}
                for o in outputs]


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
