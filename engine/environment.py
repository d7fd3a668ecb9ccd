"""What the engine runs on: Python, package versions, CUDA and GPUs (the QGIS plugin's "check engine").

Imports every package separately and reports a missing or broken one instead of failing, so this
works even where torch itself cannot be imported. Nothing heavy is imported at module level.
"""
from __future__ import annotations

import importlib
import importlib.metadata
import platform
import sys
from pathlib import Path
from typing import Any

REQUIRED = ("torch", "torchvision", "numpy", "rasterio", "fiona", "shapely", "pycocotools", "tqdm")
ENGINE_DIR = Path(__file__).resolve().parent


def _one_line(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {(str(exc).splitlines() or [''])[0][:200]}"


def _package_version(name: str) -> tuple[str | None, str | None]:
    """(version, None) when `name` imports, else (None, one-line reason)."""
    try:
        module = importlib.import_module(name)
    except Exception as exc:  # ImportError, or a broken binary (OSError: DLL load failed, ...)
        return None, _one_line(exc)
    version = getattr(module, "__version__", None)
    if version is None:
        try:
            version = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            version = "unknown"
    return str(version), None


def _gpus(torch: Any) -> list[dict[str, Any]]:
    gpus = []
    for i in range(torch.cuda.device_count()):
        props = torch.cuda.get_device_properties(i)
        gpus.append({"device": f"cuda:{i}", "name": props.name, "memory_gb": round(props.total_memory / 2**30, 1)})
    return gpus


def engine_environment() -> dict[str, Any]:
    """The report as a JSON-ready dict; `ok` is True when every required package imports."""
    packages, import_errors = {}, {}
    for name in REQUIRED:
        packages[name], reason = _package_version(name)
        if reason:
            import_errors[name] = reason
    missing = list(import_errors)
    cuda_available, cuda_version, gpus, cuda_error = False, None, [], None
    if "torch" not in import_errors:
        import torch

        cuda_version = torch.version.cuda
        try:
            cuda_available = torch.cuda.is_available()
            gpus = _gpus(torch) if cuda_available else []
        except Exception as exc:  # a broken driver: report it rather than fail the check
            cuda_error = _one_line(exc)
    requirements = ENGINE_DIR.parent / "requirements.txt"
    return {
        "ok": not missing,
        "python": sys.executable,
        "python_version": platform.python_version(),
        "engine": str(ENGINE_DIR),
        "packages": packages,
        "missing": missing,
        "import_errors": import_errors,
        "cuda_available": cuda_available,
        "cuda_version": cuda_version,
        "gpus": gpus,
        "cuda_error": cuda_error,
        "requirements": str(requirements) if requirements.is_file() else None,
        "install_command": install_command(missing, str(requirements) if requirements.is_file() else None),
    }


def install_command(missing: list[str], requirements: str | None) -> str | None:
    """The pip command that installs what is missing into this interpreter; None when nothing is."""
    if not missing:
        return None
    target = f"-r {_quote(requirements)}" if requirements else " ".join(missing)
    return f"{_quote(sys.executable)} -m pip install {target}"


def _quote(path: str) -> str:
    return f'"{path}"' if " " in path else path


def summary(report: dict[str, Any]) -> str:
    """One line for people: `engine OK: torch 2.14.1, CUDA 12.8 (available: no), GPUs: none`."""
    if not report["ok"]:
        return f"engine NOT OK: missing {', '.join(report['missing'])}; install with: {report['install_command']}"
    gpus = ", ".join(f"{g['device']} {g['name']} ({g['memory_gb']} GB)" for g in report["gpus"]) or "none"
    available = "yes" if report["cuda_available"] else "no"
    return (f"engine OK: torch {report['packages']['torch']}, CUDA {report['cuda_version'] or 'none (CPU build)'} "
            f"(available: {available}), GPUs: {gpus}")
