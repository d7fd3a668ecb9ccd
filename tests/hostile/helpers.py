"""Helpers of the hostile-input suite: the tiny model, in-process CLI runs and what a run may leave behind."""
from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path

import fiona
import pytest

from engine.cli import main
from engine.spec import ModelSpec, Normalisation, classes_from_names
from tests.data.tiny_model import TINY, save_model

FAST = {**TINY, "rpn_pre_nms_top_n_test": 30, "rpn_post_nms_top_n_test": 10, "detections_per_img": 5}


def write_model(path: Path, bands: int = 1) -> Path:
    """A tiny random "ship" model of `bands` inputs: tile 128, overlap 32, score threshold 0, at most 5 objects."""
    names = ("amplitude",) if bands == 1 else tuple(f"b{i + 1}" for i in range(bands))
    spec = ModelSpec(name="tiny" if bands == 1 else f"tiny{bands}", architecture="mask_rcnn", config=FAST,
                     classes=classes_from_names(["ship"]), bands=bands, band_names=names,
                     normalisation=Normalisation(mean=(0.5,), std=(0.25,)), gsd_m=10.0, tile_size=128, overlap=32,
                     score_threshold=0.0)
    return save_model(path, spec)


@dataclass
class Run:
    """What one `rsseg` call did: exit code, stdout and stderr."""

    code: int
    out: str
    err: str

    @property
    def events(self) -> list[dict]:
        return [json.loads(line) for line in self.out.splitlines() if line.startswith("{")]

    def failed(self, *needles: str, code: int = 2) -> str:
        """Assert a clean failure: `code`, no traceback, exactly one `error:` line, the last one, holding every
        needle (the input and the fix). Returns that line."""
        lines = [line for line in self.err.splitlines() if line.strip()]
        assert self.code == code, (self.code, self.err)
        assert "Traceback" not in self.err, self.err
        errors = [line for line in lines if line.startswith("error:")]
        assert len(errors) == 1 and lines[-1] == errors[0], lines
        for needle in needles:
            assert needle in errors[0], (needle, errors[0])
        return errors[0]

    def succeeded(self) -> None:
        assert self.code == 0, self.err
        assert "Traceback" not in self.err and not any(line.startswith("error:") for line in self.err.splitlines())


def cli(capsys: pytest.CaptureFixture, *argv: object) -> Run:
    """Run `rsseg ARGV` in this process."""
    capsys.readouterr()
    code = main([str(a) for a in argv])
    captured = capsys.readouterr()
    return Run(code, captured.out, captured.err)


def snapshot(folder: Path) -> dict[str, str]:
    """Every file below `folder` (hidden ones included) -> its SHA-256: equal snapshots, nothing changed."""
    return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest() if p.is_file() else "dir"
            for p in sorted(folder.rglob("*"))}


def leftovers(folder: Path) -> list[str]:
    """Temporary files or folders of ours below `folder` (none may outlive a run)."""
    return [str(p) for p in folder.rglob("*") if p.name.startswith((".rsseg", ".tmp")) or p.name.endswith(
        (".partial", ".tmp", "-journal"))]


def layers(path: Path) -> dict[str, list[tuple]]:
    """Each layer of a vector file -> its features as (geometry WKT-ish, attributes) tuples, for equality."""
    result = {}
    for name in fiona.listlayers(path):
        with fiona.open(path, layer=name) as src:
            result[name] = [(json.dumps(dict(f.geometry), sort_keys=True, default=str),
                             json.dumps(dict(f.properties), sort_keys=True, default=str)) for f in src]
    return result


def write_container(path: Path) -> Path:
    """A GeoPackage as a QGIS user keeps it: two polygon layers ("roads", "fields") of a few features each."""
    from shapely.geometry import box, mapping

    schema = {"geometry": "Polygon", "properties": {"name": "str"}}
    for layer, n in (("roads", 2), ("fields", 3)):
        with fiona.open(path, "w", driver="GPKG", layer=layer, schema=schema, crs="EPSG:32633") as dst:
            for i in range(n):
                geom = box(500000 + 10 * i, 3999000, 500005 + 10 * i, 3999005)
                dst.write({"geometry": mapping(geom), "properties": {"name": f"{layer}{i}"}})
    return path
