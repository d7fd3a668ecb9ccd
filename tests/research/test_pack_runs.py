"""research.pack_runs: logs and fp16 checkpoints of runs in one tar split into parts; joined parts unpack to
the runs' logs and loadable checkpoints; a checkpoint over --max-mib is left out."""
from __future__ import annotations

import io
import shutil
import tarfile
from pathlib import Path

import torch

from engine.checkpoint import load_checkpoint
from research.pack_runs import main as pack_runs


def _runs(tmp_path: Path, tiny_checkpoint: Path) -> Path:
    runs = tmp_path / "runs"
    for name in ("with_weights", "log_only"):
        (runs / name).mkdir(parents=True)
        (runs / name / "log.jsonl").write_text(f'{{"run": "{name}"}}\n')
        (runs / name / "cmd.sh").write_text(f"echo {name}\n")
    shutil.copy(tiny_checkpoint, runs / "with_weights" / "last.pt")
    (runs / "queue.log").write_text("queue log\n")
    return runs


def _unpack(out: Path, prefix: str) -> dict[str, bytes]:
    data = b"".join(p.read_bytes() for p in sorted(out.glob(f"{prefix}.tar.part*")))
    with tarfile.open(fileobj=io.BytesIO(data)) as tar:
        return {m.name: tar.extractfile(m).read() for m in tar.getmembers() if m.isfile()}


def test_pack_splits_logs_and_fp16_checkpoints_into_parts(tmp_path: Path, tiny_checkpoint: Path, capsys) -> None:
    runs, out = _runs(tmp_path, tiny_checkpoint), tmp_path / "out"
    assert pack_runs(["--runs", str(runs), "--out", str(out), "--prefix", "p", "--part-mib", "0.25",
                      "--checkpoints", "with_weights,log_only"]) == 0
    assert len(list(out.glob("p.tar.part*"))) > 1
    assert all(p.stat().st_size <= 0.25 * 2**20 for p in out.glob("p.tar.part*"))
    files = _unpack(out, "p")
    assert files["queue.log"] == b"queue log\n"
    assert files["log_only/log.jsonl"] == b'{"run": "log_only"}\n' and "log_only/best.pt" not in files
    assert files["with_weights/cmd.sh"] == b"echo with_weights\n"
    (tmp_path / "best.pt").write_bytes(files["with_weights/best.pt"])
    packed, original = load_checkpoint(tmp_path / "best.pt"), load_checkpoint(tiny_checkpoint)
    assert packed.spec == original.spec
    for key, value in original.state_dict.items():
        if value.is_floating_point():
            assert packed.state_dict[key].dtype == torch.float16
            assert torch.allclose(packed.state_dict[key].float(), value.half().float())
    assert "log_only: no checkpoint" in capsys.readouterr().out


def test_checkpoint_over_the_size_limit_is_left_out(tmp_path: Path, tiny_checkpoint: Path, capsys) -> None:
    runs, out = _runs(tmp_path, tiny_checkpoint), tmp_path / "out"
    assert pack_runs(["--runs", str(runs), "--out", str(out), "--prefix", "p", "--max-mib", "0.01",
                      "--checkpoints", "with_weights"]) == 0
    files = _unpack(out, "p")
    assert "with_weights/best.pt" not in files and "with_weights/log.jsonl" in files
    assert "over --max-mib" in capsys.readouterr().out
