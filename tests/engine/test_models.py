"""Mask R-CNN: every part learns, the config reaches the modules, bad names, EfficientNet-Lite ImageNet weights.
The contract every architecture shares (losses, empty images, bands, eval outputs): test_model_contract.py."""

import pytest
import torch

from engine.models import MODELS, build_model
from engine.models.backbones.efficientnet_lite import (
    EfficientNetLiteFeatures,
    imagenet_weights_file,
    load_imagenet_weights,
)
from engine.models.detectors.mask_rcnn import MaskRCNNConfig
from engine.spec import ModelSpec, classes_from_names
from tests.engine.model_checks import RCNN, train_step

TINY = RCNN
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
def test_objects_activate_every_loss_and_every_part_learns(backbone) -> None:
    torch.manual_seed(0)
    model = build_model(_spec(backbone))
    targets = [_target([(10, 12, 30, 28), (40, 40, 60, 52)], [1, 2]), _target([(5, 30, 25, 60)], [2])]
    losses = _train_step(model, _images(2, 1), targets)
    assert all(float(v) > 0 for v in losses.values())  # objects present: every loss is active
    grads = _grad_norms(model)
    for part in ("backbone.body.", "backbone.fpn.", "rpn.", "roi_heads.box_", "roi_heads.mask_"):
        assert any(v > 0 for n, v in grads.items() if n.startswith(part)), f"no gradient reaches {part}"


def test_config_is_applied() -> None:
    model = build_model(_spec("resnet18"))
    assert model.backbone.out_channels == 32
    assert model.roi_heads.box_head.fc7.out_features == 64
    assert model.roi_heads.box_predictor.cls_score.out_features == 3  # 2 classes + background
    assert model.roi_heads.mask_predictor.mask_fcn_logits.out_channels == 3
    assert model.roi_heads.detections_per_img == 20
    assert model.roi_heads.fg_bg_sampler.batch_size_per_image == 16
    assert model.roi_heads.score_thresh == 0.0 and model.roi_heads.nms_thresh == 0.5
    assert model.rpn._pre_nms_top_n == {"training": 64, "testing": 64}
    assert model.rpn._post_nms_top_n == {"training": 32, "testing": 32}
    assert model.rpn.anchor_generator.sizes == ((8,), (16,), (32,), (64,), (128,))
    assert len(model.roi_heads.mask_head) == 1 and model.roi_heads.mask_head[0][0].out_channels == 16
    assert isinstance(model.backbone.fpn.inner_blocks[0][1], torch.nn.GroupNorm)
    plain = build_model(_spec("resnet18", fpn_norm="none"))
    assert len(plain.backbone.fpn.inner_blocks[0]) == 1  # conv only


def test_unknown_names_raise_listing_valid_ones() -> None:
    with pytest.raises(ValueError, match="mask_rcnn") as info:
        build_model(ModelSpec(name="t", architecture="yolo"))
    assert "yolo" in str(info.value) and all(name in str(info.value) for name in MODELS)
    with pytest.raises(ValueError, match="'backbone': 'vgg16' is not one of resnet18, resnet50, efficientnet_lite0, "
                                         "efficientnet_lite2"):
        build_model(_spec("vgg16"))
    with pytest.raises(ValueError, match="unknown mask_rcnn config key.*'fpn_chanels'") as info:
        build_model(_spec("resnet18", fpn_chanels=16))
    assert all(key in str(info.value) for key in MaskRCNNConfig.__dataclass_fields__)
    with pytest.raises(ValueError, match="no pretrained weights for 'resnet18'"):
        build_model(_spec("resnet18", pretrained=True))


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
