"""FACENet (Zhao et al., ITC 2025) = SOLOv2 + FACE-FPN + semantic enhancement module (SEM) + DCNv2.

The parts: engine.models.necks.face_fpn (FACE-FPN: sub-pixel skip fusion, ASPP, sub-pixel context
enhancement, channel attention guidance), engine.models.necks.sem (SEM on C2), DCNv2 in the head
(engine.models.layers.dcnv2). Same contract and config keys as SOLOv2 (engine.models.detectors.solov2);
only the defaults of the three switches differ, so the paper's ablation rows (Tables 5-6) are configs:

    baseline            {"face_fpn": false, "sem": false, "dcn": "none"}   (= solov2)
    + SEM               {"face_fpn": false, "sem": true,  "dcn": "none"}
    + FACE-FPN          {"face_fpn": true,  "sem": false, "dcn": "none"}
    + DCNv2             {"face_fpn": false, "sem": false, "dcn": "kernel"}
    + SEM + FACE-FPN    {"face_fpn": true,  "sem": true,  "dcn": "none"}
    FACENet (default)   {"face_fpn": true,  "sem": true,  "dcn": "kernel"}

"dcn": "kernel" follows the paper (DCNv2 in the kernel branch); "towers" puts it in the category tower too,
as SOLOv2's own DCN variant does.
"""
from __future__ import annotations

from typing import Any

from engine.models.detectors.solov2 import DEFAULT_CONFIG as SOLOV2_DEFAULT_CONFIG
from engine.models.detectors.solov2 import SOLOv2, build_solo_model
from engine.spec import ModelSpec

DEFAULT_CONFIG: dict[str, Any] = {**SOLOV2_DEFAULT_CONFIG, "face_fpn": True, "sem": True, "dcn": "kernel"}


def build_facenet(spec: ModelSpec) -> SOLOv2:
    """FACENet for `spec.bands` input bands and `spec.num_classes` classes."""
    return build_solo_model(spec, DEFAULT_CONFIG)
