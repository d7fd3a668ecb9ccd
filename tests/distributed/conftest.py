"""Tests of engine.distributed (Dask) and DDP training: marked `distributed` (`make test` runs them; alone:
`pytest -m distributed`). One LocalCluster of 2 worker processes (1 thread each) serves a test module;
torch on one thread in this process too, so that single-process and worker outputs are bit for bit comparable."""
from pathlib import Path

import pytest
import torch

from engine.checkpoint import Checkpoint, save_checkpoint
from engine.models import build_model
from engine.spec import ModelSpec, Normalisation, classes_from_names
from tests.data.tiny_model import write_tiny_checkpoint

HERE = Path(__file__).resolve().parent


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Mark every test collected below this folder `distributed`."""
    for item in items:
        if HERE in item.path.resolve().parents:
            item.add_marker(pytest.mark.distributed)


@pytest.fixture(autouse=True)
def _one_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="session")
def tiny_instance(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Random tiny 1-band Mask R-CNN (tile 128, overlap 32, score threshold 0: many detections everywhere)."""
    return write_tiny_checkpoint(tmp_path_factory.mktemp("ckpt") / "tiny_instance.pt")


@pytest.fixture(scope="session")
def tiny_semantic(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Random tiny 1-band semantic FPN with two classes (tile 128, overlap 32)."""
    torch.manual_seed(0)
    spec = ModelSpec(name="tiny-semantic", architecture="semantic_fpn", task="semantic",
                     config={"fpn_channels": 16, "decoder_channels": 8}, classes=classes_from_names(["ship", "tank"]),
                     bands=1, normalisation=Normalisation(), gsd_m=10.0, tile_size=128, overlap=32)
    path = tmp_path_factory.mktemp("ckpt") / "tiny_semantic.pt"
    return save_checkpoint(Checkpoint(spec, build_model(spec).state_dict(), {"note": "random"}, {}), path)


@pytest.fixture(scope="module")
def dask_cluster():
    """A distributed.Client on a LocalCluster of 2 worker processes, shared by a test module (its workers hold
    models: gone when the module is done)."""
    from engine.distributed.cluster import dask_client

    with dask_client("local:2") as client:
        yield client
