"""Checks before a run, pure Python: does the raster suit the model (sensor, pixel size), are the bands
right, and engine messages re-worded with the plugin's parameter names instead of CLI flags."""
from __future__ import annotations

import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from rs_qgis_plugin.models import OPTICAL, SAR, ModelInfo

_SAR_WORDS = ("vv", "vh", "hh", "hv", "sar", "amplitude", "intensity", "sigma", "backscatter", "gamma0", "beta0")
_OPTICAL_WORDS = ("red", "green", "blue", "nir", "rgb", "pan", "panchromatic", "swir", "coastal", "rededge")
METRES_PER_DEGREE = 111_320.0


@dataclass(frozen=True)
class RasterFacts:
    """What the checks need to know about a raster layer (read from it on the main thread).

    band_names: one per band as QGIS shows them ("Band 1: VV"); data_type: GDAL's name ("Byte", "Float32",
    "CFloat32", ...); pixel_size_m: ground sample distance in metres (None when unknown).
    """

    name: str
    band_count: int
    band_names: tuple[str, ...] = ()
    data_type: str = ""
    pixel_size_m: float | None = None


def _tokens(names: Sequence[str]) -> list[str]:
    return [t for name in names for t in re.split(r"[^a-z0-9]+", name.lower()) if t]


def _mentions(tokens: list[str], words: Sequence[str]) -> list[str]:
    return [t for t in tokens if t in words or any(len(w) >= 4 and t.startswith(w) for w in words)]


def guess_sensor(facts: RasterFacts) -> tuple[str | None, str]:
    """("sar" | "optical" | None, why): band names first, then complex pixels, then the band count."""
    tokens = _tokens(facts.band_names)
    sar, optical = _mentions(tokens, _SAR_WORDS), _mentions(tokens, _OPTICAL_WORDS)
    if sar and not optical:
        return SAR, f"band names {', '.join(dict.fromkeys(sar))}"
    if facts.data_type.upper().startswith("C"):
        return SAR, "complex pixel values"
    if optical and not sar:
        return OPTICAL, f"band names {', '.join(dict.fromkeys(optical))}"
    if facts.band_count >= 3:
        return OPTICAL, f"{facts.band_count} bands"
    if facts.band_count >= 1:
        return SAR, f"{facts.band_count} band{'s' if facts.band_count > 1 else ''}"
    return None, ""


def pixel_size_m(units_per_pixel_x: float, units_per_pixel_y: float, metres_per_unit: float | None,
                 latitude: float | None = None) -> float | None:
    """Ground sample distance in metres: projected units times `metres_per_unit`, or, for degrees
    (metres_per_unit None, latitude given), the geometric mean of the pixel's east and north sides."""
    if units_per_pixel_x <= 0 or units_per_pixel_y <= 0:
        return None
    if metres_per_unit:
        return math.sqrt(units_per_pixel_x * units_per_pixel_y) * metres_per_unit
    if latitude is None:
        return None
    east = units_per_pixel_x * METRES_PER_DEGREE * max(math.cos(math.radians(latitude)), 1e-6)
    return math.sqrt(east * units_per_pixel_y * METRES_PER_DEGREE)


def _sensor_name(sensor: str) -> str:
    return "a SAR" if sensor == SAR else "an optical"


def mismatch_warnings(model: ModelInfo, facts: RasterFacts, bands: Sequence[int] | None = None) -> list[str]:
    """Warnings to show before the run when the raster does not look like what the model was trained on:
    SAR vs optical, one layer band repeated into an optical model's colour bands, pixel size out of range."""
    warnings = []
    sensor, why = guess_sensor(facts)
    if sensor is not None and sensor != model.sensor:
        wanted = "SAR" if model.sensor == SAR else "optical"
        warnings.append(f"Layer '{facts.name}' looks like {_sensor_name(sensor)} image ({why}); this model is for "
                        f"{wanted} images: expect wrong or missing objects. Choose a model for "
                        f"{'SAR' if sensor == SAR else 'optical'} images.")
    chosen = list(bands) if bands else list(range(1, min(model.bands, facts.band_count) + 1))
    if model.sensor == OPTICAL and model.bands > 1 and len(set(chosen)) < model.bands:
        warnings.append(f"This model reads {model.bands} colour bands ({', '.join(model.band_names)}) and one "
                        "layer band feeds several of them: colours are lost.")
    allowed, gsd = model.gsd_range_m, model.gsd_m
    size = facts.pixel_size_m
    if allowed and gsd and size and not (allowed[0] <= size <= allowed[1]):
        if size > allowed[1]:
            effect = f"pixels {size / gsd:.0f}x coarser hide objects smaller than a few pixels"
        else:
            effect = f"the engine shrinks the layer {gsd / size:.0f}x to the model's pixel size, losing detail"
        warnings.append(f"Layer '{facts.name}' has {size:.3g} m pixels; this model was trained at ~{gsd:g} m "
                        f"(takes {allowed[0]:g}-{allowed[1]:g} m): {effect}.")
    return warnings


def parse_bands(value: object, parameter: str) -> tuple[int, ...] | None:
    """Band numbers from "3,2,1", "1 1 1" or a list of numbers; None when empty. ValueError names `parameter`."""
    if value is None or value == "" or value == []:
        return None
    items = list(value) if isinstance(value, (list, tuple)) else re.split(r"[\s,;]+", str(value).strip())
    try:
        bands = tuple(int(str(v).strip()) for v in items if str(v).strip())
    except ValueError:
        raise ValueError(f"{parameter}: '{value}' is not a list of band numbers; write them in model order, "
                         "comma-separated, e.g. 3,2,1 (or 1,1,1 to feed one band to an RGB model)") from None
    return bands or None


def _example(layer_bands: int, model_bands: int) -> str:
    if layer_bands >= model_bands:
        return ",".join(str(i + 1) for i in range(model_bands))
    return ",".join("1" for _ in range(model_bands))


def band_problem(bands: Sequence[int] | None, layer_bands: int, model: ModelInfo, layer_name: str,
                 parameter: str) -> str | None:
    """What is wrong with feeding layer `bands` (None = the layer as it is) to `model`, naming `parameter`;
    None when nothing is."""
    wanted = f"the model '{model.title}' reads {model.bands} ({', '.join(model.band_names)})"
    if bands is None:
        if layer_bands == model.bands:
            return None
        return (f"{parameter}: layer '{layer_name}' has {layer_bands} band{'s' if layer_bands != 1 else ''} and "
                f"{wanted}; give {model.bands} band number{'s' if model.bands != 1 else ''}, e.g. "
                f"{_example(layer_bands, model.bands)}")
    if len(bands) != model.bands:
        return f"{parameter}: {len(bands)} band(s) given and {wanted}; e.g. {_example(layer_bands, model.bands)}"
    missing = [b for b in bands if not 1 <= b <= layer_bands]
    if missing:
        return f"{parameter}: layer '{layer_name}' has bands 1..{layer_bands}; band {missing[0]} does not exist"
    return None


def default_band_mapping(model_bands: int, layer_bands: int) -> list[int]:
    """The layer band (1-based) that feeds each model band by default: in order, the first band repeated
    when the layer has fewer bands than the model."""
    if layer_bands <= 0:
        return []
    return [i + 1 if i < layer_bands else 1 for i in range(model_bands)]


_FLAG = re.compile(r"--([a-z][a-z-]*)(?:[ =]((?:-?[\w.:]+)(?:,-?[\w.:]+)*))?")


def translate_flags(message: str, names: Mapping[str, str]) -> str:
    """An engine message with its CLI flags ("--bands 1,2,3") written as the plugin's parameter names
    ('"Bands" = 1,2,3'); `names` maps a flag without dashes ("bands") to its parameter name."""
    def replace(match: re.Match) -> str:
        name = names.get(match.group(1))
        if name is None:
            return match.group(0)
        return f'"{name}" = {match.group(2)}' if match.group(2) else f'"{name}"'

    return _FLAG.sub(replace, message)
