"""Fine-tuning from polygons: `rsseg chips` then `rsseg train --init MODEL` keeps the base model's spec; new
classes get a new head, every other tensor comes from the base model."""
from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import pytest
import torch

from engine.checkpoint import Checkpoint, load_checkpoint, save_checkpoint
from engine.cli import build_parser, main
from engine.data.chips import ChipOptions
from engine.errors import UserError
from engine.models import build_model
from engine.spec import ModelSpec, Normalisation, classes_from_names
from engine.training.finetune import class_dependent_keys, finetune_classes, finetune_spec, load_initial_weights
from tests.data.make_fixtures import write_scene_geotiff, write_scene_polygons
from tests.data.tiny_model import TINY

HEAD = {"roi_heads.box_predictor.cls_score.weight", "roi_heads.box_predictor.cls_score.bias",
        "roi_heads.box_predictor.bbox_pred.weight", "roi_heads.box_predictor.bbox_pred.bias",
        "roi_heads.mask_predictor.mask_fcn_logits.weight", "roi_heads.mask_predictor.mask_fcn_logits.bias"}


def _base_spec(names=("ship", "tank")) -> ModelSpec:
    return ModelSpec(name="base", architecture="mask_rcnn", config=TINY, classes=classes_from_names(list(names)),
                     bands=1, band_names=("VV",), normalisation=Normalisation(scale=1 / 255, mean=(0.3,), std=(0.2,),
                                                                               sar="db"),
                     gsd_m=10.0, gsd_range_m=(5.0, 20.0), input_scale=2.0, tile_size=128, overlap=32,
                     score_threshold=0.4, title="Ships in SAR images (test)")


@pytest.fixture(scope="module")
def base_checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Path:
    torch.manual_seed(0)
    spec = _base_spec()
    return save_checkpoint(Checkpoint(spec, build_model(spec).state_dict()),
                           tmp_path_factory.mktemp("base") / "base.pt")


def test_finetune_spec_keeps_the_base_model_and_takes_explicit_fields() -> None:
    base = _base_spec()
    same = finetune_spec(base, name="mine", class_names=["ship", "tank"], image_bands=1, base_label="base")
    assert replace(same, name=base.name, title=base.title, description=base.description) == base
    assert same.name == "mine" and same.title == "Ships in SAR images (test), fine-tuned (mine)"
    assert same.description == "fine-tuned from base"  # the base model's name, not the file it was read from
    described = replace(base, name="ssdd_run", description="SSDD SAR ships.")
    assert finetune_spec(described, name="mine", class_names=["ship", "tank"], image_bands=1,
                         base_label="best").description == "SSDD SAR ships; fine-tuned from ssdd_run"
    new = finetune_spec(base, name="mine", class_names=["boat", "ship"], image_bands=1, base_label="base",
                        updates={"tile_size": 256}, normalisation={"mean": (0.4,)})
    assert [c.name for c in new.classes] == ["boat", "ship"] and new.title == ""
    assert new.classes[1].colour == base.classes[0].colour  # ship keeps its colour
    assert new.classes[0].colour not in {c.colour for c in base.classes}
    assert new.tile_size == 256 and new.normalisation == replace(base.normalisation, mean=(0.4,))
    assert (new.architecture, new.config, new.gsd_range_m, new.input_scale) == (
        base.architecture, base.config, base.gsd_range_m, base.input_scale)
    with pytest.raises(UserError, match=r"--init base reads 1 band \(VV\) but the training images give 3.*--bands 1"):
        finetune_spec(base, name="x", class_names=["ship"], image_bands=3, base_label="base")
    assert finetune_classes(base, ["ship", "tank"]) is base.classes


def test_class_dependent_keys_are_the_heads() -> None:
    assert set(class_dependent_keys(_base_spec())) == HEAD
    semantic = ModelSpec(name="s", architecture="semantic_fpn", task="semantic",
                         config={"fpn_channels": 16, "decoder_channels": 8}, classes=classes_from_names(["a"]))
    assert set(class_dependent_keys(semantic)) == {"classifier.weight", "classifier.bias"}


def test_new_classes_load_every_other_tensor(base_checkpoint: Path) -> None:
    base = load_checkpoint(base_checkpoint)
    spec = finetune_spec(base.spec, name="n", class_names=["boat"], image_bands=1, base_label="base")
    torch.manual_seed(1)
    model = build_model(spec)
    lines: list[str] = []
    assert load_initial_weights(model, str(base_checkpoint), spec, lines.append) == "model"
    state = model.state_dict()
    for key, value in base.state_dict.items():
        if key in HEAD:
            assert state[key].shape != value.shape, key
        else:
            assert torch.equal(state[key], value), key
    assert len(lines) == 1 and "new classes (boat) instead of the base model's (ship, tank)" in lines[0]
    assert "roi_heads.box_predictor.cls_score" in lines[0] and "mask_fcn_logits" in lines[0]
    # same classes: every tensor, strictly
    same = build_model(base.spec)
    assert load_initial_weights(same, str(base_checkpoint), base.spec) == "model"
    assert all(torch.equal(same.state_dict()[k], v) for k, v in base.state_dict.items())


def test_chips_flags_match_chip_options() -> None:
    args = build_parser().parse_args(["chips", "r.tif", "p.gpkg", "--out", "o"])
    defaults = ChipOptions()
    for field in ("tile_size", "overlap", "empty_fraction", "min_object_pixels", "val_fraction", "seed",
                  "gsd_tolerance", "overwrite", "class_field", "classes", "layer", "aoi", "extent", "bands"):
        assert getattr(args, field) == getattr(defaults, field), field
    assert args.gsd is None and defaults.gsd_m is None


def test_chips_then_finetune_from_the_cli(tmp_path: Path, base_checkpoint: Path, capsys) -> None:
    raster, polygons = tmp_path / "scene.tif", tmp_path / "objects.gpkg"
    write_scene_geotiff(raster)
    write_scene_polygons(polygons, class_names=("ship", "boat"))
    chips = tmp_path / "chips"
    capsys.readouterr()
    assert main(["chips", str(raster), str(polygons), "--out", str(chips), "--class-field", "class_name",
                 "--classes", "ship,tank,boat", "--tile-size", "64", "--progress", "jsonl"]) == 0
    events = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert events[0]["event"] == "start" and events[-1]["event"] == "done"
    done = events[-1]
    assert done["classes"] == ["ship", "tank", "boat"] and done["instances"]["tank"] == 0 < done["instances"]["boat"]
    assert main(["chips", str(raster), str(polygons), "--out", str(chips), "--bands", "x"]) == 2

    run = tmp_path / "run"
    assert main(["train", "--coco", str(chips / "train.json"), "--images", str(chips / "images"), "--init",
                 str(base_checkpoint), "--out", str(run), "--name", "boats", "--epochs", "1", "--workers", "0",
                 "--crop-size", "64", "--max-iters-per-epoch", "2", "--warmup-iters", "1", "--score-threshold",
                 "0.2", "--progress", "jsonl"]) == 0
    captured = capsys.readouterr()
    events = [json.loads(line) for line in captured.out.splitlines()]
    assert [e["event"] for e in events] == ["start", "progress", "progress", "done"]
    assert events[-1]["output"] == str(run / "last.pt") and events[-1]["iterations"] == 2
    assert "re-initialised the class-dependent layers" in captured.err
    spec = load_checkpoint(run / "last.pt").spec
    base = load_checkpoint(base_checkpoint).spec
    assert [c.name for c in spec.classes] == ["ship", "tank", "boat"] and spec.name == "boats"
    assert replace(spec, name=base.name, classes=base.classes, title=base.title, description=base.description,
                   score_threshold=base.score_threshold) == base
    assert spec.score_threshold == 0.2
