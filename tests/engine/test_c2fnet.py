"""C2FNet: the aggregation rule (Eq. 1), window selection, the refinement path with hand-set sub-models,
training losses and gradients of both stages, refine on/off with the same weights, empty images, bands,
zoom, config errors and the eval output contract (semantic_fpn sub-models)."""
from __future__ import annotations

import math

import pytest
import torch
from torch import Tensor, nn

from engine.models import MODELS, Architecture, build_model, resolve_config
from engine.models.semantic.c2fnet import C2FNet, aggregate, select_windows, window_counts, window_grid, window_starts
from engine.models.semantic.common import SemanticModel
from engine.spec import IGNORE_INDEX, ModelSpec, classes_from_names
from tests.engine.model_checks import train_step

FPN = {"architecture": "semantic_fpn", "config": {"fpn_channels": 16, "decoder_channels": 8}}
TINY = {"architecture": "tiny_semantic", "config": {}}
CLASSES = ("building", "vehicle")  # 1 = building (large), 2 = vehicle (small)


class TinySemantic(SemanticModel):
    """1x1 conv: [B,bands,H,W] -> logits [B,K+1,H,W]; weights can be set by hand."""

    def __init__(self, bands: int, num_classes: int) -> None:
        super().__init__()
        self.conv = nn.Conv2d(bands, num_classes + 1, 1)

    def logits(self, batch: Tensor) -> Tensor:
        return self.conv(batch)


@pytest.fixture
def tiny_registered(monkeypatch):
    monkeypatch.setitem(MODELS, "tiny_semantic", Architecture(
        "tiny_semantic", "semantic", lambda spec: TinySemantic(spec.bands, spec.num_classes)))


def _spec(bands: int = 1, classes: tuple[str, ...] = CLASSES, **config) -> ModelSpec:
    base = {"coarse": FPN, "fine": FPN, "small_classes": ["vehicle"], "window": 32, "stride": 16, "top_k": 4}
    return ModelSpec(name="t", architecture="c2fnet", task="semantic", config={**base, **config},
                     classes=classes_from_names(list(classes)), bands=bands)


def _set_conv(model: TinySemantic, weight: list[list[float]], bias: list[float]) -> None:
    with torch.no_grad():
        model.conv.weight.copy_(torch.tensor(weight)[:, :, None, None])
        model.conv.bias.copy_(torch.tensor(bias))


def _grad_reaches(model: nn.Module, prefix: str) -> bool:
    return any(p.grad is not None and float(p.grad.abs().sum()) > 0
               for n, p in model.named_parameters() if n.startswith(prefix))


def _softmax(scores: list[float]) -> list[float]:
    total = sum(math.exp(s) for s in scores)
    return [math.exp(s) / total for s in scores]


# ---------------------------------------------------------------- aggregation (Eq. 1)

def _hand_case() -> tuple[Tensor, Tensor]:
    """2x2 pixels, classes (background, building, vehicle); vehicle is small.
    (0,0) case 1: coarse vehicle, fine 0.1; (0,1) case 2: coarse background, fine 0.8;
    (1,0) no conflict: coarse building, fine 0.2; (1,1) no conflict: coarse vehicle, fine 0.9."""
    pixels = [[0.1, 0.3, 0.6], [0.5, 0.2, 0.3], [0.2, 0.7, 0.1], [0.1, 0.2, 0.7]]
    coarse = torch.tensor(pixels).T.reshape(3, 2, 2)
    fine = torch.tensor([[0.1, 0.8], [0.2, 0.9]])
    return coarse, fine


def test_aggregate_both_cases_and_unchanged_pixels():
    coarse, fine = _hand_case()
    out = aggregate(coarse, fine, [2])
    # case 1: the fine background vote 1 - 0.1 goes to the most probable non-small class (building 0.3)
    assert out[:, 0, 0].tolist() == pytest.approx(_softmax([0.1, 0.3 + 0.9, 0.6]), abs=1e-6)
    assert int(out[:, 0, 0].argmax()) == 1  # the fine model overruled the coarse "vehicle"
    # case 2: the most probable small class (vehicle 0.3) gets + 0.8
    assert out[:, 0, 1].tolist() == pytest.approx(_softmax([0.5, 0.2, 0.3 + 0.8]), abs=1e-6)
    assert int(out[:, 0, 1].argmax()) == 2
    # no conflict: coarse probabilities untouched
    assert torch.equal(out[:, 1, 0], coarse[:, 1, 0]) and torch.equal(out[:, 1, 1], coarse[:, 1, 1])
    assert torch.allclose(out.sum(0), torch.ones(2, 2), atol=1e-6)


def test_aggregate_literal_case1_and_several_small_classes():
    coarse, fine = _hand_case()
    literal = aggregate(coarse, fine, [2], case1_rule="literal")
    assert literal[:, 0, 0].tolist() == pytest.approx(_softmax([0.1, 0.3, 0.6 + 0.9]), abs=1e-6)
    assert torch.equal(literal[:, 0, 1], aggregate(coarse, fine, [2])[:, 0, 1])  # case 2 is the same
    # classes (bg, small a, small b, large): case 2 boosts the larger of the small-class probabilities
    coarse4 = torch.tensor([0.4, 0.1, 0.2, 0.3]).reshape(4, 1, 1)
    coarse4 = torch.cat([coarse4, torch.tensor([0.1, 0.6, 0.1, 0.2]).reshape(4, 1, 1)], dim=2)  # 2nd: small a
    out = aggregate(coarse4, torch.tensor([[0.7, 0.7]]), [1, 2])
    assert out[:, 0, 0].tolist() == pytest.approx(_softmax([0.4, 0.1, 0.2 + 0.7, 0.3]), abs=1e-6)
    assert torch.equal(out[:, 0, 1], coarse4[:, 0, 1])
    with pytest.raises(ValueError, match="case1_rule"):
        aggregate(coarse, fine, [2], case1_rule="other-way")


def test_aggregate_patch_without_coarse_small_object_is_returned_as_is():
    coarse = torch.tensor([[0.6, 0.7], [0.3, 0.2], [0.1, 0.1]]).reshape(3, 1, 2)
    out = aggregate(coarse, torch.tensor([[0.99, 0.9]]), [2])  # fine says small, coarse has no small pixel
    assert torch.equal(out, coarse)


def test_aggregate_random_cases():
    g = torch.Generator().manual_seed(3)
    for _ in range(30):
        classes = int(torch.randint(3, 6, (1,), generator=g))
        coarse = torch.softmax(3 * torch.randn(classes, 6, 7, generator=g), dim=0)
        fine = torch.rand(6, 7, generator=g)
        small_ids = sorted(torch.randperm(classes - 1, generator=g)[: int(torch.randint(1, classes - 1, (1,),
                                                                               generator=g))].add(1).tolist())
        out = aggregate(coarse, fine, small_ids)
        assert torch.allclose(out.sum(0), torch.ones(6, 7), atol=1e-5)
        small = torch.zeros(classes, dtype=torch.bool)
        small[small_ids] = True
        coarse_small = small[coarse.argmax(0)]
        conflict = coarse_small != (fine >= 0.5)
        if coarse_small.any():
            assert torch.equal(out[:, ~conflict], coarse[:, ~conflict])
        best_small = coarse[small].max(0).values
        best_other = coarse[~small].max(0).values
        # the fine vote decides whenever it outweighs the coarse margin
        flips_to_small = ~coarse_small & (fine >= 0.5) & (best_small + fine > best_other)
        flips_to_other = coarse_small & (fine < 0.5) & (best_other + 1 - fine > best_small)
        assert small[out.argmax(0)][flips_to_small].all()
        assert not small[out.argmax(0)][flips_to_other].any()


# ---------------------------------------------------------------- window selection

def test_window_starts_cover_the_axis():
    assert window_starts(96, 32, 16) == [0, 16, 32, 48, 64]
    assert window_starts(100, 32, 16) == [0, 16, 32, 48, 64, 68]  # last window flush with the edge
    assert window_starts(20, 32, 16) == [0]
    boxes = window_grid(20, 50, 32, 16)
    assert boxes.tolist() == [[0, 0, 32, 20], [16, 0, 48, 20], [18, 0, 50, 20]]


def test_select_windows_picks_the_windows_around_the_blob():
    small = torch.zeros(80, 96, dtype=torch.bool)
    small[40:46, 60:66] = True  # 36-pixel blob, rows 40..45, cols 60..65
    small[5:7, 5:7] = True  # 4-pixel blob far away
    boxes, counts = select_windows(small, window=32, stride=8, top_k=100)
    full = counts == 36
    x0, y0 = boxes[:, 0], boxes[:, 1]
    # windows holding the whole big blob: y0 in [14, 40], x0 in [34, 60] on the stride-8 grid (+ flush edges)
    expected = {(x, y) for y in window_starts(80, 32, 8) for x in window_starts(96, 32, 8)
                if y <= 40 and y + 32 >= 46 and x <= 60 and x + 32 >= 66}
    assert {(int(a), int(b)) for a, b in zip(x0[full], y0[full])} == expected
    assert full[: len(expected)].all()  # they come first
    assert (counts[1:] <= counts[:-1]).all() and (counts > 0).all()
    top, top_counts = select_windows(small, window=32, stride=8, top_k=3)
    assert len(top) == 3 and (top_counts == 36).all()
    assert select_windows(torch.zeros(40, 40, dtype=torch.bool), 32, 8, 5)[0].shape == (0, 4)


def test_window_counts_match_brute_force_and_nms_thins_overlaps():
    g = torch.Generator().manual_seed(0)
    for _ in range(10):
        height, width = (int(v) for v in torch.randint(10, 70, (2,), generator=g))
        small = torch.rand(height, width, generator=g) < 0.05
        boxes = window_grid(height, width, 24, 8)
        brute = [int(small[y0:y1, x0:x1].sum()) for x0, y0, x1, y1 in boxes.tolist()]
        assert window_counts(small, boxes).tolist() == brute
        top, counts = select_windows(small, 24, 8, 5)
        assert counts.tolist() == sorted([c for c in brute if c > 0], reverse=True)[:5]
    small = torch.zeros(64, 64, dtype=torch.bool)
    small[30:34, 30:34] = True
    thinned, _ = select_windows(small, 32, 4, 100, nms_iou=0.5)
    assert 1 <= len(thinned) < len(select_windows(small, 32, 4, 100)[0])


# ---------------------------------------------------------------- refinement path with hand-set sub-models

def _hand_set_c2fnet(**config) -> C2FNet:
    """Coarse: band 0 > 0 -> vehicle, else background; fine: small-object logit = 4 * band 1."""
    model = build_model(_spec(bands=2, coarse=TINY, fine=TINY, **config)).eval()
    _set_conv(model.coarse, [[0, 0], [-1, 0], [4, 0]], [0.5, 0, 0])
    _set_conv(model.fine, [[0, 0], [0, 4]], [0, 0])
    return model


def test_refinement_changes_only_the_patches_and_follows_the_fine_model(tiny_registered):
    model = _hand_set_c2fnet(window=16, stride=8, top_k=2)
    image = torch.full((2, 48, 64), -1.0)
    image[0, 30:36, 40:46] = 1.0  # coarse vehicle blob
    image[0, 4:6, 4:6] = 1.0  # a smaller coarse blob, outside the top 2 windows: left as the coarse model says
    image[1, 30:33, 40:46] = -1.0  # fine: background on the blob's top half ...
    image[1, 33:36, 40:46] = 1.0  # ... vehicle on its bottom half
    image[1, 26:29, 44:46] = 1.0  # fine says vehicle just above the blob (coarse background)
    with torch.no_grad():
        coarse = model.coarse([image])[0]["probs"]
        probs = model([image])[0]["probs"]
    boxes, _ = select_windows(coarse.argmax(0) == 2, 16, 8, 2)
    covered = torch.zeros(48, 64, dtype=torch.bool)
    for x0, y0, x1, y1 in boxes.tolist():
        covered[y0:y1, x0:x1] = True
    assert covered[30:36, 40:46].all() and not covered[4:6, 4:6].any()
    assert torch.equal(probs[:, ~covered], coarse[:, ~covered])
    labels = probs.argmax(0)
    assert (labels[30:33, 40:46] != 2).all()  # case 1: the fine model removed the top half
    assert (labels[33:36, 40:46] == 2).all()  # agreement: kept
    assert covered[26:29, 44:46].all() and (coarse.argmax(0)[26:29, 44:46] != 2).all()
    assert (labels[26:29, 44:46] == 2).all()  # case 2: the fine model added vehicle pixels
    agree = covered & (image[1] < 0) & (image[0] < 0)  # both say "not small": kept
    assert agree.any() and torch.equal(probs[:, agree], coarse[:, agree])
    assert torch.allclose(probs.sum(0), torch.ones(48, 64), atol=1e-5)


def test_zoom_enlarges_fine_input_and_output_keeps_image_size(tiny_registered):
    model = _hand_set_c2fnet(window=16, stride=8, top_k=3, zoom=2.0)
    seen: list[tuple[int, ...]] = []
    model.fine.register_forward_pre_hook(lambda module, args: seen.extend(tuple(p.shape) for p in args[0]))
    image = torch.full((2, 40, 40), -1.0)
    image[0, 10:14, 10:14] = 1.0
    with torch.no_grad():
        probs = model([image])[0]["probs"]
    assert seen and all(shape == (2, 32, 32) for shape in seen)
    assert probs.shape == (3, 40, 40)
    unzoomed = _hand_set_c2fnet(window=16, stride=8, top_k=3)
    with torch.no_grad():
        reference = unzoomed([image])[0]["probs"]
    # the fine model is a per-pixel function, so zooming in and out again changes little
    assert torch.equal(probs.argmax(0), reference.argmax(0))


def test_training_patches_come_from_ground_truth_small_objects(tiny_registered):
    model = build_model(_spec(bands=2, coarse=TINY, fine=TINY, window=16, stride=8, train_top_k=2, zoom=1.5))
    seen: list[tuple[Tensor, dict]] = []
    model.fine.register_forward_pre_hook(lambda module, args: seen.extend(zip(args[0], args[1])))
    labels = torch.zeros(48, 48, dtype=torch.int64)
    labels[20:24, 30:34] = 2  # vehicle
    labels[0:10, 0:10] = 1  # building (not small)
    labels[30:, :] = IGNORE_INDEX
    train_step(model, [torch.randn(2, 48, 48)], [{"semantic": labels}], {"coarse_loss_ce", "fine_loss_ce"})
    assert len(seen) == 2
    for patch, target in seen:
        assert patch.shape == (2, 24, 24) and target["semantic"].shape == (24, 24)
        assert set(target["semantic"].unique().tolist()) <= {0, 1, IGNORE_INDEX}
        assert int((target["semantic"] == 1).sum()) == 36  # the whole 4x4 blob, zoomed 1.5x
    assert any(bool((target["semantic"] == IGNORE_INDEX).any()) for _, target in seen)
    empty = torch.zeros(48, 48, dtype=torch.int64)
    seen.clear()
    train_step(model, [torch.randn(2, 48, 48)], [{"semantic": empty}], {"coarse_loss_ce", "fine_loss_ce"})
    assert len(seen) == 1 and (seen[0][1]["semantic"] == 0).all()  # one random negative window


# ---------------------------------------------------------------- semantic_fpn sub-models

def test_forward_backward_reaches_both_models():
    torch.manual_seed(0)
    model = build_model(_spec())
    labels = [torch.zeros(64, 64, dtype=torch.int64), torch.zeros(40, 56, dtype=torch.int64)]
    labels[0][10:20, 10:40] = 1
    labels[0][40:44, 30:35] = 2
    labels[1][30:, :] = IGNORE_INDEX
    images = [torch.randn(1, 64, 64), torch.randn(1, 40, 56)]
    targets = [{"semantic": t} for t in labels]
    train_step(model, images, targets, {"coarse_loss_ce", "fine_loss_ce"})
    assert _grad_reaches(model, "coarse.") and _grad_reaches(model, "fine.")
    model.train_coarse = False
    train_step(model, images, targets, {"fine_loss_ce"})
    assert not _grad_reaches(model, "coarse.") and _grad_reaches(model, "fine.")


def test_refine_off_is_the_coarse_model_and_eval_contract():
    torch.manual_seed(1)
    spec = _spec(bands=4, top_k=3, small_classes=None)
    model = build_model(spec).eval()
    without = build_model(ModelSpec.from_dict({**spec.to_dict(), "config": {**spec.config, "refine": False}}))
    without.load_state_dict(model.state_dict())
    without.eval()
    images = [torch.randn(4, 50, 70), torch.randn(4, 20, 24)]  # the second is smaller than the window
    with torch.no_grad():
        coarse = model.coarse(images)
        refined = model(images)
        plain = without(images)
    for image, out, ref, off in zip(images, refined, coarse, plain):
        assert set(out) == {"probs"} and out["probs"].shape == (3, *image.shape[-2:])
        assert torch.allclose(out["probs"].sum(0), torch.ones(image.shape[-2:]), atol=1e-5)
        assert torch.equal(off["probs"], ref["probs"])
    # with every foreground class small and random weights, some window is refined in the big image
    assert not torch.equal(refined[0]["probs"], coarse[0]["probs"])


def test_image_without_objects(tiny_registered):
    model = build_model(_spec(coarse=TINY, fine=FPN))
    labels = torch.zeros(40, 40, dtype=torch.int64)
    losses = train_step(model, [torch.zeros(1, 40, 40)], [{"semantic": labels}], {"coarse_loss_ce", "fine_loss_ce"})
    assert all(torch.isfinite(v) for v in losses.values())
    model.eval()
    _set_conv(model.coarse, [[0], [0], [0]], [1.0, 0, 0])  # coarse: background everywhere
    with torch.no_grad():
        out = model([torch.zeros(1, 40, 40)])[0]["probs"]
        coarse = model.coarse([torch.zeros(1, 40, 40)])[0]["probs"]
    assert torch.equal(out, coarse)


def test_config_errors():
    with pytest.raises(ValueError, match="unknown c2fnet config key"):
        build_model(_spec(windw=3))
    with pytest.raises(ValueError, match="not among"):
        build_model(_spec(small_classes=["ship"]))
    with pytest.raises(ValueError, match="unknown c2fnet.coarse config key.*'arch'; valid keys: architecture, config"):
        build_model(_spec(coarse={"arch": "semantic_fpn"}))
    with pytest.raises(ValueError, match="zoom"):
        build_model(_spec(zoom=0.5))
    for nested in ("c2fnet", "mask_rcnn", "unet"):  # a nested model is a semantic model other than C2FNet
        with pytest.raises(ValueError, match="choose one of farseg, hi_resnet, semantic_fpn"):
            build_model(_spec(fine={"architecture": nested}))
        with pytest.raises(ValueError, match="choose one of farseg, hi_resnet, semantic_fpn"):
            resolve_config("c2fnet", None, {"coarse": {"architecture": nested}})
    with pytest.raises(ValueError, match="unknown semantic_fpn config key"):  # the sub-model's own parser
        resolve_config("c2fnet", None, {"fine": {"config": {"fpn_chanels": 8}}})


def test_resolved_config_spells_out_the_sub_models():
    resolved = resolve_config("c2fnet", "cpu", {"top_k": 8})
    assert resolved["top_k"] == 8 and resolved["train_top_k"] == 4 and resolved["train_coarse"] is False
    assert resolved["small_classes"] == ["vehicle", "ship", "storage_tank"]
    fine = resolved["fine"]
    assert fine["architecture"] == "semantic_fpn" and fine["config"]["backbone"] == "efficientnet_lite0"
    assert fine["config"]["pretrained"] is True and fine["config"]["decoder_channels"] == 128  # defaults filled in
    assert resolve_config("c2fnet", None, resolved) == resolved
