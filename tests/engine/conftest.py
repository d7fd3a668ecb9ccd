"""Engine tests: torch on one thread (the 2-core machine may be busy with other work)."""
from pathlib import Path

import pytest
import torch

from tests.data.tiny_model import write_tiny_checkpoint


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
