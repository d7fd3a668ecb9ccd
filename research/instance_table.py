"""Compare instance checkpoints: a markdown table (printed and written) + JSON.

    python -m research.instance_table --coco runs/splits/ssdd/val.json --images $DATA/ssdd/images \
        --run "Mask R-CNN=runs/ssdd_mask_rcnn/last.pt" --run "HQ-ISNet=runs/ssdd_hq_isnet/last.pt" \
        --threads 2 --out out/instance_ssdd

Each run is LABEL=CHECKPOINT. The accuracy columns are the validation metrics the checkpoint carries
(`rsseg train` evaluates on --val-coco at the end of training with engine.evaluation.coco_eval;
`--reevaluate` computes them afresh on --coco instead). Time per image is always measured here, on the
first --time-images validation images, one image per forward pass, after one warm-up pass, with
--threads CPU threads, so every row is timed on the same machine under the same conditions.
`--metrics LABEL=RUN/log.jsonl` takes that row's accuracy and iterations from the last validation in a
training log instead (a run whose weights stayed elsewhere, e.g. on a GPU machine; the checkpoint of
the row then only gives the parameter count and the timing); `--run LABEL=RUN/log.jsonl` makes a row of
the log alone (parameters and timing n/a).
"""
from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch

from engine.data.coco import CocoInstanceDataset
from engine.evaluation.coco_eval import evaluate_model
from engine.inference.predictor import Predictor
from engine.normalise import normalise
from engine.zoo import resolve_model

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


def last_validation(log_path: str) -> dict:
    """Accuracy and schedule of the last epoch record with validation metrics in a training log.jsonl."""
    records = [json.loads(line) for line in Path(log_path).read_text().splitlines() if line.strip()]
    evaluated = [r for r in records if r.get("type") == "epoch" and "val" in r]
    if not evaluated:
        raise SystemExit(f"--metrics '{log_path}': no validation record; train with --val-coco")
    record = evaluated[-1]
    return {"segm": record["val"]["segm"], "bbox": record["val"]["bbox"], "val_images": record["val"]["images"],
            "iterations": record["iteration"], "epochs": record["epoch"], "metrics_from": log_path}


def run_metrics(path: str, coco: str, images: str, device: str, reevaluate: bool, time_images: int,
                log: str | None = None) -> dict:
    """The row of one checkpoint: COCO metrics (stored, fresh or from `log`), parameters, schedule, timing."""
    if path.endswith(".jsonl"):  # a training log alone
        return {**last_validation(path), "parameters": None, "seconds_per_image": None}
    _, ckpt = resolve_model(path)
    if ckpt.spec.task != "instance":
        raise SystemExit(f"checkpoint '{path}' is a {ckpt.spec.task} model; this table compares instance ones")
    predictor = Predictor(ckpt, device)
    dataset = CocoInstanceDataset(coco, images, ckpt.spec.normalisation, list(range(1, ckpt.spec.bands + 1)))
    if log:
        accuracy = last_validation(log)
    else:
        stored = (ckpt.metrics or {}).get("val")
        if reevaluate or not stored:
            stored = evaluate_model(predictor.model, dataset, predictor.device)
        accuracy = {"segm": stored["segm"], "bbox": stored["bbox"], "val_images": stored["images"],
                    "iterations": ckpt.provenance.get("iterations"), "epochs": ckpt.provenance.get("epochs_done"),
                    "metrics_from": path}
    return {
        "architecture": ckpt.spec.architecture,
        "config": ckpt.spec.config,
        **accuracy,
        "parameters": sum(int(t.numel()) for t in ckpt.state_dict.values() if t.is_floating_point()),
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
                  cell(m["bbox"]["AP"]),
                  "n/a" if m["parameters"] is None else f"{m['parameters'] / 1e6:.2f}",
                  "n/a" if m["seconds_per_image"] is None else f"{m['seconds_per_image'] * 1000:.0f}"]
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
    parser.add_argument("--metrics", action="append", default=[],
                        help="LABEL=LOG.jsonl: that row's accuracy from the training log's last validation")
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
    runs = [parse_run(text) for text in args.run]
    logs = dict(parse_run(text) for text in args.metrics)
    orphans = set(logs) - {label for label, _ in runs}
    if orphans:  # before any model is loaded
        raise SystemExit(f"--metrics for labels without a --run: {', '.join(sorted(orphans))}")
    rows = [(label, run_metrics(path, args.coco, args.images, args.device, args.reevaluate, args.time_images,
                                logs.get(label)))
            for label, path in runs]
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
