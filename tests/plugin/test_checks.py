"""Pure plugin logic, no QGIS objects: model titles and sensors, mismatch warnings, bands, engine messages,
status lines and result summaries."""
from __future__ import annotations

import pytest

from rs_qgis_plugin.checks import (
    RasterFacts,
    band_problem,
    default_band_mapping,
    guess_sensor,
    mismatch_warnings,
    parse_bands,
    pixel_size_m,
    translate_flags,
)
from rs_qgis_plugin.models import ModelInfo, build_title, parse_listing
from rs_qgis_plugin.progress import LOADING, ProgressTracker, ResultSummary, about_left, device_text, wrappable

SAR_SPEC = {"name": "ssdd-ship-maskrcnn", "task": "instance", "architecture": "mask_rcnn", "bands": 1,
            "band_names": ["amplitude"], "classes": [{"id": 1, "name": "ship"}], "gsd_m": 3.0,
            "gsd_range_m": [1.0, 15.0], "normalisation": {"sar": "amplitude"}, "tile_size": 512, "overlap": 128,
            "score_threshold": 0.5, "title": ""}
RGB_SPEC = {"name": "nwpu-vhr10-maskrcnn", "task": "instance", "architecture": "mask_rcnn", "bands": 3,
            "band_names": ["red", "green", "blue"], "gsd_m": 0.5, "normalisation": {"sar": "none"},
            "classes": [{"id": i, "name": n} for i, n in enumerate(
                ["airplane", "ship", "storage_tank", "baseball_diamond", "harbor"], 1)]}
SAR = ModelInfo.from_listing({"name": "ssdd-ship-maskrcnn", "default": True, "spec": SAR_SPEC, "metrics": {}})
RGB = ModelInfo.from_listing({"name": "nwpu-vhr10-maskrcnn", "default": False, "spec": RGB_SPEC})


def test_titles_and_sensors_come_from_the_listing_or_are_built_from_the_spec() -> None:
    assert (SAR.title, SAR.sensor) == ("Ships in SAR images, 1 band, ~3 m", "sar")
    assert (RGB.title, RGB.sensor) == ("5 object classes in optical images, 3 bands, ~0.5 m", "optical")
    given = ModelInfo.from_listing({"name": "x", "spec": SAR_SPEC, "title": "Ships in SAR images (SSDD), 1 band, "
                                    "~3 m", "sensor": "optical"})
    assert (given.title, given.sensor) == ("Ships in SAR images (SSDD), 1 band, ~3 m", "optical")
    assert build_title({"classes": [{"name": "ship"}, {"name": "tank"}], "bands": 2, "gsd_m": 10,
                        "normalisation": {"sar": "db"}}) == "Ships and tanks in SAR images, 2 bands, ~10 m"
    assert SAR.title in SAR.summary() and "id: ssdd-ship-maskrcnn" in SAR.summary()


def test_listing_puts_the_default_model_first_and_skips_broken_entries() -> None:
    models = parse_listing([{"name": "b", "spec": RGB_SPEC}, {"name": "broken"}, "junk",
                            {"name": "a", "default": True, "spec": SAR_SPEC}])
    assert [m.name for m in models] == ["a", "b"] and models[0].default
    assert parse_listing({"not": "a list"}) == []


@pytest.mark.parametrize(("names", "dtype", "count", "sensor"), [
    (("Band 1: VV", "Band 2: VH"), "Float32", 2, "sar"),
    (("Band 1: Red", "Band 2: Green", "Band 3: Blue"), "Byte", 3, "optical"),
    (("Band 1",), "CFloat32", 1, "sar"),
    (("Band 1", "Band 2", "Band 3", "Band 4"), "UInt16", 4, "optical"),
    (("Band 1",), "Byte", 1, "sar"),
])
def test_sensor_is_guessed_from_band_names_pixel_type_and_count(names, dtype, count, sensor) -> None:
    assert guess_sensor(RasterFacts("x", count, names, dtype))[0] == sensor


def test_optical_model_on_a_sar_scene_warns_about_sensor_and_colours() -> None:
    """The issue's case: the RGB model fed band 1 of a SAR scene into R, G and B, with no warning."""
    sar_scene = RasterFacts("sar_scene", 1, ("Band 1: amplitude",), "UInt16", 3.0)
    found = mismatch_warnings(RGB, sar_scene, bands=(1, 1, 1))
    assert len(found) == 3  # sensor, colours, pixel size
    assert "looks like a SAR image" in found[0] and "this model is for optical images" in found[0]
    assert "colours are lost" in found[1]
    assert "3 m pixels" in found[2] and "~0.5 m" in found[2]
    assert mismatch_warnings(SAR, sar_scene) == []


def test_sar_model_on_an_rgb_layer_and_pixel_size_out_of_range() -> None:
    rgb = RasterFacts("rgb", 3, ("Band 1: Red", "Band 2: Green", "Band 3: Blue"), "Byte", 3.0)
    assert "looks like an optical image" in mismatch_warnings(SAR, rgb, bands=(1,))[0]
    coarse = RasterFacts("s1", 1, ("Band 1: VV",), "Float32", 40.0)
    (warning,) = mismatch_warnings(SAR, coarse)
    assert "40 m pixels" in warning and "13x coarser" in warning and "(takes 1-15 m)" in warning
    fine = RasterFacts("s1", 1, ("Band 1: VV",), "Float32", 0.25)
    assert "shrinks the layer 12x" in mismatch_warnings(SAR, fine)[0]
    assert mismatch_warnings(SAR, RasterFacts("s1", 1, ("Band 1: VV",), "Float32", None)) == []


def test_pixel_size_in_metres_for_projected_and_geographic_rasters() -> None:
    assert pixel_size_m(10.0, 10.0, 1.0) == pytest.approx(10.0)
    assert pixel_size_m(10.0, 10.0, 0.3048) == pytest.approx(3.048)
    at_60n = pixel_size_m(0.0001, 0.0001, None, latitude=60.0)  # 11.1 m north, 5.6 m east
    assert at_60n == pytest.approx((11.132 * 5.566) ** 0.5, rel=1e-3)
    assert pixel_size_m(0.0001, 0.0001, None) is None and pixel_size_m(0, 1, 1.0) is None


def test_bands_may_repeat_and_errors_name_the_parameter() -> None:
    assert parse_bands("1,1,1", "Bands") == (1, 1, 1)
    assert parse_bands(" 3 2 1 ", "Bands") == (3, 2, 1)
    assert parse_bands([2, 1], "Bands") == (2, 1) and parse_bands("", "Bands") is None
    with pytest.raises(ValueError, match=r"^Bands: '1,x' is not a list of band numbers.*1,1,1"):
        parse_bands("1,x", "Bands")
    assert band_problem((1, 1, 1), 1, RGB, "sar", "Bands") is None
    problem = band_problem(None, 1, RGB, "sar", "Bands")
    assert problem.startswith("Bands: layer 'sar' has 1 band") and "e.g. 1,1,1" in problem and "--" not in problem
    assert "band 4 does not exist" in band_problem((1, 2, 4), 3, RGB, "rgb", "Bands")
    assert "2 band(s) given" in band_problem((1, 2), 3, RGB, "rgb", "Bands")
    assert band_problem(None, 1, SAR, "sar", "Bands") is None


def test_default_band_mapping() -> None:
    assert default_band_mapping(3, 1) == [1, 1, 1]
    assert default_band_mapping(1, 3) == [1]
    assert default_band_mapping(3, 2) == [1, 2, 1]
    assert default_band_mapping(3, 0) == []


def test_engine_flags_become_parameter_names() -> None:
    names = {"bands": "Bands", "overlap": "Tile overlap"}
    message = ("raster 's.tif': 1 band(s) selected, model 'm' expects 3 (red, green, blue); choose bands with "
               "--bands, e.g. --bands 1,2,3")
    assert translate_flags(message, names).endswith('choose bands with "Bands", e.g. "Bands" = 1,2,3')
    assert translate_flags("--overlap 600: must be smaller", names) == '"Tile overlap" = 600: must be smaller'
    assert translate_flags("--value-range 0,1: bad", names) == "--value-range 0,1: bad"


def test_status_line_counts_tiles_and_estimates_time_left() -> None:
    tracker = ProgressTracker()
    assert tracker.status == LOADING and tracker.percent == 0
    assert tracker.update({"event": "start", "tiles": 121, "device": "cpu"}, now=100.0)
    assert tracker.status == "Tile 0/121"
    assert tracker.update({"event": "progress", "done": 1, "total": 121, "percent": 0.8}, now=101.0)
    assert tracker.status == "Tile 1/121"  # too early for an estimate
    tracker.update({"event": "progress", "done": 37, "total": 121, "percent": 30.6}, now=160.0)
    assert tracker.status == "Tile 37/121 · about 2 min left" and tracker.percent == pytest.approx(30.6)
    tracker.update({"event": "done"}, now=300.0)
    assert tracker.percent == 100.0
    assert not tracker.update({"event": "warning", "message": "x"}, now=301.0)
    assert about_left(42) == "about 40 s left" and about_left(3900) == "about 1 h 5 min left"


def test_device_is_named_in_words() -> None:
    assert device_text("cpu") == "CPU"
    assert device_text("cuda:0", {"cuda:0": "NVIDIA H200"}) == "GPU cuda:0 (NVIDIA H200)"
    assert device_text("cuda", {"cuda:0": "NVIDIA H200"}) == "GPU cuda (NVIDIA H200)"
    assert device_text("cuda:1", {"cuda:0": "A"}) == "GPU cuda:1"


def test_result_summary_counts_classes_and_score_range() -> None:
    summary = ResultSummary.from_values(["ship", "tank", "ship"], [0.9, 0.51, 0.98], seconds=9.5)
    assert summary.features == 3 and summary.class_counts == (("ship", 2), ("tank", 1))
    assert summary.text() == "3 objects: 2 ship, 1 tank\nscores 0.51–0.98 · 9.5 s"
    assert ResultSummary.from_values([], []).text() == "No objects found"


def test_long_words_become_wrappable_without_changing_the_text() -> None:
    path = "'/home/analyst/miniconda3/envs/remote_sensing_segmentation_engine_2024/bin/python3.11'"
    text = f"engine interpreter {path} not found"
    wrapped = wrappable(text)
    assert wrapped.replace("\u200b", "") == text
    assert max(len(part) for word in wrapped.split() for part in word.split("\u200b")) <= 18
    assert wrappable("short words stay as they are") == "short words stay as they are"
