"""`rsseg train` under torchrun: 2 CPU processes (gloo) with DistributedDataParallel train the same weights as
one process with the same global batch; only rank 0 writes; a DDP run stopped mid-epoch resumes exactly."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from engine.checkpoint import load_checkpoint
from engine.cli import main
from engine.models import build_model
from engine.training.ddp import rank_batches
from engine.training.trainer import seed_everything

pytestmark = pytest.mark.filterwarnings("ignore::rasterio.errors.NotGeoreferencedWarning")
ROOT = Path(__file__).resolve().parents[2]


def _train_args(coco: Path, out: Path) -> list[str]:
    """A tiny semantic FPN (GroupNorm: no batch statistics), fixed 64 px crops: its loss is the mean of the
    batch's pixels, so averaging two ranks' gradients equals the gradient of the batch. A small learning rate:
    this tiny net from scratch amplifies float rounding (at lr 0.02, one process with 1 or 2 threads already
    ends 1e-4 apart after 4 steps)."""
    return ["train", "--arch", "semantic_fpn", "--config", '{"fpn_channels": 16, "decoder_channels": 8}',
            "--coco", str(coco), "--images", str(coco.parent), "--out", str(out), "--epochs", "2",
            "--batch-size", "2", "--lr", "0.005", "--warmup-iters", "1", "--workers", "0", "--device", "cpu",
            "--crop-size", "64", "--scale-jitter", "1,1", "--threads", "1", "--no-amp", "--sensor", "optical",
            "--checkpoint-every", "1"]


def _torchrun(args: list[str], temp: Path) -> subprocess.CompletedProcess:
    """torchrun with 2 processes; its log folders (torchelastic_*, never removed) go to `temp`."""
    temp.mkdir(exist_ok=True)
    env = {**os.environ, "OMP_NUM_THREADS": "1", "TMPDIR": str(temp)}
    proc = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
                           "-m", "engine", *args], cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return proc


def _weights(run: Path) -> dict[str, torch.Tensor]:
    return load_checkpoint(run / "last.pt").state_dict


def test_rank_batches_split_each_global_batch() -> None:
    order = [7, 3, 5, 0, 2, 6, 1]  # 7 items, global batch 3: [7 3 5] [0 2 6] [1]
    parts = [rank_batches(order, 3, 0, r, 2) for r in range(2)]
    assert parts[0] == ([[7, 3], [0, 2], [1]], [4 / 3, 4 / 3, 2.0])
    assert parts[1] == ([[5], [6], [1]], [2 / 3, 2 / 3, 0.0])  # nothing left for rank 1: item 1 with weight 0
    assert rank_batches(order, 3, 1, 0, 1) == ([[0, 2, 6], [1]], [1.0, 1.0])  # one process: the plain batches


def test_torchrun_trains_the_single_process_weights_and_resumes(coco_gray, tmp_path) -> None:
    assert main(_train_args(coco_gray, tmp_path / "single")) == 0
    ddp = _torchrun(_train_args(coco_gray, tmp_path / "ddp"), tmp_path / "tmp")
    single, distributed = _weights(tmp_path / "single"), _weights(tmp_path / "ddp")
    for key, value in single.items():
        assert torch.allclose(distributed[key], value, atol=1e-5, rtol=1e-4), key
    seed_everything(0)  # the trainer's initial weights: training moved them far more than the tolerance
    initial = build_model(load_checkpoint(tmp_path / "single" / "last.pt").spec).state_dict()
    assert max(float((single[k] - v).abs().max()) for k, v in initial.items() if v.is_floating_point()) > 1e-3
    state = load_checkpoint(tmp_path / "ddp" / "last.pt").training_state
    assert (state["epoch"], state["iteration"]) == (2, 4) and len(state["torch_rng_ranks"]) == 2
    # rank 0 alone writes: one log record per epoch, one "trained" line
    records = [json.loads(line) for line in (tmp_path / "ddp" / "log.jsonl").read_text().splitlines()]
    assert [r["epoch"] for r in records if r["type"] == "epoch"] == [1, 2]
    assert ddp.stderr.count("trained:") == 1
    assert sorted(p.name for p in (tmp_path / "ddp").iterdir()) == ["last.pt", "log.jsonl", "loss.png"]

    _torchrun([*_train_args(coco_gray, tmp_path / "resumed"), "--stop-at", "3"], tmp_path / "tmp")  # inside epoch 2
    assert load_checkpoint(tmp_path / "resumed" / "last.pt").training_state["iteration"] == 3
    again = _torchrun(_train_args(coco_gray, tmp_path / "resumed"), tmp_path / "tmp")
    assert "resumed from" in again.stderr
    for key, value in _weights(tmp_path / "resumed").items():
        assert torch.allclose(distributed[key], value, atol=1e-6), key
