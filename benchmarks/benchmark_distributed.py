"""Distributed benchmark: the single-process pipeline against the same model on a Dask LocalCluster.

    python -m benchmarks.benchmark_distributed [--sizes 8000,16000] [--workers 2] [--threads 2]
                                               [--out-dir out/benchmark] [--tag distributed]

For each size: a synthetic SAR scene (benchmarks.make_large_scene, cached), then, each in a fresh process (so
each peak RSS is its own): ``segment_raster`` with ``--threads`` torch threads, and ``segment_rasters_dask`` on
``local:--workers`` (worker processes of 1 thread each; the scheduler runs in the client process, as with
``rsseg segment --dask local:N``). Both wall times start with the model loaded (the workers load it in a
warm-up). Reported per size: wall time of each and the speed-up (single / Dask), the cluster's start-up and
the workers' model load (not in the Dask wall time), the workers' summed model time, the scheduling overhead
(Dask wall - summed model time / workers), bytes per tile to and from the workers (pickled task and result),
peak RSS of the single process, of the Dask client and of each worker, and whether the two outputs hold the same
features (same geometry and attributes, in order; the workers' 1-thread model can round differently from a
2-thread one, so a few features may differ by a pixel). Targets (2 cores): Dask within 10% of the single-process
wall time; client memory flat from 8k to 16k. Writes ``<tag>.md`` and ``<tag>.json`` to --out-dir.
"""
from __future__ import annotations

import argparse
import json
import platform
import resource
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
MODULE = "benchmarks.benchmark_distributed"


def _peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0  # Linux: kB


def run_single(scene: str, out: str, model: str, threads: int) -> dict:
    """The single-process pipeline on `scene`, in this process."""
    import torch

    from engine.inference.predictor import Predictor
    from engine.inference.segment import segment_raster
    from engine.zoo import resolve_model

    torch.set_num_threads(threads)
    label, ckpt = resolve_model(model)
    predictor = Predictor(ckpt, "cpu")
    start = time.perf_counter()
    result = segment_raster(scene, out, predictor, model_label=label)
    return {"wall_s": time.perf_counter() - start, "forward_s": result.forward_seconds, "tiles": result.tiles,
            "objects": result.features, "peak_rss_mb": _peak_rss_mb()}


def run_dask(scene: str, out: str, model: str, workers: int, group_tiles: int) -> dict:
    """`scene` on a LocalCluster of `workers` processes (1 thread each), driven from this process."""
    from engine.distributed.cluster import dask_client
    from engine.distributed.segment import DaskOptions, segment_rasters_dask
    from engine.distributed.work import ModelCache, ModelRef, warm_up
    from engine.inference.rasters import RasterJob
    from engine.zoo import resolve_model

    label, ckpt = resolve_model(model)
    ref = ModelRef(model, threads=1)
    begin = time.perf_counter()
    with dask_client(f"local:{workers}") as client:
        started = time.perf_counter() - begin
        client.register_plugin(ModelCache(), name=ModelCache.name)
        client.run(warm_up, ref)  # workers import torch and load the model, as the single process did before its timer
        warmed = time.perf_counter() - begin - started
        start = time.perf_counter()
        run = segment_rasters_dask(client, [RasterJob(scene, Path(out))], ref, ckpt.spec, model_label=label,
                                   dask=DaskOptions(group_tiles=group_tiles))
        wall = time.perf_counter() - start
        worker_rss = client.run(_peak_rss_mb)
    stats, result = run.stats, run.results[0]
    return {"wall_s": wall, "cluster_start_s": started, "warm_up_s": warmed, "tiles": result.tiles,
            "objects": result.features,
            "forward_s": sum(stats.forward_seconds.values()), "forward_s_per_worker": stats.forward_seconds,
            "task_s_per_worker": stats.task_seconds, "tasks": stats.tasks, "workers": stats.workers,
            "bytes_to_workers": stats.bytes_to_workers, "bytes_from_workers": stats.bytes_from_workers,
            "peak_rss_mb": _peak_rss_mb(), "worker_peak_rss_mb": sorted(worker_rss.values())}


def same_features(a: Path, b: Path) -> dict:
    """How many features of two outputs differ (geometry or attributes, compared in file order)."""
    import fiona

    def features(path: Path) -> list:
        with fiona.open(path) as layer:
            return [(json.dumps(f["geometry"].__geo_interface__, sort_keys=True),
                     json.dumps(dict(f["properties"]), sort_keys=True)) for f in layer]

    fa, fb = features(a), features(b)
    differing = sum(x != y for x, y in zip(fa, fb)) + abs(len(fa) - len(fb))
    return {"identical": differing == 0, "differing": differing}


def _worker(kind: str, scene: Path, out: Path, args: argparse.Namespace) -> dict:
    """Run one measurement in a fresh Python process and return its JSON result."""
    cmd = [sys.executable, "-m", MODULE, "--worker", kind, "--scene", str(scene), "--worker-out", str(out),
           "--model", args.model, "--threads", str(args.threads), "--workers", str(args.workers),
           "--group-tiles", str(args.group_tiles)]
    proc = subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT)
    if proc.returncode != 0:
        raise SystemExit(f"{kind} run on {scene} failed:\n{proc.stderr[-3000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def summarise(row: dict) -> dict:
    """The derived numbers of one size: speed-up, scheduling overhead, bytes per tile."""
    single, dask = row["single"], row["dask"]
    return {"speed_up": single["wall_s"] / dask["wall_s"],
            "overhead_s": dask["wall_s"] - dask["forward_s"] / max(1, dask["workers"]),
            "bytes_to_per_tile": dask["bytes_to_workers"] / dask["tiles"],
            "bytes_from_per_tile": dask["bytes_from_workers"] / dask["tiles"]}


def table(rows: list[dict]) -> str:
    head = ["scene (px)", "tiles", "single wall (s)", "Dask wall (s)", "speed-up", "cluster start + model load (s)",
            "worker model time (s)", "scheduling overhead (s)", "bytes/tile to / from workers",
            "single RSS (MB)", "client RSS (MB)", "worker RSS (MB)", "same features"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in rows:
        s, d, m = r["single"], r["dask"], r["derived"]
        cells = [f"{r['size']} x {r['size']}", str(d["tiles"]), f"{s['wall_s']:.1f}", f"{d['wall_s']:.1f}",
                 f"{m['speed_up']:.2f}x", f"{d['cluster_start_s']:.1f} + {d['warm_up_s']:.1f}",
                 " + ".join(f"{v:.1f}" for v in d["forward_s_per_worker"].values()), f"{m['overhead_s']:.1f}",
                 f"{m['bytes_to_per_tile']:.0f} / {m['bytes_from_per_tile']:.0f}", f"{s['peak_rss_mb']:.0f}",
                 f"{d['peak_rss_mb']:.0f}", " / ".join(f"{v:.0f}" for v in d["worker_peak_rss_mb"]),
                 "yes" if r["features"]["identical"] else f"{r['features']['differing']} differ"]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="8000,16000", help="scene sizes in pixels a side")
    parser.add_argument("--model", default="ssdd-ship-maskrcnn")
    parser.add_argument("--workers", type=int, default=2, help="Dask worker processes (1 thread each)")
    parser.add_argument("--threads", type=int, default=2, help="torch threads of the single-process run")
    parser.add_argument("--group-tiles", type=int, default=8, help="tiles per Dask task")
    parser.add_argument("--out-dir", default=str(ROOT / "out" / "benchmark"))
    parser.add_argument("--tag", default="distributed", help="output file stem")
    parser.add_argument("--worker", choices=["single", "dask"], help=argparse.SUPPRESS)
    parser.add_argument("--scene", help=argparse.SUPPRESS)
    parser.add_argument("--worker-out", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.worker == "single":
        print(json.dumps(run_single(args.scene, args.worker_out, args.model, args.threads)))
        return 0
    if args.worker == "dask":
        print(json.dumps(run_dask(args.scene, args.worker_out, args.model, args.workers, args.group_tiles)))
        return 0

    from benchmarks.make_large_scene import write_synthetic_scene

    out_dir = Path(args.out_dir)
    (out_dir / "scenes").mkdir(parents=True, exist_ok=True)
    rows = []
    for size in (int(s) for s in args.sizes.split(",")):
        scene = out_dir / "scenes" / f"scene_{size}.tif"
        if not scene.exists():
            print(f"generating {scene} ...", file=sys.stderr)
            write_synthetic_scene(scene, size, seed=0)
        row: dict = {"size": size}
        for kind in ("single", "dask"):
            print(f"{size}: {kind} ...", file=sys.stderr)
            row[kind] = _worker(kind, scene, out_dir / f"{args.tag}_{kind}_{size}.gpkg", args)
        row["features"] = same_features(out_dir / f"{args.tag}_single_{size}.gpkg",
                                        out_dir / f"{args.tag}_dask_{size}.gpkg")
        row["derived"] = summarise(row)
        rows.append(row)
        print(json.dumps(row), file=sys.stderr)
    text = table(rows)
    meta = {"model": args.model, "workers": args.workers, "single_threads": args.threads,
            "group_tiles": args.group_tiles, "cpu": platform.processor() or platform.machine(),
            "python": platform.python_version(), "command": " ".join(["python", "-m", MODULE, *sys.argv[1:]])}
    (out_dir / f"{args.tag}.json").write_text(json.dumps({"meta": meta, "rows": rows}, indent=2) + "\n")
    (out_dir / f"{args.tag}.md").write_text(f"{text}\n\n`{meta['command']}`\n")
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
