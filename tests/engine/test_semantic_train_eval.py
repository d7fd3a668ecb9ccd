"""Semantic models through the trainer and the CLI: class-map targets, best.pt chosen by mIoU, resume of
the best score, and `rsseg train --arch semantic_fpn` -> `rsseg evaluate` writing the semantic metrics."""
from __future__ import annotations

import json
import math

import pytest

from engine.checkpoint import load_checkpoint
from engine.cli import main
from engine.data.class_maps import CocoSemanticDataset
from engine.models import SEMANTIC_ARCHITECTURES
from engine.spec import ModelSpec, Normalisation, classes_from_names
from engine.tasks import TASKS
from engine.training.trainer import TrainConfig, Trainer

pytestmark = pytest.mark.filterwarnings("ignore::rasterio.errors.NotGeoreferencedWarning")

TINY = {"fpn_channels": 16, "decoder_channels": 8}


def test_validation_score_is_miou_for_semantic_and_mask_ap_for_instance() -> None:
    instance, semantic = TASKS["instance"], TASKS["semantic"]
    metrics = {"semantic": {"mIoU": 40.0}, "segm": {"AP": 12.5}, "bbox": {"AP": 20.0}}
    assert (instance.validation_score(metrics), instance.score_name) == (12.5, "mask AP")
    assert (semantic.validation_score(metrics), semantic.score_name) == (40.0, "mIoU")
    assert semantic.validation_score({**metrics, "semantic": {"mIoU": None}}) == 0.0
    assert instance.validation_score({**metrics, "segm": {"AP": None}}) == 0.0


def test_semantic_training_run_keeps_the_best_miou(coco_gray, tmp_path) -> None:
    spec = ModelSpec(name="tiny", architecture="semantic_fpn", task="semantic", config=TINY,
                     classes=classes_from_names(["ship"]), bands=1, normalisation=Normalisation())
    out = tmp_path / "run"

    def config(epochs: int) -> TrainConfig:
        return TrainConfig(coco=str(coco_gray), images=str(coco_gray.parent), out_dir=str(out),
                           val_coco=str(coco_gray), epochs=epochs, batch_size=2, max_iters_per_epoch=1, lr=0.01,
                           warmup_iters=1, workers=0, device="cpu", crop_size=64, threads=1, amp=False)

    messages: list[str] = []
    trainer = Trainer(spec, config(2), log=messages.append)
    assert isinstance(trainer.train_set, CocoSemanticDataset)
    assert trainer.fit() == out / "best.pt"
    for name in ("last.pt", "best.pt", "log.jsonl", "loss.png"):
        assert (out / name).is_file(), name
    records = [json.loads(line) for line in (out / "log.jsonl").read_text().splitlines()]
    epochs = [r for r in records if r["type"] == "epoch"]
    assert [r["epoch"] for r in epochs] == [1, 2]
    scores = [r["val"]["semantic"]["mIoU"] for r in epochs]
    for r in epochs:
        assert math.isfinite(r["train_loss"]) and r["val"]["images"] == 4
        assert {"mIoU", "mIoU_no_bg", "mF1", "OA", "per_class"} <= set(r["val"]["semantic"])
        assert set(r["val"]["semantic"]["per_class"]) == {"background", "ship"}
        assert set(r["val"]["segm"]) == {"AP", "AP50", "AP75", "APs", "APm", "APl"}
    assert sum("val mIoU" in m for m in messages) == 2
    best = load_checkpoint(out / "best.pt")
    assert best.spec.task == "semantic" and best.metrics["val"]["semantic"]["mIoU"] == max(scores)
    assert best.metrics["val"] == epochs[scores.index(max(scores))]["val"]  # the first epoch with the best mIoU
    last = load_checkpoint(out / "last.pt")
    assert last.training_state["best_score"] == max(scores)
    resumed = Trainer(spec, config(2), log=messages.append)
    assert resumed.best_score == max(scores) and resumed.epoch == 2


def test_cli_train_and_evaluate_a_semantic_model(coco_gray, tmp_path, capsys: pytest.CaptureFixture) -> None:
    assert "semantic_fpn" in SEMANTIC_ARCHITECTURES
    run = tmp_path / "run"
    assert main(["train", "--arch", "semantic_fpn", "--coco", str(coco_gray), "--images", str(coco_gray.parent),
                 "--val-coco", str(coco_gray), "--out", str(run), "--config", json.dumps(TINY), "--epochs", "1",
                 "--batch-size", "2", "--max-iters-per-epoch", "2", "--crop-size", "64", "--warmup-iters", "1",
                 "--workers", "0", "--device", "cpu", "--threads", "1"]) == 0
    ckpt = load_checkpoint(run / "best.pt")
    assert ckpt.spec.task == "semantic" and ckpt.spec.architecture == "semantic_fpn"
    assert ckpt.provenance["iterations"] == 2 and "mIoU" in ckpt.metrics["val"]["semantic"]
    # the checkpoint says how it was made: the command line as typed
    assert ckpt.provenance["train_command"].startswith("rsseg train --arch semantic_fpn --coco ")
    assert f"--out {run}" in ckpt.provenance["train_command"]

    metrics_path = tmp_path / "eval" / "metrics.json"
    capsys.readouterr()
    assert main(["evaluate", "--checkpoint", str(run / "best.pt"), "--coco", str(coco_gray), "--images",
                 str(coco_gray.parent), "--out", str(metrics_path), "--device", "cpu"]) == 0
    printed = capsys.readouterr().out
    metrics = json.loads(metrics_path.read_text())
    assert metrics["model"] and metrics["coco"] == str(coco_gray) and metrics["images"] == 4
    assert metrics["semantic"] == ckpt.metrics["val"]["semantic"]  # same weights, same data, same numbers
    assert set(metrics["segm"]) == {"AP", "AP50", "AP75", "APs", "APm", "APl"} and "bbox" in metrics
    assert "mIoU" in printed and "ship" in printed and "segm" in printed
    assert main(["info", str(run / "best.pt")]) == 0
    summary = capsys.readouterr().out
    assert summary.startswith("best: semantic semantic_fpn")
    assert f"val mIoU {ckpt.metrics['val']['semantic']['mIoU']:.1f}" in summary
