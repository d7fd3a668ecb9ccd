"""Raw raster values of any dtype (8/16-bit, float; SAR amplitude or dB) -> model input, per the model spec.

Rules (`plan_input_scaling`), applied before the spec's per-band mean/std:
1. ``--value-range MIN,MAX`` given: MIN..MAX maps linearly to 0..1 (clipped).
2. An integer raster whose dtype the spec's ``scale`` was made for (scale x dtype max ~ 1, e.g. 1/255
   for 8-bit): the spec's scale, as in training.
3. Otherwise (a 16-bit or float raster into a model trained on 8-bit data, ...): a percentile stretch,
   the spec's ``stretch_percentiles`` (default 0.5 and 99.5) of the valid pixels of a decimated read
   (at most 1024 pixels a side, GDAL overviews when present) map to 0..1. The values are reported.
SAR: a raster holding dB (``--sar-input db``; ``auto`` means a float raster with negative values) fed to
an amplitude model is converted to amplitude (10^(dB/20)) before the rules above; an amplitude raster
fed to a dB model goes through 20 log10 and the spec's [db_min, db_max] window; dB into a dB model
uses that window directly.
"""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from engine.spec import Normalisation

SAR_INPUTS = ("auto", "amplitude", "db")
SampleSource = np.ndarray | Callable[[], tuple[np.ndarray, np.ndarray | None]]


@dataclass(frozen=True)
class InputScaling:
    """How this raster's raw values reach [0, 1]: ``mode`` "spec" (the spec's scale) or "range" (lo..hi -> 0..1).

    ``db_input``: the raster holds SAR dB values. ``reason``: one line for the log ("" when as trained).
    """

    mode: str = "spec"
    lo: float = 0.0
    hi: float = 1.0
    db_input: bool = False
    reason: str = ""


def scale_fits_dtype(scale: float, dtype: str | np.dtype) -> bool:
    """True when ``scale`` maps the integer ``dtype``'s full range to about [0, 1] (within 2%)."""
    dtype = np.dtype(dtype)
    if not np.issubdtype(dtype, np.integer):
        return False
    return abs(scale * float(np.iinfo(dtype).max) - 1.0) < 0.02


def db_to_amplitude(x: np.ndarray) -> np.ndarray:
    """SAR dB (20 log10 amplitude) -> amplitude, float32."""
    return np.power(np.float32(10.0), x.astype(np.float32) / np.float32(20.0))


def plan_input_scaling(norm: Normalisation, dtype: str, sample: SampleSource, valid: np.ndarray | None = None,
                       value_range: tuple[float, float] | None = None, sar_input: str = "auto") -> InputScaling:
    """Choose the value mapping for a raster of ``dtype``.

    ``sample`` [C,h,w] is a decimated read of it with its ``valid`` [h,w] mask, or a callable returning
    both; a callable is only called when the rule needs the values (not for a raster scaled as trained).
    """
    if sar_input not in SAR_INPUTS:
        raise ValueError(f"sar_input must be one of {SAR_INPUTS}, got {sar_input!r}")
    cache: list[np.ndarray] = []

    def valid_values() -> np.ndarray:
        """[C, N] the sample's valid pixels, read on first use."""
        if not cache:
            pixels, mask = sample() if callable(sample) else (sample, valid)
            cache.append(pixels[:, mask] if mask is not None else pixels.reshape(pixels.shape[0], -1))
        return cache[0]

    is_float = not np.issubdtype(np.dtype(dtype), np.integer)
    db_input = sar_input == "db" or (sar_input == "auto" and norm.sar != "none" and is_float
                                     and valid_values().size > 0 and float(np.nanmin(valid_values())) < 0)
    note = "raster values read as SAR dB; " if db_input else ""
    if norm.sar == "db":  # the dB window of the spec does the scaling
        return InputScaling(db_input=db_input, reason=note.rstrip("; "))
    if value_range is not None:
        lo, hi = value_range
        return InputScaling("range", lo, hi, db_input, f"{note}values {lo:g}..{hi:g} -> 0..1 (--value-range)")
    if not db_input and scale_fits_dtype(norm.scale, dtype):
        return InputScaling(reason="")
    values = db_to_amplitude(valid_values()) if db_input else valid_values()
    finite = values[np.isfinite(values)]
    if finite.size == 0:
        return InputScaling("range", 0.0, 1.0, db_input, f"{note}no valid pixels to measure a value range")
    p_lo, p_hi = norm.stretch_percentiles
    lo, hi = (float(v) for v in np.percentile(finite, [p_lo, p_hi]))
    if hi <= lo:
        hi = lo + 1.0
    what = "amplitude" if db_input else f"{np.dtype(dtype).name} values"
    return InputScaling("range", lo, hi, db_input,
                        f"{note}{what} stretched {lo:.4g}..{hi:.4g} (percentiles {p_lo:g}-{p_hi:g}) -> 0..1; "
                        "the model was trained on another value range (set --value-range to override)")


def apply_input_scaling(pixels: np.ndarray, norm: Normalisation, scaling: InputScaling) -> np.ndarray:
    """[C,H,W] raw values -> [C,H,W] float32 model input (scaling, clip to [0, 1], then mean/std)."""
    x = pixels.astype(np.float32, copy=False)
    if norm.sar == "db":
        if not scaling.db_input:
            x = 20.0 * np.log10(np.maximum(x, 1e-6))
        x = (x - norm.db_min) / (norm.db_max - norm.db_min)
    else:
        if scaling.db_input:
            x = db_to_amplitude(x)
        if scaling.mode == "range":
            x = (x - np.float32(scaling.lo)) / np.float32(scaling.hi - scaling.lo)
        else:
            x = x * np.float32(norm.scale)
    x = np.clip(x, 0.0, 1.0)
    mean = np.asarray(norm.mean, np.float32)
    std = np.asarray(norm.std, np.float32)
    if mean.size not in (1, x.shape[0]) or std.size not in (1, x.shape[0]):
        raise ValueError(f"normalisation has {mean.size} means for {x.shape[0]} bands")
    return (x - mean.reshape(-1, 1, 1)) / std.reshape(-1, 1, 1)
