"""Finding and checking the engine from the plugin side (no torch in the plugin: all through subprocesses)."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from engine.cli import build_parser
from rs_qgis_plugin.engine_env import (
    EngineReport,
    ModelInfoError,
    ModelListError,
    check_engine,
    checkpoint_info,
    default_python,
    engine_root,
    interpreter_stamp,
    list_models,
)
from rs_qgis_plugin.request import SegmentRequest
from rs_qgis_plugin.runner import run_engine

ROOT = Path(__file__).resolve().parents[2]


def test_checkout_engine_and_its_virtualenv_are_the_defaults() -> None:
    assert engine_root() == ROOT
    assert default_python() == str(ROOT / ".venv" / "bin" / "python")


def test_check_engine_reports_torch_cuda_and_gpus(engine_report: EngineReport) -> None:
    """check_engine(sys.executable), made once for the session (conftest.py)."""
    report = engine_report
    assert report.ok, report.message
    assert report.message.startswith("engine OK: torch 2.") and "CUDA" in report.message and "GPUs" in report.message
    assert all(device.startswith("cuda:") for device, _ in report.devices)


def test_check_engine_names_what_is_missing_and_how_to_install(tmp_path: Path) -> None:
    bare = tmp_path / "bare"
    subprocess.run(["/usr/bin/python3", "-m", "venv", "--without-pip", str(bare)], check=True)
    report = check_engine(str(bare / "bin" / "python"))
    assert not report.ok
    assert "missing torch" in report.message and "-m pip install -r" in report.message
    assert "requirements.txt" in report.message


def test_check_engine_with_no_interpreter() -> None:
    report = check_engine("/nowhere/bin/python")
    assert not report.ok and "'/nowhere/bin/python' not found" in report.message


def test_models_are_listed_by_the_engine_default_first_with_titles() -> None:
    """Through `python -m engine models --json` (the plugin never reads the engine's files itself)."""
    from engine.zoo import DEFAULT_MODEL

    models = list_models(sys.executable)
    by_name = {m.name: m for m in models}
    assert models[0].name == DEFAULT_MODEL and models[0].default and len(models) >= 2
    sar = by_name["ssdd-ship-maskrcnn"]
    assert sar.sensor == "sar" and sar.title.startswith("Ships in SAR images") and sar.model == "ssdd-ship-maskrcnn"
    assert [c["name"] for c in sar.classes] == ["ship"] and sar.bands == 1
    assert "classes: ship" in sar.summary() and "val mask AP" in sar.summary()
    assert by_name["nwpu-vhr10-maskrcnn"].sensor == "optical"
    with pytest.raises(ModelListError, match="'/nowhere/python' not found"):
        list_models("/nowhere/python")


def test_interpreter_stamp_changes_with_the_file(tmp_path: Path) -> None:
    exe = tmp_path / "python"
    exe.write_text("#!/bin/sh\n")
    first = interpreter_stamp(str(exe))
    exe.write_text("#!/bin/sh\necho changed\n")
    assert first and interpreter_stamp(str(exe)) != first
    assert interpreter_stamp(str(tmp_path / "missing")) == ""


def test_checkpoint_info_and_its_failure(tiny_checkpoint: Path, tmp_path: Path) -> None:
    info = checkpoint_info(sys.executable, str(tiny_checkpoint))
    assert info.model == str(tiny_checkpoint) and info.spec["name"] == "tiny-ships"
    bad = tmp_path / "bad.pt"
    bad.write_text("nope")
    with pytest.raises(ModelInfoError, match="bad.pt"):
        checkpoint_info(sys.executable, str(bad))


def test_request_arguments_parse_in_the_engine_cli() -> None:
    """The plugin's command line is the engine's: negative coordinates, bands, thresholds all survive."""
    request = SegmentRequest("/data/s.tif", "m.pt", "/out/x.gpkg", bands=(3, 2, 1),
                             extent=(-12.5, -3.0, 100.0, 50.25), score_threshold=0.35, tile_size=256, overlap=0,
                             device="cpu", aoi="/data/port.gpkg|layername=port", exclude="/data/land.shp")
    args = build_parser().parse_args(request.engine_args())
    assert (args.rasters, args.model, args.out, args.bands) == (["/data/s.tif"], "m.pt", "/out/x.gpkg", "3,2,1")
    assert (args.aoi, args.exclude) == ("/data/port.gpkg|layername=port", "/data/land.shp")
    assert args.extent.startswith("-12.5,") and args.progress == "jsonl" and args.device == "cpu"
    assert (args.score_threshold, args.tile_size, args.overlap) == (0.35, 256, 0)
    defaults = build_parser().parse_args(SegmentRequest("a.tif", "m", "o.gpkg").engine_args())
    assert defaults.score_threshold is None and defaults.tile_size is None and defaults.overlap is None
    assert defaults.aoi is None and defaults.exclude is None


def test_runner_returns_the_engine_one_line_reason_once(tmp_path: Path, tiny_checkpoint: Path) -> None:
    lines: list[tuple[str, str]] = []
    request = SegmentRequest(str(tmp_path / "missing.tif"), str(tiny_checkpoint), str(tmp_path / "o.gpkg"))
    outcome = run_engine(sys.executable, request.engine_args(), ROOT, on_log=lambda *line: lines.append(line))
    assert not outcome.ok and outcome.returncode == 2
    assert "missing.tif" in outcome.error and "\n" not in outcome.error
    assert lines[0][0].startswith("$ ") and not (tmp_path / "o.gpkg").exists()
    assert not any("missing.tif" in line for line, _ in lines[1:])  # reported once, by the caller


def test_runner_names_the_device_and_passes_every_event(tmp_path: Path, tiny_checkpoint: Path) -> None:
    from tests.data.make_fixtures import write_scene_geotiff

    write_scene_geotiff(tmp_path / "s.tif")
    lines, events = [], []
    request = SegmentRequest(str(tmp_path / "s.tif"), str(tiny_checkpoint), str(tmp_path / "o.gpkg"), device="cpu")
    outcome = run_engine(sys.executable, request.engine_args(), ROOT, on_log=lambda *line: lines.append(line),
                         on_event=events.append)
    assert outcome.ok, outcome.log
    assert ("Model loaded, running on CPU: 9 tiles", "info") in lines
    kinds = [e["event"] for e in events]
    assert kinds[0] == "start" and kinds[-1] == "done" and "progress" in kinds
    assert all(level in ("info", "warning") for _, level in lines)


def test_runner_reports_an_interpreter_that_cannot_start() -> None:
    outcome = run_engine("/nowhere/python", ["env"], ROOT)
    assert not outcome.ok and "cannot start the engine interpreter '/nowhere/python'" in outcome.error
