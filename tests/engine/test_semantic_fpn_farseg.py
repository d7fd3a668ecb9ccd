"""Semantic FPN and FarSeg: batching helpers, the F-A loss (CE at step 0, sum-preserving normalised focal weights
at the end, ignored pixels), the loss switch, the step buffer, the F-S relation switches and learning a square.
The contract every architecture shares (losses, empty images, bands, eval outputs): test_model_contract.py."""
from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from engine.models import build_model
from engine.models.losses.fa_loss import SCHEDULES, fa_loss, fa_pixel_weights, focal_share
from engine.models.semantic.common import pad_batch, per_image_probs
from engine.models.semantic.farseg import FarSeg
from engine.spec import IGNORE_INDEX, ModelSpec, classes_from_names
from tests.engine.model_checks import train_step

TINY = {"fpn_channels": 16, "decoder_channels": 8}
SIZES = [(64, 64), (48, 80)]


def _spec(arch: str, bands: int = 1, classes: tuple[str, ...] = ("ship", "tank"), **config) -> ModelSpec:
    return ModelSpec(name="t", architecture=arch, task="semantic", config={**TINY, **config},
                     classes=classes_from_names(classes), bands=bands)


def _images(bands: int = 1, sizes=SIZES, seed: int = 0) -> list[torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return [torch.randn(bands, h, w, generator=g) for h, w in sizes]


def _targets(sizes=SIZES, num_classes: int = 2, seed: int = 0) -> list[dict]:
    """Random class maps with a block of ignored pixels in each."""
    g = torch.Generator().manual_seed(seed)
    targets = []
    for h, w in sizes:
        semantic = torch.randint(0, num_classes + 1, (h, w), generator=g)
        semantic[: h // 4, : w // 4] = IGNORE_INDEX
        targets.append({"semantic": semantic})
    return targets


# ---------------------------------------------------------------- helpers


def test_pad_batch_pads_to_multiple_with_ignored_targets():
    images = [torch.ones(2, 40, 50), torch.full((2, 64, 20), 2.0)]
    targets = [{"semantic": torch.zeros(40, 50, dtype=torch.int64)},
               {"semantic": torch.ones(64, 20, dtype=torch.uint8)}]
    batch, target_map, sizes = pad_batch(images, targets)
    assert batch.shape == (2, 2, 64, 64) and target_map.shape == (2, 64, 64) and target_map.dtype == torch.int64
    assert sizes == [(40, 50), (64, 20)]
    assert torch.equal(batch[0, :, :40, :50], images[0]) and batch[0, :, 40:].abs().sum() == 0
    assert batch[1, :, :, 20:].abs().sum() == 0
    assert (target_map[0, :40, :50] == 0).all() and (target_map[0, 40:] == IGNORE_INDEX).all()
    assert (target_map[1, :, :20] == 1).all() and (target_map[1, :, 20:] == IGNORE_INDEX).all()
    assert pad_batch(images, None)[1] is None
    with pytest.raises(ValueError):
        pad_batch(images, [{"semantic": torch.zeros(10, 10, dtype=torch.int64)}] * 2)


def test_per_image_probs_crops_and_normalises():
    logits = torch.randn(2, 3, 64, 64)
    outputs = per_image_probs(logits, [(40, 50), (64, 20)])
    assert [o["probs"].shape for o in outputs] == [(3, 40, 50), (3, 64, 20)]
    for i, out in enumerate(outputs):
        assert torch.allclose(out["probs"].sum(0), torch.ones(out["probs"].shape[1:]), atol=1e-5)
        h, w = out["probs"].shape[1:]
        assert torch.allclose(out["probs"], logits[i, :, :h, :w].softmax(0))


# ---------------------------------------------------------------- models


@pytest.mark.parametrize("loss, name", [("ce", "loss_ce"), ("focal", "loss_focal"), ("fa", "loss_fa")])
def test_farseg_loss_switch(loss, name):
    model = build_model(_spec("farseg", loss=loss, annealing="linear", scale_aware=False))
    train_step(model, _images(), _targets(), {name})


def test_farseg_learns_a_square():
    torch.manual_seed(0)
    model = build_model(_spec("farseg", classes=("a",), annealing_steps=5))
    image = torch.zeros(1, 32, 32)
    image[:, 8:24, 8:24] = 1.0
    target = (image[0] > 0).long()
    optimiser = torch.optim.Adam(model.parameters(), lr=1e-2)
    first = None
    for _ in range(15):
        loss = train_step(model, [image], [{"semantic": target}], {"loss_fa"})["loss_fa"]
        optimiser.step()
        first = loss if first is None else first
    assert loss < 0.5 * first
    model.eval()
    with torch.no_grad():
        prediction = model([image])[0]["probs"].argmax(0)
    assert (prediction == target).float().mean() > 0.8


# ---------------------------------------------------------------- F-A loss


def _random_case(seed: int, classes: int = 3) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    logits = 3.0 * torch.randn(2, classes, 12, 10, generator=g)
    target = torch.randint(0, classes, (2, 12, 10), generator=g)
    target[torch.rand(2, 12, 10, generator=g) < 0.2] = IGNORE_INDEX
    return logits, target


def test_fa_loss_is_cross_entropy_at_step_zero():
    for seed in range(5):
        logits, target = _random_case(seed)
        for schedule in SCHEDULES:
            expected = F.cross_entropy(logits, target, ignore_index=IGNORE_INDEX)
            assert torch.allclose(fa_loss(logits, target, 0, 100, 2.0, schedule), expected, atol=1e-6)


def test_fa_loss_end_of_annealing_keeps_sum_and_favours_hard_pixels():
    for seed in range(5):
        logits, target = _random_case(seed)
        ce = F.cross_entropy(logits, target, ignore_index=IGNORE_INDEX, reduction="none")
        for step in (100, 250):  # at and after the end of annealing
            weights = fa_pixel_weights(logits, target, step, 100, gamma=2.0)
            assert torch.allclose((weights * ce).sum(), ce.sum(), rtol=1e-5)
            assert torch.allclose(fa_loss(logits, target, step, 100), ce.sum() / (target != IGNORE_INDEX).sum(),
                                  rtol=1e-5)
        valid = target != IGNORE_INDEX
        p_true = logits.softmax(1).gather(1, target.clamp(max=2).unsqueeze(1)).squeeze(1)[valid]
        w = weights[valid]
        order = torch.argsort(p_true)  # hardest (lowest probability of the true class) first
        assert (w[order][1:] <= w[order][:-1] + 1e-6).all()
        assert w[order[0]] > 1.0 > w[order[-1]]


def test_fa_loss_gamma_zero_is_cross_entropy_at_any_step():
    logits, target = _random_case(7)
    expected = F.cross_entropy(logits, target, ignore_index=IGNORE_INDEX)
    for step in (0, 30, 100):
        assert torch.allclose(fa_loss(logits, target, step, 100, gamma=0.0), expected, atol=1e-6)


def test_fa_loss_ignores_ignored_pixels():
    for seed in range(3):
        logits, target = _random_case(seed)
        ignored = target == IGNORE_INDEX
        changed = logits.clone()
        changed[ignored.unsqueeze(1).expand_as(logits)] = 50.0 * torch.randn(int(ignored.sum()) * 3)
        changed.requires_grad_(True)
        for step in (0, 40, 100):
            assert torch.allclose(fa_loss(changed, target, step, 100), fa_loss(logits, target, step, 100))
            assert (fa_pixel_weights(changed, target, step, 100)[ignored] == 0).all()
        fa_loss(changed, target, 60, 100).backward()
        assert (changed.grad.permute(0, 2, 3, 1)[ignored] == 0).all()
        assert changed.grad.abs().sum() > 0


def test_focal_share_schedules():
    for schedule in SCHEDULES:
        values = [focal_share(t, 40, schedule) for t in range(0, 60)]
        assert values[0] == 0.0 and values[40] == pytest.approx(1.0) and values[59] == pytest.approx(1.0)
        assert all(b >= a for a, b in zip(values, values[1:]))
    assert focal_share(20, 40, "cosine") == pytest.approx(0.5)
    assert focal_share(10, 40, "cosine") == pytest.approx(0.5 * (1 - math.cos(math.pi / 4)))
    with pytest.raises(ValueError):
        focal_share(1, 10, "step")


def test_farseg_step_buffer_counts_and_survives_state_dict():
    spec = _spec("farseg", annealing_steps=3)
    model = build_model(spec)
    assert "train_step" in model.state_dict() and model.train_step.dtype == torch.int64
    images, targets = _images(), _targets()
    batch, target_map, _ = pad_batch(images, targets)
    with torch.no_grad():
        expected = F.cross_entropy(model.logits(batch), target_map, ignore_index=IGNORE_INDEX)
        model.train()
        first = model(images, targets)["loss_fa"]  # step 0: plain CE
    assert torch.allclose(first, expected, atol=1e-5)
    for _ in range(2):
        train_step(model, images, targets, {"loss_fa"})
    assert int(model.train_step) == 3
    model.eval()
    with torch.no_grad():
        model(images)
    assert int(model.train_step) == 3  # eval forwards do not count
    restored = build_model(spec)
    restored.load_state_dict(model.state_dict())
    assert int(restored.train_step) == 3


def _scene_encoder_params(c5: int, ch: int) -> int:
    return c5 * ch + ch + ch * ch + ch


def test_farseg_switches_change_parameter_count():
    def count(**config) -> int:
        model = build_model(_spec("farseg", **config))
        return sum(p.numel() for p in model.parameters())

    ch, c5 = TINY["fpn_channels"], 512
    scale_aware, shared, plain = count(scale_aware=True), count(scale_aware=False), count(fs_relation=False)
    assert scale_aware - shared == 3 * _scene_encoder_params(c5, ch)
    encoders_per_level = 2 * (ch * ch + 2 * ch)  # content encoder + re-encoder: 1x1 conv, norm weight and bias
    assert shared - plain == _scene_encoder_params(c5, ch) + 4 * encoders_per_level
    model = build_model(_spec("farseg", fs_relation=False))
    assert isinstance(model, FarSeg) and model.relation is None


def test_scaled_relation_divides_the_dot_product_by_sqrt_channels():
    torch.manual_seed(0)
    plain = build_model(_spec("farseg")).eval()
    scaled = build_model(_spec("farseg", scaled_relation=True)).eval()
    scaled.load_state_dict(plain.state_dict())  # the switch adds no weights
    batch = torch.randn(1, 1, 64, 64)
    with torch.no_grad():
        pyramid, c5 = plain.backbone(batch)
        features = list(pyramid.values())
        raw, divided = plain.relation.relations(features, c5), scaled.relation.relations(features, c5)
    for r_raw, r_div in zip(raw, divided, strict=True):
        logit_raw, logit_div = torch.logit(r_raw.double()), torch.logit(r_div.double())
        assert torch.allclose(logit_div * math.sqrt(TINY["fpn_channels"]), logit_raw, rtol=1e-3, atol=1e-4)
        assert logit_raw.abs().max() > 0.1  # a real relation, not a constant 0.5


def test_decoder_reduce_sum_is_four_times_the_paper_mean():
    torch.manual_seed(0)
    mean = build_model(_spec("farseg")).eval()
    summed = build_model(_spec("farseg", decoder_reduce="sum")).eval()
    summed.load_state_dict(mean.state_dict())  # the switch adds no weights
    with torch.no_grad():
        pyramid, c5 = mean.backbone(torch.randn(1, 1, 64, 64))
        features = mean.relation(list(pyramid.values()), c5)
        assert torch.allclose(summed.decoder(features), 4 * mean.decoder(features), atol=1e-5)
