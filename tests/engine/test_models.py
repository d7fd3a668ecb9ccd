"""Mask R-CNN builders: training/eval contract, empty images, band counts, pretrained weights, bad names."""

import pytest
import torch

from engine.models import MODELS, build_model
from engine.models.backbones.efficientnet_lite import (
    EfficientNetLiteFeatures,
    imagenet_weights_file,
    load_imagenet_weights,
)
from engine.models.detectors.mask_rcnn import DEFAULT_CONFIG
from engine.spec import ModelSpec, classes_from_names
from tests.engine.model_checks import train_step

TINY = {
    "fpn_channels": 32, "representation_size": 64, "mask_head_channels": 16, "mask_head_layers": 1,
    "anchor_sizes": [8, 16, 32, 64, 128],
    "rpn_pre_nms_top_n_train": 64, "rpn_post_nms_top_n_train": 32,
    "rpn_pre_nms_top_n_test": 64, "rpn_post_nms_top_n_test": 32,
    "box_batch_size_per_image": 16, "detections_per_img": 20, "box_score_thresh": 0.0,
}
BACKBONES = ["resnet18", "efficientnet_lite0"]
LOSSES = {"loss_classifier", "loss_box_reg", "loss_mask", "loss_objectness", "loss_rpn_box_reg"}


def _spec(backbone: str = "resnet18", bands: int = 1, **config) -> ModelSpec:
    return ModelSpec(name="t", architecture="mask_rcnn", config={**TINY, "backbone": backbone, **config},
                     classes=classes_from_names(["ship", "tank"]), bands=bands)


def _target(boxes: list[tuple[int, int, int, int]], labels: list[int], size: int = 64) -> dict:
    """Rectangle instances (x0, y0, x1, y1) -> torchvision target with matching masks."""
    masks = torch.zeros(len(boxes), size, size, dtype=torch.uint8)
    for k, (x0, y0, x1, y1) in enumerate(boxes):
        masks[k, y0:y1, x0:x1] = 1
    return {"boxes": torch.tensor(boxes, dtype=torch.float32).reshape(-1, 4),
            "labels": torch.tensor(labels, dtype=torch.int64), "masks": masks}


def _images(n: int, bands: int, size: int = 64) -> list[torch.Tensor]:
    g = torch.Generator().manual_seed(0)
    return [torch.randn(bands, size, size, generator=g) for _ in range(n)]


def _train_step(model: torch.nn.Module, images, targets) -> dict[str, torch.Tensor]:
    return train_step(model, images, targets, LOSSES)


def _grad_norms(model: torch.nn.Module) -> dict[str, float]:
    return {n: float(p.grad.abs().sum()) for n, p in model.named_parameters() if p.grad is not None}


@pytest.mark.parametrize("backbone", BACKBONES)
def test_forward_backward_gives_finite_losses_and_gradients(backbone) -> None:
    torch.manual_seed(0)
    model = build_model(_spec(backbone))
    targets = [_target([(10, 12, 30, 28), (40, 40, 60, 52)], [1, 2]), _target([(5, 30, 25, 60)], [2])]
    losses = _train_step(model, _images(2, 1), targets)
    assert all(float(v) > 0 for v in losses.values())  # objects present: every loss is active
    grads = _grad_norms(model)
    for part in ("backbone.body.", "backbone.fpn.", "rpn.", "roi_heads.box_", "roi_heads.mask_"):
        assert any(v > 0 for n, v in grads.items() if n.startswith(part)), f"no gradient reaches {part}"


@pytest.mark.parametrize("backbone", BACKBONES)
def test_images_without_objects_train(backbone) -> None:
    torch.manual_seed(0)
    model = build_model(_spec(backbone))
    empty = [_target([], []), _target([], [])]
    losses = _train_step(model, _images(2, 1), empty)
    assert float(losses["loss_mask"]) == 0.0 and float(losses["loss_box_reg"]) == 0.0
    assert float(losses["loss_rpn_box_reg"]) == 0.0
    # the background is still learnt
    assert float(losses["loss_classifier"]) > 0 and float(losses["loss_objectness"]) > 0
    assert any(v > 0 for v in _grad_norms(model).values())
    # a batch mixing an empty and a non-empty image
    _train_step(model, _images(2, 1), [_target([(10, 12, 30, 28)], [1]), _target([], [])])


@pytest.mark.parametrize(("backbone", "bands"), [("resnet18", 4), ("resnet18", 2), ("efficientnet_lite0", 4),
                                                 ("efficientnet_lite0", 2)])
def test_multiband_input(backbone, bands) -> None:
    model = build_model(_spec(backbone, bands=bands))
    first = model.backbone.body.stem[0] if backbone == "resnet18" else model.backbone.body.stem.conv
    assert first.in_channels == bands
    _train_step(model, _images(2, bands), [_target([(10, 12, 30, 28)], [1]), _target([], [])])
    assert first.weight.grad is not None and float(first.weight.grad.abs().sum()) > 0
    model.eval()
    with torch.no_grad():
        out = model(_images(1, bands))
    assert out[0]["masks"].shape[1:] == (1, 64, 64)
    with pytest.raises(RuntimeError):  # a band-count mismatch is not silently accepted
        model(_images(1, bands + 1))


@pytest.mark.parametrize("backbone", BACKBONES)
def test_eval_output_contract(backbone) -> None:
    torch.manual_seed(0)
    model = build_model(_spec(backbone)).eval()
    with torch.no_grad():
        outputs = model([torch.randn(1, 64, 64), torch.randn(1, 64, 96)])  # sizes differ: no resizing
    assert len(outputs) == 2
    for out, (h, w) in zip(outputs, [(64, 64), (64, 96)]):
        assert set(out) == {"boxes", "labels", "scores", "masks"}
        n = len(out["scores"])
        assert n > 0  # untrained, score threshold 0: detections exist, so the shapes are really checked
        assert out["boxes"].shape == (n, 4) and out["boxes"].dtype == torch.float32
        assert out["labels"].shape == (n,) and out["labels"].dtype == torch.int64
        assert out["scores"].shape == (n,)
        assert out["masks"].shape == (n, 1, h, w)
        assert set(out["labels"].tolist()) <= {1, 2}
        assert float(out["masks"].min()) >= 0.0 and float(out["masks"].max()) <= 1.0
        assert (out["boxes"][:, 2] <= w).all() and (out["boxes"][:, 3] <= h).all()
        assert (out["boxes"][:, :2] >= 0).all()
        assert bool((out["scores"][:-1] >= out["scores"][1:]).all())


def test_config_is_applied() -> None:
    model = build_model(_spec("resnet18"))
    assert model.backbone.out_channels == 32
    assert model.roi_heads.box_head.fc7.out_features == 64
    assert model.roi_heads.box_predictor.cls_score.out_features == 3  # 2 classes + background
    assert model.roi_heads.mask_predictor.mask_fcn_logits.out_channels == 3
    assert model.roi_heads.detections_per_img == 20
    assert model.roi_heads.fg_bg_sampler.batch_size_per_image == 16
    assert isinstance(model.backbone.fpn.inner_blocks[0][1], torch.nn.GroupNorm)
    plain = build_model(_spec("resnet18", fpn_norm="none"))
    assert len(plain.backbone.fpn.inner_blocks[0]) == 1  # conv only


def test_unknown_names_raise_listing_valid_ones() -> None:
    with pytest.raises(ValueError, match="mask_rcnn") as info:
        build_model(ModelSpec(name="t", architecture="yolo"))
    assert "yolo" in str(info.value) and all(name in str(info.value) for name in MODELS)
    with pytest.raises(ValueError, match="resnet18, resnet50, efficientnet_lite0, efficientnet_lite2"):
        build_model(_spec("vgg16"))
    with pytest.raises(ValueError, match="fpn_chanels") as info:
        build_model(_spec("resnet18", fpn_chanels=16))
    assert all(key in str(info.value) for key in DEFAULT_CONFIG)


@pytest.mark.parametrize(("variant", "last_block"), [("efficientnet_lite0", 15), ("efficientnet_lite2", 20)])
def test_efficientnet_imagenet_weights_are_mapped_exactly(variant, last_block) -> None:
    source = torch.load(imagenet_weights_file(variant), map_location="cpu", weights_only=True)
    body = EfficientNetLiteFeatures(in_channels=1, variant=variant)
    counts = load_imagenet_weights(body)
    state = body.state_dict()
    assert counts["loaded"] == len(state)  # every tensor of the module came from the file
    assert counts["loaded"] + counts["skipped_classifier"] == len(source)
    for ours, theirs in [("blocks.5.depthwise.conv.weight", "_blocks.5._depthwise_conv.weight"),
                         (f"blocks.{last_block}.project.bn.running_var", f"_blocks.{last_block}._bn2.running_var"),
                         ("blocks.0.depthwise.bn.bias", "_blocks.0._bn1.bias"),
                         ("stem.bn.running_mean", "_bn0.running_mean")]:
        assert torch.equal(state[ours], source[theirs]), ours
    features = body(torch.zeros(1, 1, 64, 64))
    assert [f.shape[1] for f in features.values()] == body.out_channels
    assert [f.shape[-1] for f in features.values()] == [16, 8, 4, 2]
    # 1-band stem: the RGB kernel summed over its input channels (same response to a grey image)
    rgb = source["_conv_stem.weight"]
    assert torch.allclose(state["stem.conv.weight"], rgb.sum(1, keepdim=True), atol=1e-6)

    if variant != "efficientnet_lite0":
        return
    model = build_model(_spec("efficientnet_lite0", bands=3, pretrained=True, frozen_blocks=2))
    body3 = model.backbone.body
    assert torch.equal(body3.stem.conv.weight, source["_conv_stem.weight"])
    assert torch.equal(body3.blocks[7].expand.conv.weight, source["_blocks.7._expand_conv.weight"])
    assert not any(p.requires_grad for p in body3.stem.parameters())
    assert not any(p.requires_grad for p in body3.blocks[1].parameters())
    assert all(p.requires_grad for p in body3.blocks[2].parameters())
