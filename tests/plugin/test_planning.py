"""From a request to a job without any widget: extent, output path, layer names, raster facts; the dock's
state saved and restored in one place; the engine interpreter setting."""
from __future__ import annotations

import tempfile
from pathlib import Path

import pytest
from qgis.core import (
    QgsCoordinateReferenceSystem,
    QgsCoordinateTransform,
    QgsFeature,
    QgsGeometry,
    QgsProject,
    QgsRasterLayer,
    QgsRectangle,
    QgsSettings,
    QgsVectorLayer,
)

from rs_qgis_plugin import settings
from rs_qgis_plugin.job import JobError
from rs_qgis_plugin.layers import RESULTS_GROUP, add_to_results_group, summarise
from rs_qgis_plugin.models import ModelInfo
from rs_qgis_plugin.planning import (
    CanvasView,
    RunRequest,
    output_target,
    plan_job,
    processing_extent,
    raster_facts,
    result_name,
    unique_name,
    units_per_pixel,
)
from rs_qgis_plugin.state import DockState

SPEC = {"name": "tiny", "bands": 1, "band_names": ["b1"], "classes": [{"id": 1, "name": "ship"}], "gsd_m": 10.0,
        "normalisation": {"sar": "amplitude"}}
MODEL = ModelInfo.from_listing({"name": "tiny", "spec": SPEC, "title": "Ships in SAR images (test), 1 band"})


def _aoi_layer(rect: QgsRectangle, select: bool) -> QgsVectorLayer:
    polygons = QgsVectorLayer("Polygon?crs=EPSG:32633", "aoi", "memory")
    feature = QgsFeature()
    feature.setGeometry(QgsGeometry.fromRect(rect))
    polygons.dataProvider().addFeatures([feature])
    QgsProject.instance().addMapLayer(polygons)
    if select:
        polygons.selectAll()
    return polygons


def test_extent_modes_in_the_layer_crs(scene_layer) -> None:
    full = scene_layer.extent()
    assert processing_extent("layer", scene_layer, None, None) is None
    corner = QgsRectangle(full.xMinimum() - 500, full.yMinimum() - 500, full.xMinimum() + 640, full.yMinimum() + 640)
    web = QgsCoordinateReferenceSystem("EPSG:3857")
    in_web = QgsCoordinateTransform(scene_layer.crs(), web, QgsProject.instance()).transformBoundingBox(corner)
    view = CanvasView(in_web, web, 400)
    extent = processing_extent("canvas", scene_layer, view, None)
    assert extent.xMinimum() == pytest.approx(full.xMinimum()) and extent.yMinimum() == pytest.approx(full.yMinimum())
    assert extent.xMaximum() == pytest.approx(full.xMinimum() + 640, abs=5)  # transformed back, clipped to the layer
    assert units_per_pixel(scene_layer, view) == pytest.approx(1140 / 400, rel=0.05)
    with pytest.raises(JobError, match="does not overlap layer 'scene'"):
        processing_extent("canvas", scene_layer, CanvasView(QgsRectangle(0, 0, 10, 10), scene_layer.crs(), 100), None)
    aoi = QgsRectangle(full.xMinimum() + 100, full.yMinimum() + 200, full.xMinimum() + 900, full.yMinimum() + 700)
    with pytest.raises(JobError, match="aoi has no selected features"):
        processing_extent("selection", scene_layer, view, _aoi_layer(aoi, select=False))
    assert processing_extent("selection", scene_layer, view, _aoi_layer(aoi, select=True)) == aoi


def test_output_targets(tmp_path: Path) -> None:
    path, temporary = output_target("temporary", "")
    assert temporary and Path(path).name == "segmentation.gpkg" and Path(path).parent.name.startswith("rsseg_")
    Path(path).parent.rmdir()
    assert output_target("file", str(tmp_path / "ships")) == (str(tmp_path / "ships.gpkg"), False)
    assert output_target("file", str(tmp_path / "ships.shp")) == (str(tmp_path / "ships.shp"), False)
    with pytest.raises(JobError, match="folder does not exist"):
        output_target("file", str(tmp_path / "nowhere" / "x.gpkg"))
    with pytest.raises(JobError, match="choose a .gpkg or .shp path"):
        output_target("file", " ")


def test_result_layers_get_unique_readable_names() -> None:
    assert result_name(MODEL, "scene", "/tmp/x/segmentation.gpkg", True) == "Ships in SAR images (test) – scene"
    assert result_name(MODEL, "scene", "/data/ships.gpkg", False) == "ships"
    assert unique_name("a", ["b"]) == "a"
    assert unique_name("a", ["a", "a (2)", "b"]) == "a (3)"


def test_raster_facts(scene_layer, tmp_path: Path) -> None:
    facts = raster_facts(scene_layer)
    assert (facts.name, facts.band_count, facts.data_type) == ("scene", 1, "Byte")
    assert facts.pixel_size_m == pytest.approx(10.0) and facts.band_names == ("Band 1",)


def test_plan_job_from_a_request(scene_layer, tmp_path: Path) -> None:
    state = DockState(model="tiny", score_threshold=0.4, tile_size=128, overlap=16, output_mode="file",
                      output_path=str(tmp_path / "out"), device="cpu")
    job = plan_job(RunRequest(state, MODEL, scene_layer), None)
    request = job.request
    assert (request.raster, request.model, request.output) == (scene_layer.source(), "tiny", str(tmp_path / "out.gpkg"))
    assert (request.score_threshold, request.tile_size, request.overlap, request.device) == (0.4, 128, 16, "cpu")
    assert job.layer_name == "out" and not job.temporary and job.classes == MODEL.classes
    with pytest.raises(JobError, match="raster layer: add a raster layer"):
        plan_job(RunRequest(state, MODEL, None), None)
    with pytest.raises(JobError, match="model: choose a model"):
        plan_job(RunRequest(state, None, scene_layer), None)


def test_a_refused_temporary_job_leaves_no_folder(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))  # where output_target's mkdtemp creates rsseg_*
    missing = QgsRasterLayer(str(tmp_path / "gone.tif"), "gone")
    state = DockState(model="tiny", output_mode="temporary", device="cpu")
    with pytest.raises(JobError, match="layer 'gone' is not valid"):
        plan_job(RunRequest(state, MODEL, missing), None)
    assert list(tmp_path.iterdir()) == []
    assert Path(output_target("temporary", "")[0]).parent.parent == tmp_path  # the folder would be made there


def test_dock_state_round_trip_and_old_settings() -> None:
    state = DockState(model="/m/x.pt", model_spec={"name": "x", "bands": 3}, score_threshold=0.65, tile_size=256,
                      overlap=48, extent_mode="selection", output_mode="file", output_path="/o/a.gpkg", labels=True,
                      device="cuda:1", last_dir="/m")
    state.save()
    assert DockState.load() == state
    stored = QgsSettings()
    stored.setValue(settings.PREFIX + "extent_mode", 1)  # 0.3's combo index for "Map canvas extent"
    stored.setValue(settings.PREFIX + "output_mode", "0")
    stored.setValue(settings.PREFIX + "tile_size", "not a number")
    loaded = DockState.load()
    assert (loaded.extent_mode, loaded.output_mode, loaded.tile_size) == ("canvas", "temporary", 512)
    assert DockState(extent_mode="bogus").extent_mode == "layer"


def test_engine_check_is_remembered_with_its_devices() -> None:
    check = settings.EngineCheck("/py", "stamp", "engine OK", (("cuda:0", "cuda:0: NVIDIA H200"),), "now")
    settings.remember_check(check)
    again = settings.remembered_check()
    assert again == check and again.valid_for("/py", "stamp")
    assert not again.valid_for("/py", "other stamp") and not again.valid_for("/other", "stamp")
    assert settings.gpu_names() == {"cuda:0": "NVIDIA H200"}


def test_engine_interpreter_precedence(monkeypatch) -> None:
    monkeypatch.delenv("RSSEG_ENGINE_PYTHON", raising=False)
    assert settings.engine_python() == settings.default_python()
    settings.set_engine_python(" /opt/venv/bin/python ")
    assert settings.engine_python() == "/opt/venv/bin/python"
    assert QgsSettings().value(settings.ENGINE_PYTHON_KEY) == "/opt/venv/bin/python"  # Processing's own key
    monkeypatch.setenv("RSSEG_ENGINE_PYTHON", "/env/python")
    assert settings.engine_python() == "/env/python"


def _result_layer(name: str, rows: list[tuple[str, float | None]]) -> QgsVectorLayer:
    layer = QgsVectorLayer("Polygon?crs=EPSG:32633&field=class_name:string&field=score:double", name, "memory")
    features = []
    for class_name, score in rows:
        feature = QgsFeature(layer.fields())
        feature.setAttributes([class_name, score])
        features.append(feature)
    layer.dataProvider().addFeatures(features)
    return layer


def test_each_result_gets_a_unique_name_at_the_top_of_the_results_group(qgis_new_project) -> None:
    project = QgsProject.instance()
    project.addMapLayer(_aoi_layer(QgsRectangle(0, 0, 1, 1), select=False))  # an unrelated layer at the root
    first, second = _result_layer("Ships – scene", []), _result_layer("Ships – scene", [])
    add_to_results_group(project, first)
    add_to_results_group(project, second)
    assert (first.name(), second.name()) == ("Ships – scene", "Ships – scene (2)")
    root = project.layerTreeRoot()
    group = root.children()[0]
    assert group.name() == RESULTS_GROUP and [n.layerId() for n in group.children()] == [second.id(), first.id()]


def test_summary_of_a_result_layer(qgis_new_project) -> None:
    layer = _result_layer("r", [("ship", 0.9), ("tank", 0.55), ("ship", None), ("ship", 0.7)])
    summary = summarise(layer, seconds=12.0)
    assert summary.features == 4 and summary.class_counts == (("ship", 3), ("tank", 1))
    assert summary.score_range == (0.55, 0.9) and summary.text().endswith("· 12 s")
