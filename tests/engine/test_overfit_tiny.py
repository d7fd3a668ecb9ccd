"""Tiny overfit checks: the fast architectures memorise 3 small generated images within a few dozen steps.

A regression in a loss or a target assignment makes a model unable to memorise even this, so these fail
where shape-only contract tests pass. The full-size proof (8 real images, 600 iterations) is
`python -m research.overfit`.
"""
import pytest
import torch

from engine.data.class_maps import CocoSemanticDataset
from engine.data.coco import CocoInstanceDataset, collate
from engine.evaluation.coco_eval import evaluate_model
from engine.evaluation.semantic_eval import evaluate_semantic_model
from engine.models import build_model
from engine.spec import Normalisation
from tests.data.make_fixtures import write_coco_dataset
from tests.engine.model_checks import tiny_spec

# architecture -> (iterations, AdamW learning rate, metric, bar): bars well under what a correct model reaches
# (measured: mask_rcnn AP 55 / AP50 100, solov2 AP 56, semantic_fpn mIoU 79, hi_resnet mIoU 92)
CASES = {
    "mask_rcnn": (60, 0.003, "AP50", 80.0),
    "solov2": (60, 0.003, "AP", 35.0),
    "semantic_fpn": (60, 0.003, "mIoU", 65.0),
    "hi_resnet": (60, 0.003, "mIoU", 75.0),
}


@pytest.mark.parametrize("arch", sorted(CASES))
def test_tiny_model_memorises_three_images(arch, tmp_path) -> None:
    iterations, lr, metric, bar = CASES[arch]
    coco = write_coco_dataset(tmp_path / "coco", n_images=3, size=(64, 96))  # the last image has no objects
    spec = tiny_spec(arch)
    semantic = spec.task == "semantic"
    dataset = (CocoSemanticDataset if semantic else CocoInstanceDataset)(coco, coco.parent, Normalisation())
    samples = [dataset[i] for i in range(len(dataset))]
    torch.manual_seed(0)
    model = build_model(spec)
    optimiser = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr)
    model.train()
    for _ in range(iterations):
        images, targets = collate(samples)
        loss = sum(model(images, targets).values())
        optimiser.zero_grad()
        loss.backward()
        optimiser.step()
    if semantic:
        value = evaluate_semantic_model(model, dataset)["semantic"]["mIoU"]
    else:
        value = evaluate_model(model, dataset)["segm"][metric]
    assert value >= bar, f"{arch}: {metric} {value:.1f} after {iterations} steps (bar {bar})"
