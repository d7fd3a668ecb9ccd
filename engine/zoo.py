"""Shipped models: checkpoints in engine/shipped/<name>.pt, resolved by name or by path.

Each shipped checkpoint has a sidecar engine/shipped/<name>.json {"name", "spec", "metrics"} so that
programs without torch (the QGIS plugin) can list the models and their specs.
"""
from __future__ import annotations

import json
from pathlib import Path

from engine.checkpoint import Checkpoint, load_checkpoint
from engine.errors import UserError

SHIPPED_DIR = Path(__file__).resolve().parent / "shipped"
DEFAULT_MODEL = "ssdd-ship-maskrcnn"


def shipped_models() -> dict[str, Path]:
    """Name -> checkpoint path of every shipped model."""
    return {p.stem: p for p in sorted(SHIPPED_DIR.glob("*.pt"))}


def locate_model(name_or_path: str) -> tuple[str, Path]:
    """A shipped model's name or a checkpoint path -> (model label, checkpoint path); the file is not read."""
    shipped = shipped_models()
    if name_or_path in shipped:
        return name_or_path, shipped[name_or_path]
    path = Path(name_or_path)
    if path.suffix == ".pt" or path.exists():
        return path.stem, path
    names = ", ".join(shipped) or "none installed"
    raise UserError(f"model '{name_or_path}': unknown model name; shipped models: {names}; "
                    "or pass the path of a .pt checkpoint")


def resolve_model(name_or_path: str) -> tuple[str, Checkpoint]:
    """A shipped model's name or a checkpoint path -> (model label, loaded checkpoint)."""
    label, path = locate_model(name_or_path)
    return label, load_checkpoint(path)


def write_sidecar(name: str, ckpt: Checkpoint, folder: Path = SHIPPED_DIR) -> Path:
    """Write <folder>/<name>.json: the model's name, whether it is the default, spec and metrics, readable
    without torch (the plugin lists the default first)."""
    path = folder / f"{name}.json"
    payload = {"name": name, "default": name == DEFAULT_MODEL, "spec": ckpt.spec.to_dict(), "metrics": ckpt.metrics}
    tmp = path.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(payload, indent=2, default=str) + "\n")
    tmp.replace(path)
    return path
