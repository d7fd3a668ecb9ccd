"""QgsTask that runs one SegmentJob through the engine subprocess and loads the result on success."""
from __future__ import annotations

import time

from qgis.core import Qgis, QgsMessageLog, QgsProject, QgsTask, QgsVectorLayer
from qgis.PyQt.QtCore import pyqtSignal

from rs_qgis_plugin.job import execute_job, remove_export
from rs_qgis_plugin.layers import add_to_results_group, load_result_layer, remove_temporary_output, summarise
from rs_qgis_plugin.progress import LOADING, ProgressTracker, ResultSummary
from rs_qgis_plugin.request import SegmentJob
from rs_qgis_plugin.runner import INFO, WARNING, EngineOutcome

LOG_TAG = "Remote sensing segmentation"
LEVELS = {INFO: Qgis.Info, WARNING: Qgis.Warning}


def _flags() -> QgsTask.Flags:
    """Cancellable; on QGIS >= 3.26 also Silent (no "Task complete / failed" notice: the dock says it)."""
    flags = QgsTask.Flags(QgsTask.CanCancel)
    return flags | QgsTask.Silent if hasattr(QgsTask, "Silent") else flags


class SegmentTask(QgsTask):
    """Runs in a worker thread; `finished` (main thread) adds the styled layer to the results group.

    Signals (queued to the main thread): `logLine(line, level)` for each log line ("info" | "warning");
    `statusChanged(text)` ("Loading model…", "Tile 37/121 · about 2 min left"); `completed(status,
    message, layer_id)` once the task has ended, status "done" | "cancelled" | "failed" (layer_id "" when
    nothing was added; `summary` is set when status is "done").
    """

    logLine = pyqtSignal(str, str)  # noqa: N815 (Qt naming)
    statusChanged = pyqtSignal(str)  # noqa: N815
    completed = pyqtSignal(str, str, str)

    def __init__(self, job: SegmentJob, python: str, project: QgsProject | None = None,
                 gpu_names: dict[str, str] | None = None) -> None:
        super().__init__(f"Segment {job.layer_name}", _flags())
        self.job, self.python, self.gpu_names = job, python, dict(gpu_names or {})
        self.project = project or QgsProject.instance()
        self.outcome: EngineOutcome | None = None
        self.layer: QgsVectorLayer | None = None
        self.summary: ResultSummary | None = None
        self._tracker = ProgressTracker()

    def run(self) -> bool:
        self.statusChanged.emit(LOADING)
        try:
            self.outcome = execute_job(self.job, self.python, self.setProgress, self._log, self.isCanceled,
                                       self._event, self.gpu_names)
        except Exception as exc:  # a bug here must reach the user as a message, not a silent task death
            self.outcome = EngineOutcome(None, error=f"internal error: {type(exc).__name__}: {exc}")
        if self.outcome.cancelled:
            # a clean cancel is not a failure: QGIS < 3.26 would announce "Task failed" over our "Cancelled"
            self.setDescription(f"Segment {self.job.layer_name}: cancelled")
            return True
        return self.outcome.ok

    def _event(self, event: dict) -> None:
        if self._tracker.update(event, time.monotonic()):
            self.statusChanged.emit(self._tracker.status)

    def _log(self, line: str, level: str = INFO) -> None:
        QgsMessageLog.logMessage(line, LOG_TAG, LEVELS.get(level, Qgis.Info))
        self.logLine.emit(line, level)

    def finished(self, result: bool) -> None:  # noqa: FBT001 (QGIS signature)
        remove_export(self.job)
        outcome = self.outcome
        succeeded = bool(result and outcome is not None and outcome.ok)
        if self.job.temporary and not succeeded:
            remove_temporary_output(self.job.request.output)
        if outcome is None or outcome.cancelled or (self.isCanceled() and not succeeded):
            self._end("cancelled", "Cancelled: no layer added")
            return
        if not succeeded:
            self._end("failed", outcome.error or "the engine failed", level=Qgis.Critical)
            return
        source = outcome.done["output"]
        if not self.job.temporary and outcome.done.get("layer") and source.lower().endswith(".gpkg"):
            source = f"{source}|layername={outcome.done['layer']}"  # its layer among the GeoPackage's others
        try:
            layer = load_result_layer(source, self.job.layer_name, self.job.classes, self.job.labels,
                                      self.job.temporary)
        except ValueError as exc:
            self._end("failed", str(exc), level=Qgis.Critical)
            return
        add_to_results_group(self.project, layer)
        self.layer = layer
        seconds = outcome.done.get("seconds")
        self.summary = summarise(layer, float(seconds) if isinstance(seconds, (int, float)) else None)
        where = "temporary layer" if self.job.temporary else outcome.done["output"]
        self._end("done", f"{self.summary.features} objects -> {layer.name()} ({where})", layer.id())

    def _end(self, status: str, message: str, layer_id: str = "", level=Qgis.Info) -> None:
        QgsMessageLog.logMessage(message, LOG_TAG, level)
        self.completed.emit(status, message, layer_id)
