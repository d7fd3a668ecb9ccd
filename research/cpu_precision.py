"""Does reduced precision pay on this CPU? COCO AP and time of one model in fp32, bf16 autocast and channels-last.

    python -m research.cpu_precision --checkpoint ssdd-ship-maskrcnn --coco runs/splits/ssdd/val.json \
        --images $DATA/ssdd/images --bands 1 [--modes fp32,bf16,bf16-channels-last] [--out F.json]

Each mode evaluates the whole split through ``engine.evaluation.coco_eval.evaluate_model`` (the code
behind ``rsseg evaluate``) with ``torch.autocast("cpu", dtype=torch.bfloat16)`` for the bf16 modes;
model outputs are cast back to float32 before scoring. Prints a markdown table: mask AP, box AP,
seconds per image and the speed-up over fp32.
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import torch

MODES = ("fp32", "fp32-channels-last", "bf16", "bf16-channels-last")


class FloatOutputs(torch.nn.Module):
    """Wraps a detector so that its floating-point outputs (bf16 under autocast) come back as float32."""

    def __init__(self, model: torch.nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, images: list[torch.Tensor]) -> list[dict[str, torch.Tensor]]:
        return [{k: v.float() if v.is_floating_point() else v for k, v in out.items()} for out in self.model(images)]


def evaluate_mode(mode: str, checkpoint: str, coco: str, images: str, bands: list[int] | None) -> dict:
    """One mode on a freshly loaded model: {"mode", "mask_ap", "box_ap", "seconds_per_image"}."""
    from engine.data.coco import CocoInstanceDataset
    from engine.evaluation.coco_eval import evaluate_model
    from engine.inference.predictor import Predictor
    from engine.zoo import resolve_model

    if mode not in MODES:
        raise SystemExit(f"--modes: unknown mode '{mode}'; choose from {', '.join(MODES)}")
    _, ckpt = resolve_model(checkpoint)
    predictor = Predictor(ckpt, "cpu")
    model = predictor.model
    if mode.endswith("channels-last"):
        model.to(memory_format=torch.channels_last)
    dataset = CocoInstanceDataset(coco, images, ckpt.spec.normalisation, bands or list(range(1, ckpt.spec.bands + 1)))
    start = time.perf_counter()
    with torch.autocast("cpu", dtype=torch.bfloat16, enabled=mode.startswith("bf16")):
        metrics = evaluate_model(FloatOutputs(model), dataset, predictor.device)
    seconds = time.perf_counter() - start
    return {"mode": mode, "mask_ap": metrics["segm"]["AP"], "box_ap": metrics["bbox"]["AP"],
            "seconds_per_image": seconds / len(dataset)}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--checkpoint", default="ssdd-ship-maskrcnn", help="shipped model name or .pt path")
    parser.add_argument("--coco", required=True, help="validation COCO json")
    parser.add_argument("--images", required=True, help="its images folder")
    parser.add_argument("--bands", help="comma-separated 1-based bands (default: the first spec.bands)")
    parser.add_argument("--modes", default="fp32,bf16,bf16-channels-last", help=f"any of {', '.join(MODES)}")
    parser.add_argument("--threads", type=int, default=0, help="torch CPU threads (0 = torch's default)")
    parser.add_argument("--out", help="also write the rows as JSON here")
    args = parser.parse_args(argv)
    if args.threads > 0:
        torch.set_num_threads(args.threads)
    bands = [int(b) for b in args.bands.split(",")] if args.bands else None
    rows = [evaluate_mode(m.strip(), args.checkpoint, args.coco, args.images, bands) for m in args.modes.split(",")]
    base = rows[0]["seconds_per_image"]
    lines = ["| mode | mask AP | box AP | s / image | speed vs first mode |", "|---|---|---|---|---|"]
    lines += [f"| {r['mode']} | {r['mask_ap']:.2f} | {r['box_ap']:.2f} | {r['seconds_per_image']:.3f} | "
              f"{base / r['seconds_per_image']:.2f}x |" for r in rows]
    print("\n".join(lines))
    if args.out:
        out = Path(args.out)
        out.parent.mkdir(parents=True, exist_ok=True)
        tmp = out.with_suffix(out.suffix + ".tmp")
        tmp.write_text(json.dumps({"checkpoint": args.checkpoint, "coco": args.coco, "rows": rows}, indent=2) + "\n")
        tmp.replace(out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
