"""Tests of engine.distributed (Dask) and DDP training: marked `distributed` (`make test` runs them, all on one
pytest-xdist worker; alone: `pytest -m distributed`). One LocalCluster of 2 worker processes (1 thread each) serves
a test module; torch on one thread in this process too (tests/conftest.py), so that single-process and worker
outputs are bit for bit comparable."""
from pathlib import Path

import pytest

from tests.data.tiny_model import write_tiny_semantic_checkpoint


@pytest.fixture(scope="session")
def tiny_instance(tiny_checkpoint: Path) -> Path:
    """Random tiny 1-band Mask R-CNN (tile 128, overlap 32, score threshold 0: many detections everywhere)."""
    return tiny_checkpoint


@pytest.fixture(scope="session")
def tiny_semantic(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Random tiny 1-band semantic FPN with two classes (tile 128, overlap 32)."""
    return write_tiny_semantic_checkpoint(tmp_path_factory.mktemp("ckpt") / "tiny_semantic.pt")


@pytest.fixture(scope="module")
def dask_cluster():
    """A distributed.Client on a LocalCluster of 2 worker processes, shared by a test module (its workers hold
    models: gone when the module is done)."""
    from engine.distributed.cluster import dask_client

    with dask_client("local:2") as client:
        yield client
