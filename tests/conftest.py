"""Shared test fixtures."""
import pytest
import torch


@pytest.fixture
def one_thread():
    """Tiny models: one thread is as fast alone and far faster when other processes share the cores."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


from cheats import lab  # noqa: E402,F401 - the adversarial submissions' fixture (tests/cheats.py)
