"""`rsseg segment` with arguments a user can get wrong: each is refused before any work with one line naming
the flag as typed and a fix, exit 2, the output folder untouched; under --progress jsonl an `error` event too."""
from __future__ import annotations

from pathlib import Path

import pytest

from tests.data.make_fixtures import write_scene_geotiff
from tests.hostile.helpers import cli, leftovers, snapshot

# (arguments after `segment RASTER --model M --out OUT`, what the error line must hold)
BAD_ARGUMENTS = [
    (["--bands", "a,b"], ["--bands 'a,b'", "e.g. --bands"]),
    (["--bands", "0"], ["--bands '0'", "counted from 1"]),
    (["--bands", "2"], ["--bands 2", "has bands 1..1", "--bands 1"]),
    (["--bands", "1,1,1"], ["3 band(s)", "expects 1", "--bands 1"]),
    (["--overlap", "-5"], ["--overlap -5", "at least 0"]),
    (["--tile-size", "0"], ["--tile-size 0", "from 32 to 8192"]),
    (["--tile-size", "10"], ["--tile-size 10", "from 32"]),
    (["--tile-size", "32"], ["--tile-size 32", "the model's overlap of 32", "--overlap 8"]),
    (["--overlap", "200"], ["--overlap 200", "the model's tile size of 128", "--overlap 32"]),
    (["--tile-size", "64", "--overlap", "64"], ["--overlap 64", "--tile-size 64", "--overlap 16"]),
    (["--tile-size", "100000"], ["--tile-size 100000", "to 8192"]),
    (["--score-threshold", "-1"], ["--score-threshold -1", "from 0 to 1"]),
    (["--score-threshold", "nan"], ["--score-threshold nan", "from 0 to 1"]),
    (["--score-threshold", "inf"], ["--score-threshold inf"]),
    (["--mask-threshold", "0"], ["--mask-threshold 0", "above 0 and below 1"]),
    (["--mask-threshold", "1.5"], ["--mask-threshold 1.5"]),
    (["--batch-size", "0"], ["--batch-size 0", "e.g. --batch-size 4"]),
    (["--simplify", "-1"], ["--simplify -1", "at least 0"]),
    (["--min-area", "-3"], ["--min-area -3"]),
    (["--duplicate-containment", "nan"], ["--duplicate-containment nan"]),
    (["--gsd-tolerance", "-0.1"], ["--gsd-tolerance -0.1"]),
    (["--input-scale", "0"], ["--input-scale 0", "between 0.1 and 8"]),
    (["--input-scale", "nan"], ["--input-scale nan"]),
    (["--value-range", "5,5"], ["--value-range 5,5", "MIN < MAX"]),
    (["--value-range", "0,inf"], ["--value-range", "e.g. --value-range 0,4000"]),
    (["--extent=nan,0,1,1"], ["--extent 'nan,0,1,1'", "XMIN,YMIN,XMAX,YMAX"]),
    (["--extent", "1,2,3"], ["--extent '1,2,3'", "four"]),
    (["--extent", "10,0,5,1"], ["--extent 10,0,5,1", "XMIN < XMAX"]),
    (["--threads", "-1"], ["--threads -1"]),
    (["--device", "gpu"], ["--device 'gpu'", "auto, cpu, cuda"]),
    (["--device", "meta"], ["--device 'meta'"]),
    (["--tile-size", "abc"], ["--tile-size", "invalid int value", "--help"]),
    (["--sar-input", "linear"], ["--sar-input", "invalid choice", "--help"]),
    (["--layer", ""], ["--layer ''", "e.g. --layer ships"]),
    (["--layer", "gpkg_contents"], ["--layer gpkg_contents", "reserved"]),
]


@pytest.mark.parametrize(("extra", "needles"), BAD_ARGUMENTS, ids=[" ".join(a) for a, _ in BAD_ARGUMENTS])
def test_bad_argument_is_one_line_before_any_work(capsys, model: Path, raster: Path, work: Path, extra: list[str],
                                                 needles: list[str]) -> None:
    out = work / "ships.gpkg"
    run = cli(capsys, "segment", raster, "--model", model, "--out", out, "--progress", "jsonl", *extra)
    line = run.failed(*needles)
    assert run.events[-1] == {"event": "error", "message": line[len("error: "):]}
    assert not [e for e in run.events if e["event"] == "start"]  # refused before the work started
    assert snapshot(work) == {}


def test_missing_required_argument_is_an_error_event(capsys, raster: Path) -> None:
    run = cli(capsys, "segment", raster, "--progress=jsonl")
    run.failed("the following arguments are required: --out", "rsseg segment --help")
    assert run.events[-1]["event"] == "error"


def test_one_band_raster_into_rgb_model_is_told_a_fix_that_works(capsys, model3: Path, raster: Path,
                                                                  work: Path) -> None:
    run = cli(capsys, "segment", raster, "--model", model3, "--out", work / "o.gpkg", "--progress", "none")
    run.failed("1 band(s)", "expects 3", "--bands 1,1,1")
    cli(capsys, "segment", raster, "--model", model3, "--out", work / "o.gpkg", "--progress", "none",
        "--bands", "1,1,1").succeeded()


def test_two_band_raster_into_rgb_model_gets_bands_it_has(capsys, model3: Path, tmp_path: Path, work: Path) -> None:
    raster = tmp_path / "two.tif"
    write_scene_geotiff(raster, height=64, width=64, bands=2, objects=[])
    run = cli(capsys, "segment", raster, "--model", model3, "--out", work / "o.gpkg", "--progress", "none")
    run.failed("2 band(s)", "--bands 1,2,2")


@pytest.mark.parametrize("case", ["missing", "folder", "corrupt", "empty"])
def test_bad_raster_is_named_before_the_model_loads(capsys, model: Path, tmp_path: Path, work: Path,
                                                   case: str) -> None:
    raster = tmp_path / "in.tif"
    if case == "folder":
        raster.mkdir()
    elif case == "corrupt":
        raster.write_bytes(b"II*\x00" + b"\x07" * 500)
    elif case == "empty":
        raster.write_bytes(b"")
    run = cli(capsys, "segment", raster, "--model", model, "--out", work / "o.gpkg", "--progress", "none")
    run.failed(str(raster))
    assert snapshot(work) == {}


@pytest.mark.parametrize(("name", "needles"), [
    ("o.xyz", ["o.xyz", "use .gpkg, .shp or .geojson"]),
    ("missing/o.gpkg", ["missing", "does not exist", "create it"]),
    ("folder.gpkg", ["is a directory"]),
    ("x" * 252 + ".gpkg", ["file name is 257 bytes", "at most 247 bytes"]),
    ("x" * 256 + ".shp", ["file name is 260 bytes"]),
])
def test_bad_output_is_refused_before_work(capsys, model: Path, raster: Path, work: Path, name: str,
                                           needles: list[str]) -> None:
    if name == "folder.gpkg":
        (work / name).mkdir()
    before = snapshot(work)
    run = cli(capsys, "segment", raster, "--model", model, "--out", work / name, "--progress", "none")
    run.failed(*needles)
    assert snapshot(work) == before


def test_long_output_name_that_fits_works(capsys, model: Path, raster: Path, work: Path) -> None:
    """A 250-character Shapefile name: the temporary names stay short, the output is written."""
    out = work / ("s" * 246 + ".shp")
    cli(capsys, "segment", raster, "--model", model, "--out", out, "--progress", "none").succeeded()
    assert out.is_file() and (work / ("s" * 246 + ".dbf")).is_file()
    assert leftovers(work) == []


@pytest.mark.parametrize(("flag", "target"), [("--out", "raster"), ("--tile-grid", "raster"), ("--tile-grid", "out")])
def test_no_output_may_be_an_input_or_another_output(capsys, model: Path, raster: Path, work: Path, flag: str,
                                                     target: str) -> None:
    out = work / "o.gpkg"
    paths = {"raster": raster, "out": out}
    args = ["--out", out] if flag != "--out" else []
    before_raster = raster.read_bytes()
    run = cli(capsys, "segment", raster, "--model", model, *args, flag, paths[target], "--progress", "none")
    run.failed(flag, f"is also an {'input' if target == 'raster' else 'output'}", f"give {flag} another file")
    assert raster.read_bytes() == before_raster and not out.exists()


def test_layer_on_a_single_layer_format_is_refused(capsys, model: Path, raster: Path, work: Path) -> None:
    run = cli(capsys, "segment", raster, "--model", model, "--out", work / "o.shp", "--layer", "ships")
    run.failed("--layer ships", "only a GeoPackage", "drop --layer or write a .gpkg")


def test_unknown_model_is_one_line(capsys, raster: Path, work: Path) -> None:
    cli(capsys, "segment", raster, "--model", "no-such-model", "--out", work / "o.gpkg").failed(
        "no-such-model", "shipped models")


def test_gpu_the_machine_does_not_have(capsys, model: Path, raster: Path, work: Path,
                                       monkeypatch: pytest.MonkeyPatch) -> None:
    import torch

    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 1)
    run = cli(capsys, "segment", raster, "--model", model, "--out", work / "o.gpkg", "--device", "cuda:3")
    run.failed("--device 'cuda:3'", "1 GPU(s), cuda:0 to cuda:0")
    assert snapshot(work) == {}
