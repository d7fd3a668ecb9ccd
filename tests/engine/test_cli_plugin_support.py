"""CLI features the QGIS plugin relies on: `env` (engine check), `info` (model details), `segment --extent`,
the `start` event's tiles/classes, and a clean cancel by SIGTERM (exit 130, nothing left in the output folder)."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
from pathlib import Path

import fiona
import pytest

from engine.cli import main
from tests.data.make_fixtures import write_scene_geotiff

ROOT = Path(__file__).resolve().parents[2]
PACKAGES = {"torch", "torchvision", "numpy", "rasterio", "fiona", "shapely", "pycocotools", "tqdm"}


def _engine(args: list[str], pythonpath: list[Path] = (), **kwargs) -> subprocess.Popen:
    path = os.pathsep.join(str(p) for p in (*pythonpath, ROOT))
    env = {**os.environ, "PYTHONPATH": path, "OMP_NUM_THREADS": "1"}
    return subprocess.Popen([sys.executable, "-m", "engine", *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, env=env, **kwargs)


def test_env_json_reports_versions_and_gpus(capsys: pytest.CaptureFixture) -> None:
    assert main(["env", "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["ok"] is True and report["missing"] == [] and report["install_command"] is None
    assert set(report["packages"]) == PACKAGES and all(report["packages"].values())
    assert report["python"] == sys.executable and report["python_version"].count(".") == 2
    assert Path(report["engine"]) == ROOT / "engine"
    assert report["requirements"] == str(ROOT / "requirements.txt")
    assert isinstance(report["cuda_available"], bool)
    for gpu in report["gpus"]:
        assert gpu["device"].startswith("cuda:") and gpu["name"] and gpu["memory_gb"] > 0


def test_env_human_line(capsys: pytest.CaptureFixture) -> None:
    assert main(["env"]) == 0
    line = capsys.readouterr().out.strip()
    assert line.startswith("engine OK: torch ") and "CUDA" in line and "GPUs:" in line and "\n" not in line


def test_env_without_torch_reports_missing_and_exits_3(tmp_path: Path) -> None:
    """A torch that fails to import (as a broken install would) is reported, not a crash."""
    broken = tmp_path / "broken" / "torch"
    broken.mkdir(parents=True)
    (broken / "__init__.py").write_text("raise ImportError('torch is broken on purpose')\n")
    proc = _engine(["env", "--json"], pythonpath=[broken.parent])
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 3, err
    report = json.loads(out)
    assert report["ok"] is False and {"torch", "torchvision"} <= set(report["missing"])
    assert "broken on purpose" in report["import_errors"]["torch"] and report["packages"]["torch"] is None
    assert report["packages"]["numpy"] and report["cuda_available"] is False and report["gpus"] == []
    assert "-m pip install -r" in report["install_command"]
    proc = _engine(["env"], pythonpath=[broken.parent])
    out, _ = proc.communicate(timeout=120)
    assert proc.returncode == 3
    assert out.startswith("engine NOT OK: missing torch, torchvision; install with: ")
    assert "requirements.txt" in out


def test_info_json_and_summary(tiny_checkpoint: Path, capsys: pytest.CaptureFixture) -> None:
    assert main(["info", str(tiny_checkpoint), "--json"]) == 0
    info = json.loads(capsys.readouterr().out)
    assert set(info) == {"name", "path", "spec", "metrics", "provenance"}
    assert info["name"] == "tiny" and info["path"] == str(tiny_checkpoint.resolve())
    assert info["spec"]["classes"][0]["name"] == "ship" and info["spec"]["tile_size"] == 128
    assert info["provenance"] == {"note": "random"} and info["metrics"] == {}
    assert main(["info", str(tiny_checkpoint)]) == 0
    text = capsys.readouterr().out
    for part in ("tiny: instance mask_rcnn", "classes: ship", "bands: 1", "GSD", "tile 128/32"):
        assert part in text


def test_info_of_a_shipped_model_by_name(capsys: pytest.CaptureFixture) -> None:
    from engine.zoo import DEFAULT_MODEL, shipped_models

    assert main(["info", DEFAULT_MODEL, "--json"]) == 0
    info = json.loads(capsys.readouterr().out)
    assert info["name"] == DEFAULT_MODEL and info["path"] == str(shipped_models()[DEFAULT_MODEL])
    assert info["metrics"]["val"]["segm"]["AP"] > 0 and "train_command" in info["provenance"]


@pytest.mark.parametrize("kind", ["missing", "corrupt", "unknown"])
def test_info_bad_model_is_one_line_exit_2(tmp_path: Path, capsys: pytest.CaptureFixture, kind: str) -> None:
    model = {"missing": str(tmp_path / "none.pt"), "corrupt": str(tmp_path / "bad.pt"), "unknown": "no-such"}[kind]
    (tmp_path / "bad.pt").write_bytes(os.urandom(1024))
    assert main(["info", model]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: ") and model in err[0]


def test_segment_extent_limits_tiles_and_start_event(tmp_path: Path, tiny_checkpoint: Path,
                                                     capsys: pytest.CaptureFixture) -> None:
    raster = tmp_path / "scene.tif"
    write_scene_geotiff(raster)  # 256 x 256, 10 m pixels from (500000, 4000000): 9 tiles of 128/32
    out = tmp_path / "part.geojson"
    # the upper-left 100 x 60 pixels (outward rounding adds the pixel the 599 m edge touches)
    code = main(["segment", str(raster), "--model", str(tiny_checkpoint), "--out", str(out), "--progress", "jsonl",
                 "--extent", "500000,3999401,500995,4000000"])
    assert code == 0
    events = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    start, done = events[0], events[-1]
    assert start["event"] == "start" and start["tiles"] == 1 and done["tiles"] == 1
    assert start["classes"] == [{"id": 1, "name": "ship", "colour": "#e6194b"}]
    with fiona.open(out) as layer:
        assert len(layer) > 0  # the random tiny model finds "ships" everywhere
        xmin, ymin, xmax, ymax = layer.bounds
    assert 500000 <= xmin and xmax <= 501000 and 3999400 <= ymin and ymax <= 4000000


@pytest.mark.parametrize("extent, message", [
    ("1,2,3", "four comma-separated numbers"),
    ("a,b,c,d", "four comma-separated numbers"),
    ("10,10,5,20", "XMIN < XMAX"),
    ("0,0,100,100", "does not intersect raster"),
])
def test_segment_bad_extent_is_one_line_exit_2(tmp_path: Path, tiny_checkpoint: Path,
                                               capsys: pytest.CaptureFixture, extent: str, message: str) -> None:
    raster = tmp_path / "scene.tif"
    write_scene_geotiff(raster)
    out = tmp_path / "o.gpkg"
    assert main(["segment", str(raster), "--model", str(tiny_checkpoint), "--out", str(out),
                 "--progress", "none", f"--extent={extent}"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and message in err[0] and "--extent" in err[0]
    if "intersect" in message:
        assert "500000,3997440,502560,4000000" in err[0]  # the raster's bounds
    assert list(tmp_path.iterdir()) == [raster]


@pytest.mark.skipif(os.name != "posix", reason="SIGTERM handling is POSIX only")
def test_sigterm_during_inference_cancels_cleanly(tmp_path: Path, tiny_checkpoint: Path) -> None:
    """SIGTERM to a real engine process while tiles run: exit 130, an error event, no files."""
    raster = tmp_path / "big.tif"
    write_scene_geotiff(raster, height=768, width=768)  # 64 tiles: seconds of work for the tiny model
    out_dir = tmp_path / "out"
    out_dir.mkdir()
    proc = _engine(["segment", str(raster), "--model", str(tiny_checkpoint), "--out", str(out_dir / "o.gpkg"),
                    "--progress", "jsonl", "--batch-size", "2"])
    watchdog = threading.Timer(300, proc.kill)  # a safety net for a hung engine; a loaded CI machine is slow
    watchdog.start()
    try:
        for line in proc.stdout:
            if json.loads(line)["event"] == "progress":
                break
        assert proc.poll() is None, "finished before it could be cancelled"
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=120)
        rest, err = proc.stdout.read(), proc.stderr.read()
    finally:
        watchdog.cancel()
    assert proc.returncode == 130, err
    assert err.strip().splitlines()[-1] == "error: cancelled"
    assert json.loads(rest.strip().splitlines()[-1]) == {"event": "error", "message": "cancelled"}
    assert list(out_dir.iterdir()) == []


@pytest.mark.skipif(os.name != "posix", reason="SIGTERM handling is POSIX only")
@pytest.mark.parametrize("output", ["o.gpkg", "o.shp"])
def test_sigterm_while_the_output_is_moved_into_place_leaves_nothing(
        tmp_path: Path, tiny_checkpoint: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture,
        output: str) -> None:
    """SIGTERM arriving as the finished temporary file is moved onto the output (the writer's last step,
    tens of milliseconds in a real run, so signalled from inside it here): exit 130, no file, no .partial."""
    from engine.vector.writer import VectorWriter

    real_finish = VectorWriter._finish
    calls = []

    def finish_then_terminated(self) -> None:
        calls.append(sorted(p.name for p in self.path.parent.iterdir()))
        os.kill(os.getpid(), signal.SIGTERM)
        real_finish(self)

    monkeypatch.setattr(VectorWriter, "_finish", finish_then_terminated)
    raster = tmp_path / "scene.tif"
    write_scene_geotiff(raster)
    out_dir = tmp_path / "out"
    out_dir.mkdir()
    code = main(["segment", str(raster), "--model", str(tiny_checkpoint), "--out", str(out_dir / output),
                 "--progress", "jsonl"])
    assert len(calls) == 1 and [name.endswith(".partial") for name in calls[0]] == [True]  # it was writing
    assert code == 130
    assert capsys.readouterr().err.strip().splitlines()[-1] == "error: cancelled"
    assert list(out_dir.iterdir()) == []


@pytest.mark.skipif(os.name != "posix", reason="SIGTERM handling is POSIX only")
def test_sigterm_while_loading_a_checkpoint_is_a_cancel_not_a_bad_file(tiny_checkpoint: Path,
                                                                       monkeypatch: pytest.MonkeyPatch,
                                                                       capsys: pytest.CaptureFixture) -> None:
    import engine.checkpoint

    real_load = engine.checkpoint.torch.load

    def load_then_terminated(*args, **kwargs):
        os.kill(os.getpid(), signal.SIGTERM)
        return real_load(*args, **kwargs)

    monkeypatch.setattr(engine.checkpoint.torch, "load", load_then_terminated)
    assert main(["info", str(tiny_checkpoint)]) == 130
    assert capsys.readouterr().err.strip() == "error: cancelled"
    assert signal.getsignal(signal.SIGTERM) is signal.SIG_DFL  # main() restored the default handler
