"""HQ-ISNet and Cascade Mask R-CNN: HRNet/HRFPN shapes, ISNetV2 mask flow, cascade inference rules, every
switch combination training, the configs, and a tiny CLI train + evaluate. The contract every architecture
shares (losses, empty images, bands, eval outputs): test_model_contract.py."""

import json
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from torchvision.ops import FeaturePyramidNetwork

from engine.cli import main
from engine.models import build_model
from engine.models.backbones.hrnet import HRNetFeatures
from engine.models.config import parse_config
from engine.models.detectors.cascade_mask_rcnn import CascadeConfig, HQISNetConfig
from engine.models.heads.cascade import cascade_box_loss, postprocess_detections
from engine.models.necks.fpn import BackboneWithFPN
from engine.models.necks.hrfpn import HRFPN
from engine.spec import ModelSpec, classes_from_names
from tests.data.make_fixtures import write_coco_dataset
from tests.engine.model_checks import HRNET, RCNN, train_step
from tests.engine.test_models import _images, _target  # rectangle targets, seeded random images

TINY = {**HRNET, **RCNN}
WIDTHS = {18: [18, 36, 72, 144], 32: [32, 64, 128, 256], 40: [40, 80, 160, 320]}
STAGE_LOSSES = {f"loss_{kind}_s{s}" for kind in ("classifier", "box_reg", "mask") for s in (1, 2, 3)}
LOSSES = STAGE_LOSSES | {"loss_objectness", "loss_rpn_box_reg"}


def _spec(arch: str = "hq_isnet", bands: int = 1, **config) -> ModelSpec:
    return ModelSpec(name="t", architecture=arch, config={**TINY, **config},
                     classes=classes_from_names(["ship", "tank"]), bands=bands)


def _train_step(model: torch.nn.Module, images, targets) -> dict[str, torch.Tensor]:
    return train_step(model, images, targets, LOSSES)


def _has_grad(module: torch.nn.Module) -> bool:
    return any(p.grad is not None and float(p.grad.abs().sum()) > 0 for p in module.parameters())


# --------------------------------------------------------------------------------------- HRNet, HRFPN


@pytest.mark.parametrize("width", [18, 32, 40])
def test_hrnet_stage_outputs_and_hrfpn_levels(width) -> None:
    torch.manual_seed(0)
    body = HRNetFeatures(width, in_channels=1, blocks=1, modules=(1, 1, 1)).eval()
    x = torch.randn(1, 1, 64, 96)
    with torch.no_grad():
        xs = [body.layer1(body.stem(x))]
        assert xs[0].shape == (1, 256, 16, 24)
        for n_branches, transition, stage in zip((2, 3, 4), body.transitions, body.stages):
            xs = stage(transition(xs))
            assert [tuple(t.shape) for t in xs] == [(1, WIDTHS[width][i], 16 >> i, 24 >> i) for i in range(n_branches)]
        features = body(x)
    assert list(features) == ["c2", "c3", "c4", "c5"] and body.out_channels == WIDTHS[width]
    assert all(torch.equal(a, b) for a, b in zip(features.values(), xs))

    neck = HRFPN(body.out_channels, out_channels=32).eval()
    assert neck.reduction[0].in_channels == 15 * width  # 270 / 480 / 600 concatenated channels
    with torch.no_grad():
        levels = neck(features)
    expected = {"c2": (16, 24), "c3": (8, 12), "c4": (4, 6), "c5": (2, 3), "pool": (1, 2)}
    assert {k: tuple(v.shape) for k, v in levels.items()} == {k: (1, 32, *hw) for k, hw in expected.items()}
    fpn = BackboneWithFPN(torch.nn.Identity(), body.out_channels, 32, "gn").eval()
    with torch.no_grad():  # same keys and level sizes as the FPN, so the RPN and RoIAlign take either
        assert {k: v.shape for k, v in fpn(features).items()} == {k: v.shape for k, v in levels.items()}


def test_hrnet_w18_matches_the_published_size_and_takes_any_band_count() -> None:
    full = HRNetFeatures(18, in_channels=3, norm="bn")
    assert 9.5e6 < sum(p.numel() for p in full.parameters()) < 9.65e6  # HRNetV2-W18 trunk: 9.56 M
    assert [len(s) for s in full.stages] == [1, 4, 3]
    assert len(full.layer1) == 4 and len(full.stages[1][0].branches[2]) == 4
    five = HRNetFeatures(18, in_channels=5, blocks=1, modules=(1, 1, 1))
    assert five.stem[0][0].in_channels == 5
    assert five(torch.randn(2, 5, 32, 32))["c5"].shape == (2, 144, 1, 1)


def test_hrfpn_levels_are_average_pooled_from_one_map() -> None:
    neck = HRFPN([4, 8, 16, 32], out_channels=4, norm="none")
    with torch.no_grad():
        for conv in neck.level_convs:  # identity 3x3 convs expose the pooled maps
            torch.nn.init.dirac_(conv.weight)
            conv.bias.zero_()
        branches = {f"c{i + 2}": torch.randn(1, c, 32 >> i, 32 >> i) for i, c in enumerate([4, 8, 16, 32])}
        levels = neck(branches)
    for i, name in enumerate(["c3", "c4", "c5", "pool"], start=1):
        torch.testing.assert_close(levels[name], F.avg_pool2d(levels["c2"], 2**i))
    assert not torch.equal(levels["c2"][:, :, ::2, ::2], levels["c3"])  # pooled, not subsampled


# ---------------------------------------------------------------------------------------- ISNetV2 flow


def test_isnetv2_bridge_feeds_later_mask_heads() -> None:
    torch.manual_seed(0)
    v2 = build_model(_spec(mask_flow="isnetv2")).eval()
    heads = v2.roi_heads
    assert heads.mask_heads[0].bridge is None and all(h.bridge is not None for h in heads.mask_heads[1:])
    roi_features = torch.randn(5, 32, 14, 14)
    with torch.no_grad():
        logits, features = heads.mask_forward(roi_features, last_stage=2)
        assert [tuple(f.shape) for f in features] == [(5, 16, 14, 14)] * 3 and logits[2].shape == (5, 3, 28, 28)
        v1 = build_model(_spec(mask_flow="isnetv1")).eval()
        missing, unexpected = v1.load_state_dict(v2.state_dict(), strict=False)
        assert not missing and unexpected and all(".bridge." in k for k in unexpected)
        plain_logits, plain_features = v1.roi_heads.mask_forward(roi_features, last_stage=2)
        for head in heads.mask_heads[1:]:
            head.bridge[0].weight.zero_()
            head.bridge[0].bias.zero_()
        zeroed_logits, zeroed_features = heads.mask_forward(roi_features, last_stage=2)
    assert torch.equal(features[0], zeroed_features[0]) and torch.equal(logits[0], zeroed_logits[0])
    for stage in (1, 2):  # the bridge changes stages 2 and 3; zeroed, the heads compute what ISNetV1 does
        assert (features[stage] - zeroed_features[stage]).abs().max() > 1e-3
        assert (logits[stage] - zeroed_logits[stage]).abs().max() > 1e-4
        torch.testing.assert_close(zeroed_features[stage], plain_features[stage])
        torch.testing.assert_close(zeroed_logits[stage], plain_logits[stage])


@pytest.mark.parametrize("mask_flow", ["isnetv1", "isnetv2"])
def test_stage3_mask_loss_reaches_earlier_mask_heads_only_with_isnetv2(mask_flow) -> None:
    torch.manual_seed(0)
    model = build_model(_spec(mask_flow=mask_flow)).train()
    losses = model(_images(1, 1), [_target([(10, 12, 30, 28), (40, 40, 60, 52)], [1, 2])])
    assert float(losses["loss_mask_s3"].detach()) > 0
    losses["loss_mask_s3"].backward()
    first, second, third = model.roi_heads.mask_heads
    assert _has_grad(third.convs) and _has_grad(third.predictor)
    assert not _has_grad(first.predictor) and not _has_grad(second.predictor)  # their logits are not in the loss
    if mask_flow == "isnetv2":
        assert _has_grad(third.bridge) and _has_grad(second.bridge)
        assert _has_grad(second.convs) and _has_grad(first.convs)
    else:
        assert not _has_grad(first) and not _has_grad(second)


# ------------------------------------------------------------------------------------ cascade rules


def test_stage_settings_from_the_config() -> None:
    heads = build_model(_spec()).roi_heads
    assert [m.high_threshold for m in heads.matchers] == [0.5, 0.6, 0.7]
    assert [m.low_threshold for m in heads.matchers] == [0.5, 0.6, 0.7]
    assert [c.weights for c in heads.box_coders] == [(10, 10, 5, 5), (20, 20, 10, 10), (30, 30, 15, 15)]
    assert heads.loss_weights == [1.0, 0.5, 0.25]
    assert all(p.bbox_pred.out_features == 4 and p.cls_score.out_features == 3 for p in heads.box_predictors)
    assert heads.mask_roi_pool.output_size == (14, 14) and heads.box_roi_pool.output_size == (7, 7)
    two = build_model(_spec(cascade_iou_thresholds=[0.5, 0.7], cascade_box_weights=[[10, 10, 5, 5]] * 2,
                            cascade_loss_weights=[1, 1])).roi_heads
    assert two.num_stages == 2 and len(two.mask_heads) == 2


def test_inference_averages_stage_scores_and_keeps_the_last_stage_boxes() -> None:
    torch.manual_seed(0)
    model = build_model(_spec()).eval()
    heads = model.roi_heads
    class_bias = [[0.0, 2.0, 0.0], [0.0, 0.0, 0.0], [1.0, 0.0, 3.0]]
    dx_bias = [1.0, 0.0, 3.0]  # stage 1: +0.1 w (weight 10), stage 2: none, stage 3: +0.1 w (weight 30)
    mask_bias = [-1.0, 0.5, 2.0]
    with torch.no_grad():
        for stage in range(3):
            predictor = heads.box_predictors[stage]
            predictor.cls_score.weight.zero_()
            predictor.cls_score.bias.copy_(torch.tensor(class_bias[stage]))
            predictor.bbox_pred.weight.zero_()
            predictor.bbox_pred.bias.copy_(torch.tensor([dx_bias[stage], 0.0, 0.0, 0.0]))
            logits_layer = heads.mask_heads[stage].predictor.mask_fcn_logits
            logits_layer.weight.zero_()
            logits_layer.bias.fill_(mask_bias[stage])
        image = _images(1, 1)
        features = model.backbone(torch.stack(image))
        detections, _ = heads(features, [torch.tensor([[10.0, 10.0, 30.0, 30.0]])], [(64, 64)])
    probs = torch.stack([torch.softmax(torch.tensor(b), 0) for b in class_bias]).mean(0)
    det = detections[0]
    assert det["labels"].tolist() == [2, 1]  # one box, one detection per class, sorted by score
    torch.testing.assert_close(det["scores"], probs[[2, 1]])
    torch.testing.assert_close(det["boxes"], torch.tensor([[14.0, 10.0, 34.0, 30.0]] * 2))
    expected_mask = torch.sigmoid(torch.tensor(mask_bias)).mean()
    assert det["masks"].shape == (2, 1, 28, 28)
    torch.testing.assert_close(det["masks"], torch.full((2, 1, 28, 28), float(expected_mask)))


def test_postprocess_thresholds_and_suppresses_per_class() -> None:
    probs = torch.tensor([[0.1, 0.6, 0.3], [0.2, 0.7, 0.1], [0.97, 0.02, 0.01]])
    boxes = torch.tensor([[0.0, 0.0, 10.0, 10.0], [1.0, 0.0, 11.0, 10.0], [30.0, 30.0, 40.0, 40.0]])
    out_boxes, scores, labels = postprocess_detections(probs, boxes, 0.05, 0.5, 100)
    # class 1: boxes 0 and 1 overlap, only the better (0.7) stays; class 2: box 0 (0.3), box 1 (0.1) suppressed
    assert labels.tolist() == [1, 2] and labels.dtype == torch.int64
    torch.testing.assert_close(scores, torch.tensor([0.7, 0.3]))
    torch.testing.assert_close(out_boxes, boxes[[1, 0]])
    assert len(postprocess_detections(probs, boxes, 0.05, 0.5, 1)[0]) == 1
    assert len(postprocess_detections(probs, boxes, 0.99, 0.5, 100)[0]) == 0


def test_box_loss_without_rois_is_zero_and_differentiable() -> None:
    logits, deltas = torch.zeros(0, 3, requires_grad=True), torch.zeros(0, 4, requires_grad=True)
    classification, box = cascade_box_loss(logits, deltas, torch.zeros(0, dtype=torch.int64), torch.zeros(0, 4))
    assert float(classification.detach()) == 0.0 and float(box.detach()) == 0.0
    (classification + box).backward()
    targets = torch.tensor([[0.5, 0, 0, 0], [9.0, 9, 9, 9]])  # the background row's target is ignored
    _, box = cascade_box_loss(torch.zeros(2, 3), torch.zeros(2, 4), torch.tensor([1, 0]), targets)
    assert float(box) == pytest.approx((0.5 - 1 / 18) / 2)


# ------------------------------------------------------------------------------------ switches


@pytest.mark.parametrize("neck", ["fpn", "hrfpn"])
@pytest.mark.parametrize("mask_flow", ["isnetv1", "isnetv2"])
def test_every_switch_combination_trains(neck, mask_flow) -> None:
    torch.manual_seed(0)
    model = build_model(_spec(neck=neck, mask_flow=mask_flow))
    assert isinstance(model.backbone.fpn, HRFPN if neck == "hrfpn" else FeaturePyramidNetwork)
    assert (model.roi_heads.mask_heads[2].bridge is not None) == (mask_flow == "isnetv2")
    targets = [_target([(10, 12, 30, 28), (40, 40, 60, 52)], [1, 2]), _target([(5, 30, 25, 60)], [2])]
    losses = _train_step(model, _images(2, 1), targets)
    assert all(float(losses[name]) > 0 for name in STAGE_LOSSES)  # objects present: every stage loss is active
    for part in (model.backbone.body, model.backbone.fpn, model.rpn, *model.roi_heads.box_heads,
                 *model.roi_heads.box_predictors, *model.roi_heads.mask_heads):
        assert _has_grad(part), f"no gradient reaches {type(part).__name__}"


# ------------------------------------------------------------------------------------------ configs


def test_defaults_and_config_errors() -> None:
    hq = HQISNetConfig()
    assert (hq.backbone, hq.neck, hq.mask_flow) == ("hrnet_w18", "hrfpn", "isnetv2")
    base = CascadeConfig()
    assert (base.backbone, base.neck, base.mask_flow) == ("resnet18", "fpn", "isnetv1")
    assert base.cascade_box_weights[2] == (30.0, 30.0, 15.0, 15.0) and base.hrnet_modules == (1, 4, 3)
    two = parse_config(HQISNetConfig, {"cascade_iou_thresholds": [0.5, 0.7], "cascade_box_weights": [[1, 1, 1, 1]] * 2,
                                       "cascade_loss_weights": [1, 1]})
    assert two.cascade_box_weights == ((1.0,) * 4,) * 2
    model = build_model(_spec("hq_isnet", backbone="hrnet_w32"))
    assert isinstance(model.backbone.body, HRNetFeatures) and model.backbone.body.out_channels[0] == 32
    assert type(build_model(_spec("cascade_mask_rcnn")).backbone.body).__name__ == "ResNetFeatures"
    with pytest.raises(ValueError, match="'hrnet_w48' is not one of hrnet_w18, hrnet_w32, hrnet_w40, resnet18"):
        build_model(_spec(backbone="hrnet_w48"))
    with pytest.raises(ValueError, match="hq_isnet config 'neck': 'bifpn' is not one of fpn, hrfpn"):
        build_model(_spec(neck="bifpn"))
    with pytest.raises(ValueError, match="isnetv1, isnetv2"):
        build_model(_spec(mask_flow="htc"))
    with pytest.raises(ValueError, match="'cascade_box_weights': expected a list of 4 float"):
        build_model(_spec(cascade_box_weights=[[10, 10, 5]] * 3))
    with pytest.raises(ValueError, match="mask_fow") as info:
        build_model(_spec(mask_fow="isnetv1"))
    assert "hq_isnet" in str(info.value)
    assert all(key in str(info.value) for key in HQISNetConfig.__dataclass_fields__)
    with pytest.raises(ValueError, match="no pretrained weights for 'hrnet_w18'"):
        build_model(_spec(pretrained=True))
    with pytest.raises(ValueError, match="cascade stages disagree"):
        build_model(_spec(cascade_loss_weights=[1.0, 0.5]))


# --------------------------------------------------------------------------------- CLI train, evaluate


@pytest.mark.filterwarnings("ignore::rasterio.errors.NotGeoreferencedWarning")
def test_cli_trains_and_evaluates_hq_isnet(tmp_path: Path) -> None:
    coco = write_coco_dataset(tmp_path / "coco", n_images=2, size=(64, 64), class_names=("ship",))
    run = tmp_path / "run"
    config = {k: v for k, v in TINY.items() if k != "box_score_thresh"}
    assert main(["train", "--arch", "hq_isnet", "--coco", str(coco), "--images", str(coco.parent), "--val-coco",
                 str(coco), "--out", str(run), "--config", json.dumps(config), "--epochs", "1", "--batch-size", "2",
                 "--crop-size", "64", "--warmup-iters", "1", "--lr", "0.005", "--workers", "0", "--threads", "1",
                 "--no-amp"]) == 0
    records = [json.loads(line) for line in (run / "log.jsonl").read_text().splitlines()]
    epoch = [r for r in records if r["type"] == "epoch"]
    assert len(epoch) == 1 and set(epoch[0]["val"]["segm"]) == {"AP", "AP50", "AP75", "APs", "APm", "APl"}
    metrics_path = tmp_path / "metrics.json"
    assert main(["evaluate", "--checkpoint", str(run / "last.pt"), "--coco", str(coco), "--images",
                 str(coco.parent), "--out", str(metrics_path)]) == 0
    metrics = json.loads(metrics_path.read_text())
    assert metrics["images"] == 2 and 0.0 <= metrics["segm"]["AP"] <= 100.0
