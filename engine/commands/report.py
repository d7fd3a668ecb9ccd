"""`rsseg evaluate`, `split`, `score`, `models`, `info` and `env`: commands that measure and describe."""
from __future__ import annotations

import argparse
import json
import sys

from engine import cli_checks
from engine.commands.common import load_model, reported
from engine.errors import UserError


def cmd_evaluate(args: argparse.Namespace) -> int:
    from engine.evaluation.report import speed_line, write_json
    from engine.inference.predictor import Predictor
    from engine.progress import Reporter

    reporter = Reporter(args.progress, desc="evaluate", unit="img")
    with reported(reporter):
        bands = cli_checks.evaluate(args)
        label, ckpt = load_model(args.checkpoint, args.input_scale)
        if bands and len(bands) != ckpt.spec.bands:
            raise UserError(f"--bands {args.bands}: model '{ckpt.spec.name}' takes {ckpt.spec.bands} band(s) "
                            f"({', '.join(ckpt.spec.band_names)}); give {ckpt.spec.bands}, e.g. --bands "
                            f"{','.join(str(i + 1) for i in range(ckpt.spec.bands))}")
        predictor = Predictor(ckpt, args.device)
        task = predictor.task
        dataset = task.eval_dataset(ckpt.spec, args.coco, args.images, bands)
        for line in dataset.index.warnings():
            print(f"warning: {line}", file=sys.stderr)
        if not any(dataset.index.annotations.values()):
            raise UserError(f"--coco '{args.coco}': has no annotations to evaluate against; give the ground truth "
                            "COCO file of these images")
        reporter.start_fields = {"message": f"Evaluating {label} on {len(dataset)} images"}
        reporter.started(len(dataset))
        metrics = task.evaluate(predictor.model, dataset, predictor.device, progress=reporter.advance,
                                input_scale=ckpt.spec.input_scale)
        metrics = {"model": label, "coco": args.coco, "score_threshold": ckpt.spec.score_threshold, **metrics}
        out = write_json(args.out, metrics) if args.out else None
        reporter.done(model=label, images=metrics.get("images"), headline=task.headline(metrics),
                      score_name=task.score_name, output=str(out) if out else None)
    print(task.report(metrics), file=sys.stderr if args.progress == "jsonl" else sys.stdout)
    print(speed_line(metrics, str(predictor.device)), file=sys.stderr if args.progress == "jsonl" else sys.stdout)
    if out:
        print(f"written to {out}", file=sys.stderr)
    return 0


def cmd_split(args: argparse.Namespace) -> int:
    from engine.data.split import split_coco

    cli_checks.split(args)
    train, val = split_coco(args.coco, args.out, args.val_fraction, args.seed,
                            warn=lambda line: print(f"warning: {line}", file=sys.stderr))
    print(f"wrote {train} and {val}", file=sys.stderr)
    return 0


def cmd_score(args: argparse.Namespace) -> int:
    from engine.evaluation.report import write_json
    from engine.progress import Reporter
    from engine.vector.score import format_score, format_sweep, score_layers, sweep, write_unmatched

    reporter = Reporter(args.progress, desc="score")
    with reported(reporter):
        cli_checks.score(args)
        score, pred, ref = score_layers(args.prediction, args.reference, args.iou, args.class_field,
                                        args.score_field, args.prediction_layer, args.reference_layer,
                                        args.reference_class_field, args.min_score)
        swept = sweep(pred, ref, args.iou) if args.sweep else []
        written = {}
        for flag, path, layer, other, indices in (("--misses", args.misses, ref, pred, score.misses),
                                                  ("--false-alarms", args.false_alarms, pred, ref, score.false_alarms)):
            if path:
                written[flag[2:].replace("-", "_")] = str(write_unmatched(path, layer, indices, other, score, flag))
        out = None
        if args.out:
            out = write_json(args.out, {"prediction": args.prediction, "reference": args.reference,
                                        "min_score": args.min_score, **score.to_dict(), **sweep_dict(swept)})
        reporter.done(**score.to_dict(), **sweep_dict(swept), output=str(out) if out else None, **written)
    text = format_score(score)
    if swept:
        text += "\n\nall classes, by score threshold:\n" + format_sweep(swept, min(pred.scores, default=None))
    print(text, file=sys.stderr if args.progress == "jsonl" else sys.stdout)
    for path in ([out] if out else []) + list(written.values()):
        print(f"written to {path}", file=sys.stderr)
    return 0


def sweep_dict(swept: list) -> dict:
    """`rsseg score --sweep` rows -> {"sweep": [{threshold, tp, fp, fn, precision, recall, f1}],
    "sweep_best": {the row of the best F1}}."""
    from engine.vector.score import best_of_sweep

    if not swept:
        return {}
    rows = [{"threshold": t, **c.as_dict()} for t, c in swept]
    best = best_of_sweep(swept)
    return {"sweep": rows, "sweep_best": {"threshold": best[0], **best[1].as_dict()}}


def cmd_models(args: argparse.Namespace) -> int:
    from engine.zoo import describe_architectures, describe_model, model_listing

    if args.architectures:
        print(describe_architectures())
        return 0
    listing = model_listing()
    if args.json:
        print(json.dumps(listing, indent=2))
        return 0
    if not listing:
        print("no shipped models installed")
    for m in listing:
        print(describe_model(m["name"] + (" (default)" if m["default"] else ""), m["spec"], m["metrics"]))
    return 0


def cmd_info(args: argparse.Namespace) -> int:
    from engine.zoo import describe_model, model_info

    info = model_info(args.model)
    if args.json:
        print(json.dumps(info, indent=2, default=str))
        return 0
    print(describe_model(info["name"], info["spec"], info["metrics"]))
    print(f"    {info['path']}")
    return 0


def cmd_env(args: argparse.Namespace) -> int:
    from engine.environment import engine_environment, summary

    report = engine_environment()
    print(json.dumps(report, indent=2) if args.json else summary(report))
    return 0 if report["ok"] else 3

