"""Raw raster values -> model input, as a ModelSpec's Normalisation says (pure numpy)."""
from __future__ import annotations

import numpy as np

from engine.raster.input_values import InputScaling, apply_input_scaling
from engine.spec import Normalisation


def normalise(pixels: np.ndarray, norm: Normalisation) -> np.ndarray:
    """[C,H,W] raw values (any dtype) -> [C,H,W] float32 model input, exactly as in training.

    amplitude/optical: clip(value * scale, 0, 1); SAR dB: 20 log10(amplitude) rescaled from
    [db_min, db_max] to [0, 1]. Then (x - mean[c]) / std[c]; a single mean/std applies to every band.
    Rasters of another dtype or value range: engine.raster.input_values.
    """
    return apply_input_scaling(pixels, norm, InputScaling())


def scale_for_dtype(dtype: np.dtype | str) -> float:
    """Default scale bringing an integer dtype's range to [0, 1] (1.0 for floats)."""
    dtype = np.dtype(dtype)
    if np.issubdtype(dtype, np.integer):
        return 1.0 / float(np.iinfo(dtype).max)
    return 1.0
