"""Screenshots for the README: the dock at QGIS's default dock width after segmenting the demo scene, and
the styled result on the map.

Usage (headless, from the repository root):
    QT_QPA_PLATFORM=offscreen .venv/bin/python -m docs.screenshot_dock [--out docs/images] [--no-run]
Runs the real plugin code and the real engine (the shipped default model) on data/demo/hrsid_demo_scene.tif,
with settings in a temporary folder (nothing of the user's QGIS profile is read or changed). --no-run
takes the dock before any run (no engine needed beyond listing the models).
"""
from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

from qgis.core import QgsApplication, QgsMapRendererSequentialJob, QgsMapSettings, QgsProject, QgsRasterLayer
from qgis.gui import QgsMapCanvas, QgsMessageBar
from qgis.PyQt import sip
from qgis.PyQt.QtCore import QSettings, QSize

ROOT = Path(__file__).resolve().parent.parent
DOCK_WIDTH = 298  # QGIS's default width of a dock panel on the right
DOCK_HEIGHT = 900


class MinimalIface:
    """What the dock uses of QgisInterface: the map canvas and the message bar."""

    def __init__(self) -> None:
        self.canvas, self.bar = QgsMapCanvas(), QgsMessageBar()

    def mapCanvas(self):  # noqa: N802 (QGIS name)
        return self.canvas

    def messageBar(self):  # noqa: N802
        return self.bar


def _wait(app: QgsApplication, done, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while not done() and time.monotonic() < deadline:
        app.processEvents()
        time.sleep(0.05)
    return done()


def _render_map(result, layer, path: Path) -> None:
    settings = QgsMapSettings()
    settings.setLayers([result, layer])
    settings.setDestinationCrs(layer.crs())
    settings.setExtent(layer.extent())
    settings.setOutputSize(QSize(800, 800))
    job = QgsMapRendererSequentialJob(settings)
    job.start()
    job.waitForFinished()
    job.renderedImage().save(str(path), "JPG", 85)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=ROOT / "docs" / "images")
    parser.add_argument("--raster", type=Path, default=ROOT / "data" / "demo" / "hrsid_demo_scene.tif")
    parser.add_argument("--no-run", action="store_true", help="screenshot the dock without segmenting")
    args = parser.parse_args(argv)
    os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
    app = QgsApplication([], True)
    app.initQgis()
    # after QGIS has set its own settings path: keep this run's settings away from the user's
    QSettings.setPath(QSettings.IniFormat, QSettings.UserScope, tempfile.mkdtemp(prefix="rsseg_settings_"))
    from rs_qgis_plugin.background import wait_idle
    from rs_qgis_plugin.dock import SegmentDock

    layer = QgsRasterLayer(str(args.raster), args.raster.stem)
    QgsProject.instance().addMapLayer(layer)
    iface = MinimalIface()
    dock = SegmentDock(iface)
    dock.resize(DOCK_WIDTH, DOCK_HEIGHT)
    dock.show()
    wait_idle(300)  # the model list and the engine check, in the background
    dock.layer_combo.setLayer(layer)
    dock.labels_check.setChecked(True)
    task = None
    if not args.no_run:
        task = dock.start()
        if task is None or not _wait(app, lambda: dock.task is None, 900):
            print(dock.log.toPlainText(), file=sys.stderr)
            return 1
    _wait(app, lambda: False, 1.0)  # let the layouts settle
    args.out.mkdir(parents=True, exist_ok=True)
    dock.grab().save(str(args.out / "dock.png"))
    written = [args.out / "dock.png"]
    result = task.layer if task is not None else None
    if result is not None:
        _render_map(result, layer, args.out / "result_map.jpg")
        written.append(args.out / "result_map.jpg")
    elif task is not None:
        print(dock.log.toPlainText(), file=sys.stderr)
        return 1
    print(f"{dock.status_label.text()}; wrote {', '.join(str(p) for p in written)}")
    del result, layer, task
    QgsProject.instance().removeAllMapLayers()
    for widget in (dock, iface.bar, iface.canvas):  # before QGIS exits: a message bar left alive crashes it
        sip.delete(widget)
    app.exitQgis()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
