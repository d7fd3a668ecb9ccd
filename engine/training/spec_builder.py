"""The ModelSpec a training run starts from: architecture (+ preset + overrides), the COCO file's classes,
bands, normalisation, GSD and inference defaults (what `rsseg train` is given)."""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from engine.data.coco import CocoIndex, read_coco, read_image
from engine.errors import UserError
from engine.models import architecture, resolve_config
from engine.spec import ModelSpec, Normalisation, classes_from_names

SAR_MODES = {"sar": "amplitude", "sar-db": "db", "optical": "none"}  # --sensor -> Normalisation.sar


def parse_overrides(text: str) -> dict[str, Any]:
    """`--config` JSON text -> a dict of architecture config overrides."""
    try:
        overrides = json.loads(text)
    except json.JSONDecodeError as exc:
        raise UserError(f"--config: not a JSON object ({exc})") from None
    if not isinstance(overrides, dict):
        raise UserError(f"--config {text}: give a JSON object, e.g. --config '{{\"fpn_channels\": 64}}'")
    return overrides


def first_image_bands(index: CocoIndex, coco: str | Path, images: str | Path) -> int:
    """Band count of the first image listed in a COCO file."""
    if not index.images:
        raise UserError(f"COCO file '{coco}': lists no images, so the band count is unknown; give --bands")
    path = Path(images) / index.images[0]["file_name"]
    if not path.is_file():
        raise UserError(f"image '{path}' (id {index.images[0]['id']} in COCO file '{coco}'): missing; check --images "
                        "or the file_name")
    try:
        return read_image(path).shape[0]
    except UserError:
        raise
    except Exception as exc:  # noqa: BLE001 - any decoder failure means the file is unusable
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0][:120]
        raise UserError(f"image '{path}' (id {index.images[0]['id']} in COCO file '{coco}'): cannot be read "
                        f"({first}); replace the file or remove the image") from None


def training_spec(
    *,
    name: str,
    arch: str,
    coco: str | Path,
    images: str | Path,
    preset: str | None = None,
    overrides: dict[str, Any] | None = None,
    bands: list[int] | None = None,
    band_names: list[str] | None = None,
    sensor: str = "sar",
    scale: float = 1 / 255,
    mean: tuple[float, ...] = (0.5,),
    std: tuple[float, ...] = (0.5,),
    gsd_m: float = 1.0,
    input_scale: float = 1.0,
    tile_size: int = 512,
    overlap: int = 128,
    score_threshold: float = 0.5,
    description: str = "",
) -> ModelSpec:
    """The spec of a new model of architecture `arch` for the classes of the COCO file `coco`.

    config = the architecture's `preset` (None: none), then `overrides` (a "bands" key there sets the band
    count when `bands` is not given; otherwise the first image's band count is used). `sensor`: "sar"
    (amplitude), "sar-db" or "optical". Band names default to b1..bN.
    """
    try:
        arch_info = architecture(arch)
    except ValueError as exc:  # the message lists the valid names
        raise UserError(f"--arch: {exc}") from None
    if sensor not in SAR_MODES:
        raise UserError(f"--sensor {sensor}: give one of {', '.join(SAR_MODES)}")
    index = read_coco(coco)
    overrides = dict(overrides or {})
    n_bands = len(bands) if bands else int(overrides.pop("bands", 0) or 0) or first_image_bands(index, coco, images)
    try:
        config = resolve_config(arch, preset, overrides)
    except ValueError as exc:
        if str(exc).startswith("unknown preset"):
            raise UserError(f"--preset: {exc}; list them with 'rsseg models --architectures'") from None
        raise UserError(f"--config: {exc}; fix the setting or drop it (the presets: 'rsseg models "
                        "--architectures')") from None
    return ModelSpec(
        name=name,
        architecture=arch,
        task=arch_info.task,
        config=config,
        classes=classes_from_names(index.category_names),
        bands=n_bands,
        band_names=tuple(band_names) if band_names else tuple(f"b{i + 1}" for i in range(n_bands)),
        normalisation=Normalisation(scale=scale, mean=tuple(mean), std=tuple(std), sar=SAR_MODES[sensor]),
        gsd_m=gsd_m, input_scale=input_scale, tile_size=tile_size, overlap=overlap,
        score_threshold=score_threshold, description=description,
    )
