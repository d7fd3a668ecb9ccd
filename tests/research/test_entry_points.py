"""Every research and benchmark tool is a module of its package: importable without path edits, with a
`main(argv)` whose --help exits 0; and one runs as `python -m` from the repository root."""
from __future__ import annotations

import importlib
import subprocess
import sys
from pathlib import Path

import pytest
import rasterio

from benchmarks.make_large_scene import scene_ships

ROOT = Path(__file__).resolve().parents[2]
MODULES = ["research.queue", "research.instance_table", "research.semantic_table", "research.pack_runs",
           "research.cpu_precision", "research.solo_stability", "benchmarks.benchmark_inference",
           "benchmarks.seam_accuracy", "benchmarks.make_large_scene", "research.overfit",
           "benchmarks.benchmark_distributed"]


@pytest.mark.parametrize("name", MODULES)
def test_tool_help_exits_zero(name: str, capsys: pytest.CaptureFixture) -> None:
    module = importlib.import_module(name)
    with pytest.raises(SystemExit) as stop:
        module.main(["--help"])
    assert stop.value.code == 0
    assert "usage:" in capsys.readouterr().out


def test_every_tool_file_is_listed() -> None:
    found = {f"{p.parent.name}.{p.stem}" for folder in ("research", "benchmarks")
             for p in (ROOT / folder).glob("*.py") if p.stem != "__init__"}
    assert found == set(MODULES)


def test_large_scene_runs_as_a_module_from_the_repository_root(tmp_path: Path) -> None:
    out = tmp_path / "scene.tif"
    proc = subprocess.run([sys.executable, "-m", "benchmarks.make_large_scene", str(out), "--size", "600",
                           "--seed", "2"], cwd=ROOT, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    with rasterio.open(out) as ds:
        assert (ds.width, ds.height, ds.count, ds.crs.to_epsg()) == (600, 600, 1, 32631)
        pixels = ds.read(1)
    ships = scene_ships(600, seed=2)
    assert (pixels[ships[:, 0].astype(int), ships[:, 1].astype(int)] >= 170).all()
