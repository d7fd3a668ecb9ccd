"""`rsseg score` with files and numbers a user gets wrong: one line naming the input and the fix, exit 2, and the
two layers it reads never written."""
from __future__ import annotations

from pathlib import Path

import fiona
import pytest
from shapely.geometry import box, mapping

from tests.hostile.helpers import cli, snapshot, write_container


@pytest.fixture
def layers_pair(work: Path) -> tuple[Path, Path]:
    """A prediction and a reference GeoJSON of two polygons each, one pair matching."""
    paths = []
    for name, shift in (("pred", 0.0), ("ref", 0.5)):
        path = work / f"{name}.geojson"
        with fiona.open(path, "w", driver="GeoJSON", crs="EPSG:32633",
                        schema={"geometry": "Polygon", "properties": {"class_name": "str", "score": "float"}}) as dst:
            for i, geom in enumerate((box(0, 0, 10, 10), box(50 + shift * 40, 0, 60 + shift * 40, 10))):
                dst.write({"geometry": mapping(geom), "properties": {"class_name": "ship", "score": 0.9 - i / 10}})
        paths.append(path)
    return paths[0], paths[1]


def test_score_works(capsys, layers_pair: tuple[Path, Path], work: Path) -> None:
    run = cli(capsys, "score", *layers_pair, "--out", work / "score.json")
    run.succeeded()
    assert "ship" in run.out and (work / "score.json").is_file()


@pytest.mark.parametrize(("iou", "needles"), [("0", ["--iou 0", "above 0 and at most 1"]), ("nan", ["--iou nan"]),
                                              ("1.5", ["--iou 1.5", "at most 1"]), ("x", ["--iou", "invalid float"])])
def test_bad_iou(capsys, layers_pair: tuple[Path, Path], iou: str, needles: list[str]) -> None:
    cli(capsys, "score", *layers_pair, "--iou", iou).failed(*needles)


@pytest.mark.parametrize("case", ["missing", "garbage", "folder", "unknown layer"])
def test_unreadable_layer(capsys, layers_pair: tuple[Path, Path], work: Path, case: str) -> None:
    pred, ref = layers_pair
    extra: list[str] = []
    if case == "missing":
        pred = work / "nope.gpkg"
    elif case == "garbage":
        pred = work / "garbage.gpkg"
        pred.write_bytes(b"\x00\x01 not a vector file" * 10)
    elif case == "folder":
        pred = work / "dir.geojson"
        pred.mkdir()
    else:
        pred = write_container(work / "project.gpkg")
        extra = ["--prediction-layer", "ships"]
    cli(capsys, "score", pred, ref, *extra).failed(str(pred))


@pytest.mark.parametrize("target", ["prediction", "reference"])
def test_out_may_not_be_an_input(capsys, layers_pair: tuple[Path, Path], work: Path, target: str) -> None:
    before = snapshot(work)
    path = layers_pair[0] if target == "prediction" else layers_pair[1]
    cli(capsys, "score", *layers_pair, "--out", path).failed("--out", f"is also an input ({target}")
    assert snapshot(work) == before


def test_out_is_a_folder(capsys, layers_pair: tuple[Path, Path], work: Path) -> None:
    (work / "scores").mkdir()
    cli(capsys, "score", *layers_pair, "--out", work / "scores").failed("--out", "is a folder")
