"""Core test configuration: no ComfyUI here (tests/host/ has its own conftest)."""

import os

import pytest
import torch

torch.set_num_threads(max(1, min(2, os.cpu_count() or 1)))


@pytest.fixture
def gen():
    """A seeded CPU generator: every test draws fresh but reproducible random data."""
    return torch.Generator().manual_seed(1234)
