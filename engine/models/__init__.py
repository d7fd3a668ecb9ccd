"""MODELS: a plain dict from architecture name to its Architecture (task, builder, typed config, presets).

`build_model(spec)` builds the untrained module `spec.architecture` names; `resolve_config(name, preset,
overrides)` gives the config dict stored in a ModelSpec (a named preset of the architecture, then overrides,
checked by the architecture's typed config: engine.models.config.parse_config).
"""
from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from torch import nn

from engine.models.config import SubModel, parse_config, to_dict
from engine.models.detectors import cascade_mask_rcnn, facenet, mask_rcnn, solov2
from engine.models.semantic import c2fnet, farseg, hi_resnet, semantic_fpn
from engine.spec import ModelSpec


@dataclass(frozen=True)
class Architecture:
    """One buildable architecture: its task ("instance" | "semantic"), builder, named config presets (partial
    config dicts), a one-line summary and its config dataclass (None: the builder checks the dict itself)."""

    name: str
    task: str
    build: Callable[[ModelSpec], nn.Module]
    presets: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)
    summary: str = ""
    config: type | None = None

    def parse(self, mapping: Mapping[str, Any] | None = None) -> Any:
        """`mapping` as this architecture's typed config (ValueError naming the bad key and the valid ones)."""
        if self.config is None:
            return dict(mapping or {})
        return parse_config(self.config, mapping, self.name)


def _build_c2fnet(spec: ModelSpec) -> nn.Module:
    return c2fnet.build_c2fnet(spec, _build_c2fnet_part)


def _build_c2fnet_part(spec: ModelSpec) -> nn.Module:
    """A C2FNet coarse or fine model: any semantic architecture but C2FNet itself."""
    return _semantic_part(spec.architecture).build(spec)


MODELS: dict[str, Architecture] = {
    a.name: a for a in (
        Architecture("mask_rcnn", "instance", mask_rcnn.build_mask_rcnn, mask_rcnn.PRESETS,
                     "Mask R-CNN + FPN", mask_rcnn.MaskRCNNConfig),
        Architecture("solov2", "instance", solov2.build_solov2, solov2.PRESETS,
                     "SOLOv2: dynamic instance kernels on S x S grids, Matrix NMS", solov2.SOLOv2Config),
        Architecture("facenet", "instance", facenet.build_facenet, facenet.PRESETS,
                     "FACENet: SOLOv2 + FACE-FPN + semantic enhancement + DCNv2", facenet.FACENetConfig),
        Architecture("cascade_mask_rcnn", "instance", cascade_mask_rcnn.build_cascade_mask_rcnn,
                     cascade_mask_rcnn.CASCADE_PRESETS, "Cascade Mask R-CNN (3 stages, IoU 0.5/0.6/0.7)",
                     cascade_mask_rcnn.CascadeConfig),
        Architecture("hq_isnet", "instance", cascade_mask_rcnn.build_hq_isnet, cascade_mask_rcnn.HQ_ISNET_PRESETS,
                     "HQ-ISNet: HRNet + HRFPN + cascade with ISNetV2 mask information flow",
                     cascade_mask_rcnn.HQISNetConfig),
        Architecture("semantic_fpn", "semantic", semantic_fpn.build_semantic_fpn, semantic_fpn.PRESETS,
                     "Semantic FPN (Panoptic FPN's semantic branch)", semantic_fpn.SemanticFPNConfig),
        Architecture("farseg", "semantic", farseg.build_farseg, farseg.PRESETS,
                     "FarSeg: foreground-scene relation + foreground-aware loss", farseg.FarSegConfig),
        Architecture("hi_resnet", "semantic", hi_resnet.build_hi_resnet, hi_resnet.PRESETS,
                     "Hi-ResNet: funnel, multi-resolution IA blocks, OCR refinement", hi_resnet.HiResNetConfig),
        Architecture("c2fnet", "semantic", _build_c2fnet, c2fnet.PRESETS,
                     "C2FNet: a coarse semantic model refined by a fine one on small-object windows",
                     c2fnet.C2FNetConfig),
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
    """The full config dict of architecture `name` for a ModelSpec: its defaults, then the named `preset` (None:
    none), then `overrides` (top-level keys replace the preset's), checked by the typed config; sub-models
    (C2FNet's coarse and fine) are resolved the same way. ValueError naming the valid names on any bad input."""
    arch = architecture(name)
    base: dict[str, Any] = {}
    if preset is not None:
        if preset not in arch.presets:
            valid = ", ".join(sorted(arch.presets)) or "none"
            raise ValueError(f"unknown preset '{preset}' for {name}; available: {valid}")
        base = dict(arch.presets[preset])
    config = arch.parse({**base, **dict(overrides or {})})
    if not dataclasses.is_dataclass(config):
        return config
    resolved = to_dict(config)
    for f in dataclasses.fields(config):
        value = getattr(config, f.name)
        if isinstance(value, SubModel):
            part = _semantic_part(value.architecture, f"{name} config '{f.name}'")
            resolved[f.name] = {"architecture": part.name, "config": resolve_config(part.name, None, value.config)}
    return resolved


def build_model(spec: ModelSpec) -> nn.Module:
    """Build the (untrained) module that `spec.architecture` names."""
    return architecture(spec.architecture).build(spec)


def _semantic_part(name: str, where: str = "c2fnet") -> Architecture:
    """The semantic Architecture `name` for a nested model (C2FNet's coarse/fine); not C2FNet itself."""
    valid = sorted(n for n, a in MODELS.items() if a.task == "semantic" and n != "c2fnet")
    arch = MODELS.get(name)
    if arch is None or arch.task != "semantic" or name == "c2fnet":
        raise ValueError(f"{where}: '{name}' cannot be a nested model; choose one of {', '.join(valid)}")
    return arch
