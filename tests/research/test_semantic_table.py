"""research.semantic_table: one row per run, C2FNet with its fine model off equals its coarse model."""
from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from engine.checkpoint import Checkpoint, load_checkpoint, save_checkpoint
from engine.models import build_model
from engine.spec import ModelSpec, Normalisation, classes_from_names
from engine.training.trainer import load_initial_weights
from research.semantic_table import main as semantic_table
from research.semantic_table import parse_run

SUB = {"architecture": "semantic_fpn", "config": {"fpn_channels": 16, "decoder_channels": 8}}


def _tiny_semantic_checkpoint(path: Path) -> Path:
    """A tiny 1-band Semantic FPN ("ship" where bright) saved to `path`."""
    spec = ModelSpec(name=path.stem, architecture="semantic_fpn", task="semantic",
                     classes=classes_from_names(["ship"]), bands=1, config=SUB["config"],
                     normalisation=Normalisation(scale=1 / 255, mean=(0.0,), std=(1.0,)), tile_size=96, overlap=32,
                     gsd_m=10.0)
    torch.manual_seed(0)
    model = build_model(spec)
    with torch.no_grad():
        model.classifier.weight.zero_()
        model.classifier.bias.copy_(torch.tensor([0.0, -1.0]))
    return save_checkpoint(Checkpoint(spec, model.state_dict()), path)


def test_semantic_table_compares_runs_and_refine_off_equals_the_coarse_model(coco_gray: Path, tmp_path: Path) -> None:
    coarse = _tiny_semantic_checkpoint(tmp_path / "coarse.pt")
    spec = load_checkpoint(coarse).spec.with_updates(
        architecture="c2fnet", config={"coarse": SUB, "fine": SUB, "window": 32, "stride": 16, "top_k": 2})
    c2f = build_model(spec)
    load_initial_weights(c2f, str(coarse))
    c2f_path = save_checkpoint(Checkpoint(spec, c2f.state_dict()), tmp_path / "c2f.pt")
    out = tmp_path / "table"
    assert semantic_table(["--coco", str(coco_gray), "--images", str(coco_gray.parent), "--small", "ship",
                           "--run", f"coarse={coarse}", "--run", f"off={c2f_path}@refine=false",
                           "--run", f"on={c2f_path}", "--out", str(out)]) == 0
    metrics = json.loads(out.with_suffix(".json").read_text())
    assert metrics["off"]["semantic"] == metrics["coarse"]["semantic"]
    assert metrics["on"]["parameters"] > metrics["coarse"]["parameters"]
    lines = out.with_suffix(".md").read_text().splitlines()
    assert len(lines) == 5 and lines[0].startswith("| model |") and "IoU ship" in lines[0]


def test_run_text_is_label_path_and_only_refine_false() -> None:
    assert parse_run("C2F off=runs/c2f/last.pt@refine=false") == ("C2F off", "runs/c2f/last.pt", False)
    assert parse_run("FPN=a=b.pt") == ("FPN", "a=b.pt", True)
    with pytest.raises(SystemExit, match="LABEL=CHECKPOINT"):
        parse_run("no-label")
    with pytest.raises(SystemExit, match="only option is @refine=false"):
        parse_run("x=y.pt@zoom=2")
