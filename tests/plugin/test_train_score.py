"""'Train model from polygons' (chips -> train -> evaluate) and 'Score polygons against reference', through
Processing and the dock; and the one-line answer every entry point gives for an engine without its packages."""
from __future__ import annotations

import subprocess
from pathlib import Path

import fiona
import pytest
from qgis.core import QgsFeature, QgsGeometry, QgsProcessingException, QgsProject, QgsVectorLayer
from qgis.PyQt.QtCore import Qt

from rs_qgis_plugin.dock import SegmentDock
from rs_qgis_plugin.processing.train_algorithm import chip_classes, class_names
from rs_qgis_plugin.runner import run_engine
from tests.data.make_fixtures import write_scene_polygons
from tests.plugin.test_processing import RecordingFeedback

ROOT = Path(__file__).resolve().parents[2]
X0, Y0 = 500000.0, 4000000.0  # the fixture scene's top-left corner, 10 m pixels


def test_class_choice_keeps_the_base_head_when_it_can() -> None:
    assert class_names(["ship", " tank ", 3.0, None, "ship"]) == ["3", "ship", "tank"]
    assert chip_classes(["ship", "tank"], ["tank"]) == (["ship", "tank"], "classes tank are the base model's: "
                                                                          "all its weights are kept")
    classes, meaning = chip_classes(["ship"], ["boat", "ship"])
    assert classes is None and "boat are new" in meaning and "new head" in meaning
    assert chip_classes(["ship"], None)[0] == ["ship"]
    assert chip_classes(["a", "b"], None)[0] is None


def test_train_from_polygons_then_segment_with_the_new_model_in_the_dock(plugin, qgis_processing, scene_layer,
                                                                        tiny_checkpoint, qgis_iface, qtbot,
                                                                        tmp_path) -> None:
    import processing

    polygons = write_scene_polygons(tmp_path / "objects.gpkg")  # ships and tanks, the base model's classes
    out = tmp_path / "my_ships.pt"
    feedback = RecordingFeedback()
    progress: list[float] = []
    feedback.progressChanged.connect(progress.append)
    result = processing.run("rsseg:train_from_polygons", {
        "INPUT": scene_layer, "POLYGONS": str(polygons), "CLASS_FIELD": "class_name",
        "BASE_CHECKPOINT": str(tiny_checkpoint), "EPOCHS": 1, "TILE_SIZE": 128, "VALIDATION_FRACTION": 0.25,
        "OUTPUT": str(out)}, feedback=feedback)
    infos = [m for kind, m in feedback.messages if kind == "info"]
    assert result["OUTPUT"] == str(out) and out.is_file(), infos
    assert isinstance(result["VALIDATION_AP"], float)
    assert any("all its weights are kept" in m for m in infos)
    assert any(m.startswith("Validation (1 chips): mask AP") for m in infos), infos
    assert any(m.startswith("Training my_ships (mask_rcnn, classes ship, tank) on 3 images") for m in infos)
    assert any(t.startswith("Iteration ") for t in feedback.texts) and max(progress) == pytest.approx(100.0)
    assert not list(tmp_path.glob(".my_ships*"))  # no partial file left

    trained = [m for m in plugin.catalog.models() if m.model == str(out)]
    assert len(trained) == 1 and trained[0].spec["name"] == "my_ships" and trained[0].checkpoint
    dock = SegmentDock(qgis_iface, None, plugin.catalog)
    qtbot.addWidget(dock)
    assert str(out) in [m.model for m in dock.models]
    dock.select_model(trained[0])
    dock.layer_combo.setLayer(scene_layer)
    qtbot.mouseClick(dock.run_button, Qt.LeftButton)
    assert dock.task is not None, dock.log.toPlainText()
    qtbot.waitUntil(lambda: dock.task is None, timeout=300_000)
    layer = QgsProject.instance().mapLayer(dock.result_layer_id)
    assert layer is not None and layer.featureCount() > 0, dock.log.toPlainText()
    assert {f["model"] for f in layer.getFeatures()} == {"my_ships"}


def test_train_button_opens_the_algorithm_with_the_dock_choices(plugin, qgis_processing, scene_layer, qgis_iface,
                                                                qtbot, monkeypatch) -> None:
    from qgis.gui import QgsBrowserGuiModel

    browser = QgsBrowserGuiModel()  # pytest-qgis's iface has none; Processing's dialog wants one
    monkeypatch.setattr(qgis_iface, "browserModel", lambda: browser, raising=False)
    dock = plugin.show_dock(True)
    dock.layer_combo.setLayer(scene_layer)
    dialog = dock.open_training()
    assert dialog is not None and dialog.algorithm().id() == "rsseg:train_from_polygons"
    panel = dialog.mainWidget()
    assert panel.wrappers["INPUT"].parameterValue() == scene_layer.id()
    assert panel.wrappers["BASE_MODEL"].parameterValue() == 0  # the dock's model: the default one
    dialog.close()


def _memory_predictions() -> QgsVectorLayer:
    """Two hits (the ship rectangle and the tank rectangle of the fixture scene) and one false alarm."""
    layer = QgsVectorLayer("Polygon?crs=EPSG:32633&field=class_name:string&field=score:double", "pred", "memory")
    boxes = [((20, 30, 36, 70), "ship", 0.9), ((180, 190, 240, 200), "tank", 0.8), ((0, 240, 10, 250), "ship", 0.4)]
    features = []
    for (r0, c0, r1, c1), name, score in boxes:
        f = QgsFeature(layer.fields())
        f.setGeometry(QgsGeometry.fromWkt(f"POLYGON(({X0 + c0 * 10} {Y0 - r0 * 10}, {X0 + c1 * 10} {Y0 - r0 * 10}, "
                                          f"{X0 + c1 * 10} {Y0 - r1 * 10}, {X0 + c0 * 10} {Y0 - r1 * 10}, "
                                          f"{X0 + c0 * 10} {Y0 - r0 * 10}))"))
        f.setAttributes([name, score])
        features.append(f)
    layer.dataProvider().addFeatures(features)
    return layer


def test_score_against_reference_table_log_misses_and_false_alarms(plugin, qgis_processing, tmp_path) -> None:
    import processing

    reference = write_scene_polygons(tmp_path / "truth.gpkg", class_field="kind")  # 2 ships, 2 tanks
    prediction = _memory_predictions()  # a layer without a file: exported for the engine
    misses, alarms = tmp_path / "misses.gpkg", tmp_path / "alarms.gpkg"
    feedback = RecordingFeedback()
    result = processing.run("rsseg:score_polygons", {
        "PREDICTION": prediction, "REFERENCE": str(reference), "IOU": 0.5, "REFERENCE_CLASS_FIELD": "kind",
        "OUTPUT": "TEMPORARY_OUTPUT", "MISSES": str(misses), "FALSE_ALARMS": str(alarms)}, feedback=feedback)
    assert (result["PRECISION"], result["RECALL"]) == (pytest.approx(2 / 3, abs=1e-3), 0.5)
    infos = [m for kind, m in feedback.messages if kind == "info"]
    assert "all: precision 0.667, recall 0.500, F1 0.571 (TP 2, FP 1, FN 2)" in infos
    assert "ship: precision 0.500, recall 0.500, F1 0.500 (TP 1, FP 1, FN 1)" in infos
    table = result["OUTPUT"]
    rows = {f["class"]: (f["tp"], f["fp"], f["fn"]) for f in table.getFeatures()}
    assert rows == {"ship": (1, 1, 1), "tank": (1, 0, 1), "all": (2, 1, 2)}
    assert not table.isSpatial()
    with fiona.open(misses) as layer:
        assert sorted(f.properties["class_name"] for f in layer) == ["ship", "tank"]
    with fiona.open(alarms) as layer:
        assert [(f.properties["class_name"], f.properties["score"]) for f in layer] == [("ship", pytest.approx(0.4))]


@pytest.fixture
def bare_python(plugin, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    """An interpreter without the engine's packages, chosen as the engine (as after a half-done manual install),
    once the plugin is up."""
    subprocess.run(["/usr/bin/python3", "-m", "venv", "--without-pip", str(tmp_path / "bare")], check=True)
    python = str(tmp_path / "bare" / "bin" / "python")
    monkeypatch.setenv("RSSEG_ENGINE_PYTHON", python)
    return python


def test_an_engine_without_its_packages_gets_one_line_everywhere(bare_python, plugin, qgis_processing, scene_layer,
                                                                 tiny_checkpoint, qgis_iface, qtbot, tmp_path) -> None:
    import processing

    for algorithm, parameters in (
            ("rsseg:segment_raster", {"INPUT": scene_layer, "CHECKPOINT": str(tiny_checkpoint),
                                      "OUTPUT": str(tmp_path / "x.gpkg")}),
            ("rsseg:score_polygons", {"PREDICTION": str(write_scene_polygons(tmp_path / "p.gpkg")),
                                      "REFERENCE": str(tmp_path / "p.gpkg"), "OUTPUT": "TEMPORARY_OUTPUT"})):
        with pytest.raises(QgsProcessingException) as raised:
            processing.run(algorithm, parameters)
        message = str(raised.value)
        assert "missing torch" in message and "Set up engine…" in message and "\n" not in message, message
        assert "ModuleNotFoundError" not in message
    # the dock: its engine check offers the set-up, and Segment layer gives the same line
    dock = SegmentDock(qgis_iface, None, plugin.catalog)
    qtbot.addWidget(dock)
    qtbot.waitUntil(lambda: not dock.checking, timeout=120_000)
    assert not dock.last_report.ok and not dock.engine_group.isCollapsed() and dock.setup_button.isEnabled()
    assert dock.status_label.text().startswith("No working engine")
    dock.layer_combo.setLayer(scene_layer)
    assert dock.start() is None
    errors = [line for line in dock.log.toPlainText().splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and "missing torch" in errors[0]
    # a command that gets past the check anyway: the missing package, named, with the way out
    outcome = run_engine(bare_python, ["models", "--json"], ROOT)
    assert "lacks the package 'torch'" in outcome.error and "Set up engine…" in outcome.error


def test_train_and_score_headless_through_qgis_process(tmp_path, tiny_checkpoint, bare_python) -> None:
    """From the packaged zip in a fresh profile, as on a server: train, score, and a bare engine's one line."""
    from tests.data.make_fixtures import write_scene_geotiff
    from tests.plugin.test_processing import install_packaged_plugin

    qgis_process, _, _ = install_packaged_plugin(tmp_path)
    raster, polygons = tmp_path / "scene.tif", write_scene_polygons(tmp_path / "objects.gpkg")
    write_scene_geotiff(raster)
    out = tmp_path / "headless.pt"
    run = qgis_process("run", "rsseg:train_from_polygons", "--", f"INPUT={raster}", f"POLYGONS={polygons}",
                       "CLASS_FIELD=class_name", f"BASE_CHECKPOINT={tiny_checkpoint}", "EPOCHS=1", "TILE_SIZE=128",
                       "VALIDATION_FRACTION=0", f"OUTPUT={out}")
    assert run.returncode == 0 and out.is_file(), run.stdout + run.stderr
    assert "No validation chips" in run.stdout + run.stderr
    misses = tmp_path / "misses.gpkg"
    run = qgis_process("run", "rsseg:score_polygons", "--", f"PREDICTION={polygons}", f"REFERENCE={polygons}",
                       f"OUTPUT={tmp_path / 'scores.csv'}", f"MISSES={misses}")
    assert run.returncode == 0, run.stdout + run.stderr
    assert "all: precision 1.000, recall 1.000, F1 1.000 (TP 4, FP 0, FN 0)" in run.stdout + run.stderr
    assert (tmp_path / "scores.csv").read_text().splitlines()[0].startswith("class,tp,fp,fn")
    run = qgis_process("run", "rsseg:segment_raster", "--", f"INPUT={raster}", f"OUTPUT={tmp_path / 'x.gpkg'}",
                       engine=bare_python)
    assert run.returncode != 0 and "missing torch" in run.stdout + run.stderr
    assert "ModuleNotFoundError" not in run.stdout + run.stderr
