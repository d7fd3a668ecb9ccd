"""Learning-rate schedule, a tiny end-to-end training run with resume, and COCO metrics."""

import json
import math

import pytest
import torch

from engine.checkpoint import load_checkpoint
from engine.data.coco import CocoInstanceDataset
from engine.evaluation.coco_eval import coco_metrics, detections_to_coco, evaluate_model, ground_truth_coco
from engine.spec import ModelSpec, Normalisation, classes_from_names
from engine.training.trainer import TrainConfig, Trainer, lr_factor
from tests.data.make_fixtures import write_coco_dataset

pytestmark = pytest.mark.filterwarnings("ignore::rasterio.errors.NotGeoreferencedWarning")

TINY = {
    "backbone": "resnet18", "fpn_channels": 32, "representation_size": 64, "mask_head_channels": 16,
    "mask_head_layers": 1, "anchor_sizes": [8, 16, 32, 64, 128],
    "rpn_pre_nms_top_n_train": 64, "rpn_post_nms_top_n_train": 32,
    "rpn_pre_nms_top_n_test": 64, "rpn_post_nms_top_n_test": 32,
    "box_batch_size_per_image": 16, "detections_per_img": 10,
}


# ------------------------------------------------------------------------------------------- schedule


def test_lr_factor_warmup() -> None:
    assert lr_factor(0, 100, 10, "cosine", []) == pytest.approx(0.001)
    cos5 = 0.5 * (1 + math.cos(math.pi * 5 / 100))
    assert lr_factor(5, 100, 10, "cosine", []) == pytest.approx((0.001 + 0.999 * 0.5) * cos5)
    assert lr_factor(5, 100, 10, "step", [30]) == pytest.approx(0.001 + 0.999 * 0.5)
    assert lr_factor(10, 100, 10, "step", [30]) == pytest.approx(1.0)  # warmup over
    warm = [lr_factor(i, 1000, 10, "step", []) for i in range(12)]
    assert all(a < b for a, b in zip(warm[:10], warm[1:11])) and warm[10] == warm[11] == 1.0


def test_lr_factor_cosine() -> None:
    assert lr_factor(0, 100, 0, "cosine", []) == pytest.approx(1.0)
    assert lr_factor(50, 100, 0, "cosine", []) == pytest.approx(0.5)
    assert lr_factor(25, 100, 0, "cosine", []) == pytest.approx(0.5 * (1 + math.cos(math.pi / 4)))
    assert lr_factor(100, 100, 0, "cosine", []) == pytest.approx(0.0, abs=1e-12)
    assert lr_factor(150, 100, 0, "cosine", []) == pytest.approx(0.0, abs=1e-12)  # clamped past the end
    values = [lr_factor(i, 100, 10, "cosine", []) for i in range(10, 101)]
    assert all(a >= b for a, b in zip(values, values[1:]))


def test_lr_factor_step() -> None:
    steps = [30, 60]
    assert lr_factor(0, 100, 0, "step", steps) == pytest.approx(1.0)
    assert lr_factor(29, 100, 0, "step", steps) == pytest.approx(1.0)
    assert lr_factor(30, 100, 0, "step", steps) == pytest.approx(0.1)
    assert lr_factor(59, 100, 0, "step", steps) == pytest.approx(0.1)
    assert lr_factor(60, 100, 0, "step", steps) == pytest.approx(0.01)
    assert lr_factor(99, 100, 0, "step", steps) == pytest.approx(0.01)


# ------------------------------------------------------------------------------------------- training


def test_tiny_training_run_and_resume(coco_gray, tmp_path) -> None:
    spec = ModelSpec(name="tiny", architecture="mask_rcnn", config=TINY, classes=classes_from_names(["ship"]),
                     bands=1, normalisation=Normalisation())
    out = tmp_path / "run"

    def config(epochs: int) -> TrainConfig:
        return TrainConfig(coco=str(coco_gray), images=str(coco_gray.parent), out_dir=str(out),
                           val_coco=str(coco_gray), epochs=epochs, batch_size=2, max_iters_per_epoch=2,
                           lr=0.005, warmup_iters=2, workers=0, device="cpu", crop_size=64, threads=1,
                           amp=False)

    messages: list[str] = []
    trainer = Trainer(spec, config(2), log=messages.append)
    assert (trainer.epoch, trainer.iteration) == (0, 0)
    best = trainer.fit()
    assert (trainer.epoch, trainer.iteration) == (2, 4)
    assert best == out / "best.pt"
    for name in ("last.pt", "best.pt", "log.jsonl", "loss.png"):
        assert (out / name).is_file() and (out / name).stat().st_size > 0, name
    assert (out / "loss.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert not [p.name for p in out.iterdir() if "tmp" in p.name]

    records = [json.loads(line) for line in (out / "log.jsonl").read_text().splitlines()]
    epochs = [r for r in records if r["type"] == "epoch"]
    assert [r["epoch"] for r in epochs] == [1, 2] and [r["iteration"] for r in epochs] == [2, 4]
    for r in epochs:
        assert math.isfinite(r["train_loss"]) and r["val"]["images"] == 4
        assert set(r["val"]["segm"]) == {"AP", "AP50", "AP75", "APs", "APm", "APl"}

    last = load_checkpoint(out / "last.pt")  # the trainer's files load with weights_only=True
    assert last.spec == spec
    assert last.training_state["epoch"] == 2 and last.training_state["iteration"] == 4
    assert "optimizer" in last.training_state
    assert last.provenance["epochs_done"] == 2 and last.provenance["train_images"] == 4
    assert "val" in last.metrics
    best_ckpt = load_checkpoint(out / "best.pt")
    assert best_ckpt.training_state is None and "val" in best_ckpt.metrics

    # resume: a second trainer with more epochs continues from last.pt
    messages.clear()
    resumed = Trainer(spec, config(3), log=messages.append)
    assert (resumed.epoch, resumed.iteration) == (2, 4)
    assert any("resumed" in m for m in messages)
    state = resumed.model.state_dict()
    assert all(torch.equal(state[k], v) for k, v in last.state_dict.items())  # weights restored
    assert len(resumed.optim.state) > 0  # momentum buffers restored
    assert len(resumed.history) == 2
    resumed.fit()
    assert (resumed.epoch, resumed.iteration) == (3, 6)
    final = load_checkpoint(out / "last.pt")
    assert final.training_state["epoch"] == 3 and final.provenance["epochs_done"] == 3
    records = [json.loads(line) for line in (out / "log.jsonl").read_text().splitlines()]
    assert [r["epoch"] for r in records if r["type"] == "epoch"] == [1, 2, 3]
    assert not any(torch.equal(final.state_dict[k], v) for k, v in last.state_dict.items()
                   if v.is_floating_point() and k.startswith("roi_heads.box_predictor"))  # it trained on


# ------------------------------------------------------------------------------------------ evaluation


def _perfect_detections(ds: CocoInstanceDataset, image_id_offset: int = 1) -> list[dict]:
    """Every ground-truth instance as a detection with score 1, built from the dataset's masks."""
    results = []
    for i in range(len(ds)):
        _, t = ds[i]
        output = {"boxes": t["boxes"], "labels": t["labels"], "scores": torch.ones(len(t["labels"])),
                  "masks": t["masks"][:, None].float()}
        results.extend(detections_to_coco(i + image_id_offset, output))
    return results


def test_ground_truth_ids_start_at_one(coco_rgb) -> None:
    coco = json.loads(coco_rgb.read_text())
    assert min(a["id"] for a in coco["annotations"]) == 0 and coco["images"][0]["id"] == 0
    gt = ground_truth_coco(CocoInstanceDataset(coco_rgb, coco_rgb.parent, Normalisation()))
    assert sorted(gt.getImgIds()) == [1, 2, 3, 4]
    assert sorted(gt.getAnnIds()) == list(range(1, len(coco["annotations"]) + 1))
    assert sorted(gt.getCatIds()) == [1, 2]


def test_perfect_detections_score_100_and_none_score_0(coco_rgb) -> None:
    ds = CocoInstanceDataset(coco_rgb, coco_rgb.parent, Normalisation())
    gt = ground_truth_coco(ds)
    results = _perfect_detections(ds)
    assert len(results) == len(json.loads(coco_rgb.read_text())["annotations"])
    metrics = coco_metrics(gt, results)
    for iou_type in ("bbox", "segm"):
        assert metrics[iou_type]["AP"] == 100.0, (iou_type, metrics)
        assert metrics[iou_type]["AP50"] == 100.0 and metrics[iou_type]["AP75"] == 100.0
    empty = coco_metrics(gt, [])
    assert all(v == 0.0 for m in empty.values() for v in m.values()) and set(empty) == {"bbox", "segm"}
    # detections attached to the wrong images must not score 100 (the check above can fail)
    shifted = [r for r in _perfect_detections(ds, image_id_offset=2) if r["image_id"] <= len(ds)]
    assert coco_metrics(gt, shifted)["segm"]["AP"] < 50.0


def test_perfect_detections_on_a_larger_dataset(tmp_path) -> None:
    path = write_coco_dataset(tmp_path / "c", n_images=6, size=(64, 64), seed=3)
    ds = CocoInstanceDataset(path, path.parent, Normalisation())
    metrics = coco_metrics(ground_truth_coco(ds), _perfect_detections(ds))
    assert metrics["bbox"]["AP"] == 100.0 and metrics["segm"]["AP"] == 100.0


class _Oracle(torch.nn.Module):
    """Returns the dataset's ground truth for the k-th call (a perfect model)."""

    def __init__(self, ds: CocoInstanceDataset) -> None:
        super().__init__()
        self.ds, self.calls = ds, 0

    def forward(self, images):
        _, t = self.ds[self.calls]
        assert images[0].shape[1:] == t["masks"].shape[1:]
        self.calls += 1
        return [{"boxes": t["boxes"], "labels": t["labels"], "scores": torch.ones(len(t["labels"])),
                 "masks": t["masks"][:, None].float()}]


def test_evaluate_model_with_a_perfect_model(coco_rgb) -> None:
    ds = CocoInstanceDataset(coco_rgb, coco_rgb.parent, Normalisation())
    seen = []
    metrics = evaluate_model(_Oracle(ds), ds, progress=lambda done, total: seen.append((done, total)))
    assert metrics["bbox"]["AP"] == 100.0 and metrics["segm"]["AP"] == 100.0
    assert metrics["images"] == 4 and metrics["seconds_per_image"] >= 0
    assert seen == [(1, 4), (2, 4), (3, 4), (4, 4)]
