"""Raw raster values -> model input, as a ModelSpec's Normalisation says (pure numpy)."""
from __future__ import annotations

import numpy as np

from engine.spec import Normalisation


def normalise(pixels: np.ndarray, norm: Normalisation) -> np.ndarray:
    """[C,H,W] raw values (any dtype) -> [C,H,W] float32 model input.

    amplitude/optical: clip(value * scale, 0, 1); SAR dB: 20 log10(amplitude) rescaled from
    [db_min, db_max] to [0, 1]. Then (x - mean[c]) / std[c]; a single mean/std applies to every band.
    """
    x = pixels.astype(np.float32, copy=False)
    if norm.sar == "db":
        x = 20.0 * np.log10(np.maximum(x, 1e-6))
        x = (x - norm.db_min) / (norm.db_max - norm.db_min)
    else:
        x = x * np.float32(norm.scale)
    x = np.clip(x, 0.0, 1.0)
    mean = np.asarray(norm.mean, np.float32)
    std = np.asarray(norm.std, np.float32)
    if mean.size not in (1, x.shape[0]) or std.size not in (1, x.shape[0]):
        raise ValueError(f"normalisation has {mean.size} means for {x.shape[0]} bands")
    return (x - mean.reshape(-1, 1, 1)) / std.reshape(-1, 1, 1)


def scale_for_dtype(dtype: np.dtype | str) -> float:
    """Default scale bringing an integer dtype's range to [0, 1] (1.0 for floats)."""
    dtype = np.dtype(dtype)
    if np.issubdtype(dtype, np.integer):
        return 1.0 / float(np.iinfo(dtype).max)
    return 1.0
