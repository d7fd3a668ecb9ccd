"""Shipped models: checkpoints in engine/shipped/<name>.pt, resolved by name or by path, and the listings
and descriptions `rsseg models` / `rsseg info` print.

Each shipped checkpoint has a sidecar engine/shipped/<name>.json {"name", "spec", "metrics"} so that
programs without torch (the QGIS plugin) can list the models and their specs.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from engine.checkpoint import Checkpoint, load_checkpoint
from engine.errors import UserError
from engine.models import MODELS
from engine.spec import ModelSpec
from engine.tasks import TASKS
from engine.tasks.base import format_headline

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
    """Write <folder>/<name>.json: the model's name, whether it is the default, spec, metrics, title and
    sensor, readable without torch (the plugin lists the default first)."""
    path = folder / f"{name}.json"
    payload = {"name": name, "default": name == DEFAULT_MODEL, "spec": ckpt.spec.to_dict(), "metrics": ckpt.metrics,
               "title": model_title(ckpt.spec), "sensor": sensor_of(ckpt.spec)}
    tmp = path.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(payload, indent=2, default=str) + "\n")
    tmp.replace(path)
    return path


def sensor_of(spec: ModelSpec) -> str:
    """"sar" or "optical", from the normalisation (SAR amplitude or dB input vs plain scaling)."""
    return "optical" if spec.normalisation.sar == "none" else "sar"


def _plural(name: str) -> str:
    words = name.replace("_", " ").strip()
    if words.endswith("s"):
        return words
    if words.endswith("y") and words[-2:-1] not in ("a", "e", "i", "o", "u"):
        return words[:-1] + "ies"
    return words + "s"


def model_title(spec: ModelSpec) -> str:
    """spec.title, else one built from classes, sensor, bands and GSD, e.g. "Ships in SAR images, 1 band, ~3 m"
    or "10 classes (airplane, ship, storage tank, ...) in optical images, 3 bands, ~0.5 m"."""
    if spec.title:
        return spec.title
    names = [c.name.replace("_", " ") for c in spec.classes]
    if len(names) == 1:
        what = _plural(spec.classes[0].name).capitalize()
    elif 1 < len(names) <= 3:
        plurals = [_plural(n) for n in names]
        what = (", ".join(plurals[:-1]) + " and " + plurals[-1]).capitalize()
    else:
        what = f"{len(names)} classes ({', '.join(names[:3])}{', ...' if len(names) > 3 else ''})"
    sensor = "SAR" if sensor_of(spec) == "sar" else "optical"
    bands = f"{spec.bands} band{'s' if spec.bands != 1 else ''}"
    return f"{what} in {sensor} images, {bands}, ~{spec.gsd_m:g} m"


def model_listing() -> list[dict[str, Any]]:
    """Every shipped model (`rsseg models --json`): {"name", "default", "path", "spec", "metrics", "title",
    "sensor"}, the spec as its dict."""
    listing = []
    for name, path in shipped_models().items():
        ckpt = load_checkpoint(path)
        listing.append({"name": name, "default": name == DEFAULT_MODEL, "path": str(path),
                        "spec": ckpt.spec.to_dict(), "metrics": ckpt.metrics, "title": model_title(ckpt.spec),
                        "sensor": sensor_of(ckpt.spec)})
    return listing


def model_info(name_or_path: str) -> dict[str, Any]:
    """`rsseg info`: {"name", "path" (absolute), "spec" (dict), "metrics", "provenance"} of a model."""
    name, path = locate_model(name_or_path)
    ckpt = load_checkpoint(path)
    return {"name": name, "path": str(path.resolve()), "spec": ckpt.spec.to_dict(), "metrics": ckpt.metrics,
            "provenance": ckpt.provenance}


def describe_model(title: str, spec: dict[str, Any], metrics: dict[str, Any]) -> str:
    """One summary line of a spec dict and its validation metrics (+ an indented description line)."""
    s = spec
    classes = ", ".join(c["name"] for c in s["classes"])
    text = (f"{title}: {s['task']} {s['architecture']} [{s['config'].get('backbone', '')}], classes: {classes}; "
            f"bands: {s['bands']} ({', '.join(s['band_names'])}); GSD {s['gsd_m']} m; "
            f"tile {s['tile_size']}/{s['overlap']}")
    if "val" in metrics and s["task"] in TASKS:
        text += "; " + format_headline(TASKS[s["task"]].headline(metrics["val"]), 1, prefix="val ")
    return text + (f"\n    {s['description']}" if s.get("description") else "")


def describe_architectures() -> str:
    """`rsseg models --architectures`: one line per buildable architecture with its task and presets."""
    lines = []
    for name in sorted(MODELS):
        arch = MODELS[name]
        presets = ", ".join(sorted(arch.presets)) or "none"
        lines.append(f"{name} ({arch.task}); presets: {presets}" + (f"; {arch.summary}" if arch.summary else ""))
    return "\n".join(lines)
