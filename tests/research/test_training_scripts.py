"""The research training scripts run this checkout's engine, also from a `git worktree` sharing a .venv."""
from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def _run_script(tmp_path: Path, script: str, *args: str, split: str,
                extra_env: dict[str, str] | None = None) -> tuple[list[str], str]:
    """Run research/SCRIPT with a recording CLI in place of rsseg -> (PYTHONPATH entries, recorded argv)."""
    record = tmp_path / "record.txt"
    fake_cli = tmp_path / "rsseg"
    fake_cli.write_text(f'#!/bin/sh\nprintf "%s\\n" "$PYTHONPATH" "$*" > "{record}"\n')
    fake_cli.chmod(0o755)
    (tmp_path / "runs" / "splits" / split).mkdir(parents=True)
    (tmp_path / "runs" / "splits" / split / "val.json").write_text("{}")  # no split step
    env = {**os.environ, "RSSEG": str(fake_cli), "RUNS": str(tmp_path / "runs"), "DATA": str(tmp_path),
           "PYTHONPATH": "/elsewhere", **(extra_env or {})}
    subprocess.run(["bash", str(ROOT / "research" / script), *args], check=True, env=env, cwd=tmp_path,
                   timeout=60)
    python_path, argv = record.read_text().split("\n", 1)
    return python_path.split(os.pathsep), argv


@pytest.mark.parametrize(("script", "args", "split", "arch"), [
    ("train_nwpu_semantic.sh", ("farseg",), "nwpu", "--arch farseg --preset cpu"),  # the scaled relation
    ("train_instance.sh", ("ssdd", "solov2"), "ssdd", "--arch solov2"),
    # Hi-ResNet trains with its `cpu` preset (GroupNorm): BatchNorm stalls from scratch at batch 2
    ("train_nwpu_semantic.sh", ("hi_resnet",), "nwpu", "--arch hi_resnet --preset cpu"),
])
def test_training_script_puts_its_own_checkout_first_on_the_path(
        tmp_path: Path, script: str, args: tuple[str, ...], split: str, arch: str) -> None:
    python_path, argv = _run_script(tmp_path, script, *args, split=split)
    assert Path(python_path[0]).resolve() == ROOT  # this checkout's engine wins over an editable install
    assert python_path[1:] == ["/elsewhere"]  # the caller's path is kept, after it
    assert argv.startswith("train ") and arch in argv


@pytest.mark.parametrize("frozen", ["0", "3", "6"])
def test_hrnet_row_drops_the_lite_trunk_freeze_whatever_its_count(tmp_path: Path, frozen: str) -> None:
    """HRNet-W18 trains from scratch and takes no `frozen_blocks`; FROZEN sets it for the Lite trunks only."""
    _, argv = _run_script(tmp_path, "train_instance.sh", "ssdd", "hq_isnet_hrnet", split="ssdd",
                          extra_env={"FROZEN": frozen})
    assert "--backbone hrnet_w18" in argv and '"neck": "hrfpn"' in argv
    assert "frozen_blocks" not in argv
    (tmp_path / "lite").mkdir()
    _, lite = _run_script(tmp_path / "lite", "train_instance.sh", "ssdd", "hq_isnet", split="ssdd",
                          extra_env={"FROZEN": frozen})
    assert f'"frozen_blocks": {frozen},' in lite


def test_instance_script_seed_changes_the_run_not_the_split(tmp_path: Path) -> None:
    _, argv = _run_script(tmp_path, "train_instance.sh", "ssdd", "mask_rcnn", split="ssdd", extra_env={"SEED": "1"})
    assert "--seed 1 " in argv and "--seed 0" not in argv
    assert f"--coco {tmp_path}/runs/splits/ssdd/train.json" in argv  # the fixed split (made with seed 0)
