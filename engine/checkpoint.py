"""Self-describing checkpoints: weights + ModelSpec + training provenance + metrics.

One `.pt` file per model, a plain dict loadable with `torch.load(weights_only=True)`:
    {"format": "rsseg-checkpoint", "format_version": 1, "spec": dict, "state_dict": {name: Tensor},
     "provenance": dict, "metrics": dict, "training_state": dict | None}
`training_state` (optimizer, scheduler, epoch, step) is only kept in resumable training checkpoints.
"""
from __future__ import annotations

import os
import re
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch.torch_version import TorchVersion

from engine.errors import UserError
from engine.spec import ModelSpec

FORMAT = "rsseg-checkpoint"
FORMAT_VERSION = 1


@dataclass
class Checkpoint:
    spec: ModelSpec
    state_dict: dict[str, torch.Tensor]
    provenance: dict[str, Any] = field(default_factory=dict)
    metrics: dict[str, Any] = field(default_factory=dict)
    training_state: dict[str, Any] | None = None


def save_checkpoint(ckpt: Checkpoint, path: str | os.PathLike, half: bool = False) -> Path:
    """Write atomically (temp file + rename). `half=True` stores floating weights as fp16."""
    path = Path(path)
    state = {
        k: (v.detach().half() if half and v.is_floating_point() else v.detach()).cpu().contiguous()
        for k, v in ckpt.state_dict.items()
    }
    payload = {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "spec": ckpt.spec.to_dict(),
        "state_dict": state,
        "provenance": ckpt.provenance,
        "metrics": ckpt.metrics,
        "training_state": ckpt.training_state,
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    try:
        torch.save(payload, tmp)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def load_checkpoint(path: str | os.PathLike) -> Checkpoint:
    """Load with weights_only=True; raise UserError naming the file for missing/corrupt/foreign files."""
    path = Path(path)
    if not path.is_file():
        raise UserError(f"checkpoint '{path}': file not found; pass an existing .pt file or a model name")
    try:
        # TorchVersion (a str subclass) appears in provenance written by older runs; allow it explicitly.
        with torch.serialization.safe_globals([TorchVersion]):
            payload = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # pickle errors, truncated zip, foreign pickles
        # torch's weights_only message opens with generic advice (and ANSI codes): keep its specific last line
        text = re.sub(r"\x1b\[[0-9;]*m", "", str(exc))
        lines = [ln.strip() for ln in text.splitlines()
                 if ln.strip() and "documentation of torch.load" not in ln]
        reason = lines[-1][:120] if lines else type(exc).__name__
        raise UserError(f"checkpoint '{path}': not a readable rsseg checkpoint ({reason})") from None
    if not isinstance(payload, dict) or payload.get("format") != FORMAT:
        raise UserError(
            f"checkpoint '{path}': foreign checkpoint (no '{FORMAT}' header); "
            "train one with 'rsseg train' or pass a shipped model name"
        )
    if payload.get("format_version", 0) > FORMAT_VERSION:
        raise UserError(f"checkpoint '{path}': written by a newer rsseg (format {payload['format_version']})")
    try:
        spec = ModelSpec.from_dict(payload["spec"])
    except Exception as exc:
        raise UserError(f"checkpoint '{path}': invalid model spec ({exc})") from None
    return Checkpoint(
        spec=spec,
        state_dict=payload["state_dict"],
        provenance=payload.get("provenance", {}),
        metrics=payload.get("metrics", {}),
        training_state=payload.get("training_state"),
    )
