"""The model contract, for every architecture in MODELS at a tiny size on 64 px images: training gives finite
named losses whose gradients reach the trunk, images without objects train (zero box/mask losses), any band
count works, and eval outputs follow engine.tasks.semantic / torchvision's instance contract at the input size."""
from __future__ import annotations

import pytest
import torch
from torch import nn

from engine.models import MODELS, build_model
from engine.spec import IGNORE_INDEX
from tests.engine.model_checks import TINY_CONFIGS, tiny_spec, train_step

STAGES = (1, 2, 3)
CASCADE_LOSSES = ({f"loss_{kind}_s{s}" for kind in ("classifier", "box_reg", "mask") for s in STAGES}
                  | {"loss_objectness", "loss_rpn_box_reg"})
LOSSES = {
    "mask_rcnn": {"loss_classifier", "loss_box_reg", "loss_mask", "loss_objectness", "loss_rpn_box_reg"},
    "cascade_mask_rcnn": CASCADE_LOSSES, "hq_isnet": CASCADE_LOSSES,
    "solov2": {"loss_category", "loss_mask"}, "facenet": {"loss_category", "loss_mask"},
    "semantic_fpn": {"loss_ce"}, "farseg": {"loss_fa"},
    "hi_resnet": {f"loss_{head}_{kind}" for head in ("coarse", "refined") for kind in ("gd", "lsce", "cea")},
    "c2fnet": {"coarse_loss_ce", "fine_loss_ce"},
}
# config overrides under which an untrained instance model detects nothing
SILENT = {"mask_rcnn": {"box_score_thresh": 1.01}, "cascade_mask_rcnn": {"box_score_thresh": 1.01},
          "hq_isnet": {"box_score_thresh": 1.01}, "solov2": {"score_thresh": 1.01}, "facenet": {"score_thresh": 1.01}}
ARCHITECTURES = sorted(MODELS)
INSTANCE = [n for n in ARCHITECTURES if MODELS[n].task == "instance"]
SEMANTIC = [n for n in ARCHITECTURES if MODELS[n].task == "semantic"]
SIZES = [(64, 64), (50, 70)]  # the second is no multiple of 32


def _images(bands: int, sizes=SIZES) -> list[torch.Tensor]:
    g = torch.Generator().manual_seed(0)
    return [torch.randn(bands, h, w, generator=g) for h, w in sizes]


def _instance_target(boxes: list[tuple[int, int, int, int]], size: tuple[int, int]) -> dict:
    """Rectangles (x0, y0, x1, y1) of class 1, 2, 1, ... -> {"boxes", "labels", "masks" uint8 [N,H,W]}."""
    masks = torch.zeros(len(boxes), *size, dtype=torch.uint8)
    for k, (x0, y0, x1, y1) in enumerate(boxes):
        masks[k, y0:y1, x0:x1] = 1
    return {"boxes": torch.tensor(boxes, dtype=torch.float32).reshape(-1, 4),
            "labels": torch.tensor([1 + k % 2 for k in range(len(boxes))], dtype=torch.int64), "masks": masks}


def _semantic_target(size: tuple[int, int], objects: bool = True) -> dict:
    """A class map with a class-1 block, a small class-2 ("tank") block and an ignored strip (or background only)."""
    semantic = torch.zeros(size, dtype=torch.int64)
    if objects:
        semantic[10:30, 8:40] = 1
        semantic[38:44, 30:36] = 2
        semantic[: 3] = IGNORE_INDEX
    return {"semantic": semantic}


def _targets(arch: str, objects: bool = True) -> list[dict]:
    if MODELS[arch].task == "semantic":
        return [_semantic_target(size, objects) for size in SIZES]
    boxes = [[(10, 12, 30, 28), (40, 36, 60, 48)], [(5, 20, 25, 45)]] if objects else [[], []]
    return [_instance_target(b, size) for b, size in zip(boxes, SIZES)]


def _stems(model: nn.Module, bands: int) -> list[nn.Conv2d]:
    """The convolutions that read the input bands (one per trunk; C2FNet has two)."""
    stems = [m for m in model.modules() if isinstance(m, nn.Conv2d) and m.in_channels == bands]
    assert stems, "no convolution reads the input bands"
    return stems


def _reached(conv: nn.Conv2d) -> bool:
    return conv.weight.grad is not None and float(conv.weight.grad.abs().sum()) > 0


def test_every_architecture_has_a_tiny_config() -> None:
    assert set(TINY_CONFIGS) == set(MODELS) == set(LOSSES)
    assert set(SILENT) == set(INSTANCE)


@pytest.mark.parametrize("arch", ARCHITECTURES)
def test_training_gives_finite_losses_and_gradients_reach_the_trunk(arch: str) -> None:
    torch.manual_seed(0)
    model = build_model(tiny_spec(arch))
    losses = train_step(model, _images(1), _targets(arch), LOSSES[arch])
    assert all(float(v) > 0 for v in losses.values()), losses  # objects present: every loss is active
    assert all(_reached(conv) for conv in _stems(model, 1))
    for name, p in model.named_parameters():
        assert p.grad is None or bool(torch.isfinite(p.grad).all()), name


@pytest.mark.parametrize("arch", ARCHITECTURES)
def test_images_without_objects_train(arch: str) -> None:
    torch.manual_seed(0)
    model = build_model(tiny_spec(arch))
    losses = train_step(model, _images(1), _targets(arch, objects=False), LOSSES[arch])
    if arch in INSTANCE:
        for name, value in losses.items():
            if "box_reg" in name or "mask" in name:
                assert float(value) == 0.0, name
            else:
                assert float(value) > 0, name  # the background is still learnt
    assert all(_reached(conv) for conv in _stems(model, 1))
    if arch in SEMANTIC:  # every pixel ignored: nothing to learn, zero losses that still backpropagate
        ignored = [{"semantic": torch.full(size, IGNORE_INDEX, dtype=torch.int64)} for size in SIZES]
        assert all(float(v) == 0.0 for v in train_step(model, _images(1), ignored, LOSSES[arch]).values())


@pytest.mark.parametrize("bands", [2, 4])
@pytest.mark.parametrize("arch", ARCHITECTURES)
def test_multiband_input(arch: str, bands: int) -> None:
    torch.manual_seed(0)
    model = build_model(tiny_spec(arch, bands=bands))
    train_step(model, _images(bands), _targets(arch), LOSSES[arch])
    assert all(_reached(conv) for conv in _stems(model, bands))
    model.eval()
    with torch.no_grad():
        out = model(_images(bands, SIZES[1:]))[0]
        assert (out["masks"] if arch in INSTANCE else out["probs"]).shape[-2:] == SIZES[1]
        with pytest.raises(RuntimeError):  # a band-count mismatch is not silently accepted
            model(_images(bands + 1, SIZES[:1]))


@pytest.mark.parametrize("arch", INSTANCE)
def test_instance_eval_output_contract(arch: str) -> None:
    torch.manual_seed(0)
    model = build_model(tiny_spec(arch)).eval()
    with torch.no_grad():
        outputs = model(_images(1))
    assert len(outputs) == len(SIZES)
    for out, (h, w) in zip(outputs, SIZES):
        assert set(out) == {"boxes", "labels", "scores", "masks"}
        n = len(out["scores"])
        assert n > 0  # untrained with thresholds 0: detections exist, so the shapes are really checked
        assert out["boxes"].shape == (n, 4) and out["boxes"].dtype == torch.float32
        assert out["labels"].shape == (n,) and out["labels"].dtype == torch.int64
        assert set(out["labels"].tolist()) <= {1, 2}
        assert out["scores"].shape == (n,) and out["scores"].dtype == torch.float32
        assert 0.0 <= float(out["scores"].min()) and float(out["scores"].max()) <= 1.0
        assert bool((out["scores"][:-1] >= out["scores"][1:]).all())
        assert out["masks"].shape == (n, 1, h, w) and out["masks"].dtype == torch.float32
        assert 0.0 <= float(out["masks"].min()) and float(out["masks"].max()) <= 1.0
        assert bool((out["boxes"][:, :2] >= 0).all()) and bool((out["boxes"][:, 2] <= w).all())
        assert bool((out["boxes"][:, 3] <= h).all())
    silent = build_model(tiny_spec(arch, {**TINY_CONFIGS[arch], **SILENT[arch]})).eval()
    with torch.no_grad():
        out = silent(_images(1, SIZES[1:]))[0]
    assert out["boxes"].shape == (0, 4) and out["labels"].shape == (0,) and out["scores"].shape == (0,)
    assert out["masks"].shape == (0, 1, *SIZES[1])


@pytest.mark.parametrize("arch", SEMANTIC)
def test_semantic_eval_output_contract(arch: str) -> None:
    torch.manual_seed(0)
    model = build_model(tiny_spec(arch)).eval()
    with torch.no_grad():
        outputs = model(_images(1))
    assert len(outputs) == len(SIZES)
    for out, size in zip(outputs, SIZES):
        probs = out["probs"]
        assert set(out) == {"probs"} and probs.shape == (3, *size) and probs.dtype == torch.float32
        assert bool((probs >= 0).all()) and torch.allclose(probs.sum(0), torch.ones(size), atol=1e-5)
