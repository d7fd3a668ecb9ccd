"""scripts/instance_table.py: stored vs fresh metrics, parameters, and the written table."""
import json
from pathlib import Path

from engine.checkpoint import load_checkpoint, save_checkpoint
from engine.data.coco import CocoInstanceDataset
from engine.evaluation.coco_eval import evaluate_model
from engine.models import build_model
from scripts.instance_table import main as instance_table


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
