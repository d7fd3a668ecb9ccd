"""Shipped models: checkpoints in engine/shipped/<name>.pt, resolved by name or by path."""
from __future__ import annotations

from pathlib import Path

from engine.checkpoint import Checkpoint, load_checkpoint
from engine.errors import UserError

SHIPPED_DIR = Path(__file__).resolve().parent / "shipped"
DEFAULT_MODEL = "ssdd-ship-maskrcnn"


def shipped_models() -> dict[str, Path]:
    """Name -> checkpoint path of every shipped model."""
    return {p.stem: p for p in sorted(SHIPPED_DIR.glob("*.pt"))}


def resolve_model(name_or_path: str) -> tuple[str, Checkpoint]:
    """A shipped model's name or a checkpoint path -> (model label, loaded checkpoint)."""
    shipped = shipped_models()
    if name_or_path in shipped:
        return name_or_path, load_checkpoint(shipped[name_or_path])
    path = Path(name_or_path)
    if path.suffix == ".pt" or path.exists():
        return path.stem, load_checkpoint(path)
    names = ", ".join(shipped) or "none installed"
    raise UserError(f"model '{name_or_path}': unknown model name; shipped models: {names}; "
                    "or pass the path of a .pt checkpoint")
