"""`rsseg train` (a new model, or `--init MODEL` fine-tuning) and `rsseg chips` (training chips from a raster
and a polygon layer)."""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

from engine import cli_checks
from engine.commands.common import reported

# `train` defaults of a new model; with --init and no architecture flag, the base model's spec gives these instead
TRAIN_DEFAULTS = {"arch": "mask_rcnn", "sensor": "sar", "mean": (0.5,), "std": (0.5,), "scale": 1 / 255, "gsd": 1.0,
                  "input_scale": 1.0, "tile_size": 512, "overlap": 128, "score_threshold": 0.5}


ARCHITECTURE_FLAGS = ("arch", "backbone", "pretrained", "preset", "config")


def _finetune_spec(args: argparse.Namespace, checked: dict):
    """`train --init MODEL` without architecture flags: the base model's spec, the COCO file's classes, and the
    spec fields the user set."""
    from engine.data.coco import read_coco
    from engine.training.finetune import finetune_spec
    from engine.training.spec_builder import SAR_MODES, first_image_bands
    from engine.zoo import resolve_model

    label, base = resolve_model(args.init)
    index = read_coco(args.coco)
    bands = checked["bands"]
    given = {"band_names": tuple(checked["band_names"]) if checked["band_names"] else None, "gsd_m": args.gsd,
             "input_scale": cli_checks.input_scale(args.input_scale), "tile_size": args.tile_size,
             "overlap": args.overlap,
             "score_threshold": args.score_threshold, "description": args.description or None}
    norm = {"sar": SAR_MODES[args.sensor] if args.sensor else None, "scale": args.scale,
            "mean": checked["mean"], "std": checked["std"]}
    return finetune_spec(
        base.spec, name=args.name or Path(args.out).name, class_names=index.category_names,
        image_bands=len(bands) if bands else first_image_bands(index, args.coco, args.images), base_label=label,
        updates={k: v for k, v in given.items() if v is not None},
        normalisation={k: v for k, v in norm.items() if v is not None})


def _train_spec(args: argparse.Namespace, checked: dict):
    """The spec of the run: a fine-tuned base model (--init, no architecture flag) or a new model. `checked`:
    the values `cli_checks.train` parsed."""
    from engine.training.spec_builder import parse_overrides, training_spec

    if args.init and not any(getattr(args, flag) not in (None, False) for flag in ARCHITECTURE_FLAGS):
        return _finetune_spec(args, checked)
    d = {k: (v if getattr(args, k) is None else getattr(args, k)) for k, v in TRAIN_DEFAULTS.items()}
    overrides = {**({"backbone": args.backbone} if args.backbone else {}),
                 **({"pretrained": True} if args.pretrained else {}), **parse_overrides(args.config or "{}")}
    return training_spec(
        name=args.name or Path(args.out).name, arch=d["arch"], coco=args.coco, images=args.images,
        preset=args.preset, overrides=overrides, bands=checked["bands"],
        band_names=args.band_names.split(",") if args.band_names else None, sensor=d["sensor"],
        scale=d["scale"], mean=checked["mean"] or d["mean"], std=checked["std"] or d["std"],
        gsd_m=d["gsd"],
        input_scale=d["input_scale"], tile_size=d["tile_size"], overlap=d["overlap"],
        score_threshold=d["score_threshold"], description=args.description,
    )


def cmd_train(args: argparse.Namespace) -> int:
    from engine.progress import Reporter
    from engine.training.trainer import TrainConfig, Trainer

    # with --progress bar the trainer's own per-epoch bar (loss, lr) is the bar: no second one for the whole run
    reporter = Reporter("none" if args.progress == "bar" else args.progress, desc="train", unit="iteration")
    with reported(reporter):
        checked = cli_checks.train(args)
        spec = _train_spec(args, checked)
        cli_checks.normalisation_bands(args, checked["mean"], checked["std"], spec.bands)
        jitter = checked["jitter"]
        cfg = TrainConfig(
            coco=args.coco, images=args.images, out_dir=args.out, val_coco=args.val_coco,
            val_images=args.val_images, bands=checked["bands"], epochs=args.epochs, batch_size=args.batch_size,
            optimizer=args.optimizer, lr=args.lr, weight_decay=args.weight_decay, warmup_iters=args.warmup_iters,
            schedule=args.schedule, steps=checked["steps"], clip_grad=args.clip_grad, amp=not args.no_amp,
            seed=args.seed, workers=args.workers, eval_every=args.eval_every, crop_size=args.crop_size,
            min_scale=jitter[0], max_scale=jitter[1], max_iters_per_epoch=args.max_iters_per_epoch,
            device=args.device, resume=not args.no_resume, threads=args.threads, init=args.init,
            checkpoint_every=args.checkpoint_every, sar_augment=args.sar_augment, crowd_paste=args.crowd_paste,
        )
        # under torchrun: one rank of a DDP job (only the main one logs and reports)
        trainer = Trainer(spec, cfg, log=lambda m: print(m, file=sys.stderr), progress=reporter,
                          bar=args.progress == "bar", command_line=getattr(args, "command_line", None))
        reporter.start_fields = {"device": str(trainer.device), "message": (
            f"Training {spec.name} ({spec.architecture}, classes {', '.join(c.name for c in spec.classes)}) on "
            f"{len(trainer.train_set)} images, {cfg.epochs} epoch{'s' if cfg.epochs != 1 else ''}")}
        try:
            best = trainer.fit(stop_at=args.stop_at)
        finally:
            trainer.dist.close()
        if trainer.dist.is_main:
            reporter.done(output=str(best), best_score=trainer.best_score if trainer.best_score >= 0 else None,
                          score_name=trainer.task.score_name, epochs=trainer.epoch, iterations=trainer.iteration)
    if trainer.dist.is_main:
        print(f"trained: {best}", file=sys.stderr)
    return 0


def cmd_chips(args: argparse.Namespace) -> int:
    from engine.data.chips import make_chips
    from engine.progress import Reporter

    reporter = Reporter(args.progress, desc="chips", unit="chip")
    reporter.start_fields = {"message": f"Cutting chips of {args.raster} labelled by {args.polygons}"}

    announced: list[int] = []

    def progress(done: int, total: int) -> None:
        if not announced:  # the first call announces the total
            announced.append(total)
            reporter.started(total)
        reporter.advance(done, total)

    with reported(reporter):
        summary = make_chips(args.raster, args.polygons, args.out, cli_checks.chips(args), progress=progress)
        reporter.done(**summary.as_dict())
    print(str(summary), file=sys.stderr)
    return 0

