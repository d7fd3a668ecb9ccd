"""Reference data that pins the models' weights layout and outputs across refactors.

`python -m tests.engine.model_reference` rewrites tests/engine/data/model_reference.json from the current
code. It was written from commit 423783f (before the typed configs); rewrite it only for an intended change
of state_dict layout or outputs, since existing checkpoints load by those key names.

- "layouts": per tiny case (tests.engine.model_checks.LAYOUT_CASES) the number of state_dict entries, the
  entries per top-level module and a sha256 over the sorted "key shape dtype" lines;
- "shipped": per shipped checkpoint, its eval output on `reference_image` (instance models: the first
  detections; semantic models: per class, the summed probability and the pixels it wins).
"""
from __future__ import annotations

import hashlib
import json
from collections import Counter
from pathlib import Path

import torch
from torch import nn

from engine.checkpoint import load_checkpoint
from engine.models import build_model
from engine.zoo import shipped_models
from tests.engine.model_checks import LAYOUT_CASES, tiny_spec

REFERENCE = Path(__file__).parent / "data" / "model_reference.json"
SHIPPED_DETECTIONS = 10  # detections kept per shipped model (highest scores)


def state_layout(model: nn.Module) -> dict:
    """{"entries": n, "modules": {top-level name: entries}, "sha256": digest of the sorted key/shape/dtype lines}."""
    state = model.state_dict()
    lines = sorted(f"{k} {tuple(v.shape)} {v.dtype}" for k, v in state.items())
    return {"entries": len(state), "modules": dict(sorted(Counter(k.split(".")[0] for k in state).items())),
            "sha256": hashlib.sha256("\n".join(lines).encode()).hexdigest()}


def reference_image(bands: int, size: int = 160) -> torch.Tensor:
    """A normalised [bands, size, size] tile: dark noisy background with five bright rectangles (seeded)."""
    g = torch.Generator().manual_seed(7)
    image = -0.8 + 0.3 * torch.randn(bands, size, size, generator=g)
    for y, x, h, w in ((20, 30, 12, 40), (70, 100, 30, 10), (110, 20, 16, 16), (40, 120, 8, 24), (130, 90, 20, 50)):
        image[:, y:y + h, x:x + w] += 2.5
    return image


def shipped_model(path: Path) -> tuple[nn.Module, int]:
    """The shipped checkpoint as the Predictor loads it (fp32, strict) in eval mode, and its band count."""
    ckpt = load_checkpoint(path)
    model = build_model(ckpt.spec)
    model.load_state_dict({k: v.float() if v.is_floating_point() else v for k, v in ckpt.state_dict.items()},
                          strict=True)
    return model.eval(), ckpt.spec.bands


def shipped_outputs(model: nn.Module, bands: int) -> dict:
    """The model's output on reference_image: instance models, the first detections (boxes, scores, labels and
    mask sums in pixels of probability); semantic models ({"probs": [C,H,W]}), per class the summed
    probability (pixels) and the number of pixels whose top class it is."""
    with torch.no_grad():
        out = model([reference_image(bands)])[0]
    if "probs" in out:
        probs = out["probs"].float()
        return {"prob_sums": probs.sum(dim=(1, 2)).tolist(),
                "argmax_pixels": torch.bincount(probs.argmax(0).flatten(), minlength=len(probs)).tolist()}
    n = SHIPPED_DETECTIONS
    return {"count": len(out["scores"]), "boxes": out["boxes"][:n].tolist(), "scores": out["scores"][:n].tolist(),
            "labels": out["labels"][:n].tolist(), "mask_sums": out["masks"][:n].sum(dim=(1, 2, 3)).tolist()}


def main() -> None:
    torch.set_num_threads(1)
    layouts = {name: state_layout(build_model(tiny_spec(*case))) for name, case in LAYOUT_CASES.items()}
    shipped = {name: shipped_outputs(*shipped_model(path)) for name, path in shipped_models().items()}
    REFERENCE.write_text(json.dumps({"layouts": layouts, "shipped": shipped}, indent=1) + "\n")
    print(f"wrote {REFERENCE}")


if __name__ == "__main__":
    main()
