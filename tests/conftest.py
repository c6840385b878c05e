"""Core test configuration: no ComfyUI here (tests/host/ has its own conftest)."""

import os

import pytest
import torch

torch.set_num_threads(max(1, min(2, os.cpu_count() or 1)))


@pytest.fixture
def gen():
    """A seeded CPU generator: every test draws fresh but reproducible random data."""
    return torch.Generator().manual_seed(1234)


def pytest_report_header(config):
    """First lines of every run: say whether the host tests (tests/host/) will run, and why not."""
    from video_enhance_kit.host import describe_missing_comfyui, find_comfyui

    root = find_comfyui()
    return f"host tests: ComfyUI at {root}" if root else f"host tests SKIPPED: {describe_missing_comfyui()}"
