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


def test_processing_runs_a_semantic_checkpoint(plugin, qgis_processing, scene_layer, tmp_path) -> None:
    """Semantic models go through the same algorithm: one polygon per class region, same attributes."""
    import processing

    from tests.plugin.conftest import make_tiny_semantic_checkpoint

    checkpoint = make_tiny_semantic_checkpoint(tmp_path / "sem.pt")
    out = tmp_path / "regions.gpkg"
    processing.run("rsseg:segment_raster", {"INPUT": scene_layer, "CHECKPOINT": str(checkpoint), "OUTPUT": str(out)})
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


def test_packaged_zip_loads_in_a_fresh_profile_and_runs_headless(tmp_path, tiny_checkpoint) -> None:
    archive = build_zip(tmp_path / "plugin.zip")
    config = tmp_path / "qgis-config"
    plugins = config / "profiles" / "default" / "python" / "plugins"
    plugins.mkdir(parents=True)
    with zipfile.ZipFile(archive) as zf:
        names = zf.namelist()
        zf.extractall(plugins)
    assert "rs_qgis_plugin/metadata.txt" in names and "rs_qgis_plugin/engine_bundle/engine/cli.py" in names
    assert not any("__pycache__" in n for n in names)
    env = {**os.environ, "QGIS_CUSTOM_CONFIG_PATH": str(config), "QT_QPA_PLATFORM": "offscreen",
           "RSSEG_ENGINE_PYTHON": sys.executable}
    env.pop("PYTHONPATH", None)
    exe = _qgis_process()

    def qgis_process(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run([exe, *args], capture_output=True, text=True, env=env, cwd=tmp_path, timeout=300)

    enabled = qgis_process("plugins", "enable", "rs_qgis_plugin")
    assert enabled.returncode == 0, enabled.stdout + enabled.stderr
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
