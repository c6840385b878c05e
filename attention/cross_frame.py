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

Attention function: every attention product goes through ``attention(q, k, v, heads, mask=None)`` on
``[B, tokens, H * D]`` (ComfyUI's ``optimized_attention`` convention); the default :func:`sdpa_attention`
is torch's scaled dot-product attention, so the core runs without ComfyUI.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F
from einops import rearrange

from ..utils.checks import InputError, check_choice
from ..utils.video import merge_streams, neighbour_index, split_streams

BOUNDARIES = ("clamp", "reflect")
Attention = Callable[..., torch.Tensor]  # (q, k, v, heads, mask=None) on [B, N, H * D] -> [B, N, H * D]


def split_heads(x: torch.Tensor, heads: int) -> torch.Tensor:
    """``[B, N, H * D]`` -> ``[B, H, N, D]``."""
    return rearrange(x, "b n (h d) -> b h n d", h=heads)


def merge_heads(x: torch.Tensor) -> torch.Tensor:
    """``[B, H, N, D]`` -> ``[B, N, H * D]``."""
    return rearrange(x, "b h n d -> b n (h d)")


def sdpa_attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, heads: int, mask: torch.Tensor | None = None, **_) -> torch.Tensor:
    """``softmax(Q K^T / sqrt(d) + mask) V`` on ``q [B, N, H * D]``, ``k, v [B, M, H * D]`` with torch SDPA (the default).

    mask: None or additive ``[B, 1, N, M]`` (broadcast over heads). Extra keywords (``attn_precision``) are ignored.
    """
    out = F.scaled_dot_product_attention(split_heads(q, heads), split_heads(k, heads), split_heads(v, heads), attn_mask=mask)
    return merge_heads(out)


def self_attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, heads: int, attention: Attention = sdpa_attention) -> torch.Tensor:
    """Plain spatial self-attention ``softmax(Q K^T / sqrt(d)) V`` (Eq. 4) on ``[B, N, H * D]``."""
    return attention(q, k, v, heads)


def neighbour_frames(frames: int, boundary: str = "clamp", device=None) -> tuple[torch.Tensor, torch.Tensor]:
    """Indices ``(previous [F], next [F])`` of each frame's two neighbours under the boundary rule."""
    check_choice(boundary, "boundary", BOUNDARIES)
    return neighbour_index(frames, -1, boundary, device), neighbour_index(frames, 1, boundary, device)


def check_projections(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, heads: int, streams: int) -> None:
    """Fail unless ``q, k, v`` are ``[S * F, N, H * D]`` projections that split into ``streams`` and ``heads``."""
    if q.ndim != 3 or k.shape != q.shape or v.shape[:2] != q.shape[:2]:
        raise InputError("q, k, v", f"expected [S*F, N, H*D] tensors of one shape, got {tuple(q.shape)}, {tuple(k.shape)}, {tuple(v.shape)}", "pass self-attention projections")
    if streams < 1 or q.shape[0] % streams:
        raise InputError("latent batch", f"batch of {q.shape[0]} does not split into {streams} conditioning streams", "sample the whole video as one latent batch (one latent per frame)")
    if q.shape[-1] % heads:
        raise InputError("heads", f"{heads} heads do not divide the width {q.shape[-1]}", "pass the layer's head count")


def cross_neighbour_attention(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    heads: int,
    streams: int = 1,
    boundary: str = "clamp",
    chunk: int = 4,
    attention: Attention = sdpa_attention,
) -> torch.Tensor:
    """Eq. 5 on ``q, k, v [S * F, N, H * D]`` -> ``[S * F, N, H * D]``.

    streams: ``S``, the conditioning streams stacked stream-major on the batch axis (cond/uncond).
    boundary: ``"clamp"`` or ``"reflect"`` (see the module docstring). chunk: query frames per attention call.
    attention: the attention function (see the module docstring).
    """
    check_projections(q, k, v, heads, streams)
    frames = q.shape[0] // streams
    prev, nxt = neighbour_frames(frames, boundary, q.device)
    qs, ks, vs = (split_streams(t, streams) for t in (q, k, v))  # [S, F, N, HD]
    out = torch.empty(streams, frames, q.shape[1], v.shape[-1], dtype=v.dtype, device=v.device)
    step = max(1, chunk)
    for s in range(streams):
        for start in range(0, frames, step):
            idx = torch.arange(start, min(frames, start + step), device=q.device)
            kk = torch.cat([ks[s][prev[idx]], ks[s][nxt[idx]]], 1)  # [c, 2N, HD]
            vv = torch.cat([vs[s][prev[idx]], vs[s][nxt[idx]]], 1)
            out[s, start : start + step] = attention(qs[s][idx], kk, vv, heads)
    return merge_streams(out)
