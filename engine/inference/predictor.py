"""A model ready for inference on one device; its outputs converted by the model's task (engine.tasks).

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
from engine.models import build_model
from engine.models.scaling import forward_scaled
from engine.spec import ModelSpec
from engine.tasks import task_of


class Predictor:
    """A model ready for inference on one device: `predict(list of [C,H,W] float32) -> list of dicts`."""

    def __init__(self, checkpoint: Checkpoint, device: str = "auto") -> None:
        self.spec: ModelSpec = checkpoint.spec
        self.task = task_of(self.spec)
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
        """Normalised tiles [C,h,w] -> one numpy dict per tile, as the task converts it: instance models
        {"boxes" [N,4], "labels" [N], "scores" [N], "masks" [N,h,w] prob}, semantic ones {"probs" [K+1,h,w]}."""
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
        return self.task.convert_outputs(outputs)
