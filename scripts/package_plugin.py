"""Build the installable QGIS plugin zip: rs_qgis_plugin/ + metadata.txt + LICENSE + the bundled engine.

Usage: python -m scripts.package_plugin [--out out/rs_qgis_plugin-<version>.zip]
The zip holds one top-level folder `rs_qgis_plugin/` (what "Install from ZIP" expects); the engine's
source, shipped models and requirements.txt go to `rs_qgis_plugin/engine_bundle/`, so the plugin only
needs a Python with the engine's requirements (the dock's "Check engine" says what is missing).
"""
from __future__ import annotations

import argparse
import configparser
import os
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PLUGIN = "rs_qgis_plugin"
SKIP_DIRS = {"__pycache__", ".pytest_cache", "engine_bundle"}
SKIP_SUFFIXES = {".pyc", ".pyo"}


def plugin_version() -> str:
    parser = configparser.ConfigParser()
    parser.read(ROOT / "metadata.txt", encoding="utf-8")
    return parser["general"]["version"]


def _files(folder: Path):
    for dirpath, dirnames, filenames in os.walk(folder):
        dirnames[:] = sorted(d for d in dirnames if d not in SKIP_DIRS)
        for name in sorted(filenames):
            path = Path(dirpath) / name
            if path.suffix not in SKIP_SUFFIXES:
                yield path


def build_zip(out: Path) -> Path:
    """Write the zip atomically (temp file + rename) and return its path."""
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_suffix(".zip.tmp")
    entries: list[tuple[Path, str]] = [(p, f"{PLUGIN}/{p.relative_to(ROOT / PLUGIN).as_posix()}")
                                       for p in _files(ROOT / PLUGIN) if p.name != "metadata.txt"]
    entries += [(ROOT / name, f"{PLUGIN}/{name}") for name in ("metadata.txt", "LICENSE")]
    entries += [(p, f"{PLUGIN}/engine_bundle/{p.relative_to(ROOT).as_posix()}") for p in _files(ROOT / "engine")]
    entries += [(ROOT / name, f"{PLUGIN}/engine_bundle/{name}") for name in ("requirements.txt", "pyproject.toml")]
    with zipfile.ZipFile(tmp, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        for path, arcname in entries:
            archive.write(path, arcname)
    tmp.replace(out)
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=ROOT / "out" / f"{PLUGIN}-{plugin_version()}.zip")
    args = parser.parse_args(argv)
    out = build_zip(args.out)
    print(f"{out} ({out.stat().st_size / 1e6:.1f} MB)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
