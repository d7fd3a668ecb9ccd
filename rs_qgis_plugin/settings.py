"""Plugin settings persisted between QGIS sessions (QgsSettings, under "rs_qgis_plugin/")."""
from __future__ import annotations

import os
from typing import Any

from qgis.core import QgsSettings

from rs_qgis_plugin.engine_env import default_python

PREFIX = "rs_qgis_plugin/"


def value(key: str, default: Any = None, kind: type | None = None) -> Any:
    """A stored setting, or `default`; `kind` converts (QSettings returns strings for some backends)."""
    raw = QgsSettings().value(PREFIX + key, default)
    if kind is None or raw is None:
        return raw
    if kind is bool:
        return raw if isinstance(raw, bool) else str(raw).lower() in ("1", "true", "yes")
    try:
        return kind(raw)
    except (TypeError, ValueError):
        return default


def set_value(key: str, val: Any) -> None:
    QgsSettings().setValue(PREFIX + key, val)


def engine_python() -> str:
    """The engine interpreter: $RSSEG_ENGINE_PYTHON (for qgis_process on servers), else the setting, else the
    default (the checkout's .venv, else python3)."""
    return os.environ.get("RSSEG_ENGINE_PYTHON") or value("engine/python", "", str) or default_python()


def set_engine_python(path: str) -> None:
    set_value("engine/python", path.strip())
