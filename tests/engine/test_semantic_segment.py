"""segment_raster with semantic models: blended tiles -> one polygon per class component (across tile
seams too), holes kept, min-area filter, nodata tiles skipped, cancel; and the CLI with a real semantic
checkpoint (train -> segment), plus `--init` into C2FNet's coarse model."""
from __future__ import annotations

import contextlib
import json
from pathlib import Path

import fiona
import numpy as np
import pytest
import rasterio
import torch
from shapely.geometry import box, shape

from engine.checkpoint import Checkpoint, load_checkpoint, save_checkpoint
from engine.cli import main as rsseg
from engine.errors import Cancelled, UserError
from engine.inference.segment import SegmentOptions, segment_raster
from engine.models import build_model
from engine.spec import ModelSpec, Normalisation, classes_from_names
from engine.training.trainer import load_initial_weights
from tests.data.make_fixtures import object_mask, write_scene_geotiff
from tests.engine.recording_progress import RecordingProgress

SPEC = ModelSpec(
    name="oracle-sem", architecture="semantic_fpn", task="semantic", classes=classes_from_names(["ship", "tank"]),
    bands=1, normalisation=Normalisation(scale=1 / 255, mean=(0.0,), std=(1.0,)), tile_size=128, overlap=32,
    gsd_m=10.0,
)
CORNER_RING = {"kind": "rect", "box": (100, 100, 160, 160), "class_id": 1}  # across the 2x2 tile corner


class OracleSemanticPredictor:
    """Every tile: class 1 ("ship") where the value > 0.5 after normalisation, probability 0.9; else background."""

    def __init__(self, spec: ModelSpec = SPEC) -> None:
        self.spec, self.tiles_seen, self.forward_seconds = spec, 0, 0.0
        self.device = torch.device("cpu")

    def min_score(self, threshold: float) -> contextlib.AbstractContextManager:
        return contextlib.nullcontext()

    def predict(self, images: list[np.ndarray]) -> list[dict[str, np.ndarray]]:
        self.tiles_seen += len(images)
        outs = []
        for im in images:
            fg = im[0] > 0.5
            probs = np.zeros((self.spec.num_classes + 1, *fg.shape), np.float32)
            probs[0] = np.where(fg, 0.05, 0.95)
            probs[1] = np.where(fg, 0.9, 0.03)
            probs[2] = 1.0 - probs[0] - probs[1]
            outs.append({"probs": probs})
        return outs


def _features(path: Path) -> list[dict]:
    with fiona.open(path) as layer:
        return [{"geometry": shape(f["geometry"]), **dict(f["properties"])} for f in layer]


def test_region_across_tile_corner_is_one_polygon_with_its_hole(tmp_path: Path) -> None:
    raster = tmp_path / "ring.tif"
    write_scene_geotiff(raster, objects=[CORNER_RING])
    with rasterio.open(raster, "r+") as dst:
        data = dst.read(1)
        data[125:135, 125:135] = 30
        dst.write(data, 1)
    out = tmp_path / "out.gpkg"
    result = segment_raster(raster, out, OracleSemanticPredictor(), SegmentOptions(batch_size=2))
    assert result.tiles == 9 and result.features == 1
    (feat,) = _features(out)
    assert len(feat["geometry"].geoms) == 1  # layers are MultiPolygon; this one has a single part
    geom = feat["geometry"].geoms[0]
    r0, c0, r1, c1 = CORNER_RING["box"]
    square = box(500000 + c0 * 10, 4000000 - r1 * 10, 500000 + c1 * 10, 4000000 - r0 * 10)
    assert geom.is_valid and len(geom.interiors) == 1
    assert geom.area == pytest.approx(square.area - 100 * 100.0)
    assert geom.symmetric_difference(square).area == pytest.approx(100 * 100.0)
    assert feat["class_name"] == "ship" and feat["class_id"] == 1 and feat["score"] == pytest.approx(0.9)
    assert feat["n_tiles"] == 4 and feat["merged"] in (0, 1) and feat["area_m2"] == pytest.approx(geom.area)
    assert feat["model"] == "oracle-sem" and feat["source"] == "ring.tif"


def test_every_object_once_and_min_area_drops_specks(tmp_path: Path) -> None:
    raster = tmp_path / "scene.tif"
    speck = {"kind": "rect", "box": (230, 230, 232, 232), "class_id": 1}  # 4 pixels
    objects = write_scene_geotiff(raster, objects=[*[dict(o) for o in _default_objects()], speck])
    kept = segment_raster(raster, tmp_path / "a.gpkg", OracleSemanticPredictor(), SegmentOptions(min_area=5))
    everything = segment_raster(raster, tmp_path / "b.gpkg", OracleSemanticPredictor(), SegmentOptions(min_area=1))
    assert kept.features == len(objects) - 1 and everything.features == len(objects)
    areas = sorted(f["area_m2"] for f in _features(tmp_path / "a.gpkg"))
    pixels = [float(object_mask(o, 256, 256).sum()) for o in objects]
    expected = sorted(n * 100.0 for n in pixels if n >= 5)
    assert areas == pytest.approx(expected)


def _default_objects() -> list[dict]:
    from tests.data.make_fixtures import DEFAULT_SCENE_OBJECTS
    return list(DEFAULT_SCENE_OBJECTS)


def test_nodata_tiles_are_skipped_and_score_threshold_filters(tmp_path: Path) -> None:
    raster = tmp_path / "nodata.tif"
    write_scene_geotiff(raster, width=512, objects=[{"kind": "rect", "box": (40, 200, 80, 260), "class_id": 1}],
                        nodata=0)
    oracle = OracleSemanticPredictor()
    result = segment_raster(raster, tmp_path / "n.gpkg", oracle, SegmentOptions(tile_size=64, overlap=0))
    assert oracle.tiles_seen == result.tiles - 256 // 64 and result.features == 1
    strict = segment_raster(raster, tmp_path / "s.gpkg", OracleSemanticPredictor(),
                            SegmentOptions(tile_size=64, overlap=0, score_threshold=0.95))
    assert strict.features == 0


def test_cancel_after_regions_were_written_leaves_no_output(tmp_path: Path) -> None:
    raster = tmp_path / "tall.tif"
    write_scene_geotiff(raster, height=512, objects=[{"kind": "rect", "box": (10, 10, 40, 40), "class_id": 1}])
    out = tmp_path / "cancelled.gpkg"
    progress = RecordingProgress(cancel_when=lambda p: len(p.advances) >= 8)
    with pytest.raises(Cancelled):  # the first tile row's region is final (written) before the cancel
        segment_raster(raster, out, OracleSemanticPredictor(), SegmentOptions(batch_size=1), progress=progress)
    assert max(done for done, _ in progress.advances) >= 6
    assert not out.exists() and list(tmp_path.glob("*cancelled*")) == []


def _tiny_semantic_checkpoint(path: Path, arch: str = "semantic_fpn", config: dict | None = None) -> Path:
    spec = ModelSpec(name=path.stem, architecture=arch, task="semantic", classes=classes_from_names(["ship"]),
                     bands=1, config=config or {"fpn_channels": 16, "decoder_channels": 8},
                     normalisation=Normalisation(scale=1 / 255, mean=(0.0,), std=(1.0,)), tile_size=96, overlap=32,
                     gsd_m=10.0)
    torch.manual_seed(0)
    model = build_model(spec)
    with torch.no_grad():  # the classifier follows the brightness of the image: ship where it is bright
        model.classifier.weight.zero_()
        model.classifier.bias.copy_(torch.tensor([0.0, -1.0]))
    return save_checkpoint(Checkpoint(spec, model.state_dict()), path)


def test_cli_segments_with_a_semantic_checkpoint(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    raster = tmp_path / "scene.tif"
    write_scene_geotiff(raster, height=160, width=200)
    ckpt = _tiny_semantic_checkpoint(tmp_path / "sem.pt")
    out = tmp_path / "sem.gpkg"
    assert rsseg(["segment", str(raster), "--model", str(ckpt), "--out", str(out), "--progress", "none"]) == 0
    feats = _features(out)
    # constant logits (background wins by 1): the blended map is background everywhere, a valid empty layer
    assert feats == [] and out.is_file()
    with fiona.open(out) as layer:
        assert {"class_id", "class_name", "score", "area_m2", "n_tiles", "merged"} <= set(layer.schema["properties"])
    # flip the bias: everything is "ship" -> one polygon covering the whole raster
    state = load_checkpoint(ckpt)
    state.state_dict["classifier.bias"] = torch.tensor([0.0, 1.0])
    save_checkpoint(state, ckpt)
    assert rsseg(["segment", str(raster), "--model", str(ckpt), "--out", str(out), "--progress", "none"]) == 0
    (feat,) = _features(out)
    assert feat["class_name"] == "ship" and feat["area_m2"] == pytest.approx(160 * 200 * 100.0)
    assert feat["score"] == pytest.approx(float(torch.sigmoid(torch.tensor(1.0))), abs=1e-3)
    args = ["segment", str(raster), "--model", str(ckpt), "--out", str(out), "--progress", "none"]
    assert rsseg([*args, "--min-area", str(160 * 200 + 1)]) == 0 and _features(out) == []


def test_init_fills_c2fnet_coarse_model_and_refuses_a_misfit(tmp_path: Path) -> None:
    sub = {"architecture": "semantic_fpn", "config": {"fpn_channels": 16, "decoder_channels": 8}}
    coarse = _tiny_semantic_checkpoint(tmp_path / "coarse.pt")
    c2f_spec = load_checkpoint(coarse).spec.with_updates(
        architecture="c2fnet", config={"coarse": sub, "fine": sub, "window": 32, "stride": 16, "top_k": 2})
    c2f = build_model(c2f_spec)
    assert load_initial_weights(c2f, str(coarse)) == "coarse"
    assert torch.equal(c2f.coarse.classifier.bias, torch.tensor([0.0, -1.0]))
    assert not torch.equal(c2f.fine.classifier.bias, torch.tensor([0.0, -1.0]))
    wide = _tiny_semantic_checkpoint(tmp_path / "wide.pt", config={"fpn_channels": 32, "decoder_channels": 8})
    with pytest.raises(UserError, match=r"--init '.*wide.pt' \(semantic_fpn\) does not fit this coarse"):
        load_initial_weights(c2f, str(wide))


def test_efficientnet_trunk_loads_imagenet_weights_for_any_band_count() -> None:
    for bands in (1, 4):
        spec = SPEC.with_updates(bands=bands, config={"backbone": "efficientnet_lite0", "pretrained": True,
                                                       "fpn_channels": 16, "decoder_channels": 8})
        model = build_model(spec)
        stem = model.backbone.body.stem.conv.weight
        assert stem.shape[1] == bands and float(stem.abs().sum()) > 0
        # an ImageNet stem is far from its random init: the same seed's fresh trunk differs
        fresh = build_model(spec.with_updates(config={**spec.config, "pretrained": False}))
        assert not torch.allclose(stem, fresh.backbone.body.stem.conv.weight)
        model.eval()
        (out,) = model([torch.rand(bands, 64, 96)])
        assert out["probs"].shape == (3, 64, 96)
    with pytest.raises(ValueError, match="no pretrained weights for 'resnet18'"):
        build_model(SPEC.with_updates(config={"backbone": "resnet18", "pretrained": True}))


def test_cli_train_init_message(tmp_path: Path) -> None:
    """`--init` with a file that is not a checkpoint is a one-line user error."""
    bad = tmp_path / "bad.pt"
    bad.write_bytes(b"not a checkpoint")
    coco = tmp_path / "c.json"
    coco.write_text(json.dumps({"images": [], "annotations": [], "categories": [{"id": 1, "name": "ship"}]}))
    code = rsseg(["train", "--coco", str(coco), "--images", str(tmp_path), "--out", str(tmp_path / "run"),
                  "--arch", "semantic_fpn", "--bands", "1", "--init", str(bad), "--epochs", "1"])
    assert code == 2
