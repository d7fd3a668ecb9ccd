"""FACENet (Zhao et al., ITC 2025) = SOLOv2 + FACE-FPN + semantic enhancement module (SEM) + DCNv2.

The parts: engine.models.necks.face_fpn (FACE-FPN: sub-pixel skip fusion, ASPP, sub-pixel context
enhancement, channel attention guidance), engine.models.necks.sem (SEM on C2), DCNv2 in the head
(engine.models.layers.dcnv2). Same contract and config keys as SOLOv2 (engine.models.detectors.solov2);
only the defaults of the three switches differ (FACENetConfig), so the paper's ablation rows (Tables 5-6) are configs:

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

from dataclasses import dataclass
from typing import Any

from engine.models.config import parse_config
from engine.models.detectors.solov2 import SOLO_CPU, SOLO_PAPER, SOLOv2, SOLOv2Config, build_solo_model
from engine.models.solo.heads import DCNPlace
from engine.spec import ModelSpec


@dataclass(frozen=True)
class FACENetConfig(SOLOv2Config):
    """FACENet settings: SOLOv2Config's keys with the three switches on (FACE-FPN, SEM, DCNv2 in the kernel branch).

    Presets (engine.models.MODELS["facenet"].presets):
    - "paper": SOLOv2's paper sizes (ResNet-50, FPN 256, 4 x 512 head) with FACE-FPN + SEM + DCNv2;
    - "cpu": the SOLO block of scripts/train_instance.sh (see SOLOv2Config) with the three switches on;
    - "cpu-nodcn": the same without DCNv2 (`facenet_nodcn` row).
    """

    face_fpn: bool = True
    sem: bool = True
    dcn: DCNPlace = "kernel"


PRESETS: dict[str, dict[str, Any]] = {
    "paper": {**SOLO_PAPER, "face_fpn": True, "sem": True, "dcn": "kernel"},
    "cpu": {**SOLO_CPU, "face_fpn": True, "sem": True, "dcn": "kernel"},
    "cpu-nodcn": {**SOLO_CPU, "face_fpn": True, "sem": True, "dcn": "none"},
}


def build_facenet(spec: ModelSpec) -> SOLOv2:
    """FACENet for `spec.bands` input bands and `spec.num_classes` classes."""
    return build_solo_model(spec, parse_config(FACENetConfig, spec.config, spec.architecture))
