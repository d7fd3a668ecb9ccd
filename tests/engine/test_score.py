"""`rsseg score`: one-to-one matching of hand-made polygons, CRS reprojection, empty layers."""

import json

import fiona
import pytest
from fiona.crs import CRS
from rasterio.warp import transform_geom
from shapely.geometry import box, mapping

from engine.cli import main
from engine.vector.score import best_of_sweep, match_polygons, read_polygons, score_files, sweep

SCHEMA = {"geometry": "Polygon", "properties": {"class_name": "str", "score": "float"}}


def _write(path, features, crs="EPSG:32631") -> str:
    with fiona.open(path, "w", driver="GPKG", schema=SCHEMA, crs=CRS.from_user_input(crs)) as dst:
        for geom, name, score in features:
            dst.write({"geometry": geom, "properties": {"class_name": name, "score": score}})
    return str(path)


X0, Y0 = 500000.0, 5700000.0
TRUTH = [(mapping(box(X0 + 10 * i, Y0, X0 + 10 * i + 8, Y0 + 8)), "ship", 1.0) for i in range(4)]
TRUTH.append((mapping(box(X0, Y0 + 50, X0 + 20, Y0 + 70)), "tank", 1.0))


def test_known_matching(tmp_path) -> None:
    truth = _write(tmp_path / "truth.gpkg", TRUTH)
    pred = _write(tmp_path / "pred.gpkg", [
        (mapping(box(X0, Y0, X0 + 8, Y0 + 8)), "ship", 0.9),  # exact hit on ship 0
        (mapping(box(X0 + 1, Y0, X0 + 9, Y0 + 8)), "ship", 0.8),  # duplicate of ship 0: a false alarm
        (mapping(box(X0 + 11, Y0, X0 + 19, Y0 + 8)), "ship", 0.95),  # IoU 7/9 with ship 1: hit
        (mapping(box(X0 + 24, Y0, X0 + 32, Y0 + 8)), "ship", 0.7),  # IoU 4/12 with ship 2: below 0.5
        (mapping(box(X0, Y0 + 50, X0 + 20, Y0 + 70)), "ship", 0.6),  # right place, wrong class
        (mapping(box(X0 + 500, Y0, X0 + 510, Y0 + 10)), "tank", 0.5),  # nothing there
    ])
    score = score_files(pred, truth, iou=0.5)
    overall = score.to_dict()["overall"]
    assert (overall["tp"], overall["fp"], overall["fn"]) == (2, 4, 3)
    assert overall["precision"] == pytest.approx(2 / 6, abs=1e-4) and overall["recall"] == pytest.approx(2 / 5)
    assert overall["f1"] == pytest.approx(2 * 2 / (2 * 2 + 4 + 3), abs=1e-4)
    per_class = score.to_dict()["per_class"]
    assert (per_class["ship"]["tp"], per_class["ship"]["fp"], per_class["ship"]["fn"]) == (2, 3, 2)
    assert (per_class["tank"]["tp"], per_class["tank"]["fp"], per_class["tank"]["fn"]) == (0, 1, 1)
    assert sorted((p, r) for p, r, _ in score.matches) == [(0, 0), (2, 1)]  # the 0.9 one took ship 0 first
    # a lower IoU bar turns the 4/12 overlap into a hit
    assert score_files(pred, truth, iou=0.3).by_class["all"].tp == 3


def test_prediction_in_another_crs_is_reprojected(tmp_path) -> None:
    truth = _write(tmp_path / "truth.gpkg", TRUTH)
    in_degrees = [(transform_geom("EPSG:32631", "EPSG:4326", g), n, s) for g, n, s in TRUTH]
    pred = _write(tmp_path / "pred.gpkg", in_degrees, crs="EPSG:4326")
    assert read_polygons(pred).crs != read_polygons(truth).crs
    score = score_files(pred, truth)
    assert score.by_class["all"].tp == 5 and score.by_class["all"].fp == 0
    assert min(i for _, _, i in score.matches) > 0.99


def test_empty_prediction_layer_and_cli_json(tmp_path, capsys) -> None:
    truth = _write(tmp_path / "truth.gpkg", TRUTH)
    pred = _write(tmp_path / "empty.gpkg", [])
    out = tmp_path / "score.json"
    assert main(["score", pred, truth, "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "recall" in printed and "all" in printed
    data = json.loads(out.read_text())
    assert data["overall"] == {"tp": 0, "fp": 0, "fn": 5, "precision": None, "recall": 0.0, "f1": 0.0}
    assert main(["score", str(tmp_path / "missing.gpkg"), truth]) == 2


def test_layers_without_a_class_field_score_as_one_class(tmp_path) -> None:
    truth = read_polygons(_write(tmp_path / "truth.gpkg", TRUTH[:2]))
    pred = read_polygons(_write(tmp_path / "pred.gpkg", [(g, "", 1.0) for g, _, _ in TRUTH[:2]]))
    assert match_polygons(pred, truth).by_class["all"].tp == 2


def test_misses_and_false_alarms_layers(tmp_path, capsys) -> None:
    """--misses and --false-alarms: the unmatched polygons, their class, score, best IoU and source feature id."""
    truth = _write(tmp_path / "truth.gpkg", TRUTH)
    pred = _write(tmp_path / "pred.gpkg", [
        (mapping(box(X0, Y0, X0 + 8, Y0 + 8)), "ship", 0.9),  # hit on ship 0
        (mapping(box(X0 + 24, Y0, X0 + 32, Y0 + 8)), "ship", 0.7),  # IoU 4/12 with ship 2: a false alarm
        (mapping(box(X0 + 500, Y0, X0 + 510, Y0 + 10)), "tank", 0.5),  # nothing there
    ])
    misses, alarms = tmp_path / "misses.gpkg", tmp_path / "alarms.geojson"
    capsys.readouterr()
    assert main(["score", pred, truth, "--misses", str(misses), "--false-alarms", str(alarms),
                 "--progress", "jsonl"]) == 0
    done = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert done["event"] == "done" and done["overall"]["tp"] == 1
    assert done["misses"] == str(misses) and done["false_alarms"] == str(alarms)
    with fiona.open(misses) as layer:
        assert layer.crs.to_epsg() == 32631
        missed = sorted((f.properties["source_fid"], f.properties["class_name"], f.properties["best_iou"],
                         f.properties["score"]) for f in layer)
    # reference features 2..5 (fids from 1): ships 1-3 and the tank; the 0.7 prediction overlaps ships 2 and 3
    assert missed == [(2, "ship", 0.0, None), (3, "ship", pytest.approx(4 / 12, abs=1e-3), None),
                      (4, "ship", pytest.approx(16 / 112, abs=1e-3), None), (5, "tank", 0.0, None)]
    with fiona.open(alarms) as layer:
        alarmed = sorted((f.properties["class_name"], f.properties["score"], f.properties["best_iou"]) for f in layer)
    assert alarmed == [("ship", pytest.approx(0.7), pytest.approx(4 / 12, abs=1e-3)), ("tank", 0.5, 0.0)]
    assert main(["score", pred, truth, "--misses", str(tmp_path / "nowhere" / "m.gpkg")]) == 2


def test_reference_class_field(tmp_path) -> None:
    schema = {"geometry": "Polygon", "properties": {"kind": "str"}}
    truth = tmp_path / "truth.gpkg"
    with fiona.open(truth, "w", driver="GPKG", schema=schema, crs=CRS.from_user_input("EPSG:32631")) as dst:
        for geom, name, _ in TRUTH:
            dst.write({"geometry": geom, "properties": {"kind": name}})
    pred = _write(tmp_path / "pred.gpkg", TRUTH)
    assert score_files(pred, truth, reference_class_field="kind").by_class["tank"].tp == 1
    assert "tank" not in score_files(pred, truth).by_class  # without it the reference has no classes: one class


def test_min_score_and_sweep_over_score_thresholds(tmp_path, capsys) -> None:
    truth = _write(tmp_path / "truth.gpkg", TRUTH[:4])
    pred = _write(tmp_path / "pred.gpkg", [
        (mapping(box(X0, Y0, X0 + 8, Y0 + 8)), "ship", 0.9),  # hit on ship 0
        (mapping(box(X0 + 500, Y0, X0 + 508, Y0 + 8)), "ship", 0.7),  # false alarm
        (mapping(box(X0 + 10, Y0, X0 + 18, Y0 + 8)), "ship", 0.4),  # hit on ship 1
        (mapping(box(X0 + 20, Y0, X0 + 28, Y0 + 8)), "ship", 0.12),  # hit on ship 2
        (mapping(box(X0 + 600, Y0, X0 + 608, Y0 + 8)), "ship", 0.11),  # false alarm
    ])
    rows = dict(sweep(read_polygons(pred), read_polygons(truth)))
    assert (rows[0.1].tp, rows[0.1].fp, rows[0.1].fn) == (3, 2, 1)
    assert (rows[0.15].tp, rows[0.15].fp, rows[0.15].fn) == (2, 1, 2)
    assert (rows[0.75].tp, rows[0.75].fp, rows[0.75].fn) == (1, 0, 3)
    assert rows[0.95].tp == 0 and rows[0.95].f1 == 0.0
    # F1: 6/9 at 0.05-0.10, 4/7 at 0.15-0.40, 2/5 at 0.45-0.70 -> the best is the lowest threshold of the top
    assert best_of_sweep(list(rows.items()))[0] == 0.05

    out = tmp_path / "score.json"
    assert main(["score", pred, truth, "--min-score", "0.3", "--sweep", "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    data = json.loads(out.read_text())
    assert data["overall"]["tp"] == 2 and data["overall"]["fp"] == 1 and data["min_score"] == 0.3
    # the sweep runs on what --min-score kept: below 0.3 nothing changes, and the table says so
    assert data["sweep_best"]["threshold"] == 0.05 and data["sweep_best"]["f1"] == pytest.approx(4 / 7, abs=1e-4)
    assert [r["tp"] for r in data["sweep"]][:3] == [2, 2, 2]
    assert "<- best F1" in printed and "lowest prediction score is 0.40" in printed
    assert main(["score", pred, truth, "--min-score", "1.5"]) == 2
