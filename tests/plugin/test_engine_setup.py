"""'Set up engine…' against a local folder of stand-in wheels (no network): the whole flow, cancel, failure.

Each flow makes a real virtualenv from this test interpreter and runs real pip (`--no-index --find-links`).
"""
from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

from rs_qgis_plugin import settings
from rs_qgis_plugin.engine_env import interpreter_stamp
from rs_qgis_plugin.engine_setup import (
    PTH_NAME,
    EngineSetup,
    SetupCancelled,
    SetupError,
    SetupPlan,
    default_target,
    find_pythons,
    probe_python,
    venv_python,
)
from rs_qgis_plugin.pip_install import Package, PipProgress, PipSource, estimate_of
from rs_qgis_plugin.setup_dialog import DONE, IDLE, READY, SetupDialog
from tests.plugin.standin_wheels import standin_requirements

PREVIOUS = "/previous/engine/bin/python"


@pytest.fixture(autouse=True)
def _no_pip_cache(monkeypatch: pytest.MonkeyPatch) -> None:
    """Stand-in wheels stay out of the user's pip cache."""
    monkeypatch.setenv("PIP_NO_CACHE_DIR", "1")


def _dialog(qtbot, tmp_path: Path, extra: tuple[str, ...] = ()) -> tuple[SetupDialog, Path]:
    requirements, wheels = standin_requirements(tmp_path / "standin", extra)
    dialog = SetupDialog(None, folder=tmp_path / "profile", requirements=requirements,
                         source=PipSource(find_links=(str(wheels),), no_index=True))
    qtbot.addWidget(dialog)
    dialog.python_combo.setEditText(sys.executable)
    settings.set_engine_python(PREVIOUS)
    return dialog, wheels


def test_setup_dialog_installs_a_working_engine(qtbot, tmp_path: Path) -> None:
    dialog, wheels = _dialog(qtbot, tmp_path)
    target = dialog.target()
    assert target == tmp_path / "profile" / "rsseg-engine" and not target.exists()
    dialog.start_button.click()
    qtbot.waitUntil(lambda: dialog.state != "preparing", timeout=300_000)
    assert dialog.state == READY, dialog.status_label.text()
    # the estimate, up front: exactly the stand-in wheels' bytes
    assert dialog.setup.estimate.download_bytes == sum(p.stat().st_size for p in wheels.glob("*.whl"))
    assert len(dialog.setup.estimate.packages) == 8
    assert "Downloads about" in dialog.estimate_label.text() and "of disk" in dialog.estimate_label.text()
    assert dialog.start_button.text() == "Install" and settings.stored_engine_python() == PREVIOUS
    with qtbot.waitSignal(dialog.engineReady, timeout=300_000) as ready:
        dialog.start_button.click()
    python = str(venv_python(target))
    assert ready.args[0] == python and ready.args[1].startswith("engine OK: torch 0.0.1+standin")
    assert dialog.state == DONE and dialog.progress.value() == 100
    assert settings.stored_engine_python() == python
    assert settings.remembered_check().valid_for(python, interpreter_stamp(python))
    log = dialog.log.toPlainText()
    assert "Successfully installed" in log and "engine OK" in log
    site = next(target.glob("lib/python*/site-packages"))
    assert (site / PTH_NAME).read_text().strip() == str(Path(__file__).resolve().parents[2])


def test_failed_setup_gives_pip_reason_and_keeps_the_previous_engine(qtbot, tmp_path: Path) -> None:
    dialog, _ = _dialog(qtbot, tmp_path, extra=("nothere==1.0",))
    dialog.start_button.click()
    qtbot.waitUntil(lambda: dialog.state != "preparing", timeout=300_000)
    assert dialog.state == IDLE
    assert "No matching distribution found for nothere==1.0" in dialog.error and "\n" not in dialog.error
    assert dialog.status_label.text().startswith("Failed:") and "unchanged" in dialog.status_label.text()
    assert not dialog.target().exists() and settings.stored_engine_python() == PREVIOUS


def test_cancel_after_the_estimate_removes_the_environment(qtbot, tmp_path: Path) -> None:
    dialog, _ = _dialog(qtbot, tmp_path)
    dialog.start_button.click()
    qtbot.waitUntil(lambda: dialog.state == READY, timeout=300_000)
    assert venv_python(dialog.target()).is_file()
    dialog.cancel_button.click()
    assert dialog.state == IDLE and "Cancelled" in dialog.status_label.text()
    assert not dialog.target().exists() and settings.stored_engine_python() == PREVIOUS


def test_cancel_during_pip_install_leaves_no_environment(tmp_path: Path) -> None:
    requirements, wheels = standin_requirements(tmp_path / "standin")
    target = tmp_path / "engine"
    plan = SetupPlan(target, sys.executable, requirements, Path(__file__).resolve().parents[2],
                     PipSource(find_links=(str(wheels),), no_index=True))
    percents: list[float] = []
    lines: list[str] = []
    setup = EngineSetup(plan, lambda p, status: percents.append(p), lines.append,
                        cancelled=lambda: bool(percents) and percents[-1] >= 10.0)  # once pip install starts
    setup.prepare()
    assert target.is_dir()
    with pytest.raises(SetupCancelled):
        setup.install()
    assert not target.exists()
    assert not any(line.startswith("Successfully installed") for line in lines)  # pip was stopped


def test_setup_refuses_a_folder_in_use_and_an_old_python(tmp_path: Path) -> None:
    used = tmp_path / "used"
    used.mkdir()
    (used / "keep.txt").write_text("mine")
    plan = SetupPlan.default(used, sys.executable)
    with pytest.raises(SetupError, match="is not empty"):
        EngineSetup(plan).prepare()
    assert (used / "keep.txt").read_text() == "mine"  # nothing of the user's is removed
    assert default_target(tmp_path, "used") == tmp_path / "used-2"
    old = tmp_path / "python3.8"
    old.write_text('#!/bin/sh\necho \'{"executable": "x", "version": [3, 8, 10], "venv": true, "ensurepip": true}\'\n')
    old.chmod(0o755)
    info = probe_python(str(old))
    assert info is not None and not info.usable and "3.10 or newer" in info.problem
    with pytest.raises(SetupError, match="too old"):
        EngineSetup(SetupPlan.default(tmp_path / "new", str(old))).prepare()
    assert not (tmp_path / "new").exists()


def test_find_pythons_lists_usable_interpreters_first() -> None:
    found = find_pythons([sys.executable])
    assert found and found[0].usable and found[0].version[:2] >= (3, 10)
    assert os.path.realpath(sys.executable) in {os.path.realpath(p.path) for p in found}


def test_pip_progress_follows_downloads_by_bytes() -> None:
    packages = [Package("torch", "2.14.1", "https://x/torch-2.14.1-cp311-none-any.whl", 900, 1800),
                Package("numpy", "1.26.4", "https://x/numpy-1.26.4-cp311-none-any.whl", 100, 200)]
    assert estimate_of(packages).text() == "Downloads about 1 kB (2 packages); the environment needs about 2 kB of disk"
    tracker = PipProgress(packages)
    fractions = []
    for line in ["Collecting torch==2.14.1", "  Downloading torch-2.14.1-cp311-none-any.whl (0.9 kB)",
                 "Progress 450 of 900", "Collecting numpy", "  Downloading numpy-1.26.4-cp311-none-any.whl (0.1 kB)",
                 "Installing collected packages: numpy, torch", "Successfully installed numpy-1.26.4 torch-2.14.1"]:
        tracker.feed(line)
        fractions.append(round(tracker.fraction, 3))
    assert fractions == [0.0, 0.0, 0.36, 0.36, 0.72, 0.8, 1.0]
    assert tracker.status == "Packages installed"


def test_dock_and_menu_open_the_setup_and_follow_a_new_engine(plugin, qtbot, engine_check) -> None:
    from rs_qgis_plugin.setup_dialog import profile_engine_folder

    dock = plugin.show_dock(True)
    dialog = dock.open_setup()
    assert isinstance(dialog, SetupDialog) and dialog.target().parent == profile_engine_folder()
    qtbot.waitUntil(lambda: dialog.python_combo.count() > 0, timeout=60_000)
    assert dialog.python().endswith(("python3", "python")) or "python3." in dialog.python()
    dialog.engineReady.emit(sys.executable, engine_check.message)  # as after a good set-up
    assert dock.python_file.filePath() == sys.executable and dock.last_report.ok
    dialog.close()
    menu_dialog = plugin.open_setup()
    assert isinstance(menu_dialog, SetupDialog)
    menu_dialog.close()
