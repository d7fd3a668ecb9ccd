"""`train`, `evaluate` and `split` on COCO files a user really has: broken JSON, wrong ids, box-only or degenerate
annotations, corrupt images. Each is found before the first step, with one line naming the file and the image or
annotation id and the fix; degenerate polygons are skipped with a counted warning (docs/robustness.md)."""
from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import pytest
import torch

from engine.errors import UserError
from tests.hostile.helpers import FAST, cli, snapshot


def _edit(coco: Path, change: Callable[[dict], None]) -> Path:
    data = json.loads(coco.read_text())
    change(data)
    coco.write_text(json.dumps(data))
    return coco


def _first_ann(data: dict) -> dict:
    return data["annotations"][0]


# name -> (edit of the COCO file, what the error line holds besides the file name)
BROKEN = {
    "not JSON": (None, ["not valid JSON", "line 1"]),
    "a JSON list": (None, ["not a COCO object", "the JSON is a list"]),
    "no images": (lambda d: d.update(images=[], annotations=[]), ["lists no images"]),
    "no categories": (lambda d: d.update(categories=[]), ["lists no categories"]),
    "duplicate image id": (lambda d: d["images"][1].update(id=d["images"][0]["id"]), ["is used twice"]),
    "image without file_name": (lambda d: d["images"][0].pop("file_name"), ["has no file_name"]),
    "unknown category_id": (lambda d: _first_ann(d).update(category_id=7), ["annotation 0", "category_id 7",
                                                                           "add the category"]),
    "bbox-only annotation": (lambda d: _first_ann(d).pop("segmentation"), ["annotation 0", "only a bbox",
                                                                          "add a polygon or remove"]),
    "odd polygon": (lambda d: _first_ann(d).update(segmentation=[[1, 2, 3, 4, 5, 6, 7]]),
                    ["annotation 0", "odd number of coordinates"]),
    "NaN in polygon": (lambda d: _first_ann(d).update(segmentation=[[1, 2, float("nan"), 4, 5, 6]]),
                       ["annotation 0", "finite numbers"]),
    "text in polygon": (lambda d: _first_ann(d).update(segmentation=[["a", "b", "c", "d", "e", "f"]]),
                        ["annotation 0", "finite numbers"]),
    "RLE of another size": (lambda d: _first_ann(d).update(segmentation={"size": [5, 5], "counts": "a"}),
                            ["annotation 0", "RLE size [5, 5]"]),
    "wrong image size": (lambda d: d["images"][0].update(height=10), ["img_000.png", "is 48x64 pixels"]),
    "missing image file": (lambda d: d["images"][0].update(file_name="gone.png"), ["gone.png", "missing"]),
}


def _broken_coco(coco: Path, case: str) -> Path:
    change, _ = BROKEN[case]
    if case == "not JSON":
        coco.write_text('{"images": [')
    elif case == "a JSON list":
        coco.write_text("[]")
    else:
        _edit(coco, change)
    return coco


def _train(capsys, coco: Path, out: Path, *extra: object):
    return cli(capsys, "train", "--coco", coco, "--images", coco.parent, "--out", out, "--config", json.dumps(FAST),
               "--epochs", "1", "--batch-size", "1", "--workers", "0", "--threads", "1", "--max-iters-per-epoch", "2",
               *extra)


@pytest.mark.parametrize("case", list(BROKEN))
def test_train_stops_before_the_first_step(capsys, coco: Path, work: Path, case: str) -> None:
    _broken_coco(coco, case)
    run = _train(capsys, coco, work / "run")
    run.failed(str(coco), *BROKEN[case][1])
    assert not (work / "run" / "log.jsonl").exists() and not (work / "run" / "last.pt").exists()


@pytest.mark.parametrize("case", ["no images", "unknown category_id", "bbox-only annotation", "not JSON"])
def test_broken_val_coco_stops_train_before_the_first_step(capsys, coco: Path, tmp_path: Path, work: Path,
                                                           case: str) -> None:
    val = tmp_path / "val.json"
    val.write_text(coco.read_text())
    _broken_coco(val, case)
    run = _train(capsys, coco, work / "run", "--val-coco", val)
    run.failed(str(val))
    assert not (work / "run" / "last.pt").exists() and not (work / "run" / "log.jsonl").exists()


def test_corrupt_image_is_named_before_the_first_step(capsys, coco: Path, work: Path) -> None:
    image = coco.parent / "img_001.png"
    image.write_bytes(image.read_bytes()[:60])  # a truncated download
    _train(capsys, coco, work / "run").failed("img_001.png", "id 1", "cannot be read", "replace the file")


def test_images_of_different_band_counts_need_bands(capsys, coco: Path, tmp_path: Path, work: Path) -> None:
    from PIL import Image

    Image.new("RGB", (64, 48)).save(coco.parent / "img_002.png")
    _train(capsys, coco, work / "run").failed("different band counts", "--bands 1")


# name -> (arguments replacing the defaults, what the error line holds)
BAD_TRAIN_ARGS = {
    "epochs 0": (["--epochs", "0"], ["--epochs 0", "at least 1"]),
    "lr nan": (["--lr", "nan"], ["--lr nan", "above 0"]),
    "lr negative": (["--lr", "-0.1"], ["--lr -0.1"]),
    "batch 0": (["--batch-size", "0"], ["--batch-size 0"]),
    "jitter reversed": (["--scale-jitter", "2,1"], ["--scale-jitter 2,1", "0 < MIN <= MAX"]),
    "std 0": (["--std", "0"], ["--std 0", "above 0"]),
    "means per band": (["--mean", "0.5,0.5"], ["--mean 0.5,0.5", "one value for all bands or 1"]),
    "config not JSON": (["--config", "{fpn: 3}"], ["--config", "not a JSON object"]),
    "config unknown key": (["--config", '{"fpn_chanels": 3}'], ["--config", "'fpn_chanels'"]),
    "unknown arch": (["--arch", "yolo"], ["--arch", "yolo"]),
    "tile smaller than overlap": (["--tile-size", "64"], ["--tile-size 64", "the default overlap of 128",
                                                          "--overlap 16"]),
    "seed negative": (["--seed", "-1"], ["--seed -1"]),
    "steps text": (["--steps", "8,x"], ["--steps '8,x'"]),
    "clip 0": (["--clip-grad", "0"], ["--clip-grad 0"]),
    "crop tiny": (["--crop-size", "8"], ["--crop-size 8"]),
    "band names": (["--bands", "1", "--band-names", "a,b"], ["--band-names a,b", "one non-empty name per band"]),
}


@pytest.mark.parametrize("case", list(BAD_TRAIN_ARGS))
def test_train_argument_is_checked_before_any_work(capsys, coco: Path, work: Path, case: str) -> None:
    extra, needles = BAD_TRAIN_ARGS[case]
    _train(capsys, coco, work / "run", *extra).failed(*needles)
    assert snapshot(work) == {}


@pytest.mark.parametrize("case", ["run folder is a file", "coco inside the run files"])
def test_train_outputs_never_overwrite_inputs(capsys, coco: Path, work: Path, case: str) -> None:
    if case == "run folder is a file":
        out = work / "run"
        out.write_text("keep me")
        _train(capsys, coco, out).failed("--out", "is a file")
        assert out.read_text() == "keep me"
    else:
        run = coco.parent
        renamed = run / "log.jsonl"
        coco.rename(renamed)
        before = renamed.read_bytes()
        _train(capsys, renamed, run).failed("--out", "is also an input", "log.jsonl")
        assert renamed.read_bytes() == before


def test_failed_training_keeps_its_last_checkpoint(capsys, coco: Path, work: Path,
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    """An image that becomes unreadable mid-run (a network share drops): one line, and OUT/last.pt holds the
    steps done, so the same command resumes."""
    from engine.data.coco import CocoInstanceDataset

    real, calls = CocoInstanceDataset.load_raw, []

    def flaky(self, i):
        calls.append(i)
        if len(calls) == 3:
            raise UserError(f"image '{self.index.images[i]['file_name']}': read failed; check the disk")
        return real(self, i)

    monkeypatch.setattr(CocoInstanceDataset, "load_raw", flaky)
    out = work / "run"
    run = _train(capsys, coco, out, "--max-iters-per-epoch", "3", "--checkpoint-every", "0")
    run.failed("read failed")
    assert "saved" in run.err and (out / "last.pt").is_file()
    state = torch.load(out / "last.pt", weights_only=True)["training_state"]
    assert state["iteration"] == 2 and state["batch_in_epoch"] == 2


def test_cancelled_training_keeps_its_last_checkpoint(capsys, coco: Path, work: Path,
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    from engine.training import trainer

    real, calls = trainer.lr_factor, []

    def interrupt_at_the_second_step(*args):
        calls.append(1)
        if len(calls) == 2:
            raise KeyboardInterrupt
        return real(*args)

    monkeypatch.setattr(trainer, "lr_factor", interrupt_at_the_second_step)
    out = work / "run"
    _train(capsys, coco, out, "--checkpoint-every", "0").failed("interrupted", code=130)
    assert (out / "last.pt").is_file()


# ------------------------------------------------------------------------------------------------ evaluate


def _evaluate(capsys, model: Path, coco: Path, *extra: object):
    return cli(capsys, "evaluate", "--checkpoint", model, "--coco", coco, "--images", coco.parent, *extra)


@pytest.mark.parametrize("case", ["no images", "unknown category_id", "bbox-only annotation", "missing image file",
                                  "RLE of another size"])
def test_evaluate_refuses_broken_ground_truth(capsys, model: Path, coco: Path, case: str) -> None:
    _broken_coco(coco, case)
    _evaluate(capsys, model, coco).failed(*(BROKEN[case][1] if case != "missing image file" else ["gone.png"]))


def test_evaluate_without_annotations_is_not_a_success(capsys, model: Path, coco: Path) -> None:
    _edit(coco, lambda d: d.update(annotations=[]))
    _evaluate(capsys, model, coco).failed(str(coco), "no annotations to evaluate against")


def test_degenerate_polygons_are_skipped_with_a_counted_warning(capsys, model: Path, coco: Path) -> None:
    def degenerate(d: dict) -> None:
        d["annotations"][0]["segmentation"] = [[1, 1, 5, 5]]  # 2 points
        d["annotations"][1]["segmentation"] = [[1, 1, 2, 2, 3, 3]]  # 3 points on a line: no area
        d["annotations"].append({**d["annotations"][2], "id": 99, "image_id": 12345})  # an image not listed

    _edit(coco, degenerate)
    run = _evaluate(capsys, model, coco)
    run.succeeded()
    warnings = [line for line in run.err.splitlines() if line.startswith("warning:")]
    assert any("skipped 2 annotation(s) whose polygon has fewer than 3 points or no area (ids 0, 1)" in w
               for w in warnings), warnings
    assert any("skipped 1 annotation(s) of an image id the file does not list (ids 99)" in w for w in warnings)


def test_evaluate_out_may_not_be_its_coco_file(capsys, model: Path, coco: Path) -> None:
    before = coco.read_bytes()
    _evaluate(capsys, model, coco, "--out", coco).failed("--out", "is also an input (--coco")
    assert coco.read_bytes() == before


def test_evaluate_bands_the_images_lack(capsys, model: Path, coco: Path) -> None:
    _evaluate(capsys, model, coco, "--bands", "3").failed("img_000.png", "has 1 bands", "choose bands from 1 to 1")


# --------------------------------------------------------------------------------------------------- split


@pytest.mark.parametrize("case", ["not JSON", "unknown category_id", "no images"])
def test_split_refuses_a_broken_file(capsys, coco: Path, work: Path, case: str) -> None:
    _broken_coco(coco, case)
    cli(capsys, "split", "--coco", coco, "--out", work).failed(str(coco), *BROKEN[case][1])
    assert snapshot(work) == {}


@pytest.mark.parametrize(("args", "needles"), [
    (["--val-fraction", "0"], ["--val-fraction 0", "above 0 and below 1"]),
    (["--val-fraction", "nan"], ["--val-fraction nan"]),
    (["--val-fraction", "1"], ["--val-fraction 1"]),
    (["--seed", "-3"], ["--seed -3"]),
    (["--val-fraction", "0.9"], ["leaves no training images"]),
])
def test_split_arguments(capsys, coco: Path, work: Path, args: list[str], needles: list[str]) -> None:
    cli(capsys, "split", "--coco", coco, "--out", work, *args).failed(*needles)
    assert snapshot(work) == {}


def test_split_into_the_folder_of_its_input_never_overwrites_it(capsys, coco: Path) -> None:
    """`split --coco data/train.json --out data` would replace the input with its own training part."""
    train = coco.parent / "train.json"
    coco.rename(train)
    before = train.read_bytes()
    cli(capsys, "split", "--coco", train, "--out", train.parent).failed("--out", "is also an input (--coco")
    assert train.read_bytes() == before and not (train.parent / "val.json").exists()


def test_split_out_is_a_file(capsys, coco: Path, work: Path) -> None:
    (work / "f").write_text("x")
    cli(capsys, "split", "--coco", coco, "--out", work / "f").failed("--out", "is a file")
