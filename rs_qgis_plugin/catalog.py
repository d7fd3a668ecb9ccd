"""The engine's models for the dock and the Processing provider: listed by the engine in the background
(`python -m engine models --json`, a few seconds: it loads every checkpoint) and cached."""
from __future__ import annotations

import json
import os
import weakref
from collections.abc import Callable
from dataclasses import asdict

from qgis.core import QgsSettings
from qgis.PyQt import sip
from qgis.PyQt.QtCore import QObject, pyqtSignal

from rs_qgis_plugin import settings
from rs_qgis_plugin.background import run_in_background
from rs_qgis_plugin.engine_env import ModelListError, list_models
from rs_qgis_plugin.models import ModelInfo

CACHE_KEY = settings.PREFIX + "models_cache"
TRAINED_KEY = settings.PREFIX + "trained_models"  # checkpoints made by "Train model from polygons"


def _stored(python: str) -> list[ModelInfo]:
    """The listing saved at the last successful refresh with this interpreter ([] when none)."""
    try:
        data = json.loads(str(QgsSettings().value(CACHE_KEY, "") or "{}"))
        if data.get("python") != python:
            return []
        return [ModelInfo(**entry) for entry in data.get("models", [])]
    except (TypeError, ValueError, AttributeError):
        return []


def _store(python: str, models: list[ModelInfo]) -> None:
    QgsSettings().setValue(CACHE_KEY, json.dumps({"python": python, "models": [asdict(m) for m in models]}))


def trained_models() -> list[ModelInfo]:
    """The checkpoints "Train model from polygons" made, newest first (files that no longer exist are left out)."""
    try:
        entries = json.loads(str(QgsSettings().value(TRAINED_KEY, "") or "[]"))
        models = [ModelInfo(**entry) for entry in entries]
    except (TypeError, ValueError, AttributeError):
        return []
    return [m for m in models if os.path.isfile(m.model)]


class ModelCatalog(QObject):
    """models() answers at once: this session's listing for the current interpreter, else the one saved
    at the last start (QgsSettings), else []. refresh() lists again in the background, at most once per
    interpreter and QGIS session unless forced; `changed` / `failed(reason)` report the outcome."""

    changed = pyqtSignal()
    failed = pyqtSignal(str)

    # shared by every catalog of this process: interpreter -> listing, interpreters being listed, catalogs
    _session: dict[str, list[ModelInfo]] = {}
    _listing: set[str] = set()
    _catalogs: weakref.WeakSet = weakref.WeakSet()

    def __init__(self, python: Callable[[], str] = settings.engine_python, parent: QObject | None = None) -> None:
        super().__init__(parent)
        self._python = python
        self.error = ""
        self._catalogs.add(self)

    def python(self) -> str:
        return self._python()

    def models(self) -> list[ModelInfo]:
        """The engine's models (default first), then the trained checkpoints."""
        python = self.python()
        listed = list(self._session.get(python) or _stored(python))
        known = {m.model for m in listed}
        return listed + [m for m in trained_models() if m.model not in known]

    @classmethod
    def add_trained(cls, info: ModelInfo) -> None:
        """Remember a checkpoint made by training (newest first; one entry per path) and tell every live catalog
        (UI thread: Processing's postProcessAlgorithm)."""
        keep = [m for m in trained_models() if os.path.realpath(m.model) != os.path.realpath(info.model)]
        QgsSettings().setValue(TRAINED_KEY, json.dumps([asdict(m) for m in [info, *keep]]))
        for catalog in list(cls._catalogs):
            if not sip.isdeleted(catalog):
                catalog.changed.emit()

    def is_listing(self) -> bool:
        return self.python() in self._listing

    def is_current(self) -> bool:
        """True once this session has listed the current interpreter's models."""
        return self.python() in self._session

    def refresh(self, force: bool = False) -> None:
        """List the models in the background unless this session already did (or is doing) it."""
        python = self.python()
        if python in self._listing or (python in self._session and not force):
            return
        self._listing.add(python)
        run_in_background(lambda: list_models(python), lambda result: ModelCatalog._listed(python, result))

    def list_now(self) -> list[ModelInfo]:
        """The current listing, listing it here and now if this session has none (worker threads only:
        Processing algorithms, qgis_process). ModelListError with the reason."""
        python = self.python()
        if python not in self._session:
            self._session[python] = list_models(python)
            _store(python, self._session[python])
        return list(self._session[python])

    @classmethod
    def _listed(cls, python: str, result: object) -> None:
        """Keep a listing (or its failure) and tell every live catalog that uses this interpreter."""
        cls._listing.discard(python)
        if isinstance(result, list):
            cls._session[python] = result
            _store(python, result)
        error = "" if isinstance(result, list) else (
            str(result) if isinstance(result, ModelListError) else f"{type(result).__name__}: {result}")
        for catalog in list(cls._catalogs):
            if sip.isdeleted(catalog) or catalog.python() != python:
                continue
            catalog.error = error
            if error:
                catalog.failed.emit(error)
            else:
                catalog.changed.emit()
