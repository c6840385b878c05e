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

from ..utils.checks import InputError, Range, check_choice
from ..utils.video import from_frames, split_streams, to_frames
from ..utils.warp import warp

BLEND_MODES = ("variance_preserving", "exact")
SHARE = Range(0.0, 1.0)  # share_weight w (and each of frame_weights)
LAMBDA = Range(0.0, 1.0)  # blend_lambda


def _frame_weights(weight, frames: int) -> torch.Tensor:
    """Share weight as a ``[F]`` float32 tensor on the CPU (a float, a sequence or a tensor of F values, each in [0, 1])."""
    w = torch.as_tensor(weight, dtype=torch.float32).flatten().cpu()
    if w.numel() == 1:
        w = w.expand(frames)
    if w.numel() != frames:
        raise InputError("share_weight", f"has {w.numel()} values for {frames} frames", "give one weight, or one per frame")
    if not bool(torch.isfinite(w).all()) or bool((w < 0).any()) or bool((w > 1).any()):
        raise InputError("share_weight", "every weight must be in [0, 1]", "set the share weights between 0 and 1")
    return w


def share_weights(weight, noise: torch.Tensor) -> torch.Tensor | None:
    """The share weights of :func:`share_noise`, checked on the host and shaped to broadcast over ``noise`` on its device.

    Returns None when every weight is 0 (sharing off).
    """
    frames_dim = 0 if noise.ndim == 4 else 2
    frames = noise.shape[frames_dim]
    w = _frame_weights(weight, frames)
    if bool((w == 0).all()):
        return None
    shape = [1] * noise.ndim
    shape[frames_dim] = frames
    return w.to(noise.device).view(shape).to(torch.float32)


def apply_share(noise: torch.Tensor, w: torch.Tensor | None) -> torch.Tensor:
    """``z_i = sqrt(w_i) z_0 + sqrt(1 - w_i) z_i`` with weights from :func:`share_weights` (None: a copy of ``noise``)."""
    if w is None:
        return noise.clone()
    base = noise.narrow(0 if noise.ndim == 4 else 2, 0, 1).to(torch.float32)
    out = w.sqrt() * base + (1 - w).sqrt() * noise.to(torch.float32)
    return out.to(noise.dtype)


def share_noise(noise: torch.Tensor, weight=1.0) -> torch.Tensor:
    """Shared initial noise: ``z_i = sqrt(w_i) z_0 + sqrt(1 - w_i) z_i`` for every frame ``i``.

    Args:
        noise: ``[F, C, H, W]`` (frames as batch) or ``[B, C, T, H, W]`` (frames along T), unit Gaussian.
        weight: share weight in [0, 1], one float or one per frame (``[F]`` / ``[T]``). Default 1 (all frames equal).
    Returns: a new tensor shaped like ``noise``; frame 0 is unchanged, ``weight = 0`` returns ``noise`` values exactly.
    """
    return apply_share(noise, share_weights(weight, noise))


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


def check_blend(noise: torch.Tensor, flow_backward: torch.Tensor, lam: float, mode: str) -> None:
    """Fail unless ``lam``, ``mode`` and a flow ``[F-1, 2, H, W]`` fit Eq. 11 on frames ``noise [F, C, H, W]``."""
    LAMBDA.check(lam, "blend_lambda")
    check_choice(mode, "blend_mode", BLEND_MODES)
    if flow_backward.shape[0] != noise.shape[0] - 1 or flow_backward.shape[-2:] != noise.shape[-2:]:
        raise InputError("flow", f"shape {tuple(flow_backward.shape)} does not fit noise {tuple(noise.shape)}",
                         "give a flow with one field per consecutive frame pair at the noise's resolution")


def blend_chain(noise: torch.Tensor, flow_backward: torch.Tensor, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Eq. 11 frame after frame with mix weights ``a, b [F-1, 1, H, W]`` (:func:`mix_weights`): blended ``[F, C, H, W]``."""
    z = noise.to(torch.float32)
    out = [z[0]]
    for i in range(1, noise.shape[0]):
        prev = warp(out[-1][None], flow_backward[i - 1:i].to(torch.float32), mode="nearest")[0]
        out.append(a[i - 1] * z[i] + b[i - 1] * prev)
    return torch.stack(out).to(noise.dtype)


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
    check_blend(noise, flow_backward, lam, mode)
    if mask is None:
        mask = torch.ones_like(flow_backward[:, :1])
    if lam == 1.0 or noise.shape[0] < 2 or not bool((mask > 0).any()):
        return noise.clone()
    a, b = mix_weights(mask.to(torch.float32), lam, mode)
    return blend_chain(noise, flow_backward, a, b)


class NoisePlan:
    """What :func:`shared_step_noise` needs that depends only on the run, on the noise's device: build once, apply per step.

    The share weights, the flow and Eq. 11's mix weights are checked on the host and moved to the device here;
    :meth:`apply` then reads no device value.
    """

    def __init__(self, like: torch.Tensor, share_weight=0.0, flow=None, lam: float = 0.2, mode: str = "variance_preserving"):
        self.shape, self.device = tuple(like.shape), like.device
        self.weights = share_weights(share_weight, like)
        self.blend = None
        if flow is not None and lam != 1.0:
            self.blend = self._blend_plan(like, flow, lam, mode)

    def _blend_plan(self, like: torch.Tensor, flow, lam: float, mode: str):
        """``(flow, a, b)`` on the device, ``()`` when the mask is empty (no blending), after the checks of :func:`blend_noise`."""
        backward, mask = flow
        frames, batch = to_frames(like)
        per = frames.shape[0] // (1 if batch is None else batch)
        check_blend(frames[:per], backward, lam, mode)
        if per < 2 or not bool((mask > 0).any()):
            return ()
        backward, mask = backward.to(self.device), mask.to(self.device)
        return (backward, *mix_weights(mask.to(torch.float32), lam, mode))

    def fits(self, noise: torch.Tensor) -> bool:
        return tuple(noise.shape) == self.shape and noise.device == self.device

    def apply(self, noise: torch.Tensor) -> torch.Tensor:
        """:func:`shared_step_noise` of one draw ``noise`` shaped like the plan's."""
        out = apply_share(noise, self.weights)
        if not self.blend:
            return out
        frames, batch = to_frames(out)
        videos = 1 if batch is None else batch
        parts = [blend_chain(part, *self.blend) for part in split_streams(frames, videos)]
        return from_frames(torch.cat(parts), batch)


class SharedNoiseSampler:
    """Per-step noise for ancestral / SDE samplers: base noise -> shared (weight) -> flow-blended (Eq. 11).

    Wraps a k-diffusion noise sampler ``ns(sigma, sigma_next) -> noise`` shaped like the latent
    (``[F, C, H, W]`` or ``[B, C, T, H, W]``). ``flow`` is None or a ``(backward [F-1, 2, h, w], mask
    [F-1, 1, h, w])`` pair already at the latent's resolution and frame count. Build one per sampling run:
    the :class:`NoisePlan` is made at the first draw and reused by every step.
    """

    def __init__(self, base: Callable, share_weight=0.0, flow=None, lam: float = 0.2,
                 mode: str = "variance_preserving"):
        self.base = base
        self.share_weight = share_weight
        self.flow = flow
        self.lam = lam
        self.mode = mode
        self.plan: NoisePlan | None = None

    def __call__(self, sigma, sigma_next):
        noise = self.base(sigma, sigma_next)
        if self.plan is None or not self.plan.fits(noise):
            self.plan = NoisePlan(noise, self.share_weight, self.flow, self.lam, self.mode)
        return self.plan.apply(noise)


def shared_step_noise(noise: torch.Tensor, share_weight=0.0, flow=None, lam: float = 0.2,
                      mode: str = "variance_preserving") -> torch.Tensor:
    """Apply :func:`share_noise` then :func:`blend_noise` (per video of a 5-D batch) to one noise draw."""
    return NoisePlan(noise, share_weight, flow, lam, mode).apply(noise)
