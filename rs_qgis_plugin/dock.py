"""The "Remote sensing segmentation" dock: dock.ui's widgets wired to a RunRequest and a SegmentTask.

No logic lives here beyond wiring: planning.py turns the request into a job, checks.py warns about a
raster that does not suit the model, state.py saves the choices, catalog.py lists the models and the
engine check runs in the background.
"""
from __future__ import annotations

import os
import time
from dataclasses import replace
from pathlib import Path

from qgis.core import (
    Qgis,
    QgsApplication,
    QgsCoordinateTransform,
    QgsMapLayerProxyModel,
    QgsProject,
    QgsRasterLayer,
)
from qgis.gui import QgsCollapsibleGroupBox
from qgis.PyQt import uic
from qgis.PyQt.QtCore import Qt, QTimer
from qgis.PyQt.QtWidgets import QComboBox, QDockWidget, QFileDialog, QWidget

from rs_qgis_plugin import settings
from rs_qgis_plugin.background import run_in_background
from rs_qgis_plugin.catalog import ModelCatalog
from rs_qgis_plugin.checks import default_band_mapping, mismatch_warnings, translate_flags
from rs_qgis_plugin.engine_env import EngineReport, ModelInfoError, check_engine, checkpoint_info, interpreter_stamp
from rs_qgis_plugin.job import JobError
from rs_qgis_plugin.models import ModelInfo
from rs_qgis_plugin.planning import CanvasView, RunRequest, plan_job, raster_facts
from rs_qgis_plugin.progress import LOADING, wrappable
from rs_qgis_plugin.state import EXTENT_MODES, OUTPUT_MODES, DockState
from rs_qgis_plugin.task import SegmentTask

FORM, _ = uic.loadUiType(str(Path(__file__).with_name("dock.ui")))
BROWSE = "Browse checkpoint…"
LISTING = "Listing the engine's models…"
_BROWSE_DATA = "<browse>"  # item data of "Browse checkpoint…" (model items hold --model values)
TITLE = "Segmentation"
PYTHON_SETTLE_MS = 800
NO_ENGINE = "No working engine: Set up engine… (Engine group) makes one"
# the engine's flags, as the dock names them
FLAG_NAMES = {"bands": "Bands", "extent": "Extent", "score-threshold": "Min. score", "tile-size": "Tile size",
              "overlap": "Overlap", "device": "Device", "model": "Model", "out": "Output file",
              "aoi": "Area of interest", "exclude": "Exclude areas"}


class SegmentDock(QDockWidget, FORM):
    """Model, raster, bands, extent, output, parameters, engine; "Segment layer", status, progress, Cancel."""

    def __init__(self, iface, parent: QWidget | None = None, catalog: ModelCatalog | None = None) -> None:
        super().__init__(parent)
        self.setupUi(self)
        self.iface = iface
        self.catalog = catalog or ModelCatalog(parent=self)
        self.task: SegmentTask | None = None
        self.models: list[ModelInfo] = []
        self.browsed: ModelInfo | None = None
        self.shown: ModelInfo | None = None
        self.band_combos: list[QComboBox] = []
        self.last_report: EngineReport | None = None
        self.checking = False
        self.result_layer_id = ""
        self._python_timer = QTimer(self)
        self._python_timer.setSingleShot(True)
        self._python_timer.setInterval(PYTHON_SETTLE_MS)
        self._saved = DockState.load()
        self._fill_choices()
        self._connect()
        self._restore()

    # ---- wiring ------------------------------------------------------------------------------------
    def _fill_choices(self) -> None:
        for group in self.findChildren(QgsCollapsibleGroupBox):  # each remembers whether it is open
            group.setSettingGroup("rs_qgis_plugin")
            group.setSaveCollapsedState(group is not self.result_group)
        self.layer_combo.setFilters(QgsMapLayerProxyModel.RasterLayer)
        for combo in (self.polygon_combo, self.aoi_combo, self.exclude_combo):
            combo.setFilters(QgsMapLayerProxyModel.PolygonLayer)
        for combo in (self.aoi_combo, self.exclude_combo):  # optional: "(none)" first, and chosen
            combo.setAllowEmptyLayer(True, "(none)")
            combo.setCurrentIndex(0)  # (setLayer(None) would show a blank combo)
        for combo, modes in ((self.extent_combo, EXTENT_MODES), (self.output_combo, OUTPUT_MODES)):
            for key, text in modes.items():
                combo.addItem(text, key)
        self.device_combo.addItem("auto", "auto")
        self.device_combo.addItem("CPU", "cpu")

    def _connect(self) -> None:
        self.model_combo.activated.connect(self._model_activated)
        self.layer_combo.layerChanged.connect(self._refresh_bands)
        self.extent_combo.currentIndexChanged.connect(self._refresh_enabled)
        self.output_combo.currentIndexChanged.connect(self._refresh_enabled)
        self.check_button.clicked.connect(self.check_engine)
        self.python_file.fileChanged.connect(self._python_changed)
        self._python_timer.timeout.connect(self._python_settled)
        self.run_button.clicked.connect(self.start)
        self.cancel_button.clicked.connect(self.cancel)
        self.zoom_button.clicked.connect(self.zoom_to_result)
        self.setup_button.clicked.connect(self.open_setup)
        self.train_button.clicked.connect(self.open_training)
        self.score_button.clicked.connect(self.open_scoring)
        self.catalog.changed.connect(self._models_listed)
        self.catalog.failed.connect(self._models_failed)

    # ---- models ------------------------------------------------------------------------------------
    def _fill_models(self) -> None:
        keep = self.current_model()
        listed = self.catalog.models()
        browsed = [self.browsed] if self.browsed and self.browsed.model not in {m.model for m in listed} else []
        self.models = listed + browsed
        self.model_combo.clear()
        for info in self.models:
            self.model_combo.addItem(info.label, info.model)
            self.model_combo.setItemData(self.model_combo.count() - 1, f"{info.title}\nid: {info.name}",
                                         Qt.ToolTipRole)
        if not self.models and self.catalog.is_listing():
            self.model_combo.addItem(LISTING, "")
        self.model_combo.addItem(BROWSE, _BROWSE_DATA)
        ids = [m.model for m in self.models]
        self.model_combo.setCurrentIndex(ids.index(keep.model) if keep and keep.model in ids else 0)

    def current_model(self) -> ModelInfo | None:
        i = self.model_combo.currentIndex()
        return self.models[i] if 0 <= i < len(self.models) else None

    def select_model(self, info: ModelInfo, apply_defaults: bool = True) -> None:
        """Show `info` (kept in the list if it is a browsed checkpoint) and, by default, take its defaults."""
        if info.checkpoint:
            self.browsed = info
        if info.checkpoint or info.model not in [m.model for m in self.models]:
            self._fill_models()
        self.shown = info
        self.model_combo.setCurrentIndex([m.model for m in self.models].index(info.model))
        self.model_summary.setText(wrappable(info.summary()))
        if apply_defaults:
            spec = info.spec
            self.score_spin.setValue(float(spec.get("score_threshold", 0.5)))
            self.tile_spin.setValue(int(spec.get("tile_size", 512)))
            self.overlap_spin.setValue(int(spec.get("overlap", 64)))
        self._refresh_bands()

    def _model_activated(self, index: int) -> None:
        if self.model_combo.itemData(index) == _BROWSE_DATA:
            path, _ = QFileDialog.getOpenFileName(self, "Model checkpoint", self._saved.last_dir, "Checkpoints (*.pt)")
            if path:
                self._saved = replace(self.state(), last_dir=str(Path(path).parent))
                self.load_checkpoint(path)
            elif self.shown is not None:  # dialog cancelled: back to the model shown before
                self.select_model(self.shown, apply_defaults=False)
            return
        if 0 <= index < len(self.models):
            self.select_model(self.models[index])

    def load_checkpoint(self, path: str) -> bool:
        """Read a checkpoint's spec through the engine and select it; a bad file is reported, not added."""
        self.set_status("Reading the checkpoint…")
        try:
            info = checkpoint_info(self.python(), path)
        except ModelInfoError as exc:
            self._fail(f"checkpoint {path}: {exc}")
            return False
        self.select_model(info)
        self.set_status("Ready")
        return True

    def _models_listed(self) -> None:
        had = self.current_model()
        self._fill_models()
        ids = [m.model for m in self.models]
        if had is not None and had.model in ids:
            self.select_model(self.models[ids.index(had.model)], apply_defaults=False)
        else:
            self._select_saved_model()

    def _models_failed(self, reason: str) -> None:
        self._fill_models()
        self.append_log(f"The engine could not list its models: {reason}", "warning")
        self.model_summary.setText(wrappable(f"No models listed: {reason}. Check the engine (Engine group)."))

    def _select_saved_model(self) -> None:
        saved = self._saved
        info = next((m for m in self.models if m.model == saved.model), None)
        if info is None and saved.model and os.path.isfile(saved.model) and isinstance(saved.model_spec, dict):
            info = ModelInfo.for_checkpoint(saved.model, saved.model_spec)
        info = info or (self.models[0] if self.models else None)
        if info is None:
            return
        self.select_model(info)
        if info.model == saved.model:
            self.score_spin.setValue(saved.score_threshold)
            self.tile_spin.setValue(saved.tile_size)
            self.overlap_spin.setValue(saved.overlap)

    # ---- bands, warnings, enabling ---------------------------------------------------------------------
    def _refresh_bands(self, *_args) -> None:
        """One layer-band chooser per model band, shown only when the band counts differ."""
        for combo in self.band_combos:
            combo.deleteLater()
        while self.band_form.rowCount():
            self.band_form.removeRow(0)
        self.band_combos = []
        info, layer = self.current_model(), self.layer_combo.currentLayer()
        if info is not None and isinstance(layer, QgsRasterLayer):
            for name, band in zip(info.band_names, default_band_mapping(info.bands, layer.bandCount())):
                combo = QComboBox()
                combo.setSizeAdjustPolicy(QComboBox.AdjustToMinimumContentsLengthWithIcon)
                combo.setMinimumContentsLength(8)
                for b in range(1, layer.bandCount() + 1):
                    combo.addItem(layer.bandName(b), b)
                combo.setCurrentIndex(band - 1)
                combo.currentIndexChanged.connect(self._refresh_warnings)
                self.band_form.addRow(f"{name} ←", combo)
                self.band_combos.append(combo)
        self.band_box.setVisible(info is not None and isinstance(layer, QgsRasterLayer)
                                 and info.bands != layer.bandCount())
        self._refresh_warnings()

    def band_mapping(self) -> list[int] | None:
        """1-based layer bands in model order, or None when the layer is fed as it is."""
        layer, info = self.layer_combo.currentLayer(), self.current_model()
        if not isinstance(layer, QgsRasterLayer) or info is None or layer.bandCount() == info.bands:
            return None
        return [c.currentData() for c in self.band_combos] or None

    def warnings(self) -> list[str]:
        """What does not fit between the chosen raster and model (sensor, colour bands, pixel size)."""
        layer, info = self.layer_combo.currentLayer(), self.current_model()
        if not isinstance(layer, QgsRasterLayer) or info is None:
            return []
        return mismatch_warnings(info, raster_facts(layer), self.band_mapping())

    def _refresh_warnings(self, *_args) -> None:
        found = self.warnings()
        self.warning_label.setText(wrappable("\n\n".join(f"⚠ {w}" for w in found)))
        self.warning_label.setVisible(bool(found))

    def _refresh_enabled(self, *_args) -> None:
        self.polygon_combo.setEnabled(self.extent_combo.currentData() == "selection")
        self.output_file.setEnabled(self.output_combo.currentData() == "file")

    # ---- engine ------------------------------------------------------------------------------------
    def python(self) -> str:
        """$RSSEG_ENGINE_PYTHON, else the interpreter field, else the stored or default interpreter."""
        return os.environ.get("RSSEG_ENGINE_PYTHON") or self.python_file.filePath().strip() or \
            settings.engine_python()

    def _python_changed(self, path: str) -> None:
        settings.set_engine_python(path)
        self._python_timer.start()  # re-check once typing has paused

    def _python_settled(self) -> None:
        self.catalog.refresh()
        self._fill_models()
        self.check_engine()

    def check_engine(self) -> None:
        """Run the engine's self-report in the background; `_checked` shows it and lists the GPUs (and checks
        again if the interpreter changed meanwhile)."""
        if self.checking:
            return
        python = self.python()
        self.checking = True
        self.check_button.setEnabled(False)
        self.engine_status.setText(f"checking {python}…")
        run_in_background(lambda: (python, interpreter_stamp(python), check_engine(python)),
                          self._checked, owner=self)

    def _checked(self, result) -> None:
        self.checking = False
        self.check_button.setEnabled(True)
        if isinstance(result, Exception):
            result = (self.python(), "", EngineReport(False, f"engine check failed: {result}"))
        python, stamp, report = result
        if python != self.python():  # the interpreter changed during the check: this result is stale
            self.check_engine()
            return
        if report.ok:
            settings.remember_check(settings.EngineCheck(python, stamp, report.message, report.devices,
                                                         time.strftime("%Y-%m-%d %H:%M")))
        self._show_report(report)
        self.append_log(report.message, "info" if report.ok else "warning")

    def _show_report(self, report: EngineReport, checked_at: str = "") -> None:
        self.last_report = report
        self.engine_status.setText(wrappable(report.message + (f" (checked {checked_at})" if checked_at else "")))
        if not report.ok:  # offer the set-up where it cannot be missed
            self.engine_group.setCollapsed(False)
            self.set_status(NO_ENGINE)
        keep = self.device_combo.currentData()
        while self.device_combo.count() > 2:
            self.device_combo.removeItem(2)
        for device, label in report.devices:
            self.device_combo.addItem(label, device)
        self.device_combo.setCurrentIndex(max(0, self.device_combo.findData(keep)))

    def _restore_engine(self) -> None:
        """Show the remembered good check when it was made with this interpreter file, else check again."""
        python = self.python()
        remembered = settings.remembered_check()
        if remembered.valid_for(python, interpreter_stamp(python)):
            self._show_report(remembered.report(), remembered.checked_at)
        else:
            self.check_engine()

    # ---- engine set-up, training and scoring dialogs ---------------------------------------------------
    def open_setup(self):
        """The "Set up engine…" dialog; a good set-up switches the dock to the new engine."""
        from rs_qgis_plugin.setup_dialog import SetupDialog

        dialog = SetupDialog(self)
        dialog.setAttribute(Qt.WA_DeleteOnClose)
        dialog.engineReady.connect(self.use_engine)
        dialog.show()
        return dialog

    def use_engine(self, python: str, message: str) -> None:
        """The set-up dialog made and checked a new engine, and the setting points at it."""
        self.python_file.blockSignals(True)
        self.python_file.setFilePath(python)
        self.python_file.blockSignals(False)
        remembered = settings.remembered_check()
        self._show_report(remembered.report() if remembered.python == python else EngineReport(True, message),
                          remembered.checked_at)
        self.append_log(message)
        self.set_status("Ready")
        self.catalog.refresh()
        self._fill_models()

    def open_training(self):
        """Processing's "Train model from polygons", filled with the dock's raster, polygons and model."""
        info, layer, polygons = self.current_model(), self.layer_combo.currentLayer(), self.polygon_combo.currentLayer()
        parameters = {"INPUT": layer} if layer is not None else {}
        if polygons is not None:
            parameters["POLYGONS"] = polygons
        listed = [m.model for m in self.catalog.models()]
        if info is not None and info.model in listed:
            parameters["BASE_MODEL"] = listed.index(info.model)
        elif info is not None and info.checkpoint:
            parameters["BASE_CHECKPOINT"] = info.model
        return self._open_algorithm("rsseg:train_from_polygons", parameters)

    def open_scoring(self):
        """Processing's "Score polygons against reference", the last result as the prediction."""
        layer = QgsProject.instance().mapLayer(self.result_layer_id)
        return self._open_algorithm("rsseg:score_polygons", {"PREDICTION": layer} if layer is not None else {})

    def _open_algorithm(self, algorithm_id: str, parameters: dict):
        import processing

        dialog = processing.createAlgorithmDialog(algorithm_id, parameters)
        if dialog is None:
            self._fail(f"the Processing algorithm {algorithm_id} is not available: enable the Processing plugin")
            return None
        dialog.show()
        return dialog

    # ---- the run -----------------------------------------------------------------------------------
    def state(self) -> DockState:
        info = self.current_model()
        return DockState(
            model=info.model if info else self._saved.model,
            model_spec=info.spec if info and info.checkpoint else None,
            score_threshold=self.score_spin.value(), tile_size=self.tile_spin.value(),
            overlap=self.overlap_spin.value(), extent_mode=self.extent_combo.currentData(),
            output_mode=self.output_combo.currentData(), output_path=self.output_file.filePath(),
            labels=self.labels_check.isChecked(), device=self.device_combo.currentData() or "auto",
            last_dir=self._saved.last_dir)

    def request(self) -> RunRequest:
        """The run the widgets describe."""
        bands = self.band_mapping()
        return RunRequest(self.state(), self.current_model(), self.layer_combo.currentLayer(),
                          self.polygon_combo.currentLayer(), tuple(bands) if bands else None,
                          self.aoi_combo.currentLayer(), self.exclude_combo.currentLayer())

    def current_job(self):
        """The SegmentJob for the current request; JobError names what to fix."""
        return plan_job(self.request(), CanvasView.of(self.iface.mapCanvas()))

    def start(self) -> SegmentTask | None:
        """Plan the job and start it as a background task (warnings first, in the log and the bar)."""
        if self.task is not None:
            return None
        report = self.last_report
        if report is not None and not report.ok:  # never a raw ModuleNotFoundError from the engine
            self._fail(report.message)
            self.set_status(NO_ENGINE)
            self.check_engine()  # perhaps fixed meanwhile
            return None
        try:
            job = self.current_job()
        except JobError as exc:
            self._fail(str(exc))
            return None
        self._saved = self.state()
        self._saved.save()
        self.log.clear()
        for warning in self.warnings():
            self.append_log(f"warning: {warning}", "warning")
            self.iface.messageBar().pushMessage(TITLE, warning, Qgis.Warning, 15)
        report = self.last_report
        self.task = SegmentTask(job, self.python(), QgsProject.instance(), report.gpu_names if report else None)
        self.task.logLine.connect(self.append_log)
        self.task.statusChanged.connect(self.set_status)
        self.task.progressChanged.connect(lambda p: self.progress.setValue(int(p)))
        self.task.completed.connect(self._completed)
        self.progress.setValue(0)
        self.set_status(LOADING)
        self.run_button.setEnabled(False)
        self.cancel_button.setEnabled(True)
        self.append_log(f"Segmenting {job.request.raster} with {self.current_model().title}")
        QgsApplication.taskManager().addTask(self.task)
        return self.task

    def cancel(self) -> None:
        if self.task is not None:
            self.set_status("Cancelling…")
            self.task.cancel()

    def _completed(self, status: str, message: str, layer_id: str) -> None:
        # after the task manager's own "Task complete/failed" notice, so that ours is the one on top
        QTimer.singleShot(0, lambda: self._show_outcome(status, message, layer_id))

    def _show_outcome(self, status: str, message: str, layer_id: str) -> None:
        task, self.task = self.task, None
        self.run_button.setEnabled(True)
        self.cancel_button.setEnabled(False)
        if status == "done":
            self.progress.setValue(100)
            self.set_status(f"Done: {message.split(' -> ')[0]}")
            self.append_log(message)
            summary = task.summary.text() if task is not None and task.summary else message
            self.result_layer_id = layer_id
            self.result_label.setText(wrappable(summary))
            self.result_group.setVisible(True)
            self.iface.messageBar().pushMessage(TITLE, summary.replace("\n", " · "), Qgis.Success, 15)
        elif status == "cancelled":
            self.progress.setValue(0)
            self.set_status("Cancelled")
            self.append_log("Cancelled: no layer added")
            self.iface.messageBar().pushMessage("Cancelled", "no layer added", Qgis.Info, 5)
        else:
            self.progress.setValue(0)
            self._fail(message)

    def zoom_to_result(self) -> None:
        """Zoom the map canvas to the last result layer."""
        layer = QgsProject.instance().mapLayer(self.result_layer_id)
        canvas = self.iface.mapCanvas()
        if layer is None or canvas is None:
            self.set_status("The last result layer is no longer in the project")
            return
        transform = QgsCoordinateTransform(layer.crs(), canvas.mapSettings().destinationCrs(), QgsProject.instance())
        extent = transform.transformBoundingBox(layer.extent())
        canvas.setExtent(extent.buffered(max(extent.width(), extent.height()) * 0.05))
        canvas.refresh()

    def _fail(self, message: str) -> None:
        message = translate_flags(message, FLAG_NAMES)
        self.set_status(f"Failed: {message}")
        self.append_log(f"error: {message}", "warning")
        self.iface.messageBar().pushMessage("Segmentation failed", message, Qgis.Critical, 0)

    def set_status(self, text: str) -> None:
        self.status_label.setText(wrappable(text))

    def append_log(self, line: str, level: str = "info") -> None:
        """Add a line and keep the newest one in view."""
        self.log.appendPlainText(line)
        bar = self.log.verticalScrollBar()
        bar.setValue(bar.maximum())

    # ---- settings ----------------------------------------------------------------------------------
    def _restore(self) -> None:
        saved = self._saved
        self.python_file.blockSignals(True)
        self.python_file.setFilePath(settings.stored_engine_python())
        self.python_file.blockSignals(False)
        self.python_file.lineEdit().setPlaceholderText(settings.engine_python())
        self.extent_combo.setCurrentIndex(max(0, self.extent_combo.findData(saved.extent_mode)))
        self.output_combo.setCurrentIndex(max(0, self.output_combo.findData(saved.output_mode)))
        self.output_file.setFilePath(saved.output_path)
        self.labels_check.setChecked(saved.labels)
        if self.device_combo.findData(saved.device) < 0:
            self.device_combo.addItem(saved.device, saved.device)
        self.device_combo.setCurrentIndex(self.device_combo.findData(saved.device))
        self.catalog.refresh()
        self._fill_models()
        self._select_saved_model()
        self._refresh_enabled()
        self._restore_engine()

    def closeEvent(self, event) -> None:  # noqa: N802 (Qt name)
        self._saved = self.state()
        self._saved.save()
        super().closeEvent(event)
