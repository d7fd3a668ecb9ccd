"""research.instance_table: stored vs fresh metrics, parameters, and the written table."""
import json
from pathlib import Path

from engine.checkpoint import load_checkpoint, save_checkpoint
from engine.data.coco import CocoInstanceDataset
from engine.evaluation.coco_eval import evaluate_model
from engine.models import build_model
from research.instance_table import main as instance_table


def test_table_uses_stored_metrics_or_reevaluates(tiny_checkpoint: Path, coco_gray: Path, tmp_path: Path) -> None:
    ckpt = load_checkpoint(tiny_checkpoint)
    stored = {"segm": {"AP": 12.5, "AP50": 30.0, "AP75": 10.0, "APs": 11.0, "APm": 13.0, "APl": -1.0},
              "bbox": {"AP": 9.25}, "images": 7, "seconds_per_image": 99.0}
    ckpt.metrics = {"val": stored}
    ckpt.provenance = {"iterations": 40, "epochs_done": 2}
    with_metrics = save_checkpoint(ckpt, tmp_path / "with_metrics.pt")
    out = tmp_path / "table"
    assert instance_table(["--coco", str(coco_gray), "--images", str(coco_gray.parent), "--time-images", "2",
                           "--run", f"stored={with_metrics}", "--run", f"fresh={tiny_checkpoint}",
                           "--out", str(out)]) == 0
    rows = json.loads(out.with_suffix(".json").read_text())
    assert rows["stored"]["segm"] == stored["segm"] and rows["stored"]["iterations"] == 40
    # the checkpoint without metrics is evaluated on --coco, as evaluate_model does it
    model = build_model(ckpt.spec)
    model.load_state_dict(ckpt.state_dict)
    dataset = CocoInstanceDataset(str(coco_gray), str(coco_gray.parent), ckpt.spec.normalisation, [1])
    assert rows["fresh"]["segm"] == evaluate_model(model, dataset)["segm"]
    assert rows["fresh"]["parameters"] == sum(p.numel() for p in model.state_dict().values() if p.is_floating_point())
    # time per image is measured here, not copied from the stored metrics
    assert 0 < rows["stored"]["seconds_per_image"] < 99.0
    lines = out.with_suffix(".md").read_text().splitlines()
    assert len(lines) == 4 and lines[0].startswith("| model | iterations | mask AP |")
    assert lines[2].startswith("| stored | 40 | 12.50 | 30.00 | 10.00 | 11.00 | 13.00 | n/a | 9.25 |")


def test_table_refuses_a_bad_run_text(coco_gray: Path) -> None:
    import pytest

    with pytest.raises(SystemExit, match="LABEL=CHECKPOINT"):
        instance_table(["--coco", str(coco_gray), "--images", str(coco_gray.parent), "--run", "no-label"])


def test_metrics_from_a_training_log_replace_the_stored_ones(tiny_checkpoint: Path, coco_gray: Path,
                                                            tmp_path: Path) -> None:
    import pytest

    val = {"segm": {"AP": 44.1, "AP50": 71.95, "AP75": 49.07, "APs": 32.5, "APm": 44.0, "APl": 32.9},
           "bbox": {"AP": 46.46}, "images": 91, "seconds_per_image": 0.08}
    log = tmp_path / "log.jsonl"
    log.write_text("\n".join(json.dumps(r) for r in [
        {"type": "train", "epoch": 0, "iteration": 20, "loss": 3.0},
        {"type": "epoch", "epoch": 1, "iteration": 182, "train_loss": 2.0},
        {"type": "epoch", "epoch": 8, "iteration": 1456, "train_loss": 1.2, "val": val}]) + "\n")
    out = tmp_path / "table"
    args = ["--coco", str(coco_gray), "--images", str(coco_gray.parent), "--time-images", "1",
            "--run", f"gpu={tiny_checkpoint}", "--metrics", f"gpu={log}", "--out", str(out)]
    assert instance_table(args) == 0
    row = json.loads(out.with_suffix(".json").read_text())["gpu"]
    assert row["segm"] == val["segm"] and row["bbox"] == val["bbox"]
    assert row["iterations"] == 1456 and row["epochs"] == 8 and row["metrics_from"] == str(log)
    assert row["parameters"] > 0 and row["seconds_per_image"] > 0
    assert instance_table(["--coco", str(coco_gray), "--images", str(coco_gray.parent), "--run", f"log only={log}",
                           "--out", str(out)]) == 0
    assert "| log only | 1456 | 44.10 | 71.95 | 49.07 | 32.50 | 44.00 | 32.90 | 46.46 | n/a | n/a |" in \
        out.with_suffix(".md").read_text()
    with pytest.raises(SystemExit, match="without a --run: other"):
        instance_table(args + ["--metrics", f"other={log}"])
    log.write_text(json.dumps({"type": "epoch", "epoch": 1, "iteration": 5, "train_loss": 1.0}) + "\n")
    with pytest.raises(SystemExit, match="no validation record"):
        instance_table(args)
