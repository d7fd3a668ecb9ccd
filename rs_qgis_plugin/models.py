"""The models the plugin offers, as the engine lists them (`models --json`, `info --json`). Pure Python.

An engine entry is {"name", "default", "path", "spec", "metrics"} and, from newer engines, "title" and
"sensor" ("sar" | "optical"); older entries get both built from the spec.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

SAR, OPTICAL = "sar", "optical"


def sensor_of(spec: dict) -> str:
    """"optical" when the spec's normalisation has no SAR handling (`sar == "none"`), else "sar"."""
    normalisation = spec.get("normalisation") or {}
    return OPTICAL if normalisation.get("sar") == "none" else SAR


def _plural(name: str) -> str:
    word = name.replace("_", " ")
    return word if word.endswith("s") else word + "s"


def build_title(spec: dict, sensor: str | None = None) -> str:
    """A readable title from a spec, e.g. "Ships in SAR images, 1 band, ~3 m" (for engines that give none)."""
    names = [str(c.get("name", "?")) for c in spec.get("classes", ())]
    if len(names) == 1:
        what = _plural(names[0])
    elif 2 <= len(names) <= 3:
        what = ", ".join(_plural(n) for n in names[:-1]) + " and " + _plural(names[-1])
    else:
        what = f"{len(names)} object classes"
    where = "SAR images" if (sensor or sensor_of(spec)) == SAR else "optical images"
    bands = int(spec.get("bands", 1))
    gsd = spec.get("gsd_m")
    text = f"{what[:1].upper()}{what[1:]} in {where}, {bands} band{'' if bands == 1 else 's'}"
    return text + (f", ~{gsd:g} m" if isinstance(gsd, (int, float)) else "")


@dataclass(frozen=True)
class ModelInfo:
    """A model the user can pick. `model` is what the engine's --model takes (shipped name or checkpoint
    path); `name` is the internal id; `title` the readable name shown first; `sensor` "sar" or "optical"."""

    model: str
    name: str
    title: str
    sensor: str
    spec: dict
    metrics: dict = field(default_factory=dict)
    default: bool = False
    checkpoint: bool = False  # a browsed .pt file rather than a shipped model

    @classmethod
    def from_listing(cls, entry: dict) -> ModelInfo:
        """One entry of `python -m engine models --json`."""
        spec = dict(entry.get("spec") or {})
        sensor = entry.get("sensor") if entry.get("sensor") in (SAR, OPTICAL) else sensor_of(spec)
        title = entry.get("title") or spec.get("title") or build_title(spec, sensor)
        name = str(entry.get("name") or spec.get("name", "?"))
        return cls(name, name, str(title), sensor, spec, dict(entry.get("metrics") or {}), entry.get("default") is True)

    @classmethod
    def for_checkpoint(cls, path: str, spec: dict, metrics: dict | None = None, title: str | None = None,
                       sensor: str | None = None) -> ModelInfo:
        """A browsed checkpoint (`info --json` of a .pt file)."""
        sensor = sensor if sensor in (SAR, OPTICAL) else sensor_of(spec)
        title = title or spec.get("title") or build_title(spec, sensor)
        return cls(path, str(spec.get("name", Path(path).stem)), str(title), sensor, dict(spec), dict(metrics or {}),
                   checkpoint=True)

    @property
    def label(self) -> str:
        """The model chooser's text: the title (and the file name for a browsed checkpoint)."""
        return f"{self.title} · {Path(self.model).name}" if self.checkpoint else self.title

    @property
    def classes(self) -> tuple[dict, ...]:
        return tuple(self.spec.get("classes", ()))

    @property
    def bands(self) -> int:
        return int(self.spec.get("bands", 1))

    @property
    def band_names(self) -> tuple[str, ...]:
        names = list(self.spec.get("band_names") or ())
        return tuple(names[i] if i < len(names) else f"b{i + 1}" for i in range(self.bands))

    @property
    def gsd_m(self) -> float | None:
        gsd = self.spec.get("gsd_m")
        return float(gsd) if isinstance(gsd, (int, float)) and gsd > 0 else None

    @property
    def gsd_range_m(self) -> tuple[float, float] | None:
        """Raster pixel sizes (metres) the model takes as they are: the spec's range, else half to double gsd_m."""
        given = self.spec.get("gsd_range_m")
        if isinstance(given, (list, tuple)) and len(given) == 2:
            return float(given[0]), float(given[1])
        return (self.gsd_m / 2, self.gsd_m * 2) if self.gsd_m else None

    def summary(self) -> str:
        """Title, id, task, classes, bands, sensor, ground sample distance, tiles and validation score, a few
        short lines."""
        s = self.spec
        classes = ", ".join(str(c.get("name")) for c in self.classes) or "?"
        gsd = f"GSD {self.gsd_m:g} m" if self.gsd_m else "GSD ?"
        sensor = "SAR" if self.sensor == SAR else "optical"
        lines = [self.title, f"id: {self.name} · {s.get('task', '?')} ({s.get('architecture', '?')})",
                 f"classes: {classes}",
                 f"bands: {self.bands} ({', '.join(self.band_names)}) · {sensor} · {gsd}",
                 f"tile {s.get('tile_size', '?')} px, overlap {s.get('overlap', '?')} px"]
        val = self.metrics.get("val", {}) if isinstance(self.metrics, dict) else {}
        ap = val.get("segm", {}).get("AP") if isinstance(val, dict) else None
        miou = val.get("semantic", {}).get("mIoU") if isinstance(val, dict) else None
        if isinstance(ap, (int, float)):
            lines.append(f"val mask AP {ap:.1f}")
        elif isinstance(miou, (int, float)):
            lines.append(f"val mIoU {miou:.1f}")
        return "\n".join(lines)


def parse_listing(data: object) -> list[ModelInfo]:
    """The engine's listing as ModelInfo, the engine's default model first, then by title (stable)."""
    if not isinstance(data, list):
        return []
    models = [ModelInfo.from_listing(e) for e in data if isinstance(e, dict) and isinstance(e.get("spec"), dict)]
    return sorted(models, key=lambda m: (not m.default, m.title.lower()))
