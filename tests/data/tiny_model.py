"""Tiny checkpoints for fast tests (CPU, a few MB): a random 1-band Mask R-CNN and Semantic FPN, and the plugin
tests' models whose heads are biased to say "ship" everywhere.

The plugin tests' process never imports torch: they make their models with `python -m tests.data.tiny_model
FOLDER` (tiny_ships.pt, 1 band; rgb.pt, 3 bands; sem.pt, semantic).
"""
from __future__ import annotations

import sys
from collections.abc import Callable
from pathlib import Path

import torch

from engine.checkpoint import Checkpoint, save_checkpoint
from engine.models import build_model
from engine.spec import ModelSpec, Normalisation, classes_from_names

TINY = {"backbone": "resnet18", "fpn_channels": 32, "representation_size": 64, "mask_head_channels": 16,
        "mask_head_layers": 1, "rpn_pre_nms_top_n_train": 200, "rpn_post_nms_top_n_train": 100,
        "rpn_pre_nms_top_n_test": 200, "rpn_post_nms_top_n_test": 100, "box_batch_size_per_image": 32,
        "anchor_sizes": [8, 16, 32, 64, 128]}
PLUGIN_TINY = {"backbone": "resnet18", "fpn_channels": 16, "representation_size": 32, "mask_head_channels": 8,
               "mask_head_layers": 1, "rpn_pre_nms_top_n_test": 30, "rpn_post_nms_top_n_test": 10,
               "detections_per_img": 5, "anchor_sizes": [8, 16, 32, 64, 128]}
SEMANTIC = {"fpn_channels": 16, "decoder_channels": 8}


def save_model(path: Path, spec: ModelSpec, bias: Callable[[torch.nn.Module], None] | None = None) -> Path:
    """Build `spec`'s model from seed 0 (its heads then set by `bias`, if given) and save it at `path`."""
    torch.manual_seed(0)
    model = build_model(spec)
    if bias is not None:
        with torch.no_grad():
            bias(model)
    return save_checkpoint(Checkpoint(spec, model.state_dict(), {"note": "biased test model" if bias else "random"},
                                      {}), path)


def write_tiny_checkpoint(path: Path) -> Path:
    """Save the tiny "ship" model (tile 128, overlap 32, score threshold 0) to `path`."""
    spec = ModelSpec(name="tiny", architecture="mask_rcnn", config=TINY, classes=classes_from_names(["ship"]),
                     bands=1, normalisation=Normalisation(), gsd_m=10.0, tile_size=128, overlap=32, score_threshold=0.0)
    return save_model(path, spec)


def write_tiny_semantic_checkpoint(path: Path) -> Path:
    """A random tiny 1-band Semantic FPN with two classes (tile 128, overlap 32)."""
    spec = ModelSpec(name="tiny-semantic", architecture="semantic_fpn", task="semantic", config=SEMANTIC,
                     classes=classes_from_names(["ship", "tank"]), bands=1, normalisation=Normalisation(), gsd_m=10.0,
                     tile_size=128, overlap=32)
    return save_model(path, spec)


def _always_ship(model: torch.nn.Module) -> None:
    heads = model.roi_heads
    heads.box_predictor.cls_score.weight.zero_()
    heads.box_predictor.cls_score.bias.copy_(torch.tensor([0.0, 8.0, 0.0]))
    heads.box_predictor.bbox_pred.weight.zero_()
    heads.box_predictor.bbox_pred.bias.zero_()
    heads.mask_predictor.mask_fcn_logits.weight.zero_()
    heads.mask_predictor.mask_fcn_logits.bias.fill_(8.0)


def write_ship_checkpoint(path: Path, bands: int = 1) -> Path:
    """A tiny Mask R-CNN ("ship", "tank") whose heads always say "ship" with a full-box mask."""
    spec = ModelSpec(name="tiny-ships", architecture="mask_rcnn", config=PLUGIN_TINY,
                     classes=classes_from_names(["ship", "tank"]), bands=bands,
                     band_names=tuple(f"b{i + 1}" for i in range(bands)),
                     normalisation=Normalisation(mean=(0.5,) * bands, std=(0.5,) * bands),
                     gsd_m=10.0, tile_size=128, overlap=32, score_threshold=0.3)
    return save_model(path, spec, _always_ship)


def _ship_everywhere(model: torch.nn.Module) -> None:
    model.classifier.weight.zero_()
    model.classifier.bias.copy_(torch.tensor([0.0, 2.0, 0.0]))


def write_ship_semantic_checkpoint(path: Path) -> Path:
    """A tiny Semantic FPN ("ship", "tank") whose classifier says "ship" everywhere (probability ~0.88)."""
    spec = ModelSpec(name="tiny-sem", architecture="semantic_fpn", task="semantic", config=SEMANTIC,
                     classes=classes_from_names(["ship", "tank"]), bands=1, band_names=("b1",),
                     normalisation=Normalisation(mean=(0.5,), std=(0.5,)), gsd_m=10.0, tile_size=128, overlap=32)
    return save_model(path, spec, _ship_everywhere)


def main(argv: list[str]) -> int:
    """Write the plugin tests' models into the folder argv[0]."""
    folder = Path(argv[0])
    write_ship_checkpoint(folder / "tiny_ships.pt")
    write_ship_checkpoint(folder / "rgb.pt", bands=3)
    write_ship_semantic_checkpoint(folder / "sem.pt")
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
