"""The "Set up engine…" dialog: setup_dialog.ui wired to engine_setup.EngineSetup, which runs off the UI thread.

Two steps: "Set up" makes the virtualenv and asks pip what the engine's requirements take (shown before
anything big is downloaded), then "Install" installs them, links the engine and checks it. Only a good
check switches the engine setting (and remembers the check); a failure, Cancel, or closing the dialog
before the end removes the folder and leaves the setting as it was.
"""
from __future__ import annotations

import threading
import time
from pathlib import Path

from qgis.core import QgsApplication
from qgis.PyQt import uic
from qgis.PyQt.QtCore import QObject, pyqtSignal
from qgis.PyQt.QtWidgets import QDialog, QFileDialog, QWidget

from rs_qgis_plugin import settings
from rs_qgis_plugin.background import run_in_background
from rs_qgis_plugin.engine_env import EngineReport, interpreter_stamp
from rs_qgis_plugin.engine_setup import (
    EngineSetup,
    PythonInfo,
    SetupCancelled,
    SetupPlan,
    default_target,
    find_pythons,
)
from rs_qgis_plugin.pip_install import Estimate, PipSource
from rs_qgis_plugin.progress import wrappable

FORM, _ = uic.loadUiType(str(Path(__file__).with_name("setup_dialog.ui")))
IDLE, PREPARING, READY, INSTALLING, DONE = "idle", "preparing", "ready", "installing", "done"
BUSY = (PREPARING, INSTALLING)


def profile_engine_folder() -> Path:
    """Where engines are set up by default: `rsseg/` in the QGIS profile's folder."""
    return Path(QgsApplication.qgisSettingsDirPath()) / "rsseg"


class _Signals(QObject):
    """Lives on the UI thread; the worker's progress and log lines are queued to it."""

    progress = pyqtSignal(float, str)
    line = pyqtSignal(str)


class SetupDialog(QDialog, FORM):
    """`engineReady(python, message)` is emitted after a good check, once the setting points at `python`.

    `source` and `requirements` say where pip takes packages from and what it installs (tests: local
    stand-in wheels); by default PyPI and the engine's requirements.txt.
    """

    engineReady = pyqtSignal(str, str)  # noqa: N815 (Qt naming)

    def __init__(self, parent: QWidget | None = None, folder: str | Path | None = None,
                 source: PipSource = PipSource(), requirements: str | Path | None = None) -> None:
        super().__init__(parent)
        self.setupUi(self)
        self.source, self.requirements = source, Path(requirements) if requirements else None
        self.state = IDLE
        self.setup: EngineSetup | None = None
        self.report: EngineReport | None = None
        self.error = ""
        self._cancel = threading.Event()
        self._signals = _Signals(self)
        self._signals.progress.connect(self._progress)
        self._signals.line.connect(self._log)
        self.target_file.setFilePath(str(default_target(folder or profile_engine_folder())))
        self.python_combo.lineEdit().setPlaceholderText("looking for Python 3.10+ on this computer…")
        self.start_button.clicked.connect(self.start)
        self.cancel_button.clicked.connect(self.cancel)
        self.close_button.clicked.connect(self.reject)
        self.python_browse.clicked.connect(self._browse_python)
        run_in_background(find_pythons, self._pythons_found, owner=self)

    # ---- inputs ------------------------------------------------------------------------------------
    def _pythons_found(self, found) -> None:
        pythons: list[PythonInfo] = found if isinstance(found, list) else []
        typed = self.python_combo.currentText().strip()
        for info in pythons:
            self.python_combo.addItem(info.label, info.path)
        self.python_combo.lineEdit().setPlaceholderText("the path of a Python 3.10 or newer")
        usable = [i for i in pythons if i.usable]
        if typed:
            self.python_combo.setEditText(typed)
        elif usable:
            self.python_combo.setCurrentIndex(pythons.index(usable[0]))
        elif not pythons:
            self._log("No Python 3.10 or newer found: install one (python.org) and choose it with …")

    def _browse_python(self) -> None:
        path, _ = QFileDialog.getOpenFileName(self, "Python 3.10 or newer", "", "Python (python*);;All files (*)")
        if path:
            self.python_combo.setEditText(path)

    def python(self) -> str:
        """The chosen base Python: the listed one whose label is shown, else the typed path."""
        text = self.python_combo.currentText().strip()
        i = self.python_combo.findText(text)
        return str(self.python_combo.itemData(i)) if i >= 0 else text

    def target(self) -> Path:
        return Path(self.target_file.filePath().strip()).expanduser()

    # ---- steps -------------------------------------------------------------------------------------
    def start(self) -> None:
        """Set up (make the virtualenv, estimate), or Install once the estimate is shown, or close when done."""
        if self.state == DONE:
            self.accept()
        elif self.state == READY:
            self._install()
        elif self.state == IDLE:
            self._prepare()

    def _prepare(self) -> None:
        python = self.python()
        if not python or not str(self.target()).strip() or str(self.target()) == ".":
            self._failed("choose a folder and a Python 3.10 or newer")
            return
        try:
            plan = SetupPlan.default(self.target(), python, self.source)
        except Exception as exc:  # the engine source is missing: a broken plugin install
            self._failed(str(exc))
            return
        if self.requirements is not None:
            plan = SetupPlan(plan.target, plan.python, self.requirements, plan.engine_root, plan.source)
        self._cancel.clear()
        self.setup = EngineSetup(plan, self._signals.progress.emit, self._signals.line.emit, self._cancel.is_set)
        self.log.clear()
        self._busy(PREPARING)
        run_in_background(self.setup.prepare, self._prepared, owner=self)

    def _prepared(self, result) -> None:
        if not isinstance(result, Estimate):
            self._ended(result)
            return
        self.state = READY
        self.estimate_label.setText(wrappable(f"{result.text()}. Install now?"))
        self.set_status(f"Ready to install into {self.target()}")
        self.start_button.setText("Install")
        self.start_button.setEnabled(True)
        self.cancel_button.setEnabled(True)

    def _install(self) -> None:
        self._busy(INSTALLING)
        run_in_background(self.setup.install, self._installed, owner=self)

    def _installed(self, result) -> None:
        if not isinstance(result, EngineReport):
            self._ended(result)
            return
        python = self.setup.python
        settings.set_engine_python(python)
        settings.remember_check(settings.EngineCheck(python, interpreter_stamp(python), result.message,
                                                     result.devices, time.strftime("%Y-%m-%d %H:%M")))
        self.report, self.state = result, DONE
        self.progress.setValue(100)
        self.set_status(result.message)
        self.estimate_label.setText(wrappable(f"The engine is set up in {self.target()} and in use."))
        self.start_button.setText("Close")
        self.start_button.setEnabled(True)
        self.cancel_button.setEnabled(False)
        self._set_inputs_enabled(True)
        self.engineReady.emit(python, result.message)

    def _ended(self, result: object) -> None:
        """A step raised: cancelled or failed (EngineSetup has removed its folder already)."""
        if isinstance(result, SetupCancelled) or self._cancel.is_set():
            self.state = IDLE
            self.progress.setValue(0)
            self.set_status("Cancelled: nothing was installed; the engine setting is unchanged")
            self._log("Cancelled")
            self._reset_buttons()
            return
        self._failed(str(result) if isinstance(result, Exception) else f"unexpected result {result!r}")

    def _failed(self, message: str) -> None:
        self.state, self.error = IDLE, message
        self.progress.setValue(0)
        self.set_status(f"Failed: {message}. The engine setting is unchanged.")
        self._log(f"error: {message}")
        self._reset_buttons()

    def cancel(self) -> None:
        """Stop the running step (its folder is removed), or drop a prepared but not installed virtualenv."""
        if self.state in BUSY:
            self._cancel.set()
            self.set_status("Cancelling…")
            self.cancel_button.setEnabled(False)
        elif self.state == READY and self.setup is not None:
            self.setup.discard()
            self._ended(SetupCancelled("cancelled"))

    def reject(self) -> None:
        """Close: a running step is cancelled first (the dialog stays open until it has stopped)."""
        if self.state in BUSY:
            self.cancel()
            return
        if self.state == READY:
            self.cancel()
        super().reject()

    # ---- display -----------------------------------------------------------------------------------
    def _busy(self, state: str) -> None:
        self.state = state
        self.error = ""
        self.start_button.setEnabled(False)
        self.cancel_button.setEnabled(True)
        self._set_inputs_enabled(False)

    def _reset_buttons(self) -> None:
        self.start_button.setText("Set up")
        self.start_button.setEnabled(True)
        self.cancel_button.setEnabled(False)
        self._set_inputs_enabled(True)

    def _set_inputs_enabled(self, enabled: bool) -> None:
        for widget in (self.target_file, self.python_combo, self.python_browse):
            widget.setEnabled(enabled)

    def _progress(self, percent: float, status: str) -> None:
        self.progress.setValue(int(percent))
        if self.state in BUSY and not self._cancel.is_set():
            self.set_status(status)

    def _log(self, line: str) -> None:
        self.log.appendPlainText(line)
        bar = self.log.verticalScrollBar()
        bar.setValue(bar.maximum())

    def set_status(self, text: str) -> None:
        self.status_label.setText(wrappable(text))
