"""Plugin settings in QgsSettings: ONE load and ONE save for any frozen dataclass of settings.

A dataclass stored under group G keeps field F at "rs_qgis_plugin/G/F" ("rs_qgis_plugin/F" for the group
""); values are converted back by the field's type (bool, int, float, str; dict, list and tuple as JSON),
and a missing or unreadable value falls back to the field's default.

The engine interpreter is the Processing provider's setting (Processing > Options > Providers), shared by
the dock: $RSSEG_ENGINE_PYTHON overrides it (qgis_process on servers), the checkout's .venv is the default.
"""
from __future__ import annotations

import json
import os
import sys
import time
import types
import typing
from dataclasses import dataclass, fields
from typing import Any, TypeVar

from qgis.core import QgsSettings

from rs_qgis_plugin.engine_env import EngineReport, check_engine, default_python, interpreter_stamp

PREFIX = "rs_qgis_plugin/"
ENGINE_PYTHON_SETTING = "RSSEG_ENGINE_PYTHON"
ENGINE_PYTHON_KEY = "Processing/Configuration/" + ENGINE_PYTHON_SETTING
_OLD_ENGINE_PYTHON_KEY = PREFIX + "engine/python"  # before 0.4

T = TypeVar("T")


def _key(group: str, name: str) -> str:
    return PREFIX + (f"{group}/" if group else "") + name


def _plain_type(hint: Any) -> tuple[Any, bool]:
    """(the type without None, whether None is allowed)."""
    if typing.get_origin(hint) in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(hint) if a is not type(None)]
        return (args[0] if len(args) == 1 else object), True
    return hint, False


def _decode(raw: Any, hint: Any) -> Any:
    kind, optional = _plain_type(hint)
    origin = typing.get_origin(kind) or kind
    if optional and (raw is None or raw == "" or raw == "null"):
        return None
    if origin is bool:
        return raw if isinstance(raw, bool) else str(raw).strip().lower() in ("1", "true", "yes")
    if origin in (int, float, str):
        return origin(raw)
    if origin in (dict, list, tuple):
        value = raw if isinstance(raw, (dict, list)) else json.loads(str(raw))
        if origin is tuple:
            return tuple(tuple(v) if isinstance(v, list) else v for v in value)
        if not isinstance(value, origin):
            raise TypeError(f"expected {origin.__name__}")
        return value
    return raw


def _encode(value: Any) -> Any:
    if isinstance(value, (bool, int, float, str)):
        return value
    return json.dumps(value)


def load(cls: type[T], group: str = "") -> T:
    """An instance of the frozen dataclass `cls` from the stored values (defaults for missing ones)."""
    hints = typing.get_type_hints(cls)
    stored = QgsSettings()
    values = {}
    for f in fields(cls):
        raw = stored.value(_key(group, f.name), None)
        if raw is None:
            continue
        try:
            values[f.name] = _decode(raw, hints[f.name])
        except (TypeError, ValueError):
            continue  # unreadable: keep the default
    return cls(**values)


def save(obj: Any, group: str = "") -> None:
    """Store every field of the dataclass instance `obj`."""
    stored = QgsSettings()
    for f in fields(obj):
        stored.setValue(_key(group, f.name), _encode(getattr(obj, f.name)))


def stored_engine_python() -> str:
    """The interpreter chosen in the dock or in Processing's options ("" when none was)."""
    stored = QgsSettings()
    return str(stored.value(ENGINE_PYTHON_KEY, "") or stored.value(_OLD_ENGINE_PYTHON_KEY, "") or "").strip()


def engine_python() -> str:
    """The engine interpreter: $RSSEG_ENGINE_PYTHON, else the setting, else the checkout's .venv or python3."""
    return os.environ.get("RSSEG_ENGINE_PYTHON") or stored_engine_python() or default_python()


def set_engine_python(path: str) -> None:
    """Store the interpreter (also in Processing's options when Processing is loaded, so they agree)."""
    path = path.strip()
    QgsSettings().setValue(ENGINE_PYTHON_KEY, path)
    config = sys.modules.get("processing.core.ProcessingConfig")
    setting = getattr(config, "ProcessingConfig", None) and config.ProcessingConfig.settings.get(ENGINE_PYTHON_SETTING)
    if setting is not None:
        setting.value = path


@dataclass(frozen=True)
class EngineCheck:
    """The last good engine check, remembered for the interpreter it was made with (see `valid_for`)."""

    python: str = ""
    stamp: str = ""  # engine_env.interpreter_stamp(python) at check time
    message: str = ""
    devices: tuple[tuple[str, str], ...] = ()
    checked_at: str = ""  # "2024-05-01 14:03"

    def valid_for(self, python: str, stamp: str) -> bool:
        return bool(self.message) and self.python == python and bool(stamp) and self.stamp == stamp

    def report(self) -> EngineReport:
        return EngineReport(True, self.message, self.devices)


ENGINE_CHECK_GROUP = "engine_check"


def remembered_check() -> EngineCheck:
    return load(EngineCheck, ENGINE_CHECK_GROUP)


def remember_check(check: EngineCheck) -> None:
    save(check, ENGINE_CHECK_GROUP)


def gpu_names() -> dict[str, str]:
    """{"cuda:0": "NVIDIA ..."} from the remembered engine check (empty when none)."""
    return remembered_check().report().gpu_names


def verified_engine(python: str) -> EngineReport:
    """The engine check every entry point makes before a run: the remembered good check while the interpreter
    file is unchanged, else a fresh check (a few seconds; remembered when good). Any thread."""
    stamp = interpreter_stamp(python)
    remembered = remembered_check()
    if remembered.valid_for(python, stamp):
        return remembered.report()
    report = check_engine(python)
    if report.ok:
        remember_check(EngineCheck(python, stamp, report.message, report.devices, time.strftime("%Y-%m-%d %H:%M")))
    return report
