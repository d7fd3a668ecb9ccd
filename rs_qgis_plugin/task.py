"""QgsTask that runs one SegmentJob through the engine subprocess and loads the result on success."""
from __future__ import annotations

from qgis.core import QgsMessageLog, QgsProject, QgsTask, QgsVectorLayer
from qgis.PyQt.QtCore import pyqtSignal

from rs_qgis_plugin.job import execute_job, remove_export
from rs_qgis_plugin.layers import load_result_layer, remove_temporary_output
from rs_qgis_plugin.request import SegmentJob
from rs_qgis_plugin.runner import EngineOutcome

LOG_TAG = "Remote sensing segmentation"


class SegmentTask(QgsTask):
    """Runs in a worker thread; `finished` (main thread) adds the styled layer to the project.

    Signals: `logLine(str)` for each engine log line (queued to the main thread); `completed(ok, message,
    layer_id)` once the task has ended (layer_id is "" when nothing was added).
    """

    logLine = pyqtSignal(str)  # noqa: N815 (Qt naming)
    completed = pyqtSignal(bool, str, str)

    def __init__(self, job: SegmentJob, python: str, project: QgsProject | None = None) -> None:
        super().__init__(f"Segment {job.layer_name}", QgsTask.CanCancel)
        self.job, self.python = job, python
        self.project = project or QgsProject.instance()
        self.outcome: EngineOutcome | None = None
        self.layer: QgsVectorLayer | None = None

    def run(self) -> bool:
        try:
            self.outcome = execute_job(self.job, self.python, self.setProgress, self._log, self.isCanceled)
        except Exception as exc:  # a bug here must reach the user as a message, not a silent task death
            self._log(f"internal error: {type(exc).__name__}: {exc}")
            self.outcome = EngineOutcome(None, error=f"internal error: {type(exc).__name__}: {exc}")
        return self.outcome.ok

    def _log(self, line: str) -> None:
        QgsMessageLog.logMessage(line, LOG_TAG)
        self.logLine.emit(line)

    def finished(self, result: bool) -> None:  # noqa: FBT001 (QGIS signature)
        remove_export(self.job)
        outcome = self.outcome
        if self.job.temporary and not (result and outcome is not None and outcome.ok):
            remove_temporary_output(self.job.request.output)
        if outcome is None or outcome.cancelled or (self.isCanceled() and not outcome.ok):
            self.completed.emit(False, "cancelled: no layer added", "")
            return
        if not result:
            self.completed.emit(False, outcome.error or "the engine failed", "")
            return
        source = outcome.done["output"]
        if not self.job.temporary and outcome.done.get("layer") and source.lower().endswith(".gpkg"):
            source = f"{source}|layername={outcome.done['layer']}"  # its layer among the GeoPackage's others
        try:
            layer = load_result_layer(source, self.job.layer_name, self.job.classes, self.job.labels,
                                      self.job.temporary)
        except ValueError as exc:
            self.completed.emit(False, str(exc), "")
            return
        self.project.addMapLayer(layer)
        self.layer = layer
        n = outcome.done.get("features", layer.featureCount())
        where = "temporary layer" if self.job.temporary else outcome.done["output"]
        self.completed.emit(True, f"{n} objects -> {self.job.layer_name} ({where})", layer.id())
