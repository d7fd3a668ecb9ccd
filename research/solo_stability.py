"""A few plain SGD steps of a SOLOv2/FACENet configuration on fixed training chips: losses and gradient norm
per step, to see whether the mask branch survives the first iterations (a dead one pins loss_mask at
mask_loss_weight x 1, the Dice maximum).

    python -m research.solo_stability --arch facenet --coco runs/splits/ssdd/train.json \
        --images $DATA/ssdd/images --bands 1 --config '{"frozen_blocks": 3, "fpn_channels": 128}'

Same model build, loss and gradient clipping (10) as `rsseg train`; no warm-up, no augmentation, so a
configuration is judged on the same data in the same order. `--torchvision-dcn` runs DCNv2 through
torchvision's kernel on the CPU as well (the default CPU path is engine.models.layers.dcnv2's own).
"""
from __future__ import annotations

import argparse
import json

import torch

from engine.data.coco import CocoInstanceDataset
from engine.models import build_model
from engine.models.layers import dcnv2
from engine.spec import ModelSpec, Normalisation, classes_from_names


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--arch", default="facenet", choices=("solov2", "facenet"))
    parser.add_argument("--config", default="{}", help="JSON config overrides (the model is built pretrained)")
    parser.add_argument("--coco", required=True)
    parser.add_argument("--images", required=True)
    parser.add_argument("--bands", default="1", help="comma-separated 1-based bands")
    parser.add_argument("--mean", type=float, default=0.5)
    parser.add_argument("--std", type=float, default=0.5)
    parser.add_argument("--chips", type=int, default=8, help="first N training chips, 2 per step, cycled")
    parser.add_argument("--steps", type=int, default=12)
    parser.add_argument("--lr", type=float, default=0.004)
    parser.add_argument("--torchvision-dcn", action="store_true")
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    if args.torchvision_dcn:
        dcnv2.sampled_deform_conv2d = dcnv2.deform_conv2d
    bands = [int(b) for b in args.bands.split(",")]
    config = {"backbone": "efficientnet_lite0", "pretrained": True, **json.loads(args.config)}
    spec = ModelSpec(name="stability", architecture=args.arch, classes=classes_from_names(["ship"]), bands=len(bands),
                     config=config, normalisation=Normalisation(mean=(args.mean,) * len(bands),
                                                                std=(args.std,) * len(bands)))
    torch.manual_seed(0)
    model = build_model(spec).train()
    data = CocoInstanceDataset(args.coco, args.images, spec.normalisation, bands)
    items = [data[i] for i in range(min(args.chips, len(data)))]
    params = [p for p in model.parameters() if p.requires_grad]
    optimiser = torch.optim.SGD(params, lr=args.lr, momentum=0.9, weight_decay=1e-4)
    print("| step | loss_category | loss_mask | gradient norm |\n|---|---|---|---|")
    for step in range(args.steps):
        start = (2 * step) % len(items)
        images, targets = zip(*items[start:start + 2])
        losses = model(list(images), list(targets))
        optimiser.zero_grad()
        sum(losses.values()).backward()
        norm = torch.nn.utils.clip_grad_norm_(params, 10.0)
        optimiser.step()
        category, mask = (float(losses[k].detach()) for k in ("loss_category", "loss_mask"))
        print(f"| {step} | {category:.3f} | {mask:.3f} | {float(norm):.1f} |", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
