"""What every Processing algorithm does with the engine: check it before the run, then run engine commands with
the feedback's progress, log and cancel. Failures are one-line QgsProcessingExceptions naming the algorithm's
parameters rather than CLI flags."""
from __future__ import annotations

import time
from collections.abc import Mapping

from qgis.core import QgsProcessingException, QgsProcessingFeedback

from rs_qgis_plugin import settings
from rs_qgis_plugin.checks import translate_flags
from rs_qgis_plugin.engine_env import engine_root
from rs_qgis_plugin.progress import ProgressTracker
from rs_qgis_plugin.runner import WARNING, run_engine

VECTOR_FORMATS = ["gpkg", "shp", "geojson"]  # vector files the engine reads as they are; other layers are written
# to a temporary GeoPackage first (QgsProcessingAlgorithm.parameterAsCompatibleSourceLayerPath)


def require_engine() -> str:
    """The engine interpreter, once it passes the engine check (remembered, or made now); otherwise the check's
    one line: what is missing and how to set the engine up."""
    python = settings.engine_python()
    report = settings.verified_engine(python)
    if not report.ok:
        raise QgsProcessingException(report.message)
    return python


class EngineSteps:
    """Runs engine commands one after the other for one algorithm run; each step owns a share of the progress
    bar. `names` maps CLI flags (without dashes) to the algorithm's parameter names for error messages."""

    def __init__(self, python: str, feedback: QgsProcessingFeedback, names: Mapping[str, str]) -> None:
        self.python, self.feedback, self.names = python, feedback, dict(names)

    def run(self, args: list[str], start: float, end: float, unit: str, first: str) -> dict:
        """Run `python -m engine *args` (with --progress jsonl) as the part `start`..`end` (percent) of the bar;
        returns the engine's "done" event. Cancel and failure raise QgsProcessingException."""
        feedback = self.feedback
        tracker = ProgressTracker(unit, first)
        feedback.setProgressText(first)

        def log(line: str, level: str) -> None:
            (feedback.pushWarning if level == WARNING else feedback.pushInfo)(line)

        def event(data: dict) -> None:
            if tracker.update(data, time.monotonic()) and data.get("event") != "done":
                feedback.setProgressText(tracker.status)

        outcome = run_engine(self.python, args, engine_root(),
                             on_progress=lambda p: feedback.setProgress(start + (end - start) * p / 100.0),
                             on_log=log, is_cancelled=feedback.isCanceled, on_event=event,
                             gpu_names=settings.gpu_names())
        if outcome.cancelled or feedback.isCanceled():
            raise QgsProcessingException("Cancelled: nothing was written")
        if not outcome.ok:
            raise QgsProcessingException(translate_flags(outcome.error or "the engine failed", self.names))
        feedback.setProgress(end)
        return outcome.done
