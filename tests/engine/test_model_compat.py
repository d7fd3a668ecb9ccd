"""Checkpoints keep loading: the state_dict layout of every architecture (tiny cases) is the one pinned in
tests/engine/data/model_reference.json, and the shipped checkpoints load strictly and give the pinned outputs
(tests/engine/model_reference.py says how that file was written)."""
from __future__ import annotations

import json

import pytest
import torch

from engine.models import build_model
from engine.zoo import shipped_models
from tests.engine.model_checks import LAYOUT_CASES, tiny_spec
from tests.engine.model_reference import REFERENCE, shipped_model, shipped_outputs, state_layout

EXPECTED = json.loads(REFERENCE.read_text())


@pytest.mark.parametrize("case", sorted(LAYOUT_CASES))
def test_state_dict_layout_is_unchanged(case: str) -> None:
    assert state_layout(build_model(tiny_spec(*LAYOUT_CASES[case]))) == EXPECTED["layouts"][case]


def test_every_architecture_has_a_pinned_layout() -> None:
    from engine.models import MODELS

    assert {arch for arch, _, _ in LAYOUT_CASES.values()} == set(MODELS)
    assert set(EXPECTED["layouts"]) == set(LAYOUT_CASES)


@pytest.mark.parametrize("name", sorted(shipped_models()))
def test_shipped_checkpoint_loads_strictly_and_gives_the_pinned_outputs(name: str) -> None:
    model, bands = shipped_model(shipped_models()[name])  # load_state_dict(strict=True) inside
    got, expected = shipped_outputs(model, bands), EXPECTED["shipped"][name]
    if "prob_sums" in expected:  # a semantic model: class maps
        torch.testing.assert_close(torch.tensor(got["prob_sums"]), torch.tensor(expected["prob_sums"]), atol=0.5,
                                   rtol=1e-3)
        assert sum(abs(a - b) for a, b in zip(got["argmax_pixels"], expected["argmax_pixels"])) <= 4
        return
    assert got["count"] == expected["count"] and got["labels"] == expected["labels"]
    torch.testing.assert_close(torch.tensor(got["scores"]), torch.tensor(expected["scores"]), atol=1e-4, rtol=1e-4)
    torch.testing.assert_close(torch.tensor(got["boxes"]), torch.tensor(expected["boxes"]), atol=1e-2, rtol=1e-4)
    torch.testing.assert_close(torch.tensor(got["mask_sums"]), torch.tensor(expected["mask_sums"]), atol=0.5,
                               rtol=1e-3)
