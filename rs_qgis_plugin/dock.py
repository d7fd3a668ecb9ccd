"""The "Remote sensing segmentation" dock: widgets -> SegmentJob -> SegmentTask. No engine logic here."""
from __future__ import annotations

import os
import tempfile
from pathlib import Path

from qgis.core import Qgis, QgsApplication, QgsMapLayerProxyModel, QgsProject, QgsRasterLayer, QgsRectangle
from qgis.gui import QgsFileWidget, QgsMapLayerComboBox
from qgis.PyQt.QtCore import Qt
from qgis.PyQt.QtWidgets import (
    QCheckBox,
    QComboBox,
    QDockWidget,
    QDoubleSpinBox,
    QFileDialog,
    QFormLayout,
    QGroupBox,
    QHBoxLayout,
    QLabel,
    QPlainTextEdit,
    QProgressBar,
    QPushButton,
    QScrollArea,
    QSpinBox,
    QVBoxLayout,
    QWidget,
)

from rs_qgis_plugin import settings
from rs_qgis_plugin.engine_env import ModelInfo, ModelInfoError, check_engine, checkpoint_info, shipped_models
from rs_qgis_plugin.job import JobError, build_job, canvas_units_per_pixel, to_layer_crs
from rs_qgis_plugin.request import OUTPUT_EXTENSIONS, SegmentJob
from rs_qgis_plugin.task import SegmentTask

BROWSE = "Browse checkpoint…"
EXTENT_MODES = ("Whole layer", "Map canvas extent", "Selected features of")
OUTPUT_MODES = ("Temporary layer", "GeoPackage or Shapefile")
LOG_LINES = 500


def _selectable_label(text: str) -> QLabel:
    """A word-wrapped label whose text can be selected and copied (model summary, engine report)."""
    label = QLabel(text)
    label.setWordWrap(True)
    label.setTextInteractionFlags(Qt.TextSelectableByMouse)
    return label


class SegmentDock(QDockWidget):
    """Model, raster, bands, extent, thresholds, device, output; "Segment layer", progress, Cancel, log."""

    def __init__(self, iface, parent: QWidget | None = None) -> None:
        super().__init__("Remote sensing segmentation", parent)
        self.setObjectName("RsSegmentationDock")
        self.iface = iface
        self.task: SegmentTask | None = None
        self.models: list[ModelInfo] = []
        self.last_report = None
        self._build()
        self._restore()

    # ---- layout --------------------------------------------------------------------------------
    def _build(self) -> None:
        body = QWidget()
        root = QVBoxLayout(body)

        model_box = QGroupBox("Model")
        form = QFormLayout(model_box)
        self.model_combo = QComboBox()
        self.model_summary = _selectable_label("")
        form.addRow("Model", self.model_combo)
        form.addRow(self.model_summary)
        root.addWidget(model_box)

        input_box = QGroupBox("Input")
        form = QFormLayout(input_box)
        self.layer_combo = QgsMapLayerComboBox()
        self.layer_combo.setFilters(QgsMapLayerProxyModel.RasterLayer)
        form.addRow("Raster layer", self.layer_combo)
        self.extent_combo = QComboBox()
        self.extent_combo.addItems(EXTENT_MODES)
        self.polygon_combo = QgsMapLayerComboBox()
        self.polygon_combo.setFilters(QgsMapLayerProxyModel.PolygonLayer)
        form.addRow("Extent", self.extent_combo)
        form.addRow("Polygon layer", self.polygon_combo)
        self.band_box = QGroupBox("Band mapping (model band ← layer band)")
        self.band_form = QFormLayout(self.band_box)
        self.band_combos: list[QComboBox] = []
        form.addRow(self.band_box)
        root.addWidget(input_box)

        params_box = QGroupBox("Parameters")
        form = QFormLayout(params_box)
        self.score_spin = QDoubleSpinBox()
        self.score_spin.setRange(0.0, 1.0)
        self.score_spin.setSingleStep(0.05)
        self.score_spin.setDecimals(2)
        self.tile_spin = QSpinBox()
        self.tile_spin.setRange(32, 8192)
        self.tile_spin.setSingleStep(32)
        self.tile_spin.setSuffix(" px")
        self.overlap_spin = QSpinBox()
        self.overlap_spin.setRange(0, 4096)
        self.overlap_spin.setSingleStep(16)
        self.overlap_spin.setSuffix(" px")
        self.device_combo = QComboBox()
        self.device_combo.addItem("auto", "auto")
        self.device_combo.addItem("CPU", "cpu")
        form.addRow("Score threshold", self.score_spin)
        form.addRow("Tile size", self.tile_spin)
        form.addRow("Tile overlap", self.overlap_spin)
        form.addRow("Device", self.device_combo)
        root.addWidget(params_box)

        output_box = QGroupBox("Output")
        form = QFormLayout(output_box)
        self.output_combo = QComboBox()
        self.output_combo.addItems(OUTPUT_MODES)
        self.output_file = QgsFileWidget()
        self.output_file.setStorageMode(QgsFileWidget.SaveFile)
        self.output_file.setFilter("GeoPackage (*.gpkg);;ESRI Shapefile (*.shp)")
        self.labels_check = QCheckBox("Label polygons with class and score")
        form.addRow("Save as", self.output_combo)
        form.addRow("File", self.output_file)
        form.addRow(self.labels_check)
        root.addWidget(output_box)

        engine_box = QGroupBox("Engine")
        form = QFormLayout(engine_box)
        self.python_file = QgsFileWidget()
        self.python_file.setStorageMode(QgsFileWidget.GetFile)
        self.check_button = QPushButton("Check engine")
        self.engine_status = _selectable_label("not checked")
        form.addRow("Interpreter", self.python_file)
        form.addRow(self.check_button, self.engine_status)
        root.addWidget(engine_box)

        buttons = QHBoxLayout()
        self.run_button = QPushButton("Segment layer")
        self.run_button.setDefault(True)
        self.cancel_button = QPushButton("Cancel")
        self.cancel_button.setEnabled(False)
        buttons.addWidget(self.run_button)
        buttons.addWidget(self.cancel_button)
        root.addLayout(buttons)
        self.progress = QProgressBar()
        self.progress.setRange(0, 100)
        self.progress.setValue(0)
        root.addWidget(self.progress)
        self.log = QPlainTextEdit()
        self.log.setReadOnly(True)
        self.log.setMaximumBlockCount(LOG_LINES)
        self.log.setPlaceholderText("Log")
        self.log.setMinimumHeight(90)
        root.addWidget(self.log)
        root.addStretch(1)

        scroll = QScrollArea()
        scroll.setWidgetResizable(True)
        scroll.setWidget(body)
        self.setWidget(scroll)

        self.model_combo.activated.connect(self._model_activated)
        self.layer_combo.layerChanged.connect(self._refresh_bands)
        self.extent_combo.currentIndexChanged.connect(self._refresh_enabled)
        self.output_combo.currentIndexChanged.connect(self._refresh_enabled)
        self.check_button.clicked.connect(self.check_engine)
        self.run_button.clicked.connect(self.start)
        self.cancel_button.clicked.connect(self.cancel)
        self.python_file.fileChanged.connect(lambda path: settings.set_engine_python(path))

    # ---- models ----------------------------------------------------------------------------------
    def _fill_models(self, extra: ModelInfo | None = None) -> None:
        self.models = shipped_models() + ([extra] if extra else [])
        self.model_combo.clear()
        for info in self.models:
            self.model_combo.addItem(info.label, info.model)
        self.model_combo.addItem(BROWSE, None)

    def current_model(self) -> ModelInfo | None:
        i = self.model_combo.currentIndex()
        return self.models[i] if 0 <= i < len(self.models) else None

    def select_model(self, info: ModelInfo, apply_defaults: bool = True) -> None:
        """Show `info` (adding it to the list if it is a browsed checkpoint) and take its defaults."""
        if info.model not in [m.model for m in self.models]:
            self._fill_models(info)
        self.model_combo.setCurrentIndex([m.model for m in self.models].index(info.model))
        self.model_summary.setText(info.summary())
        if apply_defaults:
            spec = info.spec
            self.score_spin.setValue(float(spec.get("score_threshold", 0.5)))
            self.tile_spin.setValue(int(spec.get("tile_size", 512)))
            self.overlap_spin.setValue(int(spec.get("overlap", 64)))
        self._refresh_bands()

    def _model_activated(self, index: int) -> None:
        if self.model_combo.itemData(index) is None:  # "Browse checkpoint…"
            path, _ = QFileDialog.getOpenFileName(self, "Model checkpoint", settings.value("last_dir", ""),
                                                  "Checkpoints (*.pt)")
            if path:
                settings.set_value("last_dir", str(Path(path).parent))
                self.load_checkpoint(path)
            elif self.models:
                self.select_model(self.models[0], apply_defaults=False)
            return
        self.select_model(self.models[index])

    def load_checkpoint(self, path: str) -> bool:
        """Read a checkpoint's spec through the engine and select it; a bad file is reported, not added."""
        QgsApplication.setOverrideCursor(Qt.WaitCursor)
        try:
            info = checkpoint_info(self.python(), path)
        except ModelInfoError as exc:
            self._fail(f"checkpoint {path}: {exc}")
            return False
        finally:
            QgsApplication.restoreOverrideCursor()
        self.select_model(info)
        return True

    # ---- bands and enabling --------------------------------------------------------------------
    def _refresh_bands(self, *_args) -> None:
        """One layer-band chooser per model band, shown only when the band counts differ."""
        for combo in self.band_combos:
            combo.deleteLater()
        while self.band_form.rowCount():
            self.band_form.removeRow(0)
        self.band_combos = []
        info, layer = self.current_model(), self.layer_combo.currentLayer()
        if info is None or not isinstance(layer, QgsRasterLayer):
            self.band_box.setVisible(False)
            return
        n_model, n_layer = int(info.spec.get("bands", 1)), layer.bandCount()
        names = list(info.spec.get("band_names", [])) + [f"b{i + 1}" for i in range(n_model)]
        for i in range(n_model):
            combo = QComboBox()
            for b in range(1, n_layer + 1):
                combo.addItem(f"Band {b}: {layer.bandName(b)}", b)
            combo.setCurrentIndex(min(i, n_layer - 1) if n_layer > n_model else (i if i < n_layer else 0))
            self.band_form.addRow(f"{names[i]} ←", combo)
            self.band_combos.append(combo)
        self.band_box.setVisible(n_model != n_layer)

    def _refresh_enabled(self, *_args) -> None:
        self.polygon_combo.setEnabled(self.extent_combo.currentIndex() == 2)
        self.output_file.setEnabled(self.output_combo.currentIndex() == 1)

    def band_mapping(self) -> list[int] | None:
        """1-based layer bands in model order, or None when the layer is fed as it is."""
        layer, info = self.layer_combo.currentLayer(), self.current_model()
        if layer is None or info is None or layer.bandCount() == int(info.spec.get("bands", 1)):
            return None
        return [c.currentData() for c in self.band_combos] or None

    # ---- engine ----------------------------------------------------------------------------------
    def python(self) -> str:
        return self.python_file.filePath().strip() or settings.engine_python()

    def check_engine(self) -> bool:
        """Run the engine's self-report; list its GPUs in the device chooser."""
        QgsApplication.setOverrideCursor(Qt.WaitCursor)
        try:
            report = check_engine(self.python())
        finally:
            QgsApplication.restoreOverrideCursor()
        self.last_report = report
        self.engine_status.setText(report.message)
        self.append_log(report.message)
        keep = self.device_combo.currentData()
        while self.device_combo.count() > 2:
            self.device_combo.removeItem(2)
        for device, label in report.devices:
            self.device_combo.addItem(label, device)
        self.device_combo.setCurrentIndex(max(0, self.device_combo.findData(keep)))
        return report.ok

    # ---- the run ---------------------------------------------------------------------------------
    def processing_extent(self, layer: QgsRasterLayer) -> QgsRectangle | None:
        """The chosen extent in the layer's CRS (None = whole layer); JobError if it is unusable."""
        mode = self.extent_combo.currentIndex()
        if mode == 0:
            return None
        if mode == 1:
            canvas = self.iface.mapCanvas()
            return to_layer_crs(layer, canvas.extent(), canvas.mapSettings().destinationCrs())
        polygons = self.polygon_combo.currentLayer()
        if polygons is None or polygons.selectedFeatureCount() == 0:
            name = polygons.name() if polygons else "no polygon layer"
            raise JobError(f"extent 'selected features': {name} has no selected features; select some or choose "
                           "another extent")
        return to_layer_crs(layer, polygons.boundingBoxOfSelected(), polygons.crs())

    def _output_path(self) -> tuple[str, bool]:
        if self.output_combo.currentIndex() == 0:
            return str(Path(tempfile.mkdtemp(prefix="rsseg_")) / "segmentation.gpkg"), True
        path = self.output_file.filePath().strip()
        if not path:
            raise JobError("output file: choose a .gpkg or .shp path, or save as a temporary layer")
        if Path(path).suffix.lower() not in OUTPUT_EXTENSIONS:
            path += ".gpkg"
        if not Path(path).parent.is_dir():
            raise JobError(f"output file {path}: the folder does not exist; choose an existing folder")
        return path, False

    def current_job(self) -> SegmentJob:
        """The run the widgets describe (main thread); JobError names what to fix."""
        layer, info = self.layer_combo.currentLayer(), self.current_model()
        if not isinstance(layer, QgsRasterLayer):
            raise JobError("raster layer: add a raster layer to the project and choose it")
        if info is None:
            raise JobError("model: choose a shipped model or browse for a checkpoint")
        extent = self.processing_extent(layer)
        output, temporary = self._output_path()
        upp = canvas_units_per_pixel(layer, self.iface.mapCanvas())
        name = f"{info.spec.get('name', info.label)} – {layer.name()}" if temporary else Path(output).stem
        return build_job(layer, info.model, output, layer_name=name, classes=info.classes, extent=extent,
                         units_per_pixel=upp, bands=self.band_mapping(), score_threshold=self.score_spin.value(),
                         tile_size=self.tile_spin.value(), overlap=self.overlap_spin.value(),
                         device=self.device_combo.currentData() or "auto", temporary=temporary,
                         labels=self.labels_check.isChecked())

    def start(self) -> SegmentTask | None:
        """Build the job from the widgets and start it as a background task."""
        if self.task is not None:
            return None
        try:
            job = self.current_job()
        except JobError as exc:
            self._fail(str(exc))
            return None
        self._save()
        self.task = SegmentTask(job, self.python(), QgsProject.instance())
        self.task.logLine.connect(self.append_log)
        self.task.progressChanged.connect(lambda p: self.progress.setValue(int(p)))
        self.task.completed.connect(self._completed)
        self.progress.setValue(0)
        self.run_button.setEnabled(False)
        self.cancel_button.setEnabled(True)
        self.append_log(f"segmenting {job.request.raster} with {job.request.model}")
        QgsApplication.taskManager().addTask(self.task)
        return self.task

    def cancel(self) -> None:
        if self.task is not None:
            self.append_log("cancel requested")
            self.task.cancel()

    def _completed(self, ok: bool, message: str, layer_id: str) -> None:
        self.task = None
        self.run_button.setEnabled(True)
        self.cancel_button.setEnabled(False)
        self.append_log(message)
        if ok:
            self.progress.setValue(100)
            self.iface.messageBar().pushMessage("Segmentation", message, Qgis.Success, 5)
        elif message.startswith("cancelled"):
            self.progress.setValue(0)
            self.iface.messageBar().pushMessage("Segmentation", message, Qgis.Info, 5)
        else:
            self.progress.setValue(0)
            self._fail(message)

    def _fail(self, message: str) -> None:
        self.append_log(f"error: {message}")
        self.iface.messageBar().pushMessage("Segmentation failed", message, Qgis.Critical, 0)

    def append_log(self, line: str) -> None:
        self.log.appendPlainText(line)

    # ---- settings --------------------------------------------------------------------------------
    def _restore(self) -> None:
        self._fill_models()
        self.python_file.setFilePath(settings.value("engine/python", "", str))
        if not self.python_file.filePath():
            self.python_file.lineEdit().setPlaceholderText(settings.engine_python())
        chosen = settings.value("model", "", str)
        info = next((m for m in self.models if m.model == chosen), None)
        if info is None and chosen and os.path.isfile(chosen):
            spec = settings.value("model_spec", None)
            info = ModelInfo.for_checkpoint(chosen, spec) if isinstance(spec, dict) else None
        info = info or (self.models[0] if self.models else None)
        if info is not None:
            self.select_model(info)
            if info.model == chosen:
                self.score_spin.setValue(settings.value("score_threshold", self.score_spin.value(), float))
                self.tile_spin.setValue(settings.value("tile_size", self.tile_spin.value(), int))
                self.overlap_spin.setValue(settings.value("overlap", self.overlap_spin.value(), int))
        self.extent_combo.setCurrentIndex(settings.value("extent_mode", 0, int))
        self.output_combo.setCurrentIndex(settings.value("output_mode", 0, int))
        self.output_file.setFilePath(settings.value("output_path", "", str))
        self.labels_check.setChecked(settings.value("labels", False, bool))
        device = settings.value("device", "auto", str)
        if self.device_combo.findData(device) < 0:
            self.device_combo.addItem(device, device)
        self.device_combo.setCurrentIndex(self.device_combo.findData(device))
        self._refresh_enabled()

    def _save(self) -> None:
        info = self.current_model()
        if info is not None:
            settings.set_value("model", info.model)
            settings.set_value("model_spec", info.spec)
        for key, val in (("score_threshold", self.score_spin.value()), ("tile_size", self.tile_spin.value()),
                         ("overlap", self.overlap_spin.value()), ("extent_mode", self.extent_combo.currentIndex()),
                         ("output_mode", self.output_combo.currentIndex()),
                         ("output_path", self.output_file.filePath()), ("labels", self.labels_check.isChecked()),
                         ("device", self.device_combo.currentData() or "auto")):
            settings.set_value(key, val)

    def closeEvent(self, event) -> None:  # noqa: N802 (Qt name)
        self._save()
        super().closeEvent(event)
