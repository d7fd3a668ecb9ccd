"""Hi-ResNet: eval probabilities from the mean of the two heads' logits, the IA block's window padding, every
ablation switch, the size presets, and the three losses (generalised Dice range, label-smoothing CE vs PyTorch,
CEA zero only for a perfect prediction, ignore pixels). The contract every architecture shares (losses, empty
images, bands, eval outputs): test_model_contract.py."""
from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from engine.models import build_model
from engine.models.config import parse_config, to_dict
from engine.models.losses.hi_resnet import cea_loss, generalised_dice_loss, label_smoothing_ce
from engine.models.semantic.hi_resnet import PRESETS, SIZE_PRESETS, HiResNetConfig
from engine.models.semantic.hi_resnet_blocks import BasicBlock, IABlock, WindowSelfAttention
from engine.spec import IGNORE_INDEX, ModelSpec, classes_from_names
from tests.engine.model_checks import train_step

TINY = {"channels": [8, 16, 32], "blocks": [1, 1, 1], "modules": [1, 1], "ocr_channels": 16,
        "ocr_key_channels": 8, "window_size": 4}
HEAD_LOSSES = ("gd", "lsce", "cea")
ALL_LOSSES = {f"loss_{head}_{kind}" for head in ("coarse", "refined") for kind in HEAD_LOSSES}


def _spec(bands: int = 3, classes: tuple[str, ...] = ("building", "road"), **config) -> ModelSpec:
    return ModelSpec(name="t", architecture="hi_resnet", task="semantic", config={**TINY, **config},
                     classes=classes_from_names(classes), bands=bands)


def _model(bands: int = 3, **config) -> torch.nn.Module:
    torch.manual_seed(0)
    return build_model(_spec(bands, **config))


def _images(bands: int = 3, sizes=((64, 64), (64, 96))) -> list[torch.Tensor]:
    g = torch.Generator().manual_seed(0)
    return [torch.randn(bands, h, w, generator=g) for h, w in sizes]


def _targets(sizes=((64, 64), (64, 96))) -> list[dict]:
    targets = []
    for k, (h, w) in enumerate(sizes):
        semantic = torch.zeros(h, w, dtype=torch.int64)
        semantic[8:30, 10:40] = 1
        semantic[40:60, 20 + k:50] = 2
        semantic[0:4, :] = IGNORE_INDEX
        targets.append({"semantic": semantic})
    return targets


def test_eval_probs_are_softmax_of_the_mean_of_both_heads():
    model = _model().eval()
    images = _images()
    with torch.no_grad():
        outputs = model(images)
        # the 64x64 image alone: its padded batch is itself, so the heads can be compared directly
        alone = model(images[:1])[0]["probs"]
        heads = model.head_logits(images[0][None])
    assert len(outputs) == 2
    for out, img in zip(outputs, images, strict=True):
        probs = out["probs"]
        assert probs.shape == (3, *img.shape[-2:])
        assert torch.allclose(probs.sum(0), torch.ones(img.shape[-2:]), atol=1e-5)
        assert bool((probs >= 0).all())
    mean_logits = (heads["coarse"] + heads["refined"]) / 2
    expected = torch.softmax(F.interpolate(mean_logits, size=(64, 64), mode="bilinear", align_corners=False), 1)
    assert torch.allclose(alone, expected[0], atol=1e-5)
    assert not torch.allclose(heads["coarse"], heads["refined"])


@pytest.mark.parametrize("size", [(10, 7), (8, 13), (4, 4)])
def test_ia_block_keeps_shape_when_the_window_does_not_divide(size):
    torch.manual_seed(0)
    block = IABlock(16, window=4, head_channels=8)
    x = torch.randn(2, 16, *size)
    out = block(x)
    assert out.shape == x.shape and torch.isfinite(out).all()


def test_window_attention_ignores_the_padding():
    """One window larger than the map: masked padding must give plain MHSA over the real pixels."""
    torch.manual_seed(0)
    layer = WindowSelfAttention(16, window=8, head_channels=4).eval()
    x = torch.randn(1, 16, 5, 6)
    tokens = x.flatten(2).transpose(1, 2)
    expected, _ = layer.attention(tokens, tokens, tokens, need_weights=False)
    assert torch.allclose(layer(x), expected.transpose(1, 2).reshape(1, 16, 5, 6), atol=1e-5)


def test_ocr_switch_removes_ocr_parameters_and_the_refined_head():
    with_ocr, without_ocr = _model(), _model(ocr=False)
    names = {n for n, _ in without_ocr.named_parameters()}
    assert any(n.startswith("ocr") for n, _ in with_ocr.named_parameters())
    assert not any(n.startswith(("ocr", "refined")) for n in names)
    assert sum(p.numel() for p in without_ocr.parameters()) < sum(p.numel() for p in with_ocr.parameters())
    expected = {f"loss_coarse_{kind}" for kind in HEAD_LOSSES}
    train_step(without_ocr, _images(), _targets(), expected)
    without_ocr.eval()
    with torch.no_grad():
        assert without_ocr(_images())[1]["probs"].shape == (3, 64, 96)


def test_edge_loss_and_ia_block_switches():
    no_edges = _model(edge_loss=False)
    train_step(no_edges, _images(), _targets(), {name for name in ALL_LOSSES if not name.endswith("cea")})
    plain = _model(ia_blocks=False)
    assert not any(isinstance(m, IABlock) for m in plain.modules())
    assert any(isinstance(m, BasicBlock) for m in plain.modules())
    assert any(isinstance(m, IABlock) for m in _model().modules())
    train_step(plain, _images(), _targets(), ALL_LOSSES)


def test_config_size_presets_and_unknown_keys():
    paper = parse_config(HiResNetConfig, {"preset": "paper"})  # as older checkpoints store it
    assert paper.channels == (48, 96, 192) and paper.blocks == (4, 4, 12) and paper.modules == (1, 4)
    assert (paper.ocr_channels, paper.ocr_key_channels) == (512, 256)
    assert {k: getattr(paper, k) for k in SIZE_PRESETS["paper"]} == SIZE_PRESETS["paper"]
    light = HiResNetConfig()
    assert light.channels == (24, 48, 96) and light.blocks == (1, 1, 2) and light.ocr_channels == 64
    explicit = parse_config(HiResNetConfig, {"preset": "paper", "blocks": [1, 1, 1]})
    assert explicit.blocks == (1, 1, 1) and explicit.channels == (48, 96, 192)  # explicit keys win over the preset
    assert parse_config(HiResNetConfig, to_dict(explicit)) == explicit  # the stored dict rebuilds the same sizes
    with pytest.raises(ValueError, match="unknown hi_resnet config key"):
        build_model(_spec(colour="red"))
    with pytest.raises(ValueError, match="'preset': 'huge' is not one of light, paper"):
        build_model(_spec(preset="huge"))
    with pytest.raises(ValueError, match="'channels': expected a list of 3 int"):
        build_model(_spec(channels=[8, 16]))


# ----------------------------------------------------------------------------------------------- losses

def _random_case(g: torch.Generator, classes: int = 3, size=(2, 24, 20), ignore_fraction: float = 0.2):
    logits = torch.randn(size[0], classes, *size[1:], generator=g) * 3
    target = torch.randint(0, classes, size, generator=g)
    target[torch.rand(size, generator=g) < ignore_fraction] = IGNORE_INDEX
    return logits, target


def _blobs_target() -> torch.Tensor:
    target = torch.zeros(2, 32, 40, dtype=torch.int64)
    target[:, 6:18, 8:22] = 1
    target[1, 20:30, 12:34] = 2
    return target


def _one_hot_logits(target: torch.Tensor, classes: int = 3) -> torch.Tensor:
    """Logits whose softmax is exactly one-hot in float32 (exp(-1e4) == 0)."""
    return F.one_hot(target, classes).permute(0, 3, 1, 2).float() * 1e4


def test_generalised_dice_is_in_unit_range_and_zero_when_perfect():
    g = torch.Generator().manual_seed(1)
    for case in range(30):
        logits, target = _random_case(g, classes=2 + case % 3, ignore_fraction=0.3 * (case % 2))
        loss = generalised_dice_loss(logits, target)
        assert 0.0 <= float(loss) <= 1.0
    target = _blobs_target()
    assert float(generalised_dice_loss(_one_hot_logits(target), target)) < 1e-6
    wrong = _one_hot_logits(torch.roll(target, 5, dims=2))
    assert float(generalised_dice_loss(wrong, target)) > 0.1


def test_label_smoothing_ce_matches_pytorch():
    g = torch.Generator().manual_seed(2)
    for case in range(10):
        logits, target = _random_case(g, classes=2 + case % 4)
        expected = F.cross_entropy(logits, target, ignore_index=IGNORE_INDEX, label_smoothing=0.1)
        assert torch.allclose(label_smoothing_ce(logits, target, 0.1), expected, atol=1e-5)


def test_cea_is_zero_only_for_a_perfect_prediction_and_grows_with_the_shift():
    target = _blobs_target()
    assert float(cea_loss(_one_hot_logits(target), target)) == 0.0
    shifted = [float(cea_loss(_one_hot_logits(torch.roll(target, s, dims=2)), target)) for s in (1, 3, 6)]
    assert shifted[0] > 0 and shifted[0] < shifted[1] < shifted[2]
    g = torch.Generator().manual_seed(3)
    for _ in range(10):
        logits, target = _random_case(g)
        assert 0.0 < float(cea_loss(logits, target)) <= 2.0


def test_ignored_pixels_change_no_loss():
    g = torch.Generator().manual_seed(4)
    for _ in range(8):
        logits, target = _random_case(g, ignore_fraction=0.25)
        ignored = (target == IGNORE_INDEX).unsqueeze(1).expand_as(logits)
        noisy = torch.where(ignored, torch.randn(logits.shape, generator=g) * 10, logits)
        for loss in (generalised_dice_loss, label_smoothing_ce, cea_loss):
            assert torch.allclose(loss(logits, target), loss(noisy, target), atol=1e-6), loss.__name__
    all_ignored = torch.full((1, 8, 8), IGNORE_INDEX, dtype=torch.int64)
    logits = torch.randn(1, 3, 8, 8, requires_grad=True)
    for loss in (generalised_dice_loss, label_smoothing_ce, cea_loss):
        value = loss(logits, all_ignored)
        assert float(value.detach()) == 0.0
        value.backward()


def test_losses_give_gradients_to_the_logits():
    logits, target = _random_case(torch.Generator().manual_seed(5))
    for loss in (generalised_dice_loss, label_smoothing_ce, cea_loss):
        x = logits.clone().requires_grad_(True)
        loss(x, target).backward()
        assert x.grad is not None and float(x.grad.abs().sum()) > 0, loss.__name__


def test_group_norm_option_replaces_every_batch_norm_and_makes_outputs_batch_independent():
    default = _model()
    assert any(isinstance(m, torch.nn.BatchNorm2d) for m in default.modules())
    grouped = _model(norm="gn")
    assert not any(isinstance(m, torch.nn.modules.batchnorm._BatchNorm) for m in grouped.modules())
    norms = sum(isinstance(m, torch.nn.BatchNorm2d) for m in default.modules())
    assert sum(isinstance(m, torch.nn.GroupNorm) for m in grouped.modules()) == norms
    train_step(grouped, _images(), _targets(), ALL_LOSSES)
    grouped.train()  # training-mode statistics are per image: an image's logits do not depend on its batch partner
    image = _images()[0]
    with torch.no_grad():
        alone = grouped.logits(image[None])
        paired = grouped.logits(torch.stack([image, torch.randn_like(image) * 5]))
    torch.testing.assert_close(alone[0], paired[0], atol=1e-4, rtol=1e-4)
    assert parse_config(HiResNetConfig, {"norm": "gn"}, "hi_resnet").norm == "gn"
    with pytest.raises(ValueError, match="norm"):
        parse_config(HiResNetConfig, {"norm": "ln"}, "hi_resnet")
    # the `cpu` preset (trained from scratch at batch 2) uses GroupNorm; the paper's preset and old specs keep BN
    assert parse_config(HiResNetConfig, PRESETS["cpu"], "hi_resnet").norm == "gn"
    assert parse_config(HiResNetConfig, PRESETS["paper"], "hi_resnet").norm == "bn"
    assert parse_config(HiResNetConfig, {"preset": "light"}, "hi_resnet").norm == "bn"
