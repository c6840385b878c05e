"""Video tensor layouts and frame-pair helpers.

Layouts used across the pack:

- IMAGE (ComfyUI): ``[F, H, W, C]`` float in 0..1, a video is a batch of frames.
- frames: ``[F, C, H, W]`` - image-model latents (frames as batch) or IMAGE moved channel-first.
  During sampling an image model sees ``S`` streams (cond, uncond, ...) stacked on the batch axis:
  ``[S * F, C, H, W]``, stream-major (all frames of stream 0, then all of stream 1).
- video latent: ``[B, C, T, H, W]`` (Wan, Hunyuan, LTX-Video, VEnhancer).
"""

from __future__ import annotations

import torch
from einops import rearrange

from .checks import InputError, check_rank


def image_to_frames(image: torch.Tensor) -> torch.Tensor:
    """IMAGE ``[F, H, W, C]`` -> frames ``[F, C, H, W]``."""
    check_rank(image, "image", 4, "[F, H, W, C]")
    return image.movedim(-1, 1)


def frames_to_image(frames: torch.Tensor) -> torch.Tensor:
    """Frames ``[F, C, H, W]`` -> IMAGE ``[F, H, W, C]``."""
    check_rank(frames, "frames", 4, "[F, C, H, W]")
    return frames.movedim(1, -1)


def video_to_frames(video: torch.Tensor) -> torch.Tensor:
    """Video latent ``[B, C, T, H, W]`` -> frames ``[B * T, C, H, W]`` (batch-major)."""
    check_rank(video, "latent", 5, "[B, C, T, H, W]")
    return rearrange(video, "b c t h w -> (b t) c h w")


def frames_to_video(frames: torch.Tensor, batch: int = 1) -> torch.Tensor:
    """Frames ``[B * T, C, H, W]`` -> video latent ``[B, C, T, H, W]``."""
    check_rank(frames, "frames", 4, "[B*T, C, H, W]")
    if frames.shape[0] % batch:
        raise InputError("frames", f"{frames.shape[0]} frames do not split into {batch} videos", "use a frame count that is a multiple of the batch")
    return rearrange(frames, "(b t) c h w -> b c t h w", b=batch)


def to_frames(latent: torch.Tensor) -> tuple[torch.Tensor, int | None]:
    """Any latent -> ``(frames [N, C, H, W], batch)``; ``batch`` is None for 4-D input (undo with :func:`from_frames`)."""
    check_rank(latent, "latent", (4, 5), "[F, C, H, W] or [B, C, T, H, W]")
    if latent.ndim == 4:
        return latent, None
    return video_to_frames(latent), latent.shape[0]


def from_frames(frames: torch.Tensor, batch: int | None) -> torch.Tensor:
    """Inverse of :func:`to_frames`."""
    return frames if batch is None else frames_to_video(frames, batch)


def frame_count(latent: torch.Tensor) -> int:
    """Frames per video: ``F`` of ``[F, C, H, W]`` or ``T`` of ``[B, C, T, H, W]``."""
    check_rank(latent, "latent", (4, 5), "[F, C, H, W] or [B, C, T, H, W]")
    return latent.shape[0] if latent.ndim == 4 else latent.shape[2]


def split_streams(x: torch.Tensor, streams: int) -> torch.Tensor:
    """``[S * F, ...]`` (cond/uncond stacked on the batch axis) -> ``[S, F, ...]``."""
    if streams < 1 or x.shape[0] % streams:
        raise InputError(
            "latent batch",
            f"batch of {x.shape[0]} does not split into {streams} conditioning streams",
            "sample the whole video as one batch (frames as batch), with one latent per frame",
        )
    return x.reshape(streams, x.shape[0] // streams, *x.shape[1:])


def merge_streams(x: torch.Tensor) -> torch.Tensor:
    """``[S, F, ...]`` -> ``[S * F, ...]`` (inverse of :func:`split_streams`)."""
    return x.reshape(x.shape[0] * x.shape[1], *x.shape[2:])


def neighbour_index(frames: int, offset: int, boundary: str = "reflect", device=None) -> torch.Tensor:
    """Index of frame ``i + offset`` for each frame ``i``, ``[F]`` long.

    boundary: ``"reflect"`` mirrors at the ends (frame -1 -> 1, frame F -> F-2), ``"clamp"`` repeats the
    end frame (frame -1 -> 0). A one-frame video maps to itself.
    """
    idx = torch.arange(frames, device=device) + offset
    if frames == 1:
        return torch.zeros_like(idx)
    if boundary == "clamp":
        return idx.clamp(0, frames - 1)
    if boundary == "reflect":
        period = 2 * (frames - 1)
        idx = idx.remainder(period)
        return torch.where(idx >= frames, period - idx, idx)
    raise InputError("boundary", f"unknown boundary rule {boundary!r}", "use 'reflect' or 'clamp'")


def frame_pairs(frames: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Consecutive pairs of ``[F, ...]``: ``(previous [F-1, ...], next [F-1, ...])`` = ``(x[:-1], x[1:])``."""
    return frames[:-1], frames[1:]


def both_directions(frames: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Frame pairs of ``[F, ...]`` in both directions for one flow call: ``a = [x_i || x_{i+1}]``, ``b = [x_{i+1} || x_i]``.

    ``flow(a, b)[:F-1]`` is the forward flow (i -> i+1), ``[F-1:]`` the backward one, each ``[F-1, ...]``.
    """
    prev, nxt = frame_pairs(frames)
    return torch.cat([prev, nxt]), torch.cat([nxt, prev])
