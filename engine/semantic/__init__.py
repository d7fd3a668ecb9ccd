"""What is left of the former semantic package: the two semantic losses (fa_loss, hi_resnet_losses), which
move to engine/models/losses/ with the models rewrite, and IGNORE_INDEX for them (now in engine.spec).

The semantic task itself is engine.tasks.semantic; its pieces live in their layers: class maps in
engine.data.class_maps, metrics and evaluation in engine.evaluation, stitching in engine.merge.stitch,
component vectorising in engine.vector.components.
"""
from __future__ import annotations

from engine.spec import IGNORE_INDEX

__all__ = ["IGNORE_INDEX"]
