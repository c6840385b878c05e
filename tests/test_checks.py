"""Input checks produce errors that name the input and the fix (utils/checks.py)."""

import math

import pytest
import torch

from video_enhance_kit.utils import checks as C


def test_range_both_ends():
    assert C.check_range(0.0, "cutoff", 0, 1) == 0.0
    assert C.check_range(1.0, "cutoff", 0, 1) == 1.0
    with pytest.raises(C.InputError, match=r"input 'cutoff': must be in \[0, 1\], got 1.5\. Fix"):
        C.check_range(1.5, "cutoff", 0, 1)
    with pytest.raises(C.InputError, match="cutoff"):
        C.check_range(-0.01, "cutoff", 0, 1)
    with pytest.raises(C.InputError, match="finite"):
        C.check_range(math.nan, "cutoff", 0, 1)
    with pytest.raises(C.InputError, match="whole number"):
        C.check_range(1.5, "iterations", 0, 10, integer=True)


def test_finite():
    x = torch.zeros(3)
    x[1] = float("nan")
    with pytest.raises(C.InputError, match="input 'latent': contains 1 NaN"):
        C.check_finite(x, "latent")


def test_frames_and_shapes():
    with pytest.raises(C.InputError, match="1 frame"):
        C.check_frames(1, "images")
    with pytest.raises(C.InputError, match="'reference'"):
        C.check_same_shape(torch.zeros(2, 3), torch.zeros(2, 4), "reference", "latent")


def test_sigmas():
    C.check_sigmas(torch.tensor([2.0, 1.0, 0.0]))
    for bad, msg in [
        (torch.tensor([1.0]), "at least 2"),
        (torch.tensor([1.0, 2.0, 0.0]), "non-increasing"),
        (torch.tensor([0.0, 0.0]), "starts at 0"),
        (torch.zeros(2, 2), "1-D"),
    ]:
        with pytest.raises(C.InputError, match=msg):
            C.check_sigmas(bad)
