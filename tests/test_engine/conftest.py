"""Fixtures shared by the engine tests."""
import pytest
import torch


@pytest.fixture
def one_thread():
    """Run the test's in-process training on one thread (fast and stable
    on the shared 2 cores), then restore the thread count."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)
