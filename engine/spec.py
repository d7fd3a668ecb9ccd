"""ModelSpec: everything needed to rebuild a model and feed it pixels, stored in every checkpoint.

Pure dataclasses (no torch): the plugin and the CLI read specs without building a model.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, field, replace
from typing import Any

SPEC_VERSION = 1
IGNORE_INDEX = 255  # semantic targets: pixels without a label (padding); 0 is background, 1..K the classes

# A distinct, colour-blind-friendly palette used when a dataset gives no colours.
DEFAULT_COLOURS = (
    "#e6194b", "#3cb44b", "#ffe119", "#4363d8", "#f58231",
    "#911eb4", "#46f0f0", "#f032e6", "#bcf60c", "#fabebe",
)


@dataclass(frozen=True)
class ClassInfo:
    """One foreground class; `id` is the model label (1..K, 0 is background)."""

    id: int
    name: str
    colour: str = "#e6194b"


@dataclass(frozen=True)
class Normalisation:
    """How raw raster values become model input.

    value -> (clip(value * scale, 0, 1) - mean[b]) / std[b] per band b, after an optional SAR step:
    `sar="db"` converts amplitude to dB first (20 log10) and rescales [db_min, db_max] to [0, 1]
    (scale is then ignored). `scale` is 1/255 for 8-bit, 1/65535 for 16-bit.
    """

    scale: float = 1.0 / 255.0
    mean: tuple[float, ...] = (0.5,)
    std: tuple[float, ...] = (0.25,)
    sar: str = "amplitude"  # "amplitude" | "db" | "none" (optical)
    db_min: float = -30.0
    db_max: float = 10.0
    stretch_percentiles: tuple[float, float] = (0.5, 99.5)  # rasters of another value range: see input_values


@dataclass(frozen=True)
class ModelSpec:
    """Architecture + config, classes, bands, normalisation, GSD and inference defaults."""

    name: str
    architecture: str  # key of engine.models.MODELS
    task: str = "instance"  # "instance" | "semantic"
    config: dict[str, Any] = field(default_factory=dict)
    classes: tuple[ClassInfo, ...] = ()
    bands: int = 1
    band_names: tuple[str, ...] = ("amplitude",)
    normalisation: Normalisation = Normalisation()
    gsd_m: float = 1.0  # ground sample distance the model was trained at, metres per pixel
    gsd_range_m: tuple[float, float] | None = None  # raster GSDs taken as is (None: gsd_m within the tolerance)
    input_scale: float = 1.0  # tiles are resized by this factor before the model (trained at this zoom)
    tile_size: int = 512
    overlap: int = 128
    score_threshold: float = 0.5
    mask_threshold: float = 0.5
    description: str = ""
    title: str = ""  # readable name for analysts, e.g. "Ships in SAR images (SSDD), 1 band, ~3 m"

    @property
    def num_classes(self) -> int:
        """Number of foreground classes K (model outputs K+1 with background)."""
        return len(self.classes)

    def class_name(self, class_id: int) -> str:
        for c in self.classes:
            if c.id == class_id:
                return c.name
        return f"class_{class_id}"

    def with_updates(self, **changes: Any) -> ModelSpec:
        return replace(self, **changes)

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["spec_version"] = SPEC_VERSION
        return d

    @staticmethod
    def from_dict(d: dict[str, Any]) -> ModelSpec:
        d = dict(d)
        d.pop("spec_version", None)
        d["classes"] = tuple(ClassInfo(**c) for c in d.get("classes", ()))
        norm = dict(d.get("normalisation", {}))
        for key in ("mean", "std", "stretch_percentiles"):
            if key in norm:
                norm[key] = tuple(norm[key])
        d["normalisation"] = Normalisation(**norm)
        d["band_names"] = tuple(d.get("band_names", ()))
        if d.get("gsd_range_m") is not None:
            d["gsd_range_m"] = tuple(d["gsd_range_m"])
        known = set(ModelSpec.__dataclass_fields__)
        unknown = set(d) - known
        if unknown:
            raise ValueError(f"unknown ModelSpec fields: {sorted(unknown)}")
        return ModelSpec(**d)


def classes_from_names(names: list[str]) -> tuple[ClassInfo, ...]:
    """Classes 1..K with default colours."""
    return tuple(
        ClassInfo(id=i + 1, name=n, colour=DEFAULT_COLOURS[i % len(DEFAULT_COLOURS)]) for i, n in enumerate(names)
    )
