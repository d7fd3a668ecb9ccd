"""Tests of the research tools (research/) and the benchmarks (benchmarks/): marked `research`
(`make test-research` runs them alone; `make test` runs them with everything else). Torch on one thread."""
from pathlib import Path

import pytest
import torch

from tests.data.tiny_model import write_tiny_checkpoint

HERE = Path(__file__).resolve().parent


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Mark every test collected below this folder `research`."""
    for item in items:
        if HERE in item.path.resolve().parents:
            item.add_marker(pytest.mark.research)


@pytest.fixture(autouse=True)
def _one_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="session")
def tiny_checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A randomly initialised tiny 1-band ship model saved as a checkpoint (score threshold 0)."""
    return write_tiny_checkpoint(tmp_path_factory.mktemp("ckpt") / "tiny.pt")
