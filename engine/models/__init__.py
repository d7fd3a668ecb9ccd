"""MODELS: a plain dict from architecture name to a builder taking a ModelSpec."""
from __future__ import annotations

from collections.abc import Callable

from torch import nn

from engine.models.detectors.cascade_mask_rcnn import build_cascade_mask_rcnn, build_hq_isnet
from engine.models.detectors.facenet import build_facenet
from engine.models.detectors.mask_rcnn import build_mask_rcnn
from engine.models.detectors.solov2 import build_solov2
from engine.models.semantic import SEMANTIC_BUILDERS, lazy_builder
from engine.spec import ModelSpec

MODELS: dict[str, Callable[[ModelSpec], nn.Module]] = {
    "mask_rcnn": build_mask_rcnn,
    "solov2": build_solov2,
    "facenet": build_facenet,
    "cascade_mask_rcnn": build_cascade_mask_rcnn,
    "hq_isnet": build_hq_isnet,
    **{name: lazy_builder(target) for name, target in SEMANTIC_BUILDERS.items()},
}
SEMANTIC_ARCHITECTURES = frozenset(SEMANTIC_BUILDERS)  # models whose spec.task is "semantic"


def build_model(spec: ModelSpec) -> nn.Module:
    """Build the (untrained) module that `spec.architecture` names."""
    try:
        builder = MODELS[spec.architecture]
    except KeyError:
        raise ValueError(
            f"unknown architecture '{spec.architecture}'; available: {', '.join(sorted(MODELS))}"
        ) from None
    return builder(spec)
