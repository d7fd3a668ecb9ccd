"""Compare semantic checkpoints on one validation set: a markdown table (printed and written) + JSON.

    python -m research.semantic_table --coco runs/splits/nwpu/val.json --images $DATA/nwpu_vhr10/images \
        --run "Semantic FPN=runs/nwpu_semantic_fpn/last.pt" --run "FarSeg=runs/nwpu_farseg/last.pt" \
        --run "C2FNet off=runs/nwpu_c2fnet/last.pt@refine=false" --run "C2FNet=runs/nwpu_c2fnet/last.pt" \
        --small vehicle,ship,storage_tank --out out/semantic_nwpu

Each run is LABEL=CHECKPOINT[@refine=false]; `@refine=false` evaluates a C2FNet checkpoint with its coarse
model only (same weights). Every run is evaluated afresh by engine.evaluation.semantic_eval (whole images, no
augmentation): mIoU with and without background, per-class IoU of the `--small` classes, mean F1, OA,
COCO mask AP of the connected components (score = mean class probability), parameters, CPU time per image.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import torch

from engine.data.coco import CocoInstanceDataset
from engine.evaluation.semantic_eval import evaluate_semantic_model
from engine.inference.predictor import Predictor
from engine.zoo import resolve_model


def parse_run(text: str) -> tuple[str, str, bool]:
    """'LABEL=PATH[@refine=false]' -> (label, path, refine)."""
    if "=" not in text:
        raise SystemExit(f"--run '{text}': write LABEL=CHECKPOINT[@refine=false]")
    label, rest = text.split("=", 1)
    path, _, option = rest.partition("@")
    if option and option != "refine=false":
        raise SystemExit(f"--run '{text}': the only option is @refine=false")
    return label, path, not option


def evaluate_run(path: str, refine: bool, coco: str, images: str, device: str) -> dict:
    """Metrics of one checkpoint (engine.evaluation.semantic_eval) plus parameters and provenance."""
    _, ckpt = resolve_model(path)
    if ckpt.spec.task != "semantic":
        raise SystemExit(f"checkpoint '{path}' is a {ckpt.spec.task} model; this table compares semantic ones")
    predictor = Predictor(ckpt, device)
    model = predictor.model
    if not refine:
        if not hasattr(model, "refine"):
            raise SystemExit(f"checkpoint '{path}': @refine=false applies to c2fnet checkpoints only")
        model.refine = False
    dataset = CocoInstanceDataset(coco, images, ckpt.spec.normalisation, list(range(1, ckpt.spec.bands + 1)))
    from tqdm import tqdm

    with tqdm(total=len(dataset), desc=Path(path).parent.name, unit="img", file=sys.stderr) as bar:
        metrics = evaluate_semantic_model(model, dataset, predictor.device,
                                          progress=lambda done, total: bar.update(done - bar.n))
    metrics["parameters"] = sum(int(t.numel()) for t in ckpt.state_dict.values() if t.is_floating_point())
    metrics["architecture"] = ckpt.spec.architecture
    metrics["epochs"] = ckpt.provenance.get("epochs_done")
    return metrics


def table(rows: list[tuple[str, dict]], small: list[str]) -> str:
    """Markdown table of the runs' metrics (percent; parameters in millions; ms per image)."""
    def cell(value) -> str:
        return "n/a" if value is None else f"{value:.2f}"

    head = ["model", "epochs", "mIoU", "mIoU w/o bg", *[f"IoU {n}" for n in small], "mean small IoU", "mF1",
            "OA", "component mask AP", "AP50", "params (M)", "ms/image (CPU)"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for label, m in rows:
        sem = m["semantic"]
        ious = [sem["per_class"][n]["IoU"] for n in small]
        mean_small = sum(v for v in ious if v is not None) / max(1, sum(v is not None for v in ious))
        values = [label, str(m.get("epochs")), cell(sem["mIoU"]), cell(sem["mIoU_no_bg"]), *map(cell, ious),
                  cell(mean_small), cell(sem["mF1"]), cell(sem["OA"]), cell(m["segm"]["AP"]), cell(m["segm"]["AP50"]),
                  f"{m['parameters'] / 1e6:.2f}", f"{m['seconds_per_image'] * 1000:.0f}"]
        lines.append("| " + " | ".join(values) + " |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--run", action="append", required=True, help="LABEL=CHECKPOINT[@refine=false]")
    parser.add_argument("--coco", required=True)
    parser.add_argument("--images", required=True)
    parser.add_argument("--small", default="", help="comma-separated class names whose IoU gets a column")
    parser.add_argument("--device", default="auto")
    parser.add_argument("--threads", type=int, default=0, help="CPU threads (0 = torch's default)")
    parser.add_argument("--out", help="output stem: writes STEM.md and STEM.json")
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    small = [n for n in args.small.split(",") if n]
    rows = []
    for text in args.run:
        label, path, refine = parse_run(text)
        rows.append((label, evaluate_run(path, refine, args.coco, args.images, args.device)))
    markdown = table(rows, small)
    print(markdown)
    if args.out:
        stem = Path(args.out)
        stem.parent.mkdir(parents=True, exist_ok=True)
        for suffix, text in ((".md", markdown + "\n"), (".json", json.dumps(dict(rows), indent=2))):
            tmp = stem.with_suffix(suffix + ".tmp")
            tmp.write_text(text)
            tmp.replace(stem.with_suffix(suffix))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
