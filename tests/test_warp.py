"""Backward warping convention (utils/warp.py)."""

import pytest
import torch

from video_enhance_kit.utils.checks import InputError
from video_enhance_kit.utils.warp import warp


def test_zero_flow_is_identity(gen):
    x = torch.rand(2, 3, 9, 11, generator=gen)
    assert torch.allclose(warp(x, torch.zeros(2, 2, 9, 11)), x, atol=1e-6)


def test_integer_shift(gen):
    x = torch.rand(1, 1, 8, 10, generator=gen)
    flow = torch.zeros(1, 2, 8, 10)
    flow[:, 0] = 2.0  # out(p) = x(p + (2, 0))
    out = warp(x, flow)
    assert torch.allclose(out[..., :, :-2], x[..., :, 2:], atol=1e-6)


def test_bad_flow_shape_names_flow():
    with pytest.raises(InputError, match="input 'flow'"):
        warp(torch.zeros(1, 3, 8, 8), torch.zeros(1, 2, 4, 4))
