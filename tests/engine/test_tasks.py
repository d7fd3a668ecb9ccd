"""engine.tasks: one interface per task (datasets, evaluator, validation score, output conversion, writer
stage), the only place that tells instance from semantic; and the engine's import graph has no cycles."""
from __future__ import annotations

import ast
import re
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import fiona
import numpy as np
import pytest
import torch
from shapely.geometry import shape

from engine.data.class_maps import CocoSemanticDataset, class_map
from engine.data.coco import CocoInstanceDataset
from engine.errors import UserError
from engine.evaluation.coco_eval import CocoEvaluator
from engine.evaluation.loop import EvalInput
from engine.evaluation.semantic_eval import SemanticEvaluator
from engine.models import MODELS, resolve_config
from engine.raster.source import RasterSource
from engine.spec import ClassInfo, ModelSpec, Normalisation, classes_from_names
from engine.tasks import TASKS, task_of
from engine.tasks.instance import InstanceStage
from engine.tasks.semantic import SemanticStage
from engine.tasks.stage import FeatureSink, RowStreamingStage, TileBatch, WriterSettings
from engine.tiling import Tile, tile_grid
from engine.training.spec_builder import training_spec
from engine.vector import VectorWriter
from engine.zoo import describe_architectures, model_title, sensor_of
from tests.data.make_fixtures import write_scene_geotiff
from tests.engine.recording_progress import RecordingProgress

ROOT = Path(__file__).resolve().parents[2]
ENGINE = ROOT / "engine"
SPEC = ModelSpec(name="m", architecture="mask_rcnn", classes=classes_from_names(["ship"]), bands=1)


def test_tasks_cover_every_architecture_and_unknown_task_is_a_user_error() -> None:
    assert set(TASKS) == {"instance", "semantic"}
    assert {a.task for a in MODELS.values()} == set(TASKS)
    for name, task in TASKS.items():
        assert task.name == name and task_of(SPEC.with_updates(task=name)) is task
    assert (TASKS["instance"].score_name, TASKS["semantic"].score_name) == ("mask AP", "mIoU")
    with pytest.raises(UserError, match=r"model 'm': unknown task 'panoptic'.*instance, semantic"):
        task_of(SPEC.with_updates(task="panoptic"))


def test_datasets_and_writer_stages_per_task(coco_gray) -> None:
    instance, semantic = TASKS["instance"], TASKS["semantic"]
    images = str(coco_gray.parent)
    train = semantic.train_dataset(SPEC, str(coco_gray), images, None)
    assert isinstance(train, CocoSemanticDataset) and "semantic" in train[0][1]
    train = instance.train_dataset(SPEC, str(coco_gray), images, None)
    assert type(train) is CocoInstanceDataset and "semantic" not in train[0][1]
    for task in TASKS.values():  # evaluation reads plain instance truth, the spec's bands by default
        val = task.eval_dataset(SPEC, str(coco_gray), images)
        assert type(val) is CocoInstanceDataset and val.bands == [1]
    assert isinstance(instance.evaluator(val), CocoEvaluator) and isinstance(semantic.evaluator(val), SemanticEvaluator)
    assert instance.default_score_threshold(SPEC.with_updates(score_threshold=0.3)) == 0.3
    assert semantic.default_score_threshold(SPEC) is None  # argmax regions: no cut unless asked


BLOCK = (80, 20, 110, 60)  # rows 80..110, columns 20..60 of the 256 x 256 fixture scene (10 m pixels)


def _outputs(task: str, tile: Tile, spec: ModelSpec) -> dict[str, np.ndarray]:
    """What a model sees on `tile` of a scene holding one "ship" block: instance masks or class probabilities."""
    inside = np.zeros((tile.height, tile.width), bool)
    r0, c0, r1, c1 = BLOCK
    inside[max(r0 - tile.row_off, 0):max(r1 - tile.row_off, 0), max(c0 - tile.col_off, 0):max(c1 - tile.col_off, 0)] = 1
    if task == "semantic":
        probs = np.zeros((spec.num_classes + 1, tile.height, tile.width), np.float32)
        probs[1], probs[0] = np.where(inside, 0.8, 0.1), np.where(inside, 0.2, 0.9)
        return {"probs": probs}
    n = int(inside.any())
    return {"boxes": np.zeros((n, 4), np.float32), "labels": np.ones(n, np.int64),
            "scores": np.full(n, 0.9, np.float32), "masks": inside[None].astype(np.float32)[:n]}


@pytest.mark.parametrize("task_name, stage_type", [("instance", InstanceStage), ("semantic", SemanticStage)])
def test_writer_stages_share_the_row_streaming_bookkeeping(tmp_path: Path, task_name: str, stage_type) -> None:
    """Batches in row-major order: a feature is written as soon as the frontier passes it, once; nodata tiles
    get QA records, progress is reported per batch and features are counted per class."""
    raster = tmp_path / "scene.tif"
    write_scene_geotiff(raster, objects=[])
    spec = SPEC.with_updates(task=task_name, gsd_m=10.0)
    tiles = tile_grid(256, 256, 128, 32)  # 3 x 3 tiles, window rows 0, 96 and 128
    progress = RecordingProgress()
    settings = WriterSettings(overlap=32, score_threshold=TASKS[task_name].default_score_threshold(spec),
                              mask_threshold=0.5, count_regions=True)
    with RasterSource(raster) as src, VectorWriter(tmp_path / "out.gpkg", src.info.crs_wkt, "out") as writer:
        stage = TASKS[task_name].writer_stage(FeatureSink(writer, src, spec, "label", "scene.tif"), tiles, settings,
                                              progress)
        assert type(stage) is stage_type and isinstance(stage, RowStreamingStage)
        written = []
        for k in range(0, 9, 3):  # one row of tiles per batch; the last row's tiles are all nodata
            row = tiles[k:k + 3]
            run = row if k < 6 else []
            stage(TileBatch(run, [], [t for t in row if t not in run], len(row), [None] * len(run),
                            [_outputs(task_name, t, spec) for t in run]))
            written.append(writer.count)
    assert written == [0, 1, 1]  # held until the second tile row (window rows 96..224) is in: it crosses both
    assert progress.advances == [(3, 9), (6, 9), (9, 9)]
    assert [r.status for r in stage.records] == ["run"] * 6 + ["nodata"] * 3 and stage.tiles_run == 6
    assert [r.n_predictions for r in stage.records[:3]] == [1, 0, 0] and stage.counts == {"ship": 1}
    with fiona.open(tmp_path / "out.gpkg") as layer:
        (feat,) = list(layer)
    r0, c0, r1, c1 = BLOCK
    assert shape(feat["geometry"]).bounds == pytest.approx((500000 + c0 * 10, 4000000 - r1 * 10,
                                                            500000 + c1 * 10, 4000000 - r0 * 10))
    assert feat["properties"]["area_m2"] == pytest.approx((r1 - r0) * (c1 - c0) * 100.0)
    assert (feat["properties"]["model"], feat["properties"]["source"]) == ("label", "scene.tif")


def test_output_conversion() -> None:
    out = {"boxes": torch.tensor([[1.0, 2.0, 5.0, 6.0]]), "labels": torch.tensor([1]), "scores": torch.tensor([0.7]),
           "masks": torch.rand(1, 1, 8, 9), "probs": torch.rand(2, 8, 9)}
    (inst,) = TASKS["instance"].convert_outputs([out])
    assert set(inst) == {"boxes", "labels", "scores", "masks"} and inst["masks"].shape == (1, 8, 9)
    assert all(isinstance(v, np.ndarray) for v in inst.values())
    np.testing.assert_array_equal(inst["masks"][0], out["masks"][0, 0].numpy())
    (sem,) = TASKS["semantic"].convert_outputs([out])
    assert set(sem) == {"probs"} and sem["probs"].dtype == np.float32 and sem["probs"].shape == (2, 8, 9)


def _truth(dataset: CocoInstanceDataset, i: int) -> tuple[EvalInput, dict]:
    raw, target = dataset.load_raw(i)
    return EvalInput(i + 1, raw.shape[1], raw.shape[2], target), target


def test_evaluators_reset_process_evaluate(coco_rgb) -> None:
    ds = CocoInstanceDataset(coco_rgb, coco_rgb.parent, Normalisation())
    instance = CocoEvaluator(ds)
    semantic = SemanticEvaluator(ds)
    for evaluator in (instance, semantic):
        evaluator.reset()
    for i in range(len(ds)):
        inp, target = _truth(ds, i)
        masks = torch.from_numpy(target["masks"]).float()
        labels = torch.from_numpy(target["labels"])
        rows, cols = masks.any(2), masks.any(1)
        boxes = torch.tensor([[c.nonzero().min(), r.nonzero().min(), c.nonzero().max() + 1, r.nonzero().max() + 1]
                              for r, c in zip(rows, cols)], dtype=torch.float32).reshape(-1, 4)
        instance.process([inp], [{"boxes": boxes, "labels": labels, "scores": torch.ones(len(labels)),
                                  "masks": masks[:, None]}])
        truth = class_map(target["masks"], target["labels"])
        probs = torch.from_numpy(np.eye(3, dtype=np.float32)[truth].transpose(2, 0, 1).copy())
        semantic.process([inp], [{"probs": probs}])
    perfect = instance.evaluate()
    assert perfect["segm"]["AP"] == perfect["bbox"]["AP"] == 100.0
    sem = semantic.evaluate()
    assert sem["semantic"]["mIoU"] == 100.0 and set(sem) == {"semantic", "bbox", "segm"}
    assert TASKS["instance"].validation_score(perfect) == 100.0 and TASKS["semantic"].validation_score(sem) == 100.0
    instance.reset()
    assert instance.evaluate()["segm"]["AP"] == 0.0  # nothing processed since the reset
    with pytest.raises(ValueError, match=r"expected \(3, "):
        semantic.process([_truth(ds, 0)[0]], [{"probs": torch.zeros(2, 4, 4)}])
    # the tasks' tables for people
    text = TASKS["semantic"].report(sem)
    assert "mIoU 100.0" in text and "tank" in text and "AP50" in text
    assert "AP50" in TASKS["instance"].report(perfect) and "mIoU" not in TASKS["instance"].report(perfect)


# ---------------------------------------------------------------------------------------- layering


def _module(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _import_graph() -> dict[str, set[str]]:
    """engine module -> the engine modules its import statements (module level or inside functions) name."""
    modules = {_module(p): p for p in ENGINE.rglob("*.py")}

    def known(name: str) -> str | None:
        while name and name not in modules:
            name = name.rpartition(".")[0]
        return name or None

    graph: dict[str, set[str]] = {}
    for name, path in modules.items():
        package = name if path.name == "__init__.py" else name.rpartition(".")[0]
        deps = set()
        for node in ast.walk(ast.parse(path.read_text())):
            targets = []
            if isinstance(node, ast.Import):
                targets = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:
                    parts = package.split(".")[: len(package.split(".")) - node.level + 1]
                    base = ".".join([*parts, base] if base else parts)
                targets = [f"{base}.{a.name}" if f"{base}.{a.name}" in modules else base for a in node.names]
            deps.update(m for m in map(known, targets) if m and m != name)
        graph[name] = deps
    return graph


def _cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One import cycle (as a path a -> ... -> a), or None."""
    state: dict[str, int] = {}  # 1 on the current path, 2 done
    path: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        path.append(node)
        for dep in sorted(graph[node]):
            if state.get(dep) == 1:
                return path[path.index(dep):] + [dep]
            if dep not in state and (found := visit(dep)):
                return found
        state[node] = 2
        path.pop()
        return None

    for start in sorted(graph):
        if start not in state and (found := visit(start)):
            return found
    return None


def test_engine_import_graph_is_acyclic() -> None:
    graph = _import_graph()
    assert {"engine.tasks", "engine.inference.segment", "engine.cli"} <= set(graph)
    assert _cycle(graph) is None, " -> ".join(_cycle(graph))
    assert _cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": set()}) == ["a", "b", "c", "a"]  # the check can fail
    # the layers below the tasks know nothing of them (only cli, inference, distributed, training, zoo use them)
    users = {m.split(".")[1] for m, deps in graph.items() for d in deps if d.startswith("engine.tasks")}
    assert users - {"tasks"} <= {"cli", "inference", "distributed", "training", "zoo"}


def test_every_engine_module_imports_on_its_own() -> None:
    """Each module imported first, with no other engine module loaded (third-party packages stay cached)."""
    names = sorted(m for m in _import_graph() if not m.endswith("__main__"))  # __main__ runs the CLI
    script = ("import importlib, sys\nfailed = []\nfor name in sys.argv[1:]:\n"
              "    for loaded in [m for m in sys.modules if m == 'engine' or m.startswith('engine.')]:\n"
              "        del sys.modules[loaded]\n"
              "    try:\n        importlib.import_module(name)\n"
              "    except Exception as exc:\n        failed.append(f'{name}: {type(exc).__name__}: {exc}')\n"
              "print('\\n'.join(failed))\nsys.exit(1 if failed else 0)\n")
    proc = subprocess.run([sys.executable, "-c", script, *names], cwd=ROOT, capture_output=True, text=True,
                          timeout=600)
    assert proc.returncode == 0, proc.stdout + proc.stderr


TASK_BRANCH = re.compile(r"""\.task\s*[!=]=|["'](semantic|instance)["']\s+(not\s+)?in\b""")


def test_no_task_branches_outside_engine_tasks() -> None:
    """Whatever differs between tasks is asked of TASKS[spec.task], not branched on in the callers."""
    owned = [ENGINE / "cli.py", ENGINE / "zoo.py", ENGINE / "progress.py", ROOT / "scripts" / "ship_model.py"]
    for folder in ("inference", "distributed", "training", "evaluation", "merge", "vector", "data"):
        owned += sorted((ENGINE / folder).rglob("*.py"))
    found = [f"{p.relative_to(ROOT)}:{i}: {line.strip()}" for p in owned
             for i, line in enumerate(p.read_text().splitlines(), 1) if TASK_BRANCH.search(line)]
    assert found == []
    assert TASK_BRANCH.search('if spec.task == "semantic":') and TASK_BRANCH.search('if "semantic" in val:')


# ------------------------------------------------------------------------------- specs and listings


def test_training_spec_preset_then_overrides(coco_gray, monkeypatch: pytest.MonkeyPatch) -> None:
    tiny = {"backbone": "resnet18", "fpn_channels": 32}
    monkeypatch.setitem(MODELS, "mask_rcnn", replace(MODELS["mask_rcnn"], presets={"tiny": tiny}))
    spec = training_spec(name="run", arch="mask_rcnn", coco=coco_gray, images=coco_gray.parent, preset="tiny",
                         overrides={"fpn_channels": 16, "bands": 2}, sensor="optical", gsd_m=3.0)
    # the full config (every field, so a stored spec does not depend on later defaults): preset, then overrides
    assert spec.config["backbone"] == "resnet18" and spec.config["fpn_channels"] == 16 and spec.task == "instance"
    assert spec.config["representation_size"] == 1024  # a default neither the preset nor the overrides set
    assert spec.bands == 2 and spec.band_names == ("b1", "b2") and spec.normalisation.sar == "none"
    assert [c.name for c in spec.classes] == ["ship"] and spec.gsd_m == 3.0
    semantic = training_spec(name="s", arch="semantic_fpn", coco=coco_gray, images=coco_gray.parent)
    assert semantic.task == "semantic" and semantic.bands == 1  # first image: 1 band
    assert semantic.config == resolve_config("semantic_fpn")  # no preset, no overrides: the defaults in full
    with pytest.raises(UserError, match=r"--preset: unknown preset 'huge' for mask_rcnn; available: tiny"):
        training_spec(name="run", arch="mask_rcnn", coco=coco_gray, images=coco_gray.parent, preset="huge")
    with pytest.raises(UserError, match=r"--arch: unknown architecture 'unet'; available: .*mask_rcnn"):
        training_spec(name="run", arch="unet", coco=coco_gray, images=coco_gray.parent)
    assert any(line.startswith("mask_rcnn (instance); presets: tiny") for line in describe_architectures().splitlines())


def test_cli_train_unknown_preset_is_one_line_exit_2(coco_gray, tmp_path: Path, capsys) -> None:
    from engine.cli import main

    code = main(["train", "--coco", str(coco_gray), "--images", str(coco_gray.parent), "--out",
                 str(tmp_path / "run"), "--preset", "nope"])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and "nope" in err[0] and "rsseg models --architectures" in err[0]
    assert not (tmp_path / "run").exists()


def test_model_title_and_sensor() -> None:
    sar = SPEC.with_updates(gsd_m=3.0)
    assert model_title(sar) == "Ships in SAR images, 1 band, ~3 m" and sensor_of(sar) == "sar"
    assert sensor_of(sar.with_updates(normalisation=Normalisation(sar="db"))) == "sar"
    optical = SPEC.with_updates(classes=classes_from_names(["airplane", "storage_tank", "ship", "harbor"]), bands=3,
                                gsd_m=0.5, normalisation=Normalisation(sar="none"))
    assert model_title(optical) == "4 classes (airplane, storage tank, ship, ...) in optical images, 3 bands, ~0.5 m"
    assert sensor_of(optical) == "optical"
    two = optical.with_updates(classes=(ClassInfo(1, "building"), ClassInfo(2, "road_body")))
    assert model_title(two).startswith("Buildings and road bodies in optical images")
    titled = sar.with_updates(title="Ships in SAR images (SSDD), 1 band, ~3 m")
    assert model_title(titled) == titled.title
