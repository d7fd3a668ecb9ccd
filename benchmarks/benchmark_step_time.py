"""Training step time of SOLOv2 and FACENet, and the share of each FACENet part (FACE-FPN, SEM, DCNv2).

    python -m benchmarks.benchmark_step_time [--data ../shared/data] [--steps 6] [--warmup-steps 2]
        [--threads 2] [--variant NAME ...] [--out-dir out/benchmark] [--tag step_time]

Each variant is the `cpu` preset of its architecture with one switch changed, trained for `--warmup-steps`
untimed and `--steps` timed iterations (batch 2, AdamW 1e-4, forward + backward + step) on the overfit proof's
first SSDD chips (research.overfit). A part's share of FACENet's step is (FACENet - FACENet without it) /
FACENet. Times are only comparable from an otherwise idle machine. Writes `<tag>.md` and `<tag>.json` to
--out-dir and prints the table.
"""
from __future__ import annotations

import argparse
import json
import platform
import statistics
import sys
import time
from pathlib import Path
from typing import Any

VARIANTS: dict[str, tuple[str, dict[str, Any]]] = {
    "solov2": ("solov2", {}),
    "facenet": ("facenet", {}),
    "facenet_no_dcn": ("facenet", {"dcn": "none"}),
    "facenet_no_sem": ("facenet", {"sem": False}),
    "facenet_no_face_fpn": ("facenet", {"face_fpn": False}),
}


def time_steps(arch: str, overrides: dict[str, Any], data: Path, work: Path, steps: int, warmup: int) -> list[float]:
    """Seconds of each timed training step (batch 2) of `arch`'s cpu preset with `overrides`."""
    import torch

    from engine.data.coco import collate
    from engine.models import build_model, resolve_config
    from research.overfit import build

    torch.manual_seed(0)
    spec, dataset, _ = build(arch, data, work, 8, resolve_config(arch, "cpu", overrides))
    samples = [dataset[i] for i in range(len(dataset))]
    model = build_model(spec).train()
    params = [p for p in model.parameters() if p.requires_grad]
    optim = torch.optim.AdamW(params, 1e-4, weight_decay=1e-4)
    seconds = []
    for it in range(warmup + steps):
        images, targets = collate([samples[(2 * it) % len(samples)], samples[(2 * it + 1) % len(samples)]])
        start = time.perf_counter()
        loss = sum(model(images, targets).values())
        optim.zero_grad(set_to_none=True)
        loss.backward()
        optim.step()
        if it >= warmup:
            seconds.append(time.perf_counter() - start)
    return seconds


def table(rows: list[dict]) -> str:
    """Markdown table: variant, median and min step seconds, share of FACENet's step."""
    full = next((r["median_s"] for r in rows if r["variant"] == "facenet"), None)
    lines = ["| variant | median s/step | min s/step | share of FACENet's step |", "|---|---|---|---|"]
    for r in rows:
        share = ""
        if full and r["variant"].startswith("facenet_no_"):
            share = f"{100 * (full - r['median_s']) / full:.0f} % ({r['variant'][len('facenet_no_'):]})"
        lines.append(f"| {r['variant']} | {r['median_s']:.2f} | {r['min_s']:.2f} | {share} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data", type=Path, default=Path("../shared/data"), help="data folder (default: %(default)s)")
    p.add_argument("--steps", type=int, default=6, help="timed steps per variant")
    p.add_argument("--warmup-steps", type=int, default=2, help="untimed steps first")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--variant", action="append", choices=sorted(VARIANTS), help="default: all")
    p.add_argument("--out-dir", type=Path, default=Path("out/benchmark"))
    p.add_argument("--tag", default="step_time")
    args = p.parse_args(argv)
    import torch

    torch.set_num_threads(args.threads)
    rows = []
    for name in args.variant or list(VARIANTS):
        arch, overrides = VARIANTS[name]
        seconds = time_steps(arch, overrides, args.data, args.out_dir / "data", args.steps, args.warmup_steps)
        rows.append({"variant": name, "arch": arch, "overrides": overrides, "seconds": [round(s, 3) for s in seconds],
                     "median_s": statistics.median(seconds), "min_s": min(seconds)})
        print(f"{name}: median {rows[-1]['median_s']:.2f} s/step", flush=True)
    text = table(rows)
    print(text)
    meta = {"threads": args.threads, "steps": args.steps, "torch": torch.__version__, "cpu": platform.processor(),
            "python": sys.version.split()[0]}
    args.out_dir.mkdir(parents=True, exist_ok=True)
    command = "python -m benchmarks.benchmark_step_time " + " ".join(argv if argv is not None else sys.argv[1:])
    (args.out_dir / f"{args.tag}.json").write_text(json.dumps({"meta": meta, "rows": rows}, indent=2) + "\n")
    (args.out_dir / f"{args.tag}.md").write_text(f"{text}\n\n`{command}`\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
