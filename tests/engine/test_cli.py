"""The rsseg CLI: tiny train -> evaluate -> segment integration on fixture data, and one-line errors
for the bad inputs a user can give (exit code 2, nothing half-written)."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import fiona
import pytest
import torch

from engine.cli import main
from tests.data.make_fixtures import write_coco_dataset, write_scene_geotiff
from tests.data.tiny_model import TINY


def _run(args: list[str], cwd: Path | None = None) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[2])}
    return subprocess.run([sys.executable, "-m", "engine", *args], capture_output=True, text=True, env=env, cwd=cwd,
                          timeout=300)


def test_train_evaluate_segment_integration(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    coco = write_coco_dataset(tmp_path / "coco", n_images=4, size=(96, 128), class_names=("ship",))
    run = tmp_path / "run"
    code = main(["train", "--coco", str(coco), "--images", str(coco.parent), "--val-coco", str(coco),
                 "--out", str(run), "--config", json.dumps(TINY), "--epochs", "2", "--batch-size", "2",
                 "--warmup-iters", "1", "--lr", "0.005", "--workers", "0", "--gsd", "10", "--threads", "1"])
    assert code == 0
    for name in ("last.pt", "best.pt", "log.jsonl", "loss.png"):
        assert (run / name).is_file(), name
    records = [json.loads(line) for line in (run / "log.jsonl").read_text().splitlines()]
    assert [r["epoch"] for r in records if r["type"] == "epoch"] == [1, 2]

    metrics_path = tmp_path / "metrics.json"
    capsys.readouterr()
    assert main(["evaluate", "--checkpoint", str(run / "best.pt"), "--coco", str(coco), "--images",
                 str(coco.parent), "--out", str(metrics_path)]) == 0
    printed = capsys.readouterr().out
    metrics = json.loads(metrics_path.read_text())
    assert {"bbox", "segm"} <= set(metrics) and set(metrics["segm"]) == {"AP", "AP50", "AP75", "APs", "APm", "APl"}
    assert "segm" in printed and "AP50" in printed
    # object P/R/F1 per score threshold, with the best one and the model's own (0.5 by default) marked
    assert len(metrics["objects"]["curve"]) == 19 and metrics["score_threshold"] == 0.5
    assert "best F1" in printed and "model's" in printed

    raster = tmp_path / "scene.tif"
    write_scene_geotiff(raster, height=160, width=160)
    out = tmp_path / "ships.gpkg"
    assert main(["segment", str(raster), "--model", str(run / "best.pt"), "--out", str(out),
                 "--score-threshold", "0", "--tile-size", "96", "--overlap", "32", "--progress", "none"]) == 0
    with fiona.open(out) as layer:
        assert layer.crs.to_epsg() == 32633
        assert set(layer.schema["properties"]) >= {"class_id", "class_name", "score", "area_m2"}
        for feat in layer:
            assert feat["properties"]["class_name"] == "ship" and 0 <= feat["properties"]["score"] <= 1


def test_jsonl_progress_protocol(tmp_path: Path, tiny_checkpoint: Path, capsys: pytest.CaptureFixture) -> None:
    raster = tmp_path / "scene.tif"
    write_scene_geotiff(raster)
    out = tmp_path / "out.geojson"
    code = main(["segment", str(raster), "--model", str(tiny_checkpoint), "--out", str(out), "--progress", "jsonl"])
    printed = capsys.readouterr()
    assert code == 0, printed.err
    events = [json.loads(line) for line in printed.out.splitlines()]
    kinds = [e["event"] for e in events]
    assert kinds[0] == "start" and kinds[-1] == "done" and "progress" in kinds
    progress = [e for e in events if e["event"] == "progress"]
    assert progress[-1]["done"] == progress[-1]["total"] == 9
    assert events[-1]["output"] == str(out) and out.is_file()


def test_models_lists_shipped_models_with_specs(capsys: pytest.CaptureFixture) -> None:
    from engine.zoo import shipped_models

    proc = _run(["models", "--json"])  # `python -m engine`, as the plugin runs it
    assert proc.returncode == 0, proc.stderr
    listing = json.loads(proc.stdout)
    assert {m["name"] for m in listing} == set(shipped_models())
    for m in listing:
        assert set(m) == {"name", "default", "path", "spec", "metrics", "title", "sensor"}
        assert m["spec"]["classes"] and m["spec"]["bands"] >= 1 and m["spec"]["gsd_m"] > 0
        assert m["sensor"] == ("optical" if m["spec"]["normalisation"]["sar"] == "none" else "sar")
        built = f"~{m['spec']['gsd_m']:g} m" in m["title"]  # a title built from the spec ends with its GSD
        assert m["title"] == m["spec"]["title"] if m["spec"]["title"] else built
    ssdd = next(m for m in listing if m["name"] == "ssdd-ship-maskrcnn")
    assert ssdd["default"] and ssdd["sensor"] == "sar" and ssdd["title"].startswith("Ships in SAR images")
    assert main(["models", "--architectures"]) == 0
    printed = capsys.readouterr().out
    assert "mask_rcnn (instance); presets:" in printed and "semantic_fpn (semantic); presets:" in printed


def _error_line(code: int, capsys: pytest.CaptureFixture) -> str:
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and err, err
    return err[-1]


@pytest.mark.parametrize("case", ["missing", "corrupt"])
def test_bad_raster(tmp_path: Path, tiny_checkpoint: Path, capsys: pytest.CaptureFixture, case: str) -> None:
    raster = tmp_path / "bad.tif"
    if case == "corrupt":
        raster.write_bytes(b"II*\x00garbage" * 50)
    out = tmp_path / "out.gpkg"
    line = _error_line(main(["segment", str(raster), "--model", str(tiny_checkpoint), "--out", str(out),
                             "--progress", "none"]), capsys)
    assert str(raster) in line and ("not found" in line if case == "missing" else "not a readable raster" in line)
    assert not out.exists()


def test_band_count_mismatch(tmp_path: Path, tiny_checkpoint: Path, capsys: pytest.CaptureFixture) -> None:
    raster = tmp_path / "rgb.tif"
    write_scene_geotiff(raster, bands=3)
    line = _error_line(main(["segment", str(raster), "--model", str(tiny_checkpoint), "--out",
                             str(tmp_path / "o.gpkg"), "--progress", "none"]), capsys)
    assert "3 band(s)" in line and "--bands" in line


def test_unknown_model_lists_shipped(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    raster = tmp_path / "scene.tif"
    write_scene_geotiff(raster)
    line = _error_line(main(["segment", str(raster), "--model", "no-such-model", "--out",
                             str(tmp_path / "o.gpkg")]), capsys)
    assert "no-such-model" in line and "shipped models" in line


@pytest.mark.parametrize("kind", ["corrupt", "foreign"])
def test_bad_checkpoint(tmp_path: Path, capsys: pytest.CaptureFixture, kind: str) -> None:
    raster = tmp_path / "scene.tif"
    write_scene_geotiff(raster)
    ckpt = tmp_path / "model.pt"
    if kind == "corrupt":
        ckpt.write_bytes(os.urandom(2048))
    else:
        torch.save({"conv.weight": torch.zeros(3, 3)}, ckpt)
    line = _error_line(main(["segment", str(raster), "--model", str(ckpt), "--out", str(tmp_path / "o.gpkg")]),
                       capsys)
    assert str(ckpt) in line and ("foreign" in line if kind == "foreign" else "not a readable" in line)


def test_output_not_writable(tmp_path: Path, tiny_checkpoint: Path, capsys: pytest.CaptureFixture) -> None:
    raster = tmp_path / "scene.tif"
    write_scene_geotiff(raster)
    out = tmp_path / "missing_dir" / "o.gpkg"
    line = _error_line(main(["segment", str(raster), "--model", str(tiny_checkpoint), "--out", str(out),
                             "--progress", "none"]), capsys)
    assert "missing_dir" in line
    line = _error_line(main(["segment", str(raster), "--model", str(tiny_checkpoint), "--out",
                             str(tmp_path / "o.xyz"), "--progress", "none"]), capsys)
    assert ".xyz" in line and ".gpkg" in line


def test_error_exit_code_and_jsonl_error_event(tmp_path: Path, tiny_checkpoint: Path,
                                               capsys: pytest.CaptureFixture) -> None:
    code = main(["segment", str(tmp_path / "nope.tif"), "--model", str(tiny_checkpoint), "--out",
                 str(tmp_path / "o.gpkg"), "--progress", "jsonl"])  # `python -m engine` exits with this code
    printed = capsys.readouterr()
    assert code == 2
    assert printed.err.strip().splitlines()[-1].startswith("error: raster")
    events = [json.loads(line) for line in printed.out.splitlines()]
    assert events[-1]["event"] == "error" and "nope.tif" in events[-1]["message"]
