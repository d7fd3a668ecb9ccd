"""The benchmark's ground truth: the synthetic scene's ships, and matching detections to them."""

import numpy as np
import rasterio

from benchmarks.make_large_scene import match_to_ships, scene_ships, write_synthetic_scene


def test_scene_ships_are_the_bright_ellipses_of_the_scene(tmp_path) -> None:
    path = write_synthetic_scene(tmp_path / "scene.tif", 900, seed=3)
    ships = scene_ships(900, seed=3)
    assert len(ships) == 900 * 900 // 90000
    with rasterio.open(path) as ds:
        pixels = ds.read(1)
    centre_values = pixels[ships[:, 0].astype(int), ships[:, 1].astype(int)]
    assert (centre_values >= 170).all()  # ships are drawn at 170-250
    assert np.median(pixels) < 60  # clutter (gamma, mean 40) elsewhere


def test_swath_keeps_only_ships_inside_the_strip() -> None:
    everything, inside = scene_ships(3000, seed=1), scene_ships(3000, seed=1, swath=True)
    assert 0 < len(inside) < len(everything)


def test_matching_counts_hits_duplicates_and_misses() -> None:
    ships = np.array([[100.0, 100.0, 20.0, 5.0, 0.0], [300.0, 300.0, 10.0, 3.0, 0.0], [500.0, 50.0, 8.0, 2.0, 0.0]])
    centres = np.array([[102.0, 98.0],  # ship 0
                        [101.0, 101.0],  # ship 0 again, weaker: a duplicate
                        [300.0, 315.0],  # 15 px from ship 1, beyond its half length of 10
                        [499.0, 52.0]])  # ship 2
    got = match_to_ships(centres, np.array([0.9, 0.6, 0.8, 0.7]), ships)
    assert (got["true"], got["false"], got["missed"]) == (2, 2, 1)
    assert got["recall"] == 2 / 3 and got["precision"] == 0.5
    assert match_to_ships(np.zeros((0, 2)), np.zeros(0), ships)["recall"] == 0.0
    exact = match_to_ships(ships[:, :2], np.ones(3), ships)
    assert exact["recall"] == exact["precision"] == 1.0
