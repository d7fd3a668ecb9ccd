"""MODELS: a plain dict from architecture name to its Architecture (task, builder, presets).

`build_model(spec)` builds the untrained module `spec.architecture` names; `resolve_config(name, preset,
overrides)` gives the config dict stored in a ModelSpec (a named preset of the architecture, then overrides).
"""
from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from torch import nn

from engine.models.detectors.cascade_mask_rcnn import build_cascade_mask_rcnn, build_hq_isnet
from engine.models.detectors.facenet import build_facenet
from engine.models.detectors.mask_rcnn import build_mask_rcnn
from engine.models.semantic import SEMANTIC_BUILDERS, lazy_builder
from engine.spec import ModelSpec


@dataclass(frozen=True)
class Architecture:
    """One buildable architecture: its task ("instance" | "semantic"), builder and named config presets."""

    name: str
    task: str
    build: Callable[[ModelSpec], nn.Module]
    presets: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)
    summary: str = ""


def _solov2(spec: ModelSpec) -> nn.Module:
    from engine.models.detectors.solov2 import build_solov2

    return build_solov2(spec)


MODELS: dict[str, Architecture] = {
    a.name: a for a in (
        Architecture("mask_rcnn", "instance", build_mask_rcnn),
        Architecture("solov2", "instance", _solov2),
        Architecture("facenet", "instance", build_facenet),
        Architecture("cascade_mask_rcnn", "instance", build_cascade_mask_rcnn),
        Architecture("hq_isnet", "instance", build_hq_isnet),
        *(Architecture(name, "semantic", lazy_builder(target)) for name, target in SEMANTIC_BUILDERS.items()),
    )
}
SEMANTIC_ARCHITECTURES = frozenset(n for n, a in MODELS.items() if a.task == "semantic")


def architecture(name: str) -> Architecture:
    """The Architecture called `name`; ValueError listing the valid names otherwise."""
    try:
        return MODELS[name]
    except KeyError:
        raise ValueError(f"unknown architecture '{name}'; available: {', '.join(sorted(MODELS))}") from None


def resolve_config(name: str, preset: str | None = None, overrides: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """Config dict for a ModelSpec: the architecture's `preset` (None: none), then `overrides`."""
    arch = architecture(name)
    base: dict[str, Any] = {}
    if preset is not None:
        if preset not in arch.presets:
            valid = ", ".join(sorted(arch.presets)) or "none"
            raise ValueError(f"unknown preset '{preset}' for {name}; available: {valid}")
        base = dict(arch.presets[preset])
    return {**base, **dict(overrides or {})}


def build_model(spec: ModelSpec) -> nn.Module:
    """Build the (untrained) module that `spec.architecture` names."""
    return architecture(spec.architecture).build(spec)
