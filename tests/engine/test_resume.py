"""A run stopped at any iteration resumes at that iteration with the same schedule and data order:
the weights after stop + resume equal those of an uninterrupted run."""
from pathlib import Path

import pytest
import torch

from engine.checkpoint import load_checkpoint
from engine.spec import ModelSpec, Normalisation, classes_from_names
from engine.training.trainer import TrainConfig, Trainer
from tests.data.make_fixtures import write_coco_dataset
from tests.engine.test_train_eval import TINY

pytestmark = pytest.mark.filterwarnings("ignore::rasterio.errors.NotGeoreferencedWarning")
SPEC = ModelSpec(name="tiny", architecture="mask_rcnn", config=TINY, classes=classes_from_names(["ship"]), bands=1,
                 normalisation=Normalisation(), input_scale=1.5)


def _config(coco, out, checkpoint_every: int = 1) -> TrainConfig:
    return TrainConfig(coco=str(coco), images=str(coco.parent), out_dir=str(out), epochs=2, batch_size=1,
                       max_iters_per_epoch=3, lr=0.005, warmup_iters=2, workers=0, device="cpu", crop_size=48,
                       threads=1, amp=False, checkpoint_every=checkpoint_every, sar_augment=True)


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """(the coco_gray data set, the folder of an uninterrupted run on it), shared by the stop_at cases."""
    folder = tmp_path_factory.mktemp("resume")
    coco = write_coco_dataset(folder / "coco_gray", class_names=("ship",))
    Trainer(SPEC, _config(coco, folder / "whole"), log=lambda m: None).fit()
    return coco, folder / "whole"


@pytest.mark.parametrize("stop_at", [2, 3, 4])  # inside epoch 1, at its end, inside epoch 2
def test_stop_anywhere_then_resume_equals_uninterrupted(uninterrupted, tmp_path, stop_at) -> None:
    coco_gray, whole = uninterrupted
    reference = load_checkpoint(whole / "last.pt")

    first = Trainer(SPEC, _config(coco_gray, tmp_path / "split"), log=lambda m: None)
    first.fit(stop_at=stop_at)
    stopped = load_checkpoint(tmp_path / "split" / "last.pt").training_state
    assert stopped["iteration"] == stop_at
    del first  # the process ends here; a new one picks the run up
    messages: list[str] = []
    second = Trainer(SPEC, _config(coco_gray, tmp_path / "split"), log=messages.append)
    assert second.iteration == stop_at and any("resumed" in m for m in messages)
    second.fit()
    resumed = load_checkpoint(tmp_path / "split" / "last.pt")

    assert resumed.training_state["iteration"] == reference.training_state["iteration"] == 6
    for key, value in reference.state_dict.items():
        assert torch.allclose(resumed.state_dict[key], value, atol=1e-6), key
    logged = (tmp_path / "split" / "log.jsonl").read_text().splitlines()
    assert len(logged) == len((whole / "log.jsonl").read_text().splitlines())


def test_checkpoint_every_saves_inside_the_epoch(coco_gray, tmp_path) -> None:
    spec = ModelSpec(name="tiny", architecture="mask_rcnn", config=TINY, classes=classes_from_names(["ship"]),
                     bands=1, normalisation=Normalisation())
    trainer = Trainer(spec, _config(coco_gray, tmp_path, checkpoint_every=2), log=lambda m: None)
    trainer.train_one_epoch(stop_at=None)  # 3 iterations: a save after iteration 2 (the epoch end saves in fit)
    state = load_checkpoint(tmp_path / "last.pt").training_state
    assert (state["epoch"], state["iteration"], state["batch_in_epoch"]) == (0, 2, 2)
