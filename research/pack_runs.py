"""Pack training runs for a size-limited transfer (e.g. back from a remote GPU machine): every run's logs, and the
best checkpoints as fp16 weights (no optimiser state) in the order given while they fit, in one tar split
into parts of at most --part-mib. Unpack with `cat PREFIX.part* | tar -x`.

    python -m research.pack_runs --runs runs/gpu --out out/packed --prefix nwpu --max-mib 56 \\
        --checkpoints nwpu_mask_rcnn,nwpu_facenet,nwpu_solov2,nwpu_hq_isnet
"""
from __future__ import annotations

import argparse
import io
import tarfile
from pathlib import Path

from engine.checkpoint import Checkpoint, load_checkpoint, save_checkpoint

LOG_PATTERNS = ("*.log", "*.json", "*/log.jsonl", "*/cmd.sh", "*/loss.png")


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--runs", required=True, help="folder holding the run folders")
    p.add_argument("--out", required=True, help="folder for PREFIX.tar.partNN")
    p.add_argument("--prefix", default="runs")
    p.add_argument("--checkpoints", default="", help="run folder names whose best.pt (else last.pt) to include")
    p.add_argument("--max-mib", type=float, default=56.0, help="stop adding checkpoints past this total")
    p.add_argument("--part-mib", type=float, default=15.0)
    args = p.parse_args(argv)
    runs, buffer = Path(args.runs), io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as tar:
        for pattern in LOG_PATTERNS:
            for path in sorted(runs.glob(pattern)):
                tar.add(path, arcname=str(path.relative_to(runs)))
        for name in filter(None, args.checkpoints.split(",")):
            source = next((runs / name / f for f in ("best.pt", "last.pt") if (runs / name / f).is_file()), None)
            if source is None:
                print(f"{name}: no checkpoint")
                continue
            ckpt = load_checkpoint(source)
            half = save_checkpoint(Checkpoint(ckpt.spec, ckpt.state_dict, ckpt.provenance, ckpt.metrics),
                                   runs / name / "best_fp16.pt", half=True)
            if buffer.tell() + half.stat().st_size > args.max_mib * 2**20:
                print(f"{name}: {half.stat().st_size / 2**20:.1f} MiB left out (over --max-mib)")
                continue
            tar.add(half, arcname=f"{name}/best.pt")
            print(f"{name}: {half.stat().st_size / 2**20:.1f} MiB from {source.name}")
    data, part = buffer.getvalue(), int(args.part_mib * 2**20)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    for k in range(0, len(data), part):
        (out / f"{args.prefix}.tar.part{k // part:02d}").write_bytes(data[k:k + part])
    print(f"{len(data) / 2**20:.1f} MiB in {-(-len(data) // part)} parts")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
