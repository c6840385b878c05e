"""ZVRD spatial-temporal noise sharing (Cao et al., "Spatial-Temporal Noise Sharing", Eq. 11).

Two parts, both acting on Gaussian noise laid out as frames ``[F, C, H, W]`` (an image model's
frames-as-batch latent) or as a video latent ``[B, C, T, H, W]`` (frames along axis 2):

- **shared initial noise** (:func:`share_noise`): every frame's noise is pulled towards frame 0's
  noise with a per-frame share weight ``w``: ``z_i <- sqrt(w_i) z_0 + sqrt(1 - w_i) z_i``. ``w = 1``
  gives the paper's "same x_T for all frames"; ``w = 0`` leaves the noise untouched. The square-root
  weights keep unit variance for any ``w``.
- **flow-guided blending** (:func:`blend_noise`, Eq. 11): ``z_i = M_i (lambda z_i + (1 - lambda)
  warp(z_{i-1})) + (1 - M_i) z_i``, run frame after frame so that the blended ``z_{i-1}`` feeds
  frame ``i`` (noise follows the motion along the whole clip). The paper is silent on whether
  ``z_{i-1}`` is the blended or the raw noise; we use the blended one (a chain). ``"exact"`` is the
  paper's formula (its variance is ``lambda^2 + (1 - lambda)^2 < 1`` inside the mask);
  ``"variance_preserving"`` (default) divides the same mix by ``sqrt(a^2 + b^2)`` so every element
  keeps variance 1, which is what the sampler assumes of its noise.

Noise is warped with nearest-neighbour sampling: bilinear interpolation of white noise lowers its
variance and blurs its spectrum, which a diffusion model reads as signal.
"""

from __future__ import annotations

from collections.abc import Callable

import torch

from ..utils.checks import InputError, check_choice, check_range
from ..utils.video import from_frames, to_frames
from ..utils.warp import warp

BLEND_MODES = ("variance_preserving", "exact")


def _frame_weights(weight, frames: int, like: torch.Tensor) -> torch.Tensor:
    """Share weight as a ``[F]`` tensor (a float, a sequence or a tensor of F values, each in [0, 1])."""
    w = torch.as_tensor(weight, dtype=torch.float32).flatten()
    if w.numel() == 1:
        w = w.expand(frames)
    if w.numel() != frames:
        raise InputError("share_weight", f"has {w.numel()} values for {frames} frames", "give one weight, or one per frame")
    if not bool(torch.isfinite(w).all()) or bool((w < 0).any()) or bool((w > 1).any()):
        raise InputError("share_weight", "every weight must be in [0, 1]", "set the share weights between 0 and 1")
    return w.to(like.device)


def share_noise(noise: torch.Tensor, weight=1.0) -> torch.Tensor:
    """Shared initial noise: ``z_i = sqrt(w_i) z_0 + sqrt(1 - w_i) z_i`` for every frame ``i``.

    Args:
        noise: ``[F, C, H, W]`` (frames as batch) or ``[B, C, T, H, W]`` (frames along T), unit Gaussian.
        weight: share weight in [0, 1], one float or one per frame (``[F]`` / ``[T]``). Default 1 (all frames equal).
    Returns: a new tensor shaped like ``noise``; frame 0 is unchanged, ``weight = 0`` returns ``noise`` values exactly.
    """
    frames_dim = 0 if noise.ndim == 4 else 2
    frames = noise.shape[frames_dim]
    w = _frame_weights(weight, frames, noise)
    if bool((w == 0).all()):
        return noise.clone()
    shape = [1] * noise.ndim
    shape[frames_dim] = frames
    w = w.view(shape).to(torch.float32)
    base = noise.narrow(frames_dim, 0, 1).to(torch.float32)
    out = w.sqrt() * base + (1 - w).sqrt() * noise.to(torch.float32)
    return out.to(noise.dtype)


def mix_weights(mask: torch.Tensor, lam: float, mode: str = "variance_preserving") -> tuple[torch.Tensor, torch.Tensor]:
    """Eq. 11 as ``z_i <- a z_i + b warp(z_{i-1})`` with ``a = 1 - M (1 - lambda)``, ``b = M (1 - lambda)``.

    ``mode="variance_preserving"`` rescales both by ``1 / sqrt(a^2 + b^2)``. Returns ``(a, b)`` shaped like ``mask``.
    """
    b = mask * (1.0 - lam)
    a = 1.0 - b
    if mode == "variance_preserving":
        norm = torch.sqrt(a * a + b * b)
        a, b = a / norm, b / norm
    return a, b


def blend_noise(noise: torch.Tensor, flow_backward: torch.Tensor, mask: torch.Tensor | None = None,
                lam: float = 0.2, mode: str = "variance_preserving") -> torch.Tensor:
    """Flow-guided noise blending along the clip (ZVRD Eq. 11), frame 0 first.

    Args:
        noise: frames ``[F, C, H, W]``, unit Gaussian.
        flow_backward: ``[F-1, 2, H, W]`` flow from frame i+1 to frame i (pixels of this resolution).
        mask: ``[F-1, 1, H, W]`` occlusion mask M (1 = the pixel is visible in frame i), or None for all ones.
        lam: lambda in [0, 1], the weight kept by each frame's own noise (1 = unchanged). Default 0.2.
        mode: ``"variance_preserving"`` (default) or ``"exact"`` (the paper's formula).
    Returns: blended noise ``[F, C, H, W]``.
    """
    check_range(lam, "blend_lambda", 0.0, 1.0)
    check_choice(mode, "blend_mode", BLEND_MODES)
    frames = noise.shape[0]
    if flow_backward.shape[0] != frames - 1 or flow_backward.shape[-2:] != noise.shape[-2:]:
        raise InputError("flow", f"shape {tuple(flow_backward.shape)} does not fit noise {tuple(noise.shape)}",
                         "give a flow with one field per consecutive frame pair at the noise's resolution")
    if mask is None:
        mask = torch.ones_like(flow_backward[:, :1])
    if lam == 1.0 or frames < 2 or not bool((mask > 0).any()):
        return noise.clone()
    z = noise.to(torch.float32)
    out = [z[0]]
    a, b = mix_weights(mask.to(torch.float32), lam, mode)
    for i in range(1, frames):
        prev = warp(out[-1][None], flow_backward[i - 1:i].to(torch.float32), mode="nearest")[0]
        out.append(a[i - 1] * z[i] + b[i - 1] * prev)
    return torch.stack(out).to(noise.dtype)


class SharedNoiseSampler:
    """Per-step noise for ancestral / SDE samplers: base noise -> shared (weight) -> flow-blended (Eq. 11).

    Wraps a k-diffusion noise sampler ``ns(sigma, sigma_next) -> noise`` shaped like the latent
    (``[F, C, H, W]`` or ``[B, C, T, H, W]``). ``flow`` is None or a ``(backward [F-1, 2, h, w], mask
    [F-1, 1, h, w])`` pair already at the latent's resolution and frame count.
    """

    def __init__(self, base: Callable, share_weight=0.0, flow=None, lam: float = 0.2,
                 mode: str = "variance_preserving"):
        self.base = base
        self.share_weight = share_weight
        self.flow = flow
        self.lam = lam
        self.mode = mode

    def __call__(self, sigma, sigma_next):
        return shared_step_noise(self.base(sigma, sigma_next), self.share_weight, self.flow, self.lam, self.mode)


def shared_step_noise(noise: torch.Tensor, share_weight=0.0, flow=None, lam: float = 0.2,
                      mode: str = "variance_preserving") -> torch.Tensor:
    """Apply :func:`share_noise` then :func:`blend_noise` (per video of a 5-D batch) to one noise draw."""
    out = share_noise(noise, share_weight)
    if flow is None or lam == 1.0:
        return out
    backward, mask = flow
    frames, batch = to_frames(out)
    videos = 1 if batch is None else batch
    per = frames.shape[0] // videos
    parts = [blend_noise(frames[v * per:(v + 1) * per], backward.to(frames.device), mask.to(frames.device), lam, mode)
             for v in range(videos)]
    return from_frames(torch.cat(parts), batch)
