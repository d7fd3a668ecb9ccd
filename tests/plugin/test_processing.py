"""The Processing algorithm in-process (processing.run) and headless through qgis_process from the
packaged zip installed into a fresh profile."""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
import zipfile

import fiona
import pytest
from qgis.core import QgsProcessingException, QgsProcessingFeedback

from scripts.package_plugin import build_zip

FIELDS = {"class_id", "class_name", "score", "area_m2", "n_tiles", "merged", "model", "source"}


def _qgis_process() -> str:
    """Debian 12's /usr/bin/qgis_process wrapper passes --noversioncheck, which the binary rejects."""
    for name in ("qgis_process.bin", "qgis_process"):
        found = shutil.which(name)
        if found:
            return found
    pytest.fail("qgis_process not found: `make setup` installs Debian's qgis package")


def test_processing_run_writes_the_vector_file(plugin, qgis_processing, scene_layer, tiny_checkpoint, tmp_path):
    import processing

    out = tmp_path / "ships.gpkg"
    feedback = QgsProcessingFeedback()
    progress: list[float] = []
    feedback.progressChanged.connect(progress.append)
    result = processing.run("rsseg:segment_raster", {
        "INPUT": scene_layer, "CHECKPOINT": str(tiny_checkpoint), "OVERLAP": 16, "OUTPUT": str(out)},
        feedback=feedback)
    assert result["OUTPUT"] == str(out) and out.is_file()
    with fiona.open(out) as layer:
        feats = list(layer)
        assert FIELDS <= set(layer.schema["properties"]) and layer.crs.to_epsg() == 32633
    assert feats and all(f["properties"]["class_name"] == "ship" for f in feats)
    assert progress and max(progress) == pytest.approx(100.0)


def test_processing_runs_a_semantic_checkpoint(plugin, qgis_processing, scene_layer, semantic_checkpoint,
                                              tmp_path) -> None:
    """Semantic models go through the same algorithm: one polygon per class region, same attributes."""
    import processing

    out = tmp_path / "regions.gpkg"
    processing.run("rsseg:segment_raster", {"INPUT": scene_layer, "CHECKPOINT": str(semantic_checkpoint),
                                            "OUTPUT": str(out)})
    with fiona.open(out) as layer:
        feats = list(layer)
        assert FIELDS <= set(layer.schema["properties"])
    # "ship" wins everywhere: one region, the whole 256 x 256 scene of 10 m pixels, in all 3 x 3 tile cores
    assert len(feats) == 1
    props = feats[0]["properties"]
    assert props["class_name"] == "ship" and props["area_m2"] == pytest.approx(256 * 256 * 100.0)
    assert props["n_tiles"] == 9 and props["model"] == "sem"  # the checkpoint file names the model


def test_loaded_processing_output_is_styled_by_class(plugin, qgis_processing, scene_layer, tiny_checkpoint,
                                                    tmp_path) -> None:
    import processing
    from qgis.core import QgsCategorizedSymbolRenderer, QgsProject

    out = tmp_path / "styled.gpkg"
    processing.runAndLoadResults("rsseg:segment_raster", {
        "INPUT": scene_layer, "CHECKPOINT": str(tiny_checkpoint), "OUTPUT": str(out)})
    loaded = [lyr for lyr in QgsProject.instance().mapLayers().values() if lyr.source().startswith(str(out))]
    assert len(loaded) == 1 and loaded[0].featureCount() > 0
    layer = loaded[0]
    renderer = layer.renderer()
    assert isinstance(renderer, QgsCategorizedSymbolRenderer)
    assert [c.value() for c in renderer.categories()] == ["ship", "tank"]


def test_processing_raises_the_engine_reason(plugin, qgis_processing, scene_layer, tmp_path):
    import processing

    broken = tmp_path / "broken.pt"
    broken.write_bytes(b"garbage")
    with pytest.raises(QgsProcessingException, match="broken.pt"):
        processing.run("rsseg:segment_raster", {"INPUT": scene_layer, "CHECKPOINT": str(broken),
                                                "OUTPUT": str(tmp_path / "x.gpkg")})
    assert not (tmp_path / "x.gpkg").exists()


class RecordingFeedback(QgsProcessingFeedback):
    """Keeps every message and progress text the algorithm reports."""

    def __init__(self) -> None:
        super().__init__()
        self.messages: list[tuple[str, str]] = []
        self.texts: list[str] = []

    def pushInfo(self, info: str) -> None:  # noqa: N802 (QGIS names)
        self.messages.append(("info", info))

    def pushWarning(self, warning: str) -> None:  # noqa: N802
        self.messages.append(("warning", warning))

    def reportError(self, error: str, fatalError: bool = False) -> None:  # noqa: N802, N803
        self.messages.append(("error", error))

    def setProgressText(self, text: str) -> None:  # noqa: N802
        self.texts.append(text)

    def count(self, text: str) -> int:
        return sum(text in message for _, message in self.messages)


def _algorithm():
    from qgis.core import QgsApplication

    return QgsApplication.processingRegistry().algorithmById("rsseg:segment_raster")


def test_engine_interpreter_is_a_processing_option(qgis_processing, plugin, monkeypatch, tmp_path) -> None:
    from processing.core.ProcessingConfig import ProcessingConfig

    from rs_qgis_plugin import settings

    monkeypatch.delenv("RSSEG_ENGINE_PYTHON")
    setting = ProcessingConfig.settings[settings.ENGINE_PYTHON_SETTING]
    assert setting.group == "Remote sensing segmentation" and setting.valuetype == setting.FILE
    assert "python" in setting.description.lower()
    ProcessingConfig.setSettingValue(settings.ENGINE_PYTHON_SETTING, sys.executable)  # as the Options dialog does
    assert settings.engine_python() == sys.executable
    settings.set_engine_python("/usr/bin/python3")  # as the dock does: both stay the same setting
    assert setting.value == "/usr/bin/python3" and settings.engine_python() == "/usr/bin/python3"
    with pytest.raises(ValueError, match="'/nowhere/python' not found"):
        setting.setValue("/nowhere/python")
    setting.setValue("")  # empty: automatic
    plugin.unload()
    assert settings.ENGINE_PYTHON_SETTING not in ProcessingConfig.settings


def test_numbers_show_the_model_defaults_and_every_parameter_has_help(qgis_processing, plugin) -> None:
    algorithm = _algorithm()
    default = algorithm.models[0]
    assert default.default and algorithm.parameterDefinition("MODEL").options()[0] == default.title
    for name, key in (("SCORE_THRESHOLD", "score_threshold"), ("TILE_SIZE", "tile_size"), ("OVERLAP", "overlap")):
        parameter = algorithm.parameterDefinition(name)
        assert parameter.defaultValue() == default.spec[key], name  # a number, not "Not set"
    for parameter in algorithm.parameterDefinitions():
        assert len(parameter.help()) > 20, parameter.name()
        assert parameter.name() in ("INPUT", "MODEL", "CHECKPOINT", "EXTENT", "AOI", "EXCLUDE", "BANDS",
                                    "SCORE_THRESHOLD", "TILE_SIZE", "OVERLAP", "DEVICE", "OUTPUT")
    help_text = algorithm.shortHelpString()
    for label in ("Raster layer", "Model", "Checkpoint", "Area of interest", "Exclude areas", "Bands",
                  "Score threshold", "Tile size", "Tile overlap", "Device", "Segmented polygons", default.title):
        assert label in help_text, label


def test_model_or_default_keeps_each_model_own_defaults() -> None:
    from rs_qgis_plugin.processing.segment_algorithm import model_or_default

    assert model_or_default(512, 512, 128) is None  # left at the value shown: the model's own default
    assert model_or_default(256, 512, 128) == 256
    assert model_or_default(None, 512, 128) is None
    assert model_or_default(512, 512, None) == 512


def test_one_band_raster_feeds_an_rgb_model_with_repeated_bands(qgis_processing, plugin, scene_layer,
                                                                 rgb_checkpoint, tmp_path) -> None:
    import processing

    out = tmp_path / "ships.gpkg"
    feedback = RecordingFeedback()
    processing.run("rsseg:segment_raster", {"INPUT": scene_layer, "CHECKPOINT": str(rgb_checkpoint), "BANDS": "1,1,1",
                                            "OUTPUT": str(out)}, feedback=feedback)
    with fiona.open(out) as layer:
        assert len(layer) > 0
    assert feedback.texts[0] == "Loading model…" and any(t.startswith("Tile ") for t in feedback.texts)
    assert feedback.count("running on CPU") == 1


def test_errors_name_parameters_and_are_reported_once(qgis_processing, plugin, scene_layer, tiny_checkpoint,
                                                      rgb_checkpoint, tmp_path) -> None:
    import processing

    feedback = RecordingFeedback()
    with pytest.raises(QgsProcessingException, match=r"Bands: layer 'scene' has 1 band .* e\.g\. 1,1,1"):
        processing.run("rsseg:segment_raster", {"INPUT": scene_layer, "CHECKPOINT": str(rgb_checkpoint),
                                                "OUTPUT": str(tmp_path / "a.gpkg")}, feedback=feedback)
    feedback = RecordingFeedback()  # an error only the engine finds: the overlap is not below the tile size
    with pytest.raises(QgsProcessingException, match='"Tile overlap" = 200: must be smaller') as raised:
        processing.run("rsseg:segment_raster", {"INPUT": scene_layer, "CHECKPOINT": str(tiny_checkpoint),
                                                "TILE_SIZE": 128, "OVERLAP": 200, "OUTPUT": str(tmp_path / "b.gpkg")},
                       feedback=feedback)
    assert "--overlap" not in str(raised.value)
    assert feedback.count("must be smaller") <= 1 and not any(
        "must be smaller" in m for kind, m in feedback.messages if kind in ("info", "warning"))


def test_mismatch_warnings_before_the_run(qgis_processing, plugin, scene_layer, tmp_path) -> None:
    import processing

    algorithm = _algorithm()
    optical = [m.sensor for m in algorithm.models].index("optical")
    feedback = RecordingFeedback()
    with pytest.raises(QgsProcessingException, match="does not overlap"):  # stops before the engine runs
        processing.run("rsseg:segment_raster", {"INPUT": scene_layer, "MODEL": optical, "BANDS": "1,1,1",
                                                "EXTENT": "0,10,0,10 [EPSG:32633]", "OUTPUT": str(tmp_path / "c.gpkg")},
                       feedback=feedback)
    warnings = [m for kind, m in feedback.messages if kind == "warning"]
    assert any("looks like a SAR image" in w for w in warnings) and any("colours are lost" in w for w in warnings)


def test_area_masks_reach_the_engine_and_a_memory_layer_is_written_to_a_file(
        qgis_processing, plugin, scene_layer, tiny_checkpoint, tmp_path, monkeypatch) -> None:
    """AOI: a memory layer (written to a temporary GeoPackage first); Exclude: a GeoPackage, passed as it is."""
    import processing
    from fiona.crs import CRS
    from qgis.core import QgsFeature, QgsGeometry, QgsVectorLayer
    from shapely.geometry import box, mapping, shape

    from rs_qgis_plugin.processing import segment_algorithm

    left_half, top_left = box(500000, 3997440, 501280, 4000000), box(500000, 3998720, 501280, 4000000)
    aoi = QgsVectorLayer("Polygon?crs=EPSG:32633", "harbour", "memory")
    feature = QgsFeature()
    feature.setGeometry(QgsGeometry.fromWkt(left_half.wkt))
    assert aoi.dataProvider().addFeatures([feature])
    land = tmp_path / "land.gpkg"
    with fiona.open(land, "w", driver="GPKG", schema={"geometry": "Polygon", "properties": {}},
                    crs=CRS.from_epsg(32633)) as dst:
        dst.write({"geometry": mapping(top_left), "properties": {}})
    jobs = []

    def spy(job, *args, **kwargs):
        jobs.append(job)
        return execute_job(job, *args, **kwargs)

    execute_job = segment_algorithm.execute_job
    monkeypatch.setattr(segment_algorithm, "execute_job", spy)
    out = tmp_path / "ships.gpkg"
    processing.run("rsseg:segment_raster", {"INPUT": scene_layer, "CHECKPOINT": str(tiny_checkpoint), "AOI": aoi,
                                            "EXCLUDE": str(land), "OUTPUT": str(out)})
    args = jobs[0].request.engine_args()
    written = args[args.index("--aoi") + 1]
    assert written.endswith(".gpkg") and written != str(land) and args[args.index("--exclude") + 1] == str(land)
    with fiona.open(out) as layer:
        points = [shape(f["geometry"]).representative_point() for f in layer]
    assert points and all(left_half.covers(p) and not top_left.covers(p) for p in points)


def install_packaged_plugin(tmp_path):
    """The packaged zip unzipped into a fresh profile -> (qgis_process(*args, engine=python), zip names, plugins
    folder)."""
    archive = build_zip(tmp_path / "plugin.zip")
    config = tmp_path / "qgis-config"
    plugins = config / "profiles" / "default" / "python" / "plugins"
    plugins.mkdir(parents=True)
    with zipfile.ZipFile(archive) as zf:
        names = zf.namelist()
        zf.extractall(plugins)
    env = {**os.environ, "QGIS_CUSTOM_CONFIG_PATH": str(config), "QT_QPA_PLATFORM": "offscreen"}
    env.pop("PYTHONPATH", None)
    exe = _qgis_process()

    def qgis_process(*args: str, engine: str = sys.executable) -> subprocess.CompletedProcess:
        return subprocess.run([exe, *args], capture_output=True, text=True, env={**env, "RSSEG_ENGINE_PYTHON": engine},
                              cwd=tmp_path, timeout=300)

    enabled = qgis_process("plugins", "enable", "rs_qgis_plugin")
    assert enabled.returncode == 0, enabled.stdout + enabled.stderr
    return qgis_process, names, plugins


def test_packaged_zip_loads_in_a_fresh_profile_and_runs_headless(tmp_path, tiny_checkpoint) -> None:
    qgis_process, names, plugins = install_packaged_plugin(tmp_path)
    assert "rs_qgis_plugin/metadata.txt" in names and "rs_qgis_plugin/engine_bundle/engine/cli.py" in names
    assert "rs_qgis_plugin/engine_bundle/requirements.txt" in names and "rs_qgis_plugin/setup_dialog.ui" in names
    assert not any("__pycache__" in n for n in names)
    listing = qgis_process("plugins")
    assert "* rs_qgis_plugin" in listing.stdout, listing.stdout + listing.stderr
    raster = tmp_path / "scene.tif"
    from tests.data.make_fixtures import write_scene_geotiff

    write_scene_geotiff(raster)
    out = tmp_path / "ships.gpkg"
    run = qgis_process("run", "rsseg:segment_raster", "--", f"INPUT={raster}", f"CHECKPOINT={tiny_checkpoint}",
                       f"OUTPUT={out}")
    assert run.returncode == 0, run.stdout + run.stderr
    with fiona.open(out) as layer:
        assert len(layer) > 0 and FIELDS <= set(layer.schema["properties"])
    # the engine that ran is the copy bundled in the zip
    assert str(plugins / "rs_qgis_plugin" / "engine_bundle") in run.stdout + run.stderr
