"""Property test: seeded random `rsseg segment` command lines mixing good and bad values of every option, outputs
new and existing, and the invariants that hold whatever the combination:

- the exit code is 0, 2 or 130, and stderr never holds a traceback;
- a failure ends with exactly one `error:` line (and an `error` event under --progress jsonl), and leaves every
  file in the folder, the existing GeoPackage and the input raster included, byte for byte as it was;
- a success keeps every other layer of an existing GeoPackage (unless --overwrite) and the input raster;
- no temporary file or folder is left after the run.
"""
from __future__ import annotations

import random
import shutil
from pathlib import Path

import pytest

from tests.data.make_fixtures import write_scene_geotiff
from tests.hostile.helpers import cli, layers, leftovers, snapshot, write_container

EXAMPLES = 40
# option -> (values that work alone, values that are wrong); a combination of good values may still be refused
POOLS: dict[str, tuple[list[str], list[str]]] = {
    "--tile-size": (["128", "64", "40"], ["32", "0", "-1", "abc", "100000"]),
    "--overlap": (["0", "16", "24"], ["-5", "200", "1.5"]),
    "--score-threshold": (["0.5", "0", "1"], ["-1", "nan", "inf", "x"]),
    "--mask-threshold": (["0.5", "0.3"], ["0", "1", "2"]),
    "--batch-size": (["1", "2"], ["0", "-3"]),
    "--bands": (["1"], ["1,1", "2", "a", "0", ""]),
    "--simplify": (["0", "5"], ["-1", "nan"]),
    "--min-area": (["0", "10"], ["-2"]),
    "--extent": (["500000,3999400,500320,4000000"], ["nan,0,1,1", "1,2,3", "0,0,1,1"]),
    "--value-range": (["0,255"], ["5,5", "0,inf"]),
    "--duplicate-containment": (["0.8", "2"], ["0", "nan"]),
    "--gsd-tolerance": (["0.25"], ["-1"]),
    "--layer": (["ships", "roads"], ["", "gpkg_x", "rtree_y"]),
    "--tile-grid": (["grid.gpkg", "project.gpkg"], ["OUT", "scene.tif"]),
    "--device": (["cpu"], ["gpu", "meta"]),
    "--sar-input": (["db", "amplitude"], ["linear"]),
}
OUTPUTS = (["project.gpkg", "project.gpkg", "new.gpkg", "new.geojson", "new.shp"],
           ["scene.tif", "missing/x.gpkg", "x.txt", "project.gpkg-journal", "." + "n" * 250 + ".gpkg"])


def command(seed: int) -> list[str]:
    """The arguments after `segment scene.tif --model MODEL` of example `seed` (paths relative to the folder):
    a few options, each good or wrong, about one example in three without a wrong value."""
    rng = random.Random(seed)
    hostile = rng.choice([0.0, 0.0, 0.3, 0.6, 1.0])  # the chance that each value is a wrong one
    out = rng.choice(OUTPUTS[rng.random() < hostile / 2])
    args = ["--out", out, "--progress", rng.choice(["none", "jsonl"])]
    for option in rng.sample(sorted(POOLS), rng.randint(1, 4)):
        value = rng.choice(POOLS[option][rng.random() < hostile])
        args += [option, out if value == "OUT" else value]
    if rng.random() < 0.2:
        args.append("--overwrite")
    return args


@pytest.mark.parametrize("seed", range(EXAMPLES), ids=[f"{s}:{' '.join(command(s))[:70]}" for s in range(EXAMPLES)])
def test_invariants_hold_for_any_command_line(capsys, model: Path, work: Path, seed: int) -> None:
    write_scene_geotiff(work / "scene.tif", height=64, width=64,
                        objects=[{"kind": "rect", "box": (10, 10, 30, 40), "class_id": 1}])
    container = write_container(work / "project.gpkg")
    kept = layers(container)
    raster_bytes = (work / "scene.tif").read_bytes()
    args = [str(work / a) if a.endswith((".gpkg", ".geojson", ".shp", ".tif", ".txt", "-journal")) else a
            for a in command(seed)]
    before = snapshot(work)
    run = cli(capsys, "segment", work / "scene.tif", "--model", model, *args)

    assert run.code in (0, 2, 130), (args, run.err)
    assert "Traceback" not in run.err, run.err
    assert leftovers(work) == [], leftovers(work)
    assert (work / "scene.tif").read_bytes() == raster_bytes
    if run.code != 0:
        run.failed(code=run.code)
        assert snapshot(work) == before
        if "jsonl" in args:
            assert run.events and run.events[-1]["event"] == "error"
        return
    out = Path(args[args.index("--out") + 1])
    grid = Path(args[args.index("--tile-grid") + 1]) if "--tile-grid" in args else None
    if "--overwrite" not in args and container in (out, grid):
        ours = (args[args.index("--layer") + 1] if "--layer" in args else "tiny_scene") if out == container else "tiles"
        after = layers(container)
        assert {k: after[k] for k in kept if k.lower() != ours.lower()} == \
            {k: v for k, v in kept.items() if k.lower() != ours.lower()}
    shutil.rmtree(work)
