"""The tiny overfit recipe of test_overfit_tiny.py for one SOLO-family model, one seed (not collected by pytest).

    python -m tests.engine.tiny_overfit_draws ARCH ['CONFIG_JSON'] [--seed N] [--pair-from ARCH]

ARCH: solov2 | facenet; CONFIG_JSON: overrides of the tiny SOLO config (e.g. '{"sem": false}'). --pair-from
copies every tensor of that architecture's model built with the same seed whose name and shape fit (the
trunk, head and mask branch), so two architectures start from the same draw of their shared modules.
Prints the mask AP on the 3 training images after 60 AdamW steps at lr 3e-3 (docs/experiments-instance.md).
"""
from __future__ import annotations

import argparse
import json
import tempfile
from pathlib import Path

import torch

from engine.data.coco import CocoInstanceDataset, collate
from engine.evaluation.coco_eval import evaluate_model
from engine.models import build_model
from engine.spec import Normalisation
from tests.data.make_fixtures import write_coco_dataset
from tests.engine.model_checks import SOLO, tiny_spec


def _paired(model: torch.nn.Module, source_arch: str, seed: int) -> int:
    """Copy the fitting tensors of `source_arch` built with `seed` into `model` -> how many were copied."""
    torch.manual_seed(seed)
    source = build_model(tiny_spec(source_arch, SOLO)).state_dict()
    own = model.state_dict()
    copied = 0
    for name, value in source.items():  # FACENet's trunk sits one level deeper (behind SEM)
        for candidate in (name, name.replace("backbone.body.", "backbone.body.trunk."),
                          name.replace("backbone.body.trunk.", "backbone.body.")):
            if candidate in own and own[candidate].shape == value.shape:
                own[candidate] = value.clone()
                copied += 1
                break
    model.load_state_dict(own)
    return copied


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("arch", choices=["solov2", "facenet"])
    p.add_argument("config", nargs="?", default="{}")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--pair-from", choices=["solov2", "facenet"])
    p.add_argument("--steps", type=int, default=60)
    args = p.parse_args(argv)
    torch.set_num_threads(1)
    coco = write_coco_dataset(Path(tempfile.mkdtemp()) / "coco", n_images=3, size=(64, 96))
    dataset = CocoInstanceDataset(coco, coco.parent, Normalisation())
    samples = [dataset[i] for i in range(len(dataset))]
    torch.manual_seed(args.seed)
    model = build_model(tiny_spec(args.arch, {**SOLO, **json.loads(args.config)}))
    if args.pair_from:
        print(f"paired: {_paired(model, args.pair_from, args.seed)} tensors from {args.pair_from}")
    optimiser = torch.optim.AdamW([q for q in model.parameters() if q.requires_grad], 0.003)
    model.train()
    for _ in range(args.steps):
        images, targets = collate(samples)
        loss = sum(model(images, targets).values())
        optimiser.zero_grad()
        loss.backward()
        optimiser.step()
    print(f"{args.arch} {args.config} seed {args.seed}: mask AP {evaluate_model(model, dataset)['segm']['AP']:.1f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
