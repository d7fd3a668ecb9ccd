"""Human-readable metric tables and metrics JSON files (written atomically).

Metrics are percent; None (a class neither present nor predicted, a COCO size range without ground
truth) prints as n/a.
"""
from __future__ import annotations

import json
import os
import uuid
from pathlib import Path
from typing import Any

from engine.evaluation.coco_eval import METRIC_NAMES


def _cell(value: float | None) -> str:
    return f"{value:8.1f}" if value is not None else f"{'n/a':>8}"


def coco_table(metrics: dict[str, Any]) -> str:
    """COCO AP table: one row per IoU type ("bbox", "segm"), columns AP, AP50, AP75, APs, APm, APl."""
    lines = [f"{'':6}" + "".join(f"{n:>8}" for n in METRIC_NAMES)]
    for kind in ("bbox", "segm"):
        lines.append(f"{kind:6}" + "".join(_cell(metrics[kind][n]) for n in METRIC_NAMES))
    return "\n".join(lines)


def semantic_table(semantic: dict[str, Any]) -> str:
    """Per-class IoU/F1 table and the means (mIoU, mF1 with and without background, OA)."""
    width = max(len(n) for n in semantic["per_class"]) + 2
    lines = [f"{'class':{width}}{'IoU':>8}{'F1':>8}"]
    for name, scores in semantic["per_class"].items():
        lines.append(f"{name:{width}}{_cell(scores['IoU'])}{_cell(scores['F1'])}")
    mean = {key: _cell(semantic[key]).strip() for key in ("mIoU", "mIoU_no_bg", "mF1", "mF1_no_bg", "OA")}
    lines.append(f"mIoU {mean['mIoU']} (without background {mean['mIoU_no_bg']}), "
                 f"mF1 {mean['mF1']} (without background {mean['mF1_no_bg']}), OA {mean['OA']}")
    return "\n".join(lines)


def speed_line(metrics: dict[str, Any], device: str) -> str:
    """'images: n, t ms/image on DEVICE' from the evaluation loop's counts."""
    return f"images: {metrics['images']}, {metrics['seconds_per_image'] * 1000:.0f} ms/image on {device}"


def write_json(path: str | os.PathLike, data: dict[str, Any]) -> Path:
    """`data` as indented JSON at `path`, written atomically (temp file + rename); parent folders created."""
    out = Path(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.parent / f".rsseg-{uuid.uuid4().hex[:8]}.tmp"  # short: whatever the length of out's name
    try:
        tmp.write_text(json.dumps(data, indent=2))
        os.replace(tmp, out)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return out
