"""Every research and benchmark tool is a module of its package: importable without path edits, with a
`main(argv)` whose --help exits 0; and one runs as `python -m` from the repository root."""
from __future__ import annotations

import importlib
import json
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
           "benchmarks.benchmark_distributed", "benchmarks.benchmark_input_scale", "benchmarks.benchmark_step_time",
           "research.farseg_relations"]


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


def test_overfit_table_marks_each_architecture_against_its_bar(tmp_path: Path) -> None:
    from research.overfit import table

    (tmp_path / "solov2.json").write_text(json.dumps(
        {"arch": "solov2", "iterations": 300, "seconds": 900.4, "mask_AP": 71.2, "optimizer": "adamw", "lr": 1e-4,
         "image_classes": ["ship"]}))
    (tmp_path / "farseg.json").write_text(json.dumps(
        {"arch": "farseg", "iterations": 600, "seconds": 1200, "mask_AP": 0.0, "mIoU": 61.0, "optimizer": "adamw",
         "lr": 1e-3, "scale": 0.5, "image_classes": ["airplane", "ship", "vehicle"]}))
    rows = table(tmp_path).splitlines()[2:]
    assert rows == ["| farseg | semantic | 3 | adamw 0.001 | 0.5 | 600 | 1200 | mIoU 61.0 | 80 | no |",
                    "| solov2 | instance | ship | adamw 0.0001 | 1 | 300 | 900 | mask AP 71.2 | 70 | yes |"]


def test_overfit_images_show_every_class_then_follow_file_names(tmp_path: Path) -> None:
    from research.overfit import subset_class_names, subset_coco

    classes = {"a.jpg": [1], "b.jpg": [1], "c.jpg": [2, 3], "d.jpg": [], "e.jpg": [3, 4], "f.jpg": [1, 2]}
    images = [{"id": i, "file_name": name} for i, name in enumerate(classes)]
    annotations = [{"id": 10 * i + k, "image_id": i, "category_id": c}
                   for i, cats in enumerate(classes.values()) for k, c in enumerate(cats)]
    categories = [{"id": c, "name": f"class{c}"} for c in (1, 2, 3, 4)]
    src = tmp_path / "all.json"
    src.write_text(json.dumps({"images": images, "annotations": annotations, "categories": categories}))
    out = subset_coco(src, tmp_path / "sub.json", 3)
    # c (2 new classes) first, then e (adds 4) and a (adds 1, first by name among b and f); d holds no object
    assert [im["file_name"] for im in json.loads(out.read_text())["images"]] == ["a.jpg", "c.jpg", "e.jpg"]
    assert subset_class_names(out) == ["class1", "class2", "class3", "class4"]
    two = subset_coco(src, tmp_path / "two.json", 2)  # after c, a / e / f each add one class: a by name
    assert [im["file_name"] for im in json.loads(two.read_text())["images"]] == ["a.jpg", "c.jpg"]


def test_input_scale_candidates_parse_and_reject_a_missing_zoom() -> None:
    from benchmarks.benchmark_input_scale import parse_candidate

    assert parse_candidate("l2=runs/a@b/best.pt@2") == ("l2", "runs/a@b/best.pt", 2.0)
    with pytest.raises(SystemExit, match="NAME=MODEL_OR_CHECKPOINT@SCALE"):
        parse_candidate("lite0=ssdd-ship-maskrcnn")


def test_step_time_table_gives_each_facenet_part_its_share_of_the_full_step() -> None:
    from benchmarks.benchmark_step_time import table

    rows = [{"variant": "facenet", "median_s": 10.0, "min_s": 9.0},
            {"variant": "facenet_no_dcn", "median_s": 7.5, "min_s": 7.0},
            {"variant": "solov2", "median_s": 4.0, "min_s": 3.9}]
    lines = table(rows).splitlines()
    assert lines[3] == "| facenet_no_dcn | 7.50 | 7.00 | 25 % (dcn) |"
    assert lines[4] == "| solov2 | 4.00 | 3.90 |  |"


def test_overfit_config_overrides_reach_the_recipe_and_the_tagged_result(tmp_path: Path, monkeypatch) -> None:
    import research.overfit as overfit_module

    seen = {}

    def fake_overfit(arch, iters, data, work, n_images, lr, threads, eval_every, scale):
        recipe = overfit_module.RECIPES[arch]
        seen["config"] = recipe.config(arch)
        return {"arch": arch, "mIoU": 1.0, "iterations": iters, "seconds": 0.0, "overrides": recipe.overrides}

    monkeypatch.setattr(overfit_module, "overfit", fake_overfit)
    monkeypatch.setattr(overfit_module, "RECIPES", dict(overfit_module.RECIPES))
    assert overfit_module.main(["--arch", "hi_resnet", "--iters", "5", "--out", str(tmp_path), "--tag", "hi_no_edge",
                                "--config", "edge_loss=false", "--config", "label_smoothing=0.0"]) == 0
    assert seen["config"]["edge_loss"] is False and seen["config"]["label_smoothing"] == 0.0
    written = json.loads((tmp_path / "hi_no_edge.json").read_text())
    assert written["overrides"] == {"edge_loss": False, "label_smoothing": 0.0}
    with pytest.raises(SystemExit):
        overfit_module.main(["--arch", "hi_resnet", "--out", str(tmp_path), "--config", "edge_loss"])


def test_input_scale_benchmark_sweeps_the_scene_like_rsseg_score(tmp_path: Path, tiny_checkpoint: Path,
                                                                  capsys: pytest.CaptureFixture) -> None:
    from benchmarks.benchmark_input_scale import main as benchmark
    from engine.cli import main as rsseg
    from engine.tiling.grid import tile_grid
    from tests.data.make_fixtures import write_scene_geotiff, write_scene_polygons

    scene, truth = tmp_path / "scene.tif", tmp_path / "truth.gpkg"
    write_scene_geotiff(scene)
    write_scene_polygons(truth, class_names=("ship", "ship"))
    out = tmp_path / "bench"
    assert benchmark(["--candidate", f"tiny={tiny_checkpoint}@1", "--scene", str(scene), "--truth", str(truth),
                      "--candidate", f"capped={tiny_checkpoint}@1", "--config", 'capped={"detections_per_img": 1}',
                      "--sweep", "--threads", "1", "--out-dir", str(out), "--tag", "t"]) == 0
    row, capped = json.loads((out / "t.json").read_text())["rows"]
    # the override reaches the model: at most one detection per tile instead of the tiny model's many
    assert capped["config"] == {"detections_per_img": 1} and row["config"] == {}
    with rasterio.open(scene) as ds:
        tiles = len(tile_grid(ds.height, ds.width, 128, 32))  # the tiny checkpoint's tile size and overlap
    assert 0 < capped["objects"] <= tiles < row["objects"]
    table = (out / "t.md").read_text()
    assert "scene-best score >=" in table and f"| {row['scene_best_f1']:.3f} |" in table
    assert row["score_threshold"] == 0.0  # the tiny checkpoint's own
    # the scene-best row is the best row of `rsseg score --sweep` on the low-threshold layer the benchmark wrote
    capsys.readouterr()
    assert rsseg(["score", str(out / "t_tiny_low.gpkg"), str(truth), "--sweep", "--progress", "none",
                  "--out", str(tmp_path / "s.json")]) == 0
    best = json.loads((tmp_path / "s.json").read_text())["sweep_best"]
    assert (best["threshold"], best["f1"]) == (row["scene_best_threshold"], row["scene_best_f1"])


def test_input_scale_benchmark_reads_config_overrides_per_candidate() -> None:
    from benchmarks.benchmark_input_scale import parse_configs

    configs = parse_configs(['crowd={"box_nms_thresh": 0.6, "detections_per_img": 500}'], ["shipped", "crowd"])
    assert configs == {"crowd": {"box_nms_thresh": 0.6, "detections_per_img": 500}}
    with pytest.raises(SystemExit, match="NAME must be one of the candidates"):
        parse_configs(['other={"box_nms_thresh": 0.6}'], ["shipped"])
    with pytest.raises(SystemExit, match="give NAME=JSON"):
        parse_configs(["shipped={box_nms_thresh: 0.6}"], ["shipped"])


def test_input_scale_benchmark_rejects_a_config_key_the_architecture_lacks(tiny_checkpoint: Path,
                                                                          tmp_path: Path) -> None:
    from benchmarks.benchmark_input_scale import main as benchmark

    with pytest.raises(SystemExit, match="unknown mask_rcnn config key.*box_nms_thresh"):
        benchmark(["--candidate", f"tiny={tiny_checkpoint}@1", "--config", 'tiny={"box_nms": 0.6}',
                   "--out-dir", str(tmp_path)])
