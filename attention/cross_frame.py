"""Cross-neighbour-frame attention (ZVRD, Eq. 5).

The query of frame ``i`` attends to the keys and values of frames ``i - 1`` and ``i + 1`` concatenated
along the token axis: ``softmax(Q_i [K_{i-1} || K_{i+1}]^T / sqrt(d)) [V_{i-1} || V_{i+1}]``.

Layout: ``q, k, v [S * F, N, H * D]`` as ComfyUI hands them to an ``attn1`` replacement (after the
projections, heads not split), with ``S`` conditioning streams (cond, uncond, ...) stacked stream-major
on the batch axis. Every stream is handled on its own: frames of the cond stream never see the uncond
stream.

Boundary rule (the paper does not state one): ``"clamp"`` (default) - a missing neighbour is replaced by
the frame itself, so the first frame attends to ``[K_0 || K_1]`` and the last to ``[K_{F-2} || K_{F-1}]``;
``"reflect"`` - the missing neighbour is mirrored, so the first frame attends to ``[K_1 || K_1]`` (i.e.
only to frame 1). A one-frame video falls back to plain self-attention under both rules.

Memory is linear in frames: per frame the keys are ``2N`` tokens, and frames are processed in chunks.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from einops import rearrange

from ..utils.checks import InputError, check_choice
from ..utils.video import neighbour_index

BOUNDARIES = ("clamp", "reflect")


def split_heads(x: torch.Tensor, heads: int) -> torch.Tensor:
    """``[B, N, H * D]`` -> ``[B, H, N, D]``."""
    return rearrange(x, "b n (h d) -> b h n d", h=heads)


def merge_heads(x: torch.Tensor) -> torch.Tensor:
    """``[B, H, N, D]`` -> ``[B, N, H * D]``."""
    return rearrange(x, "b h n d -> b n (h d)")


def self_attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, heads: int) -> torch.Tensor:
    """Plain spatial self-attention ``softmax(Q K^T / sqrt(d)) V`` (Eq. 4) on ``[B, N, H * D]``."""
    out = F.scaled_dot_product_attention(split_heads(q, heads), split_heads(k, heads), split_heads(v, heads))
    return merge_heads(out)


def neighbour_frames(frames: int, boundary: str = "clamp", device=None) -> tuple[torch.Tensor, torch.Tensor]:
    """Indices ``(previous [F], next [F])`` of each frame's two neighbours under the boundary rule."""
    check_choice(boundary, "boundary", BOUNDARIES)
    return neighbour_index(frames, -1, boundary, device), neighbour_index(frames, 1, boundary, device)


def cross_neighbour_attention(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    heads: int,
    streams: int = 1,
    boundary: str = "clamp",
    chunk: int = 4,
) -> torch.Tensor:
    """Eq. 5 on ``q, k, v [S * F, N, H * D]`` -> ``[S * F, N, H * D]``.

    streams: ``S``, the conditioning streams stacked stream-major on the batch axis (cond/uncond).
    boundary: ``"clamp"`` or ``"reflect"`` (see the module docstring). chunk: query frames per SDPA call.
    """
    if q.ndim != 3 or k.shape != q.shape or v.shape[:2] != q.shape[:2]:
        raise InputError("q, k, v", f"expected [S*F, N, H*D] tensors of one shape, got {tuple(q.shape)}, {tuple(k.shape)}, {tuple(v.shape)}", "pass self-attention projections")
    if streams < 1 or q.shape[0] % streams:
        raise InputError("latent batch", f"batch of {q.shape[0]} does not split into {streams} conditioning streams", "sample the whole video as one latent batch (one latent per frame)")
    if q.shape[-1] % heads:
        raise InputError("heads", f"{heads} heads do not divide the width {q.shape[-1]}", "pass the layer's head count")
    frames = q.shape[0] // streams
    prev, nxt = neighbour_frames(frames, boundary, q.device)
    out = torch.empty(q.shape[0], q.shape[1], v.shape[-1], dtype=v.dtype, device=v.device)
    for s in range(streams):
        base = s * frames
        for start in range(0, frames, max(1, chunk)):
            idx = torch.arange(start, min(frames, start + max(1, chunk)), device=q.device)
            kk = torch.cat([k[base + prev[idx]], k[base + nxt[idx]]], 1)  # [c, 2N, HD]
            vv = torch.cat([v[base + prev[idx]], v[base + nxt[idx]]], 1)
            o = F.scaled_dot_product_attention(split_heads(q[base + idx], heads), split_heads(kk, heads), split_heads(vv, heads))
            out[base + idx] = merge_heads(o)
    return out
