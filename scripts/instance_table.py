"""Compare instance checkpoints: a markdown table (printed and written) + JSON.

    python scripts/instance_table.py --coco runs/splits/ssdd/val.json --images ../shared/data/ssdd/images \
        --run "Mask R-CNN=runs/ssdd_mask_rcnn/last.pt" --run "HQ-ISNet=runs/ssdd_hq_isnet/last.pt" \
        --threads 2 --out out/instance_ssdd

Each run is LABEL=CHECKPOINT. The accuracy columns are the validation metrics the checkpoint carries
(`rsseg train` evaluates on --val-coco at the end of training with engine.evaluation.coco_eval;
`--reevaluate` computes them afresh on --coco instead). Time per image is always measured here, on the
first --time-images validation images, one image per forward pass, after one warm-up pass, with
--threads CPU threads, so every row is timed on the same machine under the same conditions.
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from engine.data.coco import CocoInstanceDataset  # noqa: E402
from engine.evaluation.coco_eval import evaluate_model  # noqa: E402
from engine.inference.predictor import Predictor  # noqa: E402
from engine.normalise import normalise  # noqa: E402
from engine.zoo import resolve_model  # noqa: E402

METRIC_KEYS = ("AP", "AP50", "AP75", "APs", "APm", "APl")


def parse_run(text: str) -> tuple[str, str]:
    """'LABEL=PATH' -> (label, path)."""
    label, sep, path = text.partition("=")
    if not sep or not label or not path:
        raise SystemExit(f"--run '{text}': write LABEL=CHECKPOINT")
    return label, path


@torch.no_grad()
def seconds_per_image(model: torch.nn.Module, dataset: CocoInstanceDataset, device: torch.device, count: int) -> float:
    """Mean wall seconds of one forward pass over the first `count` images (after one warm-up pass)."""
    model.eval()
    images = [torch.from_numpy(normalise(dataset.load_raw(i)[0], dataset.normalisation)).to(device)
              for i in range(min(count, len(dataset)))]
    model([images[0]])
    start = time.perf_counter()
    for image in images:
        model([image])
    return (time.perf_counter() - start) / len(images)


def run_metrics(path: str, coco: str, images: str, device: str, reevaluate: bool, time_images: int) -> dict:
    """The row of one checkpoint: COCO metrics (stored or fresh), parameters, schedule, time per image."""
    _, ckpt = resolve_model(path)
    if ckpt.spec.task != "instance":
        raise SystemExit(f"checkpoint '{path}' is a {ckpt.spec.task} model; this table compares instance ones")
    predictor = Predictor(ckpt, device)
    dataset = CocoInstanceDataset(coco, images, ckpt.spec.normalisation, list(range(1, ckpt.spec.bands + 1)))
    stored = (ckpt.metrics or {}).get("val")
    if reevaluate or not stored:
        stored = evaluate_model(predictor.model, dataset, predictor.device)
    return {
        "architecture": ckpt.spec.architecture,
        "config": ckpt.spec.config,
        "segm": stored["segm"], "bbox": stored["bbox"], "val_images": stored["images"],
        "parameters": sum(int(t.numel()) for t in ckpt.state_dict.values() if t.is_floating_point()),
        "iterations": ckpt.provenance.get("iterations"), "epochs": ckpt.provenance.get("epochs_done"),
        "seconds_per_image": seconds_per_image(predictor.model, dataset, predictor.device, time_images),
        "threads": torch.get_num_threads(), "device": str(predictor.device),
    }


def table(rows: list[tuple[str, dict]]) -> str:
    """Markdown table: mask AP columns, box AP, parameters (millions), ms per image."""
    def cell(value) -> str:
        return "n/a" if value is None or value < 0 else f"{value:.2f}"  # COCOeval: -1 = no such objects

    head = ["model", "iterations", *[f"mask {k}" for k in METRIC_KEYS], "box AP", "params (M)", "ms/image"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for label, m in rows:
        values = [label, str(m["iterations"]), *(cell(m["segm"][k]) for k in METRIC_KEYS),
                  cell(m["bbox"]["AP"]), f"{m['parameters'] / 1e6:.2f}", f"{m['seconds_per_image'] * 1000:.0f}"]
        lines.append("| " + " | ".join(values) + " |")
    return "\n".join(lines)


def write_atomic(path: Path, text: str) -> None:
    """Write through a temporary file, renamed at the end."""
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text)
    tmp.replace(path)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--run", action="append", required=True, help="LABEL=CHECKPOINT")
    parser.add_argument("--coco", required=True, help="validation COCO json (timing; and --reevaluate)")
    parser.add_argument("--images", required=True)
    parser.add_argument("--reevaluate", action="store_true", help="evaluate afresh instead of the stored metrics")
    parser.add_argument("--time-images", type=int, default=20, help="validation images timed per model")
    parser.add_argument("--device", default="auto")
    parser.add_argument("--threads", type=int, default=0, help="CPU threads (0 = torch's default)")
    parser.add_argument("--out", help="output stem: writes STEM.md and STEM.json")
    args = parser.parse_args(argv)
    if args.time_images < 1:
        raise SystemExit("--time-images must be at least 1")
    if args.threads:
        torch.set_num_threads(args.threads)
    rows = []
    for text in args.run:
        label, path = parse_run(text)
        rows.append((label, run_metrics(path, args.coco, args.images, args.device, args.reevaluate,
                                        args.time_images)))
    markdown = table(rows)
    print(markdown)
    if args.out:
        stem = Path(args.out)
        stem.parent.mkdir(parents=True, exist_ok=True)
        write_atomic(stem.with_suffix(".md"), markdown + "\n")
        write_atomic(stem.with_suffix(".json"), json.dumps(dict(rows), indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
