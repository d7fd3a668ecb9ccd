"""Semantic segmentation models (contract: engine.semantic). Builders are imported on first use."""
from __future__ import annotations

import importlib
from collections.abc import Callable

from torch import nn

from engine.spec import ModelSpec

# architecture name -> "module:builder"; each builder takes a ModelSpec with task == "semantic"
SEMANTIC_BUILDERS: dict[str, str] = {
    "semantic_fpn": "engine.models.semantic.semantic_fpn:build_semantic_fpn",
    "farseg": "engine.models.semantic.farseg:build_farseg",
    "hi_resnet": "engine.models.semantic.hi_resnet:build_hi_resnet",
    "c2fnet": "engine.models.semantic.c2fnet:build_c2fnet",
}


def lazy_builder(target: str) -> Callable[[ModelSpec], nn.Module]:
    """'module:function' -> a builder that imports the module when first called."""
    module_name, function_name = target.split(":")

    def build(spec: ModelSpec) -> nn.Module:
        return getattr(importlib.import_module(module_name), function_name)(spec)

    build.__name__ = function_name
    return build
