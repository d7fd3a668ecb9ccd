"""Fine-tuning (`rsseg train --init MODEL`): the spec a run inherits from its base model, and loading the base
model's weights, with a new head when the classes change.

Without architecture flags the run keeps the base model's spec (architecture, config, bands, band names,
normalisation, GSD, input zoom, tile and thresholds); the classes are the COCO file's. When they are the
base model's (same names, same order) every tensor is loaded. When they differ, every tensor that does not
depend on the class count is loaded and the class-dependent ones (the classifier, box regression and mask
logits of an R-CNN, SOLO's category branch, a semantic classifier) keep their fresh initialisation.
"""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace
from typing import Any

import torch

from engine.checkpoint import Checkpoint
from engine.errors import UserError
from engine.models import build_model
from engine.spec import DEFAULT_COLOURS, ClassInfo, ModelSpec


def finetune_classes(base: ModelSpec, names: list[str]) -> tuple[ClassInfo, ...]:
    """Classes 1..K named `names`: the base model's own when the names are the same, else new ones that keep
    the colour of every class the base model has (new classes take unused default colours)."""
    if [c.name for c in base.classes] == list(names):
        return base.classes
    kept = {c.name: c.colour for c in base.classes}
    free = [c for c in DEFAULT_COLOURS if c not in kept.values()] or list(DEFAULT_COLOURS)
    classes, k = [], 0
    for i, name in enumerate(names):
        colour = kept.get(name)
        if colour is None:
            colour, k = free[k % len(free)], k + 1
        classes.append(ClassInfo(id=i + 1, name=name, colour=colour))
    return tuple(classes)


def finetune_spec(base: ModelSpec, *, name: str, class_names: list[str], image_bands: int, base_label: str,
                  updates: dict[str, Any] | None = None, normalisation: dict[str, Any] | None = None) -> ModelSpec:
    """The spec of a run fine-tuning `base` on a COCO file with categories `class_names`, whose images feed
    `image_bands` bands to the model (UserError when that is not the base model's band count).

    `updates`: spec fields the user set explicitly (band_names, gsd_m, input_scale, tile_size, overlap,
    score_threshold, description); `normalisation`: Normalisation fields set explicitly (scale, mean, std, sar).
    """
    if image_bands != base.bands:
        example = ",".join(["1"] * base.bands)
        raise UserError(f"--init {base_label} reads {base.bands} band{'s' if base.bands != 1 else ''} "
                        f"({', '.join(base.band_names)}) but the training images give {image_bands}: make the chips "
                        f"with --bands choosing {base.bands} raster bands (e.g. --bands {example}), or pass --bands")
    classes = finetune_classes(base, class_names)
    same = classes == base.classes
    title = f"{base.title or base.name}, fine-tuned ({name})" if same and base.title else ""
    lineage = f"fine-tuned from {base.name}" + ("" if same else f" with classes {', '.join(class_names)}")
    description = f"{base.description.rstrip('.')}; {lineage}" if base.description else lineage
    spec = replace(base, name=name, classes=classes, title=title, description=description)
    if normalisation:
        spec = replace(spec, normalisation=replace(base.normalisation, **normalisation))
    return replace(spec, **(updates or {}))


def _without_pretrained(spec: ModelSpec) -> ModelSpec:
    """The spec with ImageNet weights off (probe models need no download or file read)."""
    config = dict(spec.config)
    if config.get("pretrained"):
        config["pretrained"] = False
    return spec.with_updates(config=config)


def class_dependent_keys(spec: ModelSpec) -> list[str]:
    """State-dict keys of `spec`'s model whose shapes change with the number of classes (found by building the
    model for K and K+1 classes)."""
    probe = _without_pretrained(spec)
    extra = probe.classes + (ClassInfo(id=len(probe.classes) + 1, name="__probe__"),)
    shapes = {k: tuple(v.shape) for k, v in build_model(probe).state_dict().items()}
    more = {k: tuple(v.shape) for k, v in build_model(probe.with_updates(classes=extra)).state_dict().items()}
    return sorted(k for k, shape in shapes.items() if more.get(k) != shape)


def _misfit(init: str, ckpt: Checkpoint, name: str, exc: RuntimeError) -> UserError:
    first = str(exc).strip().splitlines()[0]
    return UserError(f"--init '{init}' ({ckpt.spec.architecture}) does not fit this {name}: {first}; "
                     "use a checkpoint of the same architecture and config, or leave out the architecture flags")


def load_initial_weights(model: torch.nn.Module, init: str, spec: ModelSpec | None = None,
                         log: Callable[[str], None] | None = None) -> str:
    """Load the weights of `init` (a shipped model name or a checkpoint path) into `model` -> which module took
    them: "model", or "coarse" when `model` is a C2FNet and the checkpoint holds a plain semantic model (the
    paper's schedule: a trained coarse model, then the fine model).

    With `spec` (the run's) and classes that differ from the checkpoint's, the class-dependent tensors are left
    as initialised and `log` says which; every other tensor must fit (UserError otherwise).
    """
    from engine.zoo import resolve_model

    _, ckpt = resolve_model(init)
    target, name = model, "model"
    if hasattr(model, "coarse") and not any(k.startswith("coarse.") for k in ckpt.state_dict):
        target, name = model.coarse, "coarse"
    new_names = [c.name for c in spec.classes] if spec is not None else None
    old_names = [c.name for c in ckpt.spec.classes]
    if name == "model" and new_names is not None and new_names != old_names:
        skip = set(class_dependent_keys(spec))
        state = {k: v for k, v in ckpt.state_dict.items() if k not in skip}
        try:
            missing, unexpected = target.load_state_dict(state, strict=False)
        except RuntimeError as exc:
            raise _misfit(init, ckpt, name, exc) from None
        if unexpected or set(missing) - skip:
            raise _misfit(init, ckpt, name, RuntimeError(
                f"missing keys {sorted(set(missing) - skip)[:3]}, unexpected keys {sorted(unexpected)[:3]}"))
        if log is not None:
            layers = sorted({k.rsplit(".", 1)[0] for k in skip})
            log(f"new classes ({', '.join(new_names)}) instead of the base model's ({', '.join(old_names)}): "
                f"loaded {len(state)} tensors, re-initialised the class-dependent layers {', '.join(layers)}")
        return name
    try:
        target.load_state_dict(ckpt.state_dict)
    except RuntimeError as exc:
        raise _misfit(init, ckpt, name, exc) from None
    return name
