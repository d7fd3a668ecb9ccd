"""Overfit proof: can an architecture memorise 8 fixed training images?

    python -m research.overfit --arch NAME [--iters 600] [--data DIR] [--out DIR]
    python -m research.overfit --table DIR      # markdown table of every result in DIR

Instance architectures train on 8 SSDD chips (1-band amplitude), semantic ones on 8 NWPU VHR-10 images
(11-class maps), with the trunk each one is trained with (`RECIPES`), no augmentation, batch 2, for a fixed
number of iterations; then the mask AP (instance) or mIoU (semantic) is measured on the same 8 images.
A correct implementation reaches mask AP >= 70 or mIoU >= 80 within 600 iterations; one that does not has
a bug. The images are measured every --eval-every iterations and training stops at the bar. Writes
DIR/NAME.json with the result, the training time (measuring excluded) and the loss curve.
"""
from __future__ import annotations

import argparse
import json
import math
import random
import time
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch

from engine.data.class_maps import CocoSemanticDataset
from engine.data.coco import CocoInstanceDataset, collate, read_coco
from engine.data.transforms import Compose, ScaleJitter
from engine.evaluation.coco_eval import evaluate_model
from engine.evaluation.semantic_eval import evaluate_semantic_model
from engine.models import MODELS, build_model, resolve_config
from engine.spec import ModelSpec, Normalisation, classes_from_names

DEFAULT_DATA = Path("../shared/data")


@dataclass(frozen=True)
class Recipe:
    """How one architecture is overfitted: its `cpu` preset (the trunk it is trained with) plus overrides,
    the optimiser and the learning rate."""

    overrides: dict[str, Any] = field(default_factory=dict)
    optimizer: str = "sgd"
    lr: float = 0.01
    warmup: int = 50

    def config(self, arch: str) -> dict[str, Any]:
        return resolve_config(arch, "cpu", self.overrides)


RECIPES: dict[str, Recipe] = {
    "mask_rcnn": Recipe(),
    "cascade_mask_rcnn": Recipe(),
    "hq_isnet": Recipe(),
    # SOLO heads collapse at high rates (every mask empty, Dice loss at its maximum: loss_mask 3.0). Measured on
    # the 8 SSDD images (`--iters 40 --eval-every 40 --warmup 10 --optimizer O --lr LR`), loss_mask and mask AP:
    # SGD 0.01 and AdamW 1e-3 (warm-up 50) still 3.0 after 100 iterations; after 40: SGD 0.00125: 2.5, AP 2.8;
    # AdamW 1e-4: 0.39, AP 45.0
    "solov2": Recipe(optimizer="adamw", lr=1e-4),
    "facenet": Recipe(optimizer="adamw", lr=1e-4),
    "semantic_fpn": Recipe(optimizer="adamw", lr=1e-3),
    "farseg": Recipe(optimizer="adamw", lr=1e-3),
    "hi_resnet": Recipe(optimizer="adamw", lr=1e-3),
    "c2fnet": Recipe({"train_coarse": True}, "adamw", 1e-3),  # no trained coarse model here: train both
}
SSDD_NORM = Normalisation(mean=(0.5,), std=(0.5,))
NWPU_NORM = Normalisation(mean=(0.485, 0.456, 0.406), std=(0.229, 0.224, 0.225), sar="none")


def subset_coco(src: Path, out: Path, n: int) -> Path:
    """`n` images that hold annotations, chosen to show every class -> a COCO file at `out`.

    Greedy set cover in file-name order: each pick is the image that adds the most classes not yet seen (the
    first by file name on a tie), so a one-class dataset (SSDD) gives its first `n` images by name and NWPU
    VHR-10 gives 6 images covering its 10 classes, then its first 2 by name. Written in file-name order."""
    data = json.loads(src.read_text())
    classes: dict[int, set[int]] = {}
    for a in data["annotations"]:
        classes.setdefault(a["image_id"], set()).add(a["category_id"])
    candidates = sorted((im for im in data["images"] if im["id"] in classes), key=lambda im: im["file_name"])
    seen: set[int] = set()
    chosen: list[dict] = []
    for _ in range(min(n, len(candidates))):
        pick = max((im for im in candidates if im not in chosen), key=lambda im: len(classes[im["id"]] - seen))
        chosen.append(pick)
        seen |= classes[pick["id"]]
    images = sorted(chosen, key=lambda im: im["file_name"])
    keep = {im["id"] for im in images}
    subset = {**data, "images": images, "annotations": [a for a in data["annotations"] if a["image_id"] in keep]}
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(subset))
    return out


def subset_class_names(coco: Path) -> list[str]:
    """Names of the classes that the annotations of `coco` hold, sorted."""
    data = json.loads(coco.read_text())
    names = {c["id"]: c["name"] for c in data["categories"]}
    return sorted({names[a["category_id"]] for a in data["annotations"]})


def build(arch: str, data: Path, work: Path, n_images: int, config: dict[str, Any], scale: float = 1.0):
    """(spec, dataset, COCO file) for `arch` on its 8 fixed images, resized by `scale` (the spec's input_scale)."""
    semantic = MODELS[arch].task == "semantic"
    folder, norm, bands = ("nwpu_vhr10", NWPU_NORM, None) if semantic else ("ssdd", SSDD_NORM, [1])
    coco = subset_coco(data / folder / "train.json", work / f"{folder}_{n_images}.json", n_images)
    names = read_coco(coco).category_names
    spec = ModelSpec(name=f"overfit-{arch}", architecture=arch, task=MODELS[arch].task, config=config,
                     classes=classes_from_names(names), bands=3 if semantic else 1, normalisation=norm,
                     input_scale=scale)
    dataset_type = CocoSemanticDataset if semantic else CocoInstanceDataset
    resize = Compose([ScaleJitter(scale, scale)]) if scale != 1.0 else None
    return spec, dataset_type(coco, data / folder / "images", norm, bands, resize), coco


BARS = {"instance": 70.0, "semantic": 80.0}  # mask AP, mIoU (percent)


def _score(metrics: dict[str, Any]) -> float:
    """The overfit measure: mIoU for semantic models, mask AP for instance models."""
    return float(metrics["semantic"]["mIoU"]) if "semantic" in metrics else float(metrics["segm"]["AP"])


def overfit(arch: str, iters: int, data: Path, work: Path, n_images: int = 8, lr: float | None = None,
            seed: int = 0, threads: int = 2, eval_every: int = 100, scale: float = 1.0) -> dict[str, Any]:
    """Train `arch` on `n_images` fixed images (batch 2, no augmentation) for up to `iters` iterations,
    measuring every `eval_every` iterations and stopping once the bar is reached -> result."""
    recipe = RECIPES[arch]
    torch.manual_seed(seed)
    random.seed(seed)
    np.random.seed(seed)
    torch.set_num_threads(threads)
    spec, dataset, coco = build(arch, data, work, n_images, recipe.config(arch), scale)
    samples = [dataset[i] for i in range(len(dataset))]  # decoded once: the same images every step
    model = build_model(spec)
    params = [p for p in model.parameters() if p.requires_grad]
    base_lr = lr or recipe.lr
    optim = (torch.optim.AdamW(params, base_lr, weight_decay=1e-4) if recipe.optimizer == "adamw"
             else torch.optim.SGD(params, base_lr, momentum=0.9, weight_decay=1e-4))
    evaluate = evaluate_semantic_model if spec.task == "semantic" else evaluate_model
    bar = BARS[spec.task]
    model.train()
    curve, checks, order, start, eval_seconds = [], [], [], time.perf_counter(), 0.0
    for it in range(iters):
        if len(order) < 2:
            order += random.sample(range(len(samples)), len(samples))
        batch = [samples[order.pop(0)], samples[order.pop(0)]]
        images, targets = collate(batch)
        warm = min(1.0, (it + 1) / recipe.warmup)
        for group in optim.param_groups:
            group["lr"] = base_lr * warm * 0.5 * (1 + math.cos(math.pi * it / iters))
        losses = model(images, targets)
        loss = sum(losses.values())
        if not torch.isfinite(loss):
            raise FloatingPointError(f"{arch}: loss {loss.item()} at iteration {it}")
        optim.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 10.0)
        optim.step()
        if it % 20 == 0 or it == iters - 1:
            curve.append({"iteration": it, "loss": round(loss.item(), 4),
                          **{k: round(v.item(), 4) for k, v in losses.items()}})
            print(f"{arch} it {it}: loss {loss.item():.4f}", flush=True)
        if (it + 1) % eval_every == 0 or it == iters - 1:
            t0 = time.perf_counter()
            metrics = evaluate(model, dataset, input_scale=scale)  # on the full-size truth
            model.train()
            eval_seconds += time.perf_counter() - t0
            checks.append({"iteration": it + 1, "score": _score(metrics)})
            print(f"{arch} after {it + 1} iterations: {checks[-1]['score']:.1f} (bar {bar:.0f})", flush=True)
            if checks[-1]["score"] >= bar:
                break
    seconds = time.perf_counter() - start - eval_seconds
    result = {"arch": arch, "scale": scale, "iterations": checks[-1]["iteration"], "max_iterations": iters,
              "checks": checks,
              "images": len(dataset), "image_classes": subset_class_names(coco), "seconds": round(seconds, 1),
              "lr": base_lr, "optimizer": recipe.optimizer, "mask_AP": metrics["segm"]["AP"],
              "box_AP": metrics["bbox"]["AP"], "curve": curve}
    if "semantic" in metrics:
        result["mIoU"] = metrics["semantic"]["mIoU"]
        result["per_class_IoU"] = {name: v["IoU"] for name, v in metrics["semantic"]["per_class"].items()}
    result["config_overrides"] = recipe.overrides  # the recipe's own (C2FNet's) and any --config ones
    return result


def table(folder: Path) -> str:
    """Markdown table of DIR/*.json results."""
    rows = ["| architecture | task | classes in the images | optimiser, lr | image scale | iterations | seconds "
            "| result | bar | passes |", "|---|---|---|---|---|---|---|---|---|---|"]
    for path in sorted(folder.glob("*.json")):
        r = json.loads(path.read_text())
        semantic = "mIoU" in r
        value, bar = (r["mIoU"], 80.0) if semantic else (r["mask_AP"], 70.0)
        kind, metric = ("semantic", "mIoU") if semantic else ("instance", "mask AP")
        classes = r.get("image_classes")
        shown = "not recorded" if classes is None else (", ".join(classes) if len(classes) < 3 else f"{len(classes)}")
        rows.append(f"| {r['arch']} | {kind} | {shown} | {r['optimizer']} {r['lr']:g} | {r.get('scale', 1.0):g} | "
                    f"{r['iterations']} | {r['seconds']:.0f} | {metric} {value:.1f} | {bar:.0f} | "
                    f"{'yes' if value >= bar else 'no'} |")
    return "\n".join(rows)


def config_overrides(items: list[str], parser: argparse.ArgumentParser) -> dict[str, Any]:
    """Repeated `--config KEY=JSON` values -> {key: value}; a parser error for an item without '='."""
    overrides: dict[str, Any] = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep:
            parser.error(f"--config {item}: give KEY=JSON, e.g. edge_loss=false")
        overrides[key] = json.loads(value)
    return overrides


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--arch", choices=sorted(RECIPES))
    parser.add_argument("--iters", type=int, default=600)
    parser.add_argument("--images", type=int, default=8)
    parser.add_argument("--lr", type=float, help="learning rate (default: the recipe's)")
    parser.add_argument("--optimizer", choices=["sgd", "adamw"], help="default: the recipe's")
    parser.add_argument("--warmup", type=int, help="linear warm-up iterations (default: the recipe's, 50)")
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA, help="data folder (default: %(default)s)")
    parser.add_argument("--out", type=Path, default=Path("runs/overfit"), help="results folder")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--eval-every", type=int, default=100, help="measure every N iterations; stop at the bar")
    parser.add_argument("--scale", type=float, default=1.0,
                        help="train on the images resized by this factor; measured on the full-size truth")
    parser.add_argument("--config", action="append", default=[], metavar="KEY=JSON",
                        help="override one config key of the recipe (repeatable), e.g. edge_loss=false")
    parser.add_argument("--tag", help="result file stem (default: the architecture's name)")
    parser.add_argument("--table", type=Path, help="print the markdown table of a results folder and exit")
    args = parser.parse_args(argv)
    if args.table:
        print(table(args.table))
        return 0
    if not args.arch:
        parser.error("--arch is required (or --table)")
    recipe = RECIPES[args.arch]
    overrides = dict(recipe.overrides)
    overrides.update(config_overrides(args.config, parser))
    RECIPES[args.arch] = replace(recipe, optimizer=args.optimizer or recipe.optimizer,
                                 warmup=args.warmup or recipe.warmup, overrides=overrides)
    result = overfit(args.arch, args.iters, args.data, args.out / "data", args.images, args.lr, threads=args.threads,
                     eval_every=args.eval_every, scale=args.scale)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / f"{args.tag or args.arch}.json").write_text(json.dumps(result, indent=1))
    value = f"mIoU {result['mIoU']:.1f}" if "mIoU" in result else f"mask AP {result['mask_AP']:.1f}"
    print(f"{args.arch}: {value} after {result['iterations']} iterations in {result['seconds']:.0f} s (training only)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
