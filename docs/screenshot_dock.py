"""Pictures for the README (docs/images): the dock after segmenting the demo scene, and the styled result on the map.

Usage (headless): QT_QPA_PLATFORM=offscreen .venv/bin/python -m docs.screenshot_dock [--out docs/images]
Runs the real plugin code and the real engine (shipped default model) on data/demo/hrsid_demo_scene.tif.
"""
from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")

from qgis.core import (  # noqa: E402 (after the platform is chosen)
    QgsApplication,
    QgsMapRendererSequentialJob,
    QgsMapSettings,
    QgsProject,
    QgsRasterLayer,
)
from qgis.gui import QgsMapCanvas, QgsMessageBar  # noqa: E402
from qgis.PyQt.QtCore import QSize  # noqa: E402


class MinimalIface:
    """What the dock uses of QgisInterface: the map canvas and the message bar."""

    def __init__(self) -> None:
        self.canvas, self.bar = QgsMapCanvas(), QgsMessageBar()

    def mapCanvas(self):  # noqa: N802 (QGIS name)
        return self.canvas

    def messageBar(self):  # noqa: N802
        return self.bar


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=ROOT / "docs" / "images")
    parser.add_argument("--raster", type=Path, default=ROOT / "data" / "demo" / "hrsid_demo_scene.tif")
    args = parser.parse_args(argv)
    app = QgsApplication([], True)
    app.initQgis()
    from rs_qgis_plugin.dock import SegmentDock

    layer = QgsRasterLayer(str(args.raster), args.raster.stem)
    QgsProject.instance().addMapLayer(layer)
    iface = MinimalIface()
    dock = SegmentDock(iface)
    dock.layer_combo.setLayer(layer)
    dock.labels_check.setChecked(False)
    dock.check_button.click()
    task = dock.start()
    if task is None:
        print(dock.log.toPlainText(), file=sys.stderr)
        return 1
    while dock.task is not None:
        app.processEvents()
        time.sleep(0.05)
    args.out.mkdir(parents=True, exist_ok=True)
    dock.resize(440, 1150)
    app.processEvents()
    dock.log.verticalScrollBar().setValue(dock.log.verticalScrollBar().maximum())
    dock.grab().save(str(args.out / "dock.png"))
    result = task.layer
    if result is None:
        print(dock.log.toPlainText(), file=sys.stderr)
        return 1
    settings = QgsMapSettings()
    settings.setLayers([result, layer])
    settings.setDestinationCrs(layer.crs())
    settings.setExtent(layer.extent())
    settings.setOutputSize(QSize(800, 800))
    job = QgsMapRendererSequentialJob(settings)
    job.start()
    job.waitForFinished()
    job.renderedImage().save(str(args.out / "result_map.jpg"), "JPG", 85)
    print(f"{result.featureCount()} objects; wrote {args.out / 'dock.png'} and {args.out / 'result_map.jpg'}")
    del result, layer, task
    QgsProject.instance().removeAllMapLayers()
    dock.deleteLater()
    app.exitQgis()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
