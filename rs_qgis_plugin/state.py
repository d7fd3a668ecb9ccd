"""The dock's choices as one frozen dataclass, saved and restored between QGIS sessions in one place."""
from __future__ import annotations

from dataclasses import dataclass, replace

from rs_qgis_plugin import settings

# mode key -> text shown in the dock (the keys are what is stored)
EXTENT_MODES = {"layer": "Whole layer", "canvas": "Map canvas extent", "selection": "Selected features"}
OUTPUT_MODES = {"temporary": "Temporary layer", "file": "GeoPackage or Shapefile"}


@dataclass(frozen=True)
class DockState:
    """Everything the dock remembers. `model` is the engine's --model value (shipped name or checkpoint
    path); `model_spec` the spec of a browsed checkpoint (to show it again without asking the engine)."""

    model: str = ""
    model_spec: dict | None = None
    score_threshold: float = 0.5
    tile_size: int = 512
    overlap: int = 128
    extent_mode: str = "layer"
    output_mode: str = "temporary"
    output_path: str = ""
    labels: bool = False
    device: str = "auto"
    last_dir: str = ""  # where "Browse checkpoint…" opens

    def __post_init__(self) -> None:
        # before 0.4 the modes were stored as combo box indexes
        for name, modes in (("extent_mode", EXTENT_MODES), ("output_mode", OUTPUT_MODES)):
            value = str(getattr(self, name))
            keys = list(modes)
            if value.isdigit() and int(value) < len(keys):
                object.__setattr__(self, name, keys[int(value)])
            elif value not in modes:
                object.__setattr__(self, name, keys[0])

    @classmethod
    def load(cls) -> DockState:
        return settings.load(cls)

    def save(self) -> None:
        settings.save(self)

    def with_model(self, model: str, spec: dict | None) -> DockState:
        return replace(self, model=model, model_spec=spec)
