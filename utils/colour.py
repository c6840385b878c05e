"""Colour correction of an enhanced video against its source (pure torch, no ComfyUI).

Generative upscalers and refiners (VEnhancer, EVS, SDEdit) drift in colour: the result's detail is wanted,
its global colours are not. Each mode takes frames ``result`` and ``source`` ``[F, C, H, W]`` (float, 0..1)
of the same size and returns the corrected result, frame by frame:

- ``wavelet``: the low band from the source, the high band from the result (StableSR / SeedVR2 / FlashVSR's
  fix). The band split is an a-trous wavelet: ``low_band(x, levels)`` applies the 3x3 binomial kernel
  ``[1, 2, 1]^T [1, 2, 1] / 16`` ``levels`` times with dilations ``1, 2, 4, ...`` (replicate padding);
  ``high_band(x) = x - low_band(x)``, so ``x = low_band(x) + high_band(x)`` exactly, and the output is
  ``low_band(source) + high_band(result)``: the result's high band is in the output unchanged (a uniform
  colour shift of the source comes back exactly, the kernel being normalised).
- ``adain``: adaptive instance normalisation, per frame and channel: ``(r - mean_r) / std_r * std_s + mean_s``.
- ``histogram``: per frame and channel, each result value mapped to the source value at the same CDF
  position (tied values get the mid-rank, so equal result values stay equal); with no ties the output
  holds exactly the source's values, so the CDFs match.

``strength`` blends: ``result + strength * (corrected - result)``; the output is clamped to 0..1.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F

from .checks import InputError, check_choice, check_finite, check_nonempty, check_range, check_rank

MODES = ("wavelet", "adain", "histogram")
#: Frames corrected at once: up to 8, fewer above :data:`CHUNK_PIXELS` pixels a chunk (bounds memory on large clips).
CHUNK = 8
CHUNK_PIXELS = 16 * 1024**2
LEVELS = (1, 8)
_BINOMIAL = (1.0, 2.0, 1.0)


# ------------------------------------------------------------------------------------------ bands
def _binomial_kernel(channels: int, dtype, device) -> torch.Tensor:
    k = torch.tensor(_BINOMIAL, dtype=dtype, device=device)
    k2 = torch.outer(k, k) / 16.0
    return k2.expand(channels, 1, 3, 3).contiguous()


def low_band(x: torch.Tensor, levels: int = 5) -> torch.Tensor:
    """The a-trous low band of frames ``[F, C, H, W]``: ``levels`` binomial blurs with dilation ``2^i``."""
    kernel = _binomial_kernel(x.shape[1], x.dtype, x.device)
    for i in range(levels):
        d = 2**i  # replicate padding (any size, also past the frame's edge)
        x = F.conv2d(F.pad(x, (d, d, d, d), mode="replicate"), kernel, dilation=d, groups=x.shape[1])
    return x


def high_band(x: torch.Tensor, levels: int = 5) -> torch.Tensor:
    """``x - low_band(x, levels)``: the detail the wavelet mode keeps from the result."""
    return x - low_band(x, levels)


def wavelet_match(result: torch.Tensor, source: torch.Tensor, levels: int = 5) -> torch.Tensor:
    """``low_band(source) + high_band(result)``."""
    return low_band(source, levels) + high_band(result, levels)


# ------------------------------------------------------------------------------------------ AdaIN
def adain_match(result: torch.Tensor, source: torch.Tensor, eps: float = 1e-5) -> torch.Tensor:
    """AdaIN per frame and channel: ``(r - mean_r) / max(std_r, eps) * std_s + mean_s``."""
    dims = (-2, -1)
    mean_r, std_r = result.mean(dims, keepdim=True), result.std(dims, keepdim=True, correction=0)
    mean_s, std_s = source.mean(dims, keepdim=True), source.std(dims, keepdim=True, correction=0)
    return (result - mean_r) / std_r.clamp_min(eps) * std_s + mean_s


# -------------------------------------------------------------------------------------- histogram
def tie_midranks(sorted_values: torch.Tensor) -> torch.Tensor:
    """For values sorted along the last axis: each position's mid-rank among its equal values (``(first + last) / 2``)."""
    n = sorted_values.shape[-1]
    pos = torch.arange(n, device=sorted_values.device).expand_as(sorted_values)
    new = torch.ones_like(sorted_values, dtype=torch.bool)
    new[..., 1:] = sorted_values[..., 1:] != sorted_values[..., :-1]
    first = torch.where(new, pos, 0).cummax(-1).values
    last_flag = torch.ones_like(new)
    last_flag[..., :-1] = new[..., 1:]
    last = torch.where(last_flag, pos, n).flip(-1).cummin(-1).values.flip(-1)
    return (first + last).to(sorted_values.dtype) / 2


def histogram_match(result: torch.Tensor, source: torch.Tensor) -> torch.Tensor:
    """Per frame and channel: each result value -> the source quantile at its mid-rank CDF position."""
    f, c, h, w = result.shape
    r_sorted, order = result.reshape(f, c, h * w).sort(dim=-1)
    s_sorted = source.reshape(f, c, -1).sort(dim=-1).values
    n, m = r_sorted.shape[-1], s_sorted.shape[-1]
    # mid-rank of each value's ties, as a position in the source's sorted values (sizes may differ)
    pos = tie_midranks(r_sorted) * ((m - 1) / max(n - 1, 1))
    lo = pos.floor().long().clamp(0, m - 1)
    hi = (lo + 1).clamp(max=m - 1)
    frac = pos - lo.to(pos.dtype)
    values = torch.gather(s_sorted, -1, lo).lerp_(torch.gather(s_sorted, -1, hi), frac)
    return torch.empty_like(values).scatter_(-1, order, values).reshape(f, c, h, w)


# ----------------------------------------------------------------------------------------- checks
def check_pair(result: torch.Tensor, source: torch.Tensor) -> None:
    """Both ``[F, C, H, W]``, non-empty, finite, same channels; source frames 1 or the result's count."""
    for x, name in ((result, "result"), (source, "source")):
        check_rank(x, name, 4, "[F, C, H, W]")
        check_nonempty(x, name)
        check_finite(x, name)
    if source.shape[1] != result.shape[1]:
        raise InputError("source", f"has {source.shape[1]} channels, 'result' has {result.shape[1]}",
                         "connect images with the same channels (RGB for both)")
    if source.shape[0] not in (1, result.shape[0]):
        raise InputError("source", f"has {source.shape[0]} frames, 'result' has {result.shape[0]}",
                         "connect the video the result was made from (same frame count), or a single reference frame "
                         "(it is used for every frame); trim one of them, or interpolate the source to the result's frame rate")


def resize_to(source: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """``source`` ``[F, C, H, W]`` scaled to ``size`` (bicubic, antialiased, clamped to 0..1); unchanged at that size."""
    if tuple(source.shape[-2:]) == tuple(size):
        return source
    return F.interpolate(source, size=tuple(size), mode="bicubic", antialias=True, align_corners=False).clamp(0.0, 1.0)


# ------------------------------------------------------------------------------------------- main
def chunk_frames(height: int, width: int) -> int:
    """Frames a chunk holds: :data:`CHUNK`, fewer when that would exceed :data:`CHUNK_PIXELS` (8 at 1080p, 2 at 4K)."""
    return max(1, min(CHUNK, CHUNK_PIXELS // max(1, height * width)))


def correct_frames(result: torch.Tensor, source: torch.Tensor, mode: str, levels: int = 5) -> torch.Tensor:
    """One chunk: the mode's corrected result (same size and count; not blended, not clamped)."""
    if mode == "wavelet":
        return wavelet_match(result, source, levels)
    if mode == "adain":
        return adain_match(result, source)
    return histogram_match(result, source)


def colour_correct(result: torch.Tensor, source: torch.Tensor, mode: str = "wavelet", strength: float = 1.0,
                   levels: int = 5, chunk: int | None = None, on_chunk: Callable[[int, int], None] | None = None,
                   device=None) -> torch.Tensor:
    """``result`` ``[F, C, H, W]`` corrected against ``source`` ``[F or 1, C, h, w]`` (resized to the result first).

    Computed in float32 on ``device`` (default: the result's), ``chunk`` frames at a time (default
    :func:`chunk_frames` of the result's size); ``on_chunk(done,
    total)`` is called after each chunk (a progress bar, a Cancel check). Returns the result's dtype and
    device, clamped to 0..1.
    """
    check_choice(mode, "mode", MODES)
    check_range(strength, "strength", 0.0, 1.0)
    check_range(levels, "levels", *LEVELS, integer=True)
    check_pair(result, source)
    frames, out = result.shape[0], []
    chunk = chunk or chunk_frames(*result.shape[-2:])
    for start in range(0, frames, chunk):
        r = result[start : start + chunk].to(device or result.device, torch.float32)
        s = source if source.shape[0] == 1 else source[start : start + chunk]
        s = resize_to(s.to(r.device, torch.float32), r.shape[-2:]).expand_as(r)
        fixed = correct_frames(r, s, mode, int(levels))
        out.append(torch.lerp(r, fixed, float(strength)).clamp_(0.0, 1.0).to(result.device, result.dtype))
        if on_chunk is not None:
            on_chunk(min(start + chunk, frames), frames)
    return torch.cat(out)
