"""Tiny stand-in wheels of the engine's required packages, for set-up tests without network.

Each is a real pure-Python wheel (zip + dist-info with a RECORD) that pip installs from a local folder
(`--no-index --find-links`); `torch` answers the engine check (`torch.version.cuda`, `torch.cuda`), so the
set-up ends in "engine OK: torch 0.0.1+standin, ...".
"""
from __future__ import annotations

import base64
import hashlib
import random
import zipfile
from pathlib import Path

from engine.environment import REQUIRED

VERSION = "0.0.1"
TORCH = ('__version__ = "0.0.1+standin"\n'
         'class version:\n    cuda = None\n'
         'class cuda:\n    @staticmethod\n    def is_available():\n        return False\n'
         '    @staticmethod\n    def device_count():\n        return 0\n')


def _digest(data: bytes) -> str:
    return "sha256=" + base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()


def build_wheel(folder: Path, name: str, version: str = VERSION, files: dict[str, str] | None = None,
                padding: int = 0) -> Path:
    """A py3-none-any wheel of package `name` (its modules from `files`; `padding` bytes of incompressible
    data make it bigger) in `folder`."""
    files = dict(files or {f"{name}/__init__.py": f'__version__ = "{version}"\n'})
    if padding:
        files[f"{name}/padding.bin"] = random.Random(name).randbytes(padding)
    dist = f"{name}-{version}.dist-info"
    files[f"{dist}/METADATA"] = f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n"
    files[f"{dist}/WHEEL"] = "Wheel-Version: 1.0\nGenerator: rsseg-tests\nRoot-Is-Purelib: true\nTag: py3-none-any\n"
    record = []
    path = folder / f"{name}-{version}-py3-none-any.whl"
    folder.mkdir(parents=True, exist_ok=True)
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as archive:
        for arcname, text in files.items():
            data = text if isinstance(text, bytes) else text.encode()
            archive.writestr(arcname, data)
            record.append(f"{arcname},{_digest(data)},{len(data)}")
        archive.writestr(f"{dist}/RECORD", "\n".join(record + [f"{dist}/RECORD,,"]) + "\n")
    return path


def standin_requirements(folder: Path, extra: tuple[str, ...] = ()) -> tuple[Path, Path]:
    """(requirements file, wheel folder): one pinned stand-in wheel per package the engine check requires,
    plus `extra` requirement lines (e.g. one no wheel satisfies)."""
    wheels = folder / "wheels"
    for name in REQUIRED:
        build_wheel(wheels, name, files={f"{name}/__init__.py": TORCH} if name == "torch" else None,
                    padding=200_000 if name == "torch" else 0)
    requirements = folder / "requirements.txt"
    requirements.write_text("".join(f"{name}=={VERSION}\n" for name in REQUIRED) + "".join(f"{e}\n" for e in extra))
    return requirements, wheels
