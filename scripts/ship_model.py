"""Turn a training run's best checkpoint into a shipped model: evaluate it on the validation split,
store fp16 weights + spec + provenance + validation metrics in engine/shipped/<name>.pt, and write the
name, spec and metrics next to it as <name>.json (the README quotes the metrics; the QGIS plugin
lists models from these sidecars without importing torch).

    python -m scripts.ship_model --run runs/ssdd_lite0 --name ssdd-ship-maskrcnn \\
        --val-coco runs/splits/ssdd/val.json --images ../shared/data/ssdd/images
"""
from __future__ import annotations

import argparse
from pathlib import Path

from engine.checkpoint import Checkpoint, load_checkpoint, save_checkpoint
from engine.inference.predictor import Predictor
from engine.tasks import task_of
from engine.tasks.base import format_headline
from engine.zoo import SHIPPED_DIR, write_sidecar


def chosen_threshold(text: str, val: dict, parser: argparse.ArgumentParser) -> float:
    """--score-threshold: 'best' -> the validation split's F1-best threshold (instance models), else the value."""
    if text == "best":
        if "objects" not in val:
            parser.error("--score-threshold best: only instance models report object F1; give a value")
        return float(val["objects"]["best"]["threshold"])
    try:
        value = float(text)
    except ValueError:
        value = -1.0
    if not 0.0 <= value <= 1.0:
        parser.error(f"--score-threshold {text}: give 'best' or a value between 0 and 1")
    return value


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--run", required=True, help="training run folder (best.pt; a cmd.sh there replaces the "
                                                    "training command the checkpoint records)")
    p.add_argument("--name", required=True, help="shipped model name")
    p.add_argument("--val-coco", required=True)
    p.add_argument("--images", required=True)
    p.add_argument("--checkpoint", default="best.pt", help="file inside --run")
    p.add_argument("--title", help="readable name for analysts, e.g. 'Ships in SAR images (SSDD), 1 band, ~3 m' "
                                   "(default: the run's spec.title, else one built from the spec)")
    p.add_argument("--description", help="what the model was trained on, shown in the model's card in the dock "
                                         "(default: the run's)")
    p.add_argument("--gsd-range", metavar="MIN,MAX",
                   help="pixel sizes in metres the model takes as they are (segment resamples others to its GSD), "
                        "e.g. 1,15 for a SAR ship model trained on SSDD's 1-15 m chips (default: the run's)")
    p.add_argument("--score-threshold", metavar="best|VALUE",
                   help="score threshold `segment` applies: a value, or 'best' for the one of the highest object F1 "
                        "on the validation split (default: the run's)")
    args = p.parse_args(argv)
    run = Path(args.run)
    ckpt = load_checkpoint(run / args.checkpoint)
    updates = {"name": args.name, **({"title": args.title} if args.title else {}),
               **({"description": args.description} if args.description else {})}
    if args.gsd_range:
        low, high = (float(v) for v in args.gsd_range.split(","))
        if not 0 < low <= ckpt.spec.gsd_m <= high:
            p.error(f"--gsd-range {args.gsd_range}: give MIN,MAX around the model's GSD ({ckpt.spec.gsd_m:g} m)")
        updates["gsd_range_m"] = (low, high)
    spec = ckpt.spec.with_updates(**updates)
    task = task_of(spec)
    predictor = Predictor(Checkpoint(spec, ckpt.state_dict), "auto")
    dataset = task.eval_dataset(spec, args.val_coco, args.images)
    val = task.evaluate(predictor.model, dataset, predictor.device, input_scale=spec.input_scale)
    if args.score_threshold:
        spec = spec.with_updates(score_threshold=chosen_threshold(args.score_threshold, val, p))
    provenance = dict(ckpt.provenance)
    cmd = run / "cmd.sh"
    if cmd.is_file():
        provenance["train_command"] = cmd.read_text().strip()
    provenance["validation_split"] = str(args.val_coco)
    metrics = {**ckpt.metrics, "val": val}
    out = save_checkpoint(Checkpoint(spec, ckpt.state_dict, provenance, metrics), SHIPPED_DIR / f"{args.name}.pt",
                          half=True)
    # fp16 weights: evaluate the file that ships, not only the fp32 original
    shipped = load_checkpoint(out)
    shipped_val = task.evaluate(Predictor(shipped, "auto").model, dataset, predictor.device,
                                input_scale=spec.input_scale)
    metrics["val_fp16"] = shipped_val
    save_checkpoint(Checkpoint(spec, shipped.state_dict, provenance, metrics), out)
    write_sidecar(args.name, Checkpoint(spec, shipped.state_dict, provenance, metrics))
    print(f"shipped {out} ({out.stat().st_size / 1e6:.1f} MB): val {format_headline(task.headline(val))}; "
          f"fp16 {format_headline(task.headline(shipped_val))}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
