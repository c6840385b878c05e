"""Backward warping of frames by a dense flow field (kornia's remap).

Flow convention used across the pack: ``flow [N, 2, H, W]`` in pixels, channel 0 = dx (along W),
channel 1 = dy (along H). ``warp(x, flow)(p) = x(p + flow(p))``: to bring frame ``i`` into the
coordinates of frame ``i + 1``, warp frame ``i`` by the flow *from* ``i + 1`` *to* ``i``.
"""

from __future__ import annotations

import torch
from kornia.geometry.transform import remap

try:  # kornia >= 0.8.3
    from kornia.geometry import create_meshgrid
except ImportError:  # ComfyUI allows kornia >= 0.7.1
    from kornia.utils import create_meshgrid

from .checks import InputError, check_rank


def warp(x: torch.Tensor, flow: torch.Tensor, mode: str = "bilinear", padding_mode: str = "border") -> torch.Tensor:
    """Backward warp ``x [N, C, H, W]`` by ``flow [N, 2, H, W]`` (pixels): ``out(p) = x(p + flow(p))``."""
    check_rank(x, "frames", 4, "[N, C, H, W]")
    check_rank(flow, "flow", 4, "[N, 2, H, W]")
    if flow.shape[1] != 2 or flow.shape[0] != x.shape[0] or flow.shape[-2:] != x.shape[-2:]:
        raise InputError(
            "flow",
            f"shape {tuple(flow.shape)} does not fit frames {tuple(x.shape)}; expected [{x.shape[0]}, 2, {x.shape[-2]}, {x.shape[-1]}]",
            "resize the flow to the frames' resolution (utils.flow.resize_flow) or estimate it from these frames",
        )
    h, w = x.shape[-2:]
    grid = create_meshgrid(h, w, normalized_coordinates=False, device=x.device, dtype=flow.dtype)  # [1, H, W, 2] (x, y)
    map_x = grid[..., 0] + flow[:, 0]
    map_y = grid[..., 1] + flow[:, 1]
    out = remap(x.to(flow.dtype), map_x, map_y, mode=mode, padding_mode=padding_mode, align_corners=True)
    return out.to(x.dtype)
