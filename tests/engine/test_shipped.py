"""The shipped default model: a self-describing checkpoint under 30 MB that finds real ships on the
bundled HRSID demo scene (checked against its ground-truth polygons)."""
from __future__ import annotations

import json
from pathlib import Path

import fiona
import pytest
import rasterio
from rasterio.windows import Window
from shapely.geometry import shape
from shapely.strtree import STRtree

from engine.checkpoint import load_checkpoint
from engine.inference.predictor import Predictor
from engine.inference.segment import segment_raster
from engine.zoo import DEFAULT_MODEL, model_title, resolve_model, sensor_of, shipped_models

DEMO = Path(__file__).resolve().parents[2] / "data" / "demo"


def test_default_model_is_shipped_and_self_describing() -> None:
    path = shipped_models()[DEFAULT_MODEL]
    assert path.stat().st_size < 30e6
    ckpt = load_checkpoint(path)
    spec = ckpt.spec
    assert spec.architecture == "mask_rcnn" and [c.name for c in spec.classes] == ["ship"] and spec.bands == 1
    assert spec.gsd_m > 0 and spec.tile_size > spec.overlap >= 0
    assert "train_command" in ckpt.provenance and ckpt.metrics["val"]["segm"]["AP"] > 0


@pytest.mark.parametrize("name", sorted(shipped_models()))
def test_every_shipped_model_is_small_and_self_describing(name: str) -> None:
    path = shipped_models()[name]
    assert path.stat().st_size < 30e6
    ckpt = load_checkpoint(path)
    spec = ckpt.spec
    assert spec.name == name and spec.classes and len(spec.band_names) == spec.bands
    assert len(spec.normalisation.mean) == spec.bands and spec.gsd_m > 0
    assert {"train_command", "validation_split", "iterations", "device"} <= set(ckpt.provenance)
    # the fp16 file that ships was evaluated, and scores what the fp32 weights did within half a point
    val, val_fp16 = ckpt.metrics["val"]["segm"]["AP"], ckpt.metrics["val_fp16"]["segm"]["AP"]
    assert val > 0 and abs(val - val_fp16) <= 0.5


@pytest.mark.parametrize("name", sorted(shipped_models()))
def test_shipped_model_has_a_sidecar_with_its_spec(name: str) -> None:
    """The plugin lists models from <name>.json without torch: it must match the checkpoint."""
    path = shipped_models()[name]
    sidecar = json.loads(path.with_suffix(".json").read_text())
    ckpt = load_checkpoint(path)
    assert sidecar["name"] == name and sidecar["default"] == (name == DEFAULT_MODEL)
    assert sidecar["spec"] == json.loads(json.dumps(ckpt.spec.to_dict()))
    assert sidecar["metrics"] == json.loads(json.dumps(ckpt.metrics))
    assert (sidecar["title"], sidecar["sensor"]) == (model_title(ckpt.spec), sensor_of(ckpt.spec))


@pytest.fixture(scope="module")
def demo_crop(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The upper-right 512 x 512 of the demo scene (the crowded anchorage), georeference kept."""
    out = tmp_path_factory.mktemp("demo") / "crop.tif"
    with rasterio.open(DEMO / "hrsid_demo_scene.tif") as src:
        window = Window(1000, 100, 512, 512)
        profile = {**src.profile, "width": 512, "height": 512, "transform": src.window_transform(window)}
        with rasterio.open(out, "w", **profile) as dst:
            dst.write(src.read(window=window))
    return out


def test_default_model_finds_ground_truth_ships_on_the_demo_scene(demo_crop: Path, tmp_path: Path) -> None:
    label, ckpt = resolve_model(DEFAULT_MODEL)
    out = tmp_path / "ships.gpkg"
    result = segment_raster(demo_crop, out, Predictor(ckpt, "cpu"), model_label=label)
    with fiona.open(DEMO / "hrsid_demo_truth.gpkg") as truth_layer:
        truth = [shape(f["geometry"]) for f in truth_layer]
    with fiona.open(out) as layer:
        found = [shape(f["geometry"]) for f in layer]
    tree = STRtree(truth)
    hits = sum(1 for g in found if any(truth[i].intersects(g) for i in tree.query(g)))
    assert result.features >= 5
    assert hits / len(found) >= 0.6  # most detections lie on a real ship
