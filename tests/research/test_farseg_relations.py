"""research.farseg_relations: the relation-map statistics read what the F-S relation computes."""
from __future__ import annotations

import pytest
import torch

from engine.models import build_model
from engine.spec import ModelSpec, classes_from_names
from research.farseg_relations import relation_stats


def _farseg(**config) -> torch.nn.Module:
    spec = ModelSpec(name="t", architecture="farseg", task="semantic", bands=1, classes=classes_from_names(("ship",)),
                     config={"fpn_channels": 16, "decoder_channels": 8, **config})
    return build_model(spec).eval()


def _set_scene_vector(model, value: float) -> None:
    """Every scene encoder outputs `value` in every channel, whatever the image."""
    for encoder in model.relation.scene_encoders:
        torch.nn.init.zeros_(encoder[-1].weight)
        torch.nn.init.constant_(encoder[-1].bias, value)


def test_a_zero_scene_vector_gives_one_half_everywhere():
    torch.manual_seed(0)
    model = _farseg()
    _set_scene_vector(model, 0.0)
    stats = relation_stats(model, torch.randn(1, 1, 64, 64))
    assert len(stats) == 4
    for level in stats:
        assert level == {"mean": pytest.approx(0.5), "off": 0.0, "saturated": 0.0}


def test_a_huge_scene_vector_saturates_where_the_content_is_positive():
    torch.manual_seed(0)
    model = _farseg()
    _set_scene_vector(model, 1e4)
    batch = torch.randn(1, 1, 64, 64)
    stats = relation_stats(model, batch)
    with torch.no_grad():
        pyramid, _ = model.backbone(batch)
        content = [encoder(p).sum(dim=1) for encoder, p in zip(model.relation.content_encoders, pyramid.values())]
    for level, v in zip(stats, content, strict=True):
        positive = float((v > 1e-3).float().mean())
        assert 0.0 < positive and level["saturated"] == pytest.approx(positive, abs=0.02)
        assert level["off"] == 0.0  # ReLU content is never negative: r >= 0.5


def test_no_relation_is_refused():
    with pytest.raises(ValueError, match="no F-S relation"):
        relation_stats(_farseg(fs_relation=False), torch.randn(1, 1, 64, 64))
