"""The zoom a model was trained at (ModelSpec.input_scale) is applied to every tile and image at inference,
and outputs come back in the tile's own pixels; SAR radiometric augmentation stays in range."""

import numpy as np
import pytest
import torch

from engine.checkpoint import load_checkpoint
from engine.data.transforms import SarAugment
from engine.inference.predictor import Predictor
from engine.models.scaling import forward_scaled, rescale_output
from tests.data.tiny_model import write_tiny_checkpoint


class _BoxWholeImage(torch.nn.Module):
    """Eval output: one detection covering the image it was given, a mask of ones; records input sizes."""

    def __init__(self) -> None:
        super().__init__()
        self.seen: list[tuple[int, int]] = []

    def forward(self, images):
        out = []
        for im in images:
            h, w = im.shape[-2:]
            self.seen.append((h, w))
            out.append({"boxes": torch.tensor([[0.0, 0.0, w, h]]), "labels": torch.tensor([1]),
                        "scores": torch.tensor([0.9]), "masks": torch.ones(1, 1, h, w),
                        "probs": torch.full((2, h, w), 0.5)})
        return out


def test_forward_scaled_resizes_input_and_maps_output_back() -> None:
    model = _BoxWholeImage()
    (out,) = forward_scaled(model, [torch.zeros(1, 30, 40)], 2.0)
    assert model.seen == [(60, 80)]
    assert out["boxes"].tolist() == [[0.0, 0.0, 40.0, 30.0]]
    assert out["masks"].shape == (1, 1, 30, 40) and float(out["masks"].min()) == pytest.approx(1.0)
    assert out["probs"].shape == (2, 30, 40)
    (same,) = forward_scaled(model, [torch.zeros(1, 30, 40)], 1.0)
    assert model.seen[-1] == (30, 40) and same["masks"].shape == (1, 1, 30, 40)
    empty = rescale_output({"boxes": torch.zeros(0, 4), "masks": torch.zeros(0, 1, 60, 80)}, (30, 40), (60, 80))
    assert empty["masks"].shape == (0, 1, 30, 40)


@pytest.mark.parametrize("scale", [1.0, 2.0])
def test_predictor_applies_the_spec_zoom_on_every_tile(tmp_path, scale) -> None:
    ckpt = load_checkpoint(write_tiny_checkpoint(tmp_path / "tiny.pt"))
    ckpt = type(ckpt)(ckpt.spec.with_updates(input_scale=scale), ckpt.state_dict)
    predictor = Predictor(ckpt, "cpu")
    seen: list[tuple[int, int]] = []
    predictor.model.backbone.register_forward_pre_hook(lambda m, args: seen.append(tuple(args[0].shape[-2:])))
    (out,) = predictor.predict([np.zeros((ckpt.spec.bands, 64, 96), np.float32)])
    assert seen == [(round(64 * scale), round(96 * scale))]
    assert out["masks"].shape[1:] == (64, 96)


def test_sar_augment_keeps_unit_range_and_varies() -> None:
    image = np.full((1, 32, 32), 0.2, np.float32)
    aug = SarAugment(p=1.0)
    outs = [aug(image, np.random.default_rng(seed)) for seed in range(5)]
    assert all(o.shape == image.shape and o.dtype == np.float32 and o.min() >= 0 and o.max() <= 1 for o in outs)
    assert len({round(float(o.mean()), 4) for o in outs}) == 5  # gain/gamma differ per draw
    assert all(o.std() > 0 for o in outs)  # speckle
    assert np.array_equal(aug(image, np.random.default_rng(3)), outs[3])  # seeded: reproducible
    assert np.array_equal(SarAugment(p=0.0)(image, np.random.default_rng(0)), image)
