"""Turn a training run's best checkpoint into a shipped model: evaluate it on the validation split,
store fp16 weights + spec + provenance + validation metrics in engine/shipped/<name>.pt, and write the
name, spec and metrics next to it as <name>.json (the README quotes the metrics; the QGIS plugin
lists models from these sidecars without importing torch).

    python scripts/ship_model.py --run runs/ssdd_lite0 --name ssdd-ship-maskrcnn \\
        --val-coco runs/splits/ssdd/val.json --images ../shared/data/ssdd/images
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from engine.checkpoint import Checkpoint, load_checkpoint, save_checkpoint  # noqa: E402
from engine.data.coco import CocoInstanceDataset  # noqa: E402
from engine.evaluation.coco_eval import evaluate_model  # noqa: E402
from engine.inference.predictor import Predictor  # noqa: E402
from engine.semantic.evaluate import evaluate_semantic_model  # noqa: E402
from engine.zoo import SHIPPED_DIR, write_sidecar  # noqa: E402


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--run", required=True, help="training run folder (best.pt, cmd.sh)")
    p.add_argument("--name", required=True, help="shipped model name")
    p.add_argument("--val-coco", required=True)
    p.add_argument("--images", required=True)
    p.add_argument("--checkpoint", default="best.pt", help="file inside --run")
    args = p.parse_args(argv)
    run = Path(args.run)
    ckpt = load_checkpoint(run / args.checkpoint)
    spec = ckpt.spec.with_updates(name=args.name)
    predictor = Predictor(Checkpoint(spec, ckpt.state_dict), "auto")
    bands = list(range(1, spec.bands + 1))
    dataset = CocoInstanceDataset(args.val_coco, args.images, spec.normalisation, bands)
    evaluate = evaluate_semantic_model if spec.task == "semantic" else evaluate_model
    val = evaluate(predictor.model, dataset, predictor.device)
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
    shipped_val = evaluate(Predictor(shipped, "auto").model, dataset, predictor.device)
    metrics["val_fp16"] = shipped_val
    save_checkpoint(Checkpoint(spec, shipped.state_dict, provenance, metrics), out)
    write_sidecar(args.name, Checkpoint(spec, shipped.state_dict, provenance, metrics))
    miou = (f"val mIoU {val['semantic']['mIoU']:.1f} (fp16 {shipped_val['semantic']['mIoU']:.1f}), "
            if "semantic" in val else "")
    print(f"shipped {out} ({out.stat().st_size / 1e6:.1f} MB): {miou}val mask AP {val['segm']['AP']:.1f} "
          f"(fp16 {shipped_val['segm']['AP']:.1f}), box AP {val['bbox']['AP']:.1f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
