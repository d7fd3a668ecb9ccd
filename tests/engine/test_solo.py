"""SOLOv2 and FACENet: target assignment, Matrix NMS, DCNv2, SEM and FACE-FPN at start, every switch, boxes as
mask extents, learning one object, the configs, and a tiny CLI train -> evaluate -> segment. The contract every
architecture shares (losses, empty images, bands, eval outputs): test_model_contract.py."""
from __future__ import annotations

import itertools
import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torchvision.ops import deform_conv2d

from engine.models import MODELS, build_model
from engine.models.detectors.facenet import FACENetConfig
from engine.models.detectors.solov2 import SOLOv2Config
from engine.models.layers.dcnv2 import ModulatedDeformConv2d, sampled_deform_conv2d
from engine.models.layers.transform import pad_to_batch
from engine.models.necks.face_fpn import FaceFPN
from engine.models.necks.sem import SemanticEnhancement, TrunkWithSEM
from engine.models.solo.losses import dice_loss
from engine.models.solo.matrix_nms import matrix_nms, point_nms
from engine.models.solo.targets import assign_levels, centres_of_mass, mask_targets
from engine.spec import ModelSpec, classes_from_names
from tests.engine.model_checks import train_step

TINY = {"fpn_channels": 32, "head_channels": 32, "head_convs": 2, "mask_feature_channels": 16,
        "mask_channels": 32, "aspp_dilations": [1, 2, 3], "detections_per_img": 20}
LOSSES = {"loss_category", "loss_mask"}
GRIDS = SOLOv2Config().grids
RANGES = SOLOv2Config().scale_ranges


def _spec(arch: str = "solov2", bands: int = 1, classes: tuple[str, ...] = ("ship", "tank"), **config) -> ModelSpec:
    return ModelSpec(name="t", architecture=arch, config={**TINY, **config}, classes=classes_from_names(classes),
                     bands=bands)


def _target(boxes: list[tuple[int, int, int, int]], labels: list[int], size: tuple[int, int] = (64, 64)) -> dict:
    """Rectangles (x0, y0, x1, y1) -> torchvision target with matching uint8 masks."""
    masks = torch.zeros(len(boxes), *size, dtype=torch.uint8)
    for k, (x0, y0, x1, y1) in enumerate(boxes):
        masks[k, y0:y1, x0:x1] = 1
    return {"boxes": torch.tensor(boxes, dtype=torch.float32).reshape(-1, 4),
            "labels": torch.tensor(labels, dtype=torch.int64), "masks": masks}


def _images(n: int, bands: int = 1, size: tuple[int, int] = (64, 64)) -> list[torch.Tensor]:
    g = torch.Generator().manual_seed(0)
    return [torch.randn(bands, *size, generator=g) for _ in range(n)]


def _train_step(model: torch.nn.Module, images, targets) -> dict[str, torch.Tensor]:
    return train_step(model, images, targets, LOSSES)


def _grad_reaches(model: torch.nn.Module, prefix: str) -> bool:
    return any(p.grad is not None and float(p.grad.abs().sum()) > 0
               for n, p in model.named_parameters() if n.startswith(prefix))


# ------------------------------------------------------------------------------------ target assignment


def _expected_cells(centre: float, half: float, size: int, grid: int) -> list[int]:
    """Cells whose pixel span [i, i+1) * size / grid meets [centre - half, centre + half], within 1 of the
    cell holding the centre (the rule written as interval overlap, not as the floor arithmetic)."""
    centre_cell = next(i for i in range(grid) if i * size / grid <= centre < (i + 1) * size / grid)
    return [i for i in range(grid) if abs(i - centre_cell) <= 1
            and i * size / grid <= centre + half and (i + 1) * size / grid > centre - half]


def test_target_cells_of_an_object_of_known_size_and_centre() -> None:
    # 60 x 40 rectangle centred at (130, 100) in a 256 x 256 image: scale sqrt(2400) = 49 -> levels 0 and 1
    target = _target([(100, 80, 160, 120)], [2], size=(256, 256))
    levels = assign_levels(target["boxes"], target["labels"], target["masks"], (256, 256), GRIDS, RANGES, 0.2)
    positive_levels = [k for k, t in enumerate(levels) if len(t.cells)]
    assert positive_levels == [0, 1]
    # worked by hand for S = 40 (cells of 6.4 px): rows [96, 104] -> 15..16, cols [124, 136] -> 19..21
    rows, cols = (levels[0].cells // 40).tolist(), (levels[0].cells % 40).tolist()
    assert sorted(set(rows)) == [15, 16] and sorted(set(cols)) == [19, 20, 21] and len(rows) == 6
    for level in positive_levels:
        grid = GRIDS[level]
        expected = {r * grid + c for r in _expected_cells(100.0, 4.0, 256, grid)
                    for c in _expected_cells(130.0, 6.0, 256, grid)}
        assert set(levels[level].cells.tolist()) == expected
        assert (levels[level].labels.flatten()[levels[level].cells] == 2).all()
        assert int((levels[level].labels > 0).sum()) == len(expected)
        assert levels[level].objects.tolist() == [0] * len(expected)


@pytest.mark.parametrize(("side", "levels"), [(30, [0]), (48, [0, 1]), (96, [0, 1, 2]), (150, [1, 2]),
                                              (200, [2, 3])])
def test_scale_ranges_pick_levels(side, levels) -> None:
    target = _target([(10, 20, 10 + side, 20 + side)], [1], size=(256, 256))
    out = assign_levels(target["boxes"], target["labels"], target["masks"], (256, 256), GRIDS, RANGES, 0.2)
    assert [k for k, t in enumerate(out) if len(t.cells)] == levels


def test_large_object_region_is_clipped_to_three_by_three_and_smaller_object_wins() -> None:
    # 90 x 90 square: sigma region spans more than 3 cells on level 0 (S = 40 over 128 px) -> clipped to 3 x 3
    target = _target([(10, 10, 100, 100), (50, 50, 62, 62)], [1, 2], size=(128, 128))
    out = assign_levels(target["boxes"], target["labels"], target["masks"], (128, 128), GRIDS, RANGES, 0.2)
    grid = GRIDS[0]
    owner = torch.full((grid * grid,), -1)
    owner[out[0].cells] = out[0].objects
    owner = owner.reshape(grid, grid)
    small = {(r, c) for r in _expected_cells(56.0, 1.2, 128, grid) for c in _expected_cells(56.0, 1.2, 128, grid)}
    large = {(r, c) for r in _expected_cells(55.0, 9.0, 128, grid) for c in _expected_cells(55.0, 9.0, 128, grid)}
    assert len(large) == 9  # clipped: without the clip the region would be 18 px / 3.2 px > 3 cells wide
    assert {tuple(rc) for rc in (owner == 1).nonzero().tolist()} == small
    assert {tuple(rc) for rc in (owner == 0).nonzero().tolist()} == large - small


def test_centre_of_mass_of_an_irregular_mask() -> None:
    mask = np.zeros((32, 48), np.uint8)
    mask[4:20, 5:9] = 1  # L shape
    mask[16:20, 9:30] = 1
    rows, cols = np.nonzero(mask)
    expected = [cols.mean() + 0.5, rows.mean() + 0.5]
    assert centres_of_mass(torch.from_numpy(mask)[None])[0].tolist() == pytest.approx(expected, abs=1e-4)


def test_no_objects_and_empty_masks_give_no_positive_cells() -> None:
    empty = _target([], [])
    out = assign_levels(empty["boxes"], empty["labels"], empty["masks"], (64, 64), GRIDS, RANGES, 0.2)
    assert len(out) == 5 and all(len(t.cells) == 0 and int(t.labels.sum()) == 0 for t in out)
    blank = _target([(10, 10, 20, 20)], [1])
    blank["masks"][:] = 0  # a box whose mask vanished (e.g. cropped away)
    out = assign_levels(blank["boxes"], blank["labels"], blank["masks"], (64, 64), GRIDS, RANGES, 0.2)
    assert all(len(t.cells) == 0 for t in out)


def test_mask_targets_are_block_coverage_at_stride_four() -> None:
    masks = torch.zeros(1, 8, 6, dtype=torch.uint8)
    masks[0, 0:2, 0:4] = 1  # half of the first 4 x 4 block
    targets = mask_targets(masks, (16, 16), 4)
    assert targets.shape == (1, 4, 4)
    assert float(targets[0, 0, 0]) == 0.5 and float(targets.sum()) == 0.5
    assert mask_targets(masks[:0], (16, 16)).shape == (0, 4, 4)


# -------------------------------------------------------------------------------------- NMS and losses


def _brute_force_matrix_nms(masks: np.ndarray, labels: np.ndarray, scores: np.ndarray, kernel: str,
                            sigma: float) -> np.ndarray:
    n = len(scores)
    flat = masks.reshape(n, -1).astype(bool)
    iou = np.zeros((n, n))
    for i, j in itertools.product(range(n), range(n)):
        union = np.logical_or(flat[i], flat[j]).sum()
        iou[i, j] = np.logical_and(flat[i], flat[j]).sum() / union if union else 0.0
    f = (lambda x: math.exp(-sigma * x * x)) if kernel == "gaussian" else (lambda x: 1 - x)
    out = []
    for j in range(n):
        decay = 1.0
        for i in range(j):
            if labels[i] != labels[j]:
                continue
            compensate = max([iou[k, i] for k in range(i) if labels[k] == labels[i]], default=0.0)
            decay = min(decay, f(iou[i, j]) / f(compensate))
        out.append(scores[j] * decay)
    return np.array(out)


@pytest.mark.parametrize("kernel", ["gaussian", "linear"])
def test_matrix_nms_equals_brute_force(kernel) -> None:
    rng = np.random.default_rng(1)
    for _ in range(3):
        n = 14
        base = rng.random((4, 12, 12)) > 0.5
        masks = np.stack([base[rng.integers(4)] ^ (rng.random((12, 12)) > 0.85) for _ in range(n)])
        labels = rng.integers(0, 3, n)
        scores = np.sort(rng.random(n))[::-1].copy()
        expected = _brute_force_matrix_nms(masks, labels, scores, kernel, 2.0)
        got = matrix_nms(torch.from_numpy(masks), torch.from_numpy(labels), torch.from_numpy(scores).float(),
                         kernel, 2.0)
        assert got.numpy() == pytest.approx(expected, abs=1e-5)
        assert (expected < scores - 1e-6).any()  # the case really decays some scores


def test_matrix_nms_duplicates() -> None:
    mask = torch.zeros(1, 8, 8, dtype=torch.bool)
    mask[0, 2:6, 2:6] = True
    masks = mask.repeat(3, 1, 1)
    scores = torch.tensor([0.9, 0.8, 0.7])
    got = matrix_nms(masks, torch.tensor([0, 0, 1]), scores, "gaussian", 2.0)
    assert got.tolist() == pytest.approx([0.9, 0.8 * math.exp(-2.0), 0.7])  # another class is not decayed


def test_point_nms_keeps_local_maxima() -> None:
    heat = torch.tensor([[0.1, 0.9, 0.2],
                         [0.3, 0.5, 0.8],
                         [0.7, 0.1, 0.4]])[None, None]
    kept = point_nms(heat)[0, 0]
    # each cell against its 2 x 2 window reaching up and left: 0.8 loses to 0.9, the top-left 0.1 survives
    assert torch.equal(kept, torch.tensor([[0.1, 0.9, 0.0], [0.3, 0.0, 0.0], [0.7, 0.0, 0.0]]))


def test_dice_loss() -> None:
    t = torch.zeros(2, 8, 8)
    t[:, 2:5, 2:5] = 1
    perfect = dice_loss(t.clone(), t)
    assert perfect.tolist() == pytest.approx([0.0, 0.0], abs=1e-3)
    disjoint = dice_loss(1 - t, t)
    assert disjoint.tolist() == pytest.approx([1.0, 1.0], abs=1e-6)


# ----------------------------------------------------------------------------------------------- DCNv2


@pytest.mark.parametrize(("stride", "padding", "dilation"), [(1, 1, 1), (2, 1, 1), (1, 2, 2)])
def test_dcnv2_with_zero_offsets_and_unit_mask_is_a_plain_conv(stride, padding, dilation) -> None:
    torch.manual_seed(0)
    dcn = ModulatedDeformConv2d(5, 7, 3, stride=stride, padding=padding, dilation=dilation)
    torch.nn.init.normal_(dcn.bias)
    x = torch.randn(2, 5, 11, 13)
    plain = F.conv2d(x, dcn.weight, dcn.bias, stride=stride, padding=padding, dilation=dilation)
    h, w = plain.shape[-2:]
    out = dcn.modulated_conv(x, torch.zeros(2, 18, h, w), torch.ones(2, 9, h, w))
    assert torch.allclose(out, plain, atol=1e-5)
    # at initialisation the predicted offsets are 0 and the masks sigmoid(0) = 0.5
    initial = dcn(x)
    assert torch.allclose(initial - dcn.bias[:, None, None], 0.5 * (plain - dcn.bias[:, None, None]), atol=1e-5)
    # the zero-initialised offset/mask predictor still learns
    initial.square().sum().backward()
    assert float(dcn.offset_mask.weight.grad.abs().sum()) > 0
    # a one-pixel offset to the right equals the plain conv of the shifted image (interior pixels)
    offset = torch.zeros(2, 18, h, w)
    offset[:, 1::2] = 1.0  # (dy, dx) pairs: dx = 1
    shifted = dcn.modulated_conv(x, offset, torch.ones(2, 9, h, w))
    reference = F.conv2d(torch.roll(x, -1, dims=3), dcn.weight, dcn.bias, stride=stride, padding=padding,
                         dilation=dilation)
    interior = slice(2, w - 3)  # away from the borders, where padding and real pixels differ
    assert torch.allclose(shifted[..., interior], reference[..., interior], atol=1e-5)
    assert not torch.allclose(shifted, out, atol=1e-3)


@pytest.mark.parametrize(("stride", "padding", "dilation", "size"), [(1, 1, 1, (9, 12)), (2, 1, 1, (11, 13)),
                                                                      (1, 2, 2, (8, 8)), (1, 1, 1, (1, 7))])
def test_cpu_deformable_conv_equals_torchvision(stride, padding, dilation, size) -> None:
    """The CPU path (grid_sample + matmul) against torchvision's kernel: outputs and all four gradients, with
    fractional offsets that also send samples outside the image."""
    torch.manual_seed(1)
    dcn = ModulatedDeformConv2d(4, 6, 3, stride=stride, padding=padding, dilation=dilation)
    torch.nn.init.normal_(dcn.bias)
    x = torch.randn(2, 4, *size)
    h, w = F.conv2d(x, dcn.weight, stride=stride, padding=padding, dilation=dilation).shape[-2:]
    offset = 3.0 * torch.randn(2, 18, h, w)
    mask = torch.rand(2, 9, h, w)
    results = []
    for conv in (sampled_deform_conv2d, deform_conv2d):
        inputs = [t.clone().requires_grad_(True) for t in (x, offset, mask)]
        weight, bias = dcn.weight.detach().clone().requires_grad_(True), dcn.bias.detach().clone().requires_grad_(True)
        out = conv(inputs[0], inputs[1], weight, bias, stride=stride, padding=padding, dilation=dilation,
                   mask=inputs[2])
        (out * torch.linspace(-1, 1, out.numel()).view_as(out)).sum().backward()
        results.append([out, *(t.grad for t in inputs), weight.grad, bias.grad])
    for ours, reference in zip(*results, strict=True):
        assert ours.shape == reference.shape
        assert torch.allclose(ours, reference, atol=1e-4, rtol=1e-4)
    outside = (offset.abs() > 6).any()  # some samples left the image: the zero-padding rule was exercised
    assert bool(outside)


def test_sem_starts_as_the_identity_and_its_residual_is_scaled_by_a_learnt_norm() -> None:
    torch.manual_seed(0)
    sem = SemanticEnhancement(24)
    c2 = 5.0 * torch.randn(2, 24, 16, 16)
    out = sem(c2)
    assert torch.equal(out, c2)
    out.square().sum().backward()
    scale = sem.project[1].weight
    assert float(scale.grad.abs().sum()) > 0  # the residual's scale learns from the first step
    # the residual is GroupNorm-ed: its size follows the learnt scale, not the size of C2 or of the 1x1
    with torch.no_grad():
        scale.fill_(0.1)
        sem.project[0].weight.mul_(1000.0)
        residual = sem(c2) - c2
    assert float(residual.std()) == pytest.approx(0.1, rel=0.05)


def test_mask_feature_output_is_signed_without_its_relu() -> None:
    torch.manual_seed(0)
    features = {}
    for relu in (True, False):
        model = build_model(_spec("solov2", **TINY, mask_feature_relu=relu)).train()
        model.mask_branch.register_forward_hook(lambda _m, _i, out, relu=relu: features.__setitem__(relu, out))
        model(_images(1), [_target([(10, 10, 30, 30)], [1])])
    assert float(features[True].min()) >= 0.0
    assert float(features[False].min()) < 0.0 < float(features[False].max())


def test_face_fpn_pyramid_is_signed_and_zero_centred_at_start() -> None:
    # A non-negative pyramid (ReLU after ASPP, unnormalised SCE) made SOLOv2's Dice mask branch collapse:
    # P2..P4 must start zero-centred like an FPN's, whatever the scale of the trunk's features.
    torch.manual_seed(0)
    fpn = FaceFPN([16, 24, 40, 64], 32, (1, 2, 3)).eval()
    features = {f"c{k}": 8.0 * torch.randn(2, c, 64 // 2 ** (k - 2), 64 // 2 ** (k - 2)).relu()
                for k, c in zip((2, 3, 4, 5), (16, 24, 40, 64))}
    with torch.no_grad():
        pyramid = fpn(features)
    for level in ("c2", "c3", "c4"):
        p = pyramid[level]
        assert float((p < 0).float().mean()) > 0.3, level
        assert abs(float(p.mean())) < 0.2 * float(p.std()), level


# ---------------------------------------------------------------------------------------- whole models


SWITCHES = [
    ("solov2", {}),
    ("facenet", {}),
    ("facenet", {"face_fpn": False, "sem": True, "dcn": "none"}),
    ("facenet", {"face_fpn": True, "sem": False, "dcn": "none"}),
    ("solov2", {"dcn": "kernel"}),
    ("facenet", {"dcn": "towers"}),
    ("facenet", {"mask_feature_relu": False}),
]


@pytest.mark.parametrize(("arch", "switches"), SWITCHES)
def test_forward_backward_with_each_switch(arch, switches) -> None:
    torch.manual_seed(0)
    model = build_model(_spec(arch, **switches))
    cfg = {**vars(FACENetConfig() if arch == "facenet" else SOLOv2Config()), **switches}
    assert isinstance(model.backbone.fpn, FaceFPN) == cfg["face_fpn"]
    assert isinstance(model.backbone.body, TrunkWithSEM) == cfg["sem"]
    deformable = {name: any(isinstance(m, ModulatedDeformConv2d) for m in getattr(model.head, name).modules())
                  for name in ("kernel_tower", "category_tower")}
    assert deformable == {"kernel_tower": cfg["dcn"] in ("kernel", "towers"), "category_tower": cfg["dcn"] == "towers"}

    targets = [_target([(10, 12, 30, 28), (40, 40, 60, 52)], [1, 2]), _target([(5, 30, 25, 60)], [2])]
    losses = _train_step(model, _images(2), targets)
    assert losses["loss_category"] > 0 and losses["loss_mask"] > 0
    for part in ("backbone.body.", "backbone.fpn.", "head.kernel_tower.", "head.category_tower.", "mask_branch."):
        assert _grad_reaches(model, part), f"no gradient reaches {part}"
    if cfg["sem"]:
        assert _grad_reaches(model, "backbone.body.sem.project.")
    if cfg["dcn"] != "none":
        assert _grad_reaches(model, "head.kernel_tower.0.offset_mask.")


@pytest.mark.parametrize("arch", ["solov2", "facenet"])
def test_boxes_are_mask_extents_and_untrained_default_thresholds_detect_nothing(arch) -> None:
    torch.manual_seed(0)
    model = build_model(_spec(arch, score_thresh=0.0, update_thresh=0.0)).eval()
    with torch.no_grad():
        outputs = model([torch.randn(1, 64, 96), torch.randn(1, 50, 70)])
    assert all(len(out["scores"]) > 0 for out in outputs)
    for out in outputs:
        for box, mask in zip(out["boxes"], out["masks"][:, 0] >= 0.5):
            rows, cols = mask.any(1).nonzero().flatten(), mask.any(0).nonzero().flatten()
            assert box.tolist() == [cols[0], rows[0], cols[-1] + 1, rows[-1] + 1]
    # default thresholds on an untrained model: the 0.01 prior keeps every cell below 0.1 -> no detections
    default = build_model(_spec(arch)).eval()
    with torch.no_grad():
        empty = default([torch.randn(1, 64, 64)])[0]
    assert len(empty["scores"]) == 0 and empty["masks"].shape == (0, 1, 64, 64)


def test_learns_one_object() -> None:
    """A few optimiser steps on one image with one object: the top detection then covers it."""
    torch.manual_seed(0)
    model = build_model(_spec("solov2", classes=("ship",), head_convs=1))
    image = torch.zeros(1, 64, 64)
    image[0, 20:44, 16:40] = 2.0  # a bright square, 24 x 24, on a dark sea
    target = _target([(16, 20, 40, 44)], [1])
    optimiser = torch.optim.Adam(model.parameters(), lr=2e-3)
    first = None
    for _ in range(40):
        losses = _train_step(model, [image], [target])
        first = first or losses
        optimiser.step()
    assert losses["loss_mask"] < 0.5 * first["loss_mask"] and losses["loss_category"] < first["loss_category"]
    model.eval()
    with torch.no_grad():
        out = model([image])[0]
    assert len(out["scores"]) > 0 and out["labels"][0] == 1
    top = out["masks"][0, 0] >= 0.5
    truth = target["masks"][0].bool()
    assert float((top & truth).sum() / (top | truth).sum()) > 0.5


def test_pad_to_batch() -> None:
    batch, sizes = pad_to_batch([torch.ones(2, 50, 70), torch.ones(2, 64, 33)])
    assert batch.shape == (2, 2, 64, 96) and sizes == [(50, 70), (64, 33)]
    assert float(batch[0].sum()) == 2 * 50 * 70 and float(batch[1].sum()) == 2 * 64 * 33  # zeros bottom/right


def test_registry_and_config_validation() -> None:
    assert {"solov2", "facenet"} <= set(MODELS)
    facenet, solov2 = FACENetConfig(), SOLOv2Config()
    assert (facenet.face_fpn, facenet.sem, facenet.dcn) == (True, True, "kernel")
    assert (solov2.face_fpn, solov2.sem, solov2.dcn) == (False, False, "none")
    assert vars(facenet) == {**vars(solov2), "face_fpn": True, "sem": True, "dcn": "kernel"}
    with pytest.raises(ValueError, match="unknown facenet config key") as info:
        build_model(_spec("facenet", grid=[4]))
    assert "'grid'" in str(info.value) and all(key in str(info.value) for key in FACENetConfig.__dataclass_fields__)
    with pytest.raises(ValueError, match="none, kernel, towers"):
        build_model(_spec("solov2", dcn="head"))
    with pytest.raises(ValueError, match="resnet18, resnet50, efficientnet_lite0"):
        build_model(_spec("solov2", backbone="vgg16"))
    with pytest.raises(ValueError, match="'grids': expected a list of 5 int"):
        build_model(_spec("solov2", grids=[40, 36, 24]))
    model = build_model(_spec("solov2", grids=[8, 7, 6, 5, 4]))
    kernels, categories = model.head([torch.zeros(1, 32, s, s) for s in (16, 8, 4, 2, 1)])
    assert [k.shape[-1] for k in kernels] == [8, 7, 6, 5, 4] and categories[0].shape == (1, 2, 8, 8)


# ------------------------------------------------------------------------------------------ CLI chain


@pytest.mark.filterwarnings("ignore::rasterio.errors.NotGeoreferencedWarning")
def test_cli_train_evaluate_segment_facenet(tmp_path: Path) -> None:
    from engine.cli import main
    from tests.data.make_fixtures import write_coco_dataset, write_scene_geotiff

    coco = write_coco_dataset(tmp_path / "coco", n_images=4, size=(96, 128), class_names=("ship",))
    run = tmp_path / "run"
    config = {**TINY, "score_thresh": 0.0, "update_thresh": 0.0}
    assert main(["train", "--arch", "facenet", "--coco", str(coco), "--images", str(coco.parent),
                 "--val-coco", str(coco), "--out", str(run), "--config", json.dumps(config), "--epochs", "1",
                 "--batch-size", "2", "--max-iters-per-epoch", "2", "--warmup-iters", "1", "--lr", "0.005",
                 "--workers", "0", "--threads", "1", "--crop-size", "64", "--gsd", "10"]) == 0
    records = [json.loads(line) for line in (run / "log.jsonl").read_text().splitlines()]
    epoch = [r for r in records if r["type"] == "epoch"][0]
    assert math.isfinite(epoch["train_loss"]) and epoch["val"]["images"] == 4
    metrics_path = tmp_path / "metrics.json"
    assert main(["evaluate", "--checkpoint", str(run / "best.pt"), "--coco", str(coco), "--images",
                 str(coco.parent), "--out", str(metrics_path)]) == 0
    assert set(json.loads(metrics_path.read_text())["segm"]) == {"AP", "AP50", "AP75", "APs", "APm", "APl"}
    raster = tmp_path / "scene.tif"
    write_scene_geotiff(raster, height=160, width=160)
    out = tmp_path / "ships.gpkg"
    assert main(["segment", str(raster), "--model", str(run / "best.pt"), "--out", str(out),
                 "--score-threshold", "0", "--tile-size", "96", "--overlap", "32", "--progress", "none"]) == 0
    assert out.is_file()
