"""ZVRD temporal consistency guidance (Cao et al., "Temporal Consistency Guidance", Eq. 8-10).

At every sampling step the x0 prediction ``x0_hat`` of the model (after CFG) is pulled towards a
temporally consistent video by one gradient step on

- Eq. 8, pixel-level: ``L_PC = sum_i M_i * |x0_i - warp(x0_{i-1}, f_i)|_1`` (occlusion-masked L1 between
  each frame and the previous frame warped into it by the flow ``f_i`` from frame i to frame i-1);
- Eq. 9, semantic-level: ``L_SC = sum_i 1 - cos(E_i, E_{i-1})`` with ``E`` the CLIP image embedding;
- Eq. 10, total: ``L_TC = L_PC + gamma * L_SC``.

The gradient is taken with respect to ``x0_hat`` only: the model is called once per step, as without
guidance, and never differentiated. The step is ``x0_hat <- x0_hat - s * g`` with ``g`` the gradient
normalised to the RMS of ``x0_hat`` (see :func:`normalised_step`): the paper shifts the DDPM posterior
mean by ``s * grad`` (GDP-style); the mean is linear in ``x0_hat``, so moving ``x0_hat`` is the same
up to a per-step factor, and it works with every sampler that consumes a denoised prediction.
The pixel term is used only at or below a noise level (the paper's ``T_TC``: 300 of 1000 DDPM steps,
i.e. the last 30 % of the schedule); the semantic term throughout.

Loss space (paper silent, it ran a pixel-space model): ``"latent"`` (default) computes ``L_PC`` on the
latent x0 directly with the flow resized to the latent grid - the latent of a VAE is spatially aligned
with the image, so warping it is meaningful, and it needs no decoder backward pass (10-100x cheaper).
``"pixel"`` decodes x0 with a differentiable decoder (the VAE) and computes both losses on pixels.
The semantic term always needs RGB: in latent space it decodes with the given ``to_rgb`` callable
(the node passes the model's cheap linear latent-to-RGB preview projection).

Frames: x0 is ``[F, C, H, W]`` (image model, frames as batch) or ``[B, C, T, H, W]`` (video model).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from ..utils.checks import InputError, Range, check_choice, check_range
from ..utils.flow import resize_flow, resize_mask
from ..utils.video import frame_pairs, from_frames, split_streams, to_frames
from ..utils.warp import warp

LOSS_SPACES = ("latent", "pixel")
SCALE = Range(0.0, 10.0)  # guidance_scale s
GAMMA = Range(0.0, 100.0)  # semantic_weight gamma


def pixel_consistency_loss(x0: torch.Tensor, flow_backward: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
    """Eq. 8: ``sum_i mean(M_i * |x0_i - warp(x0_{i-1}, f_i)|)`` over consecutive pairs.

    Args:
        x0: frames ``[F, C, H, W]``.
        flow_backward: ``[F-1, 2, H, W]`` flow from frame i to frame i-1 (pixels of x0's grid).
        mask: ``[F-1, 1, H, W]`` occlusion mask (1 = consistent), or None.
    Returns: a scalar. The per-pair L1 is a mean over elements (the paper's sum divided by C*H*W) so the
    value does not grow with resolution.
    """
    prev, nxt = frame_pairs(x0)
    warped = warp(prev, flow_backward.to(x0.dtype))
    diff = (nxt - warped).abs()
    if mask is not None:
        diff = diff * mask.to(x0.dtype)
    return diff.flatten(1).mean(1).sum()


def semantic_consistency_loss(embeds: torch.Tensor) -> torch.Tensor:
    """Eq. 9: ``sum_i 1 - cos(E_i, E_{i-1})`` for image embeddings ``[F, D]``."""
    prev, nxt = frame_pairs(embeds)
    return (1.0 - F.cosine_similarity(nxt, prev, dim=-1)).sum()


def temporal_consistency_loss(pixel_loss: torch.Tensor | None, semantic_loss: torch.Tensor | None, gamma: float) -> torch.Tensor:
    """Eq. 10: ``L_TC = L_PC + gamma * L_SC`` (either term may be absent)."""
    total = 0.0
    if pixel_loss is not None:
        total = total + pixel_loss
    if semantic_loss is not None and gamma != 0:
        total = total + gamma * semantic_loss
    return total


def normalised_step(x0: torch.Tensor, grad: torch.Tensor, scale: float) -> torch.Tensor:
    """``x0 - scale * rms(x0) * grad / rms(grad)``: a step of ``scale`` in units of x0's own RMS.

    ``x0`` unchanged where the gradient's RMS is 0 or not finite; decided on the device (no host read).
    """
    g_rms = grad.float().pow(2).mean().sqrt()
    x_rms = x0.float().pow(2).mean().sqrt().clamp_min(1e-6)
    stepped = x0 - (scale * x_rms / g_rms * grad.float()).to(x0.dtype)
    return torch.where(torch.isfinite(g_rms) & (g_rms != 0.0), stepped, x0)


@dataclass
class GuidanceSettings:
    """Inputs of the temporal consistency guidance (defaults are this pack's, see the module docstring).

    scale: s, step size in units of x0's RMS (0 disables). gamma: weight of the semantic term (Eq. 10).
    pixel_sigma: the pixel term is used only when the step's sigma <= pixel_sigma (T_TC). loss_space:
    ``"latent"`` or ``"pixel"``. chunk: frames per decoder / image-encoder pass (bounds their memory).
    """

    scale: float = 0.2
    gamma: float = 1.0
    pixel_sigma: float = float("inf")
    loss_space: str = "latent"
    chunk: int = 4

    def check(self):
        SCALE.check(self.scale, "guidance_scale")
        GAMMA.check(self.gamma, "semantic_weight")
        if not self.pixel_sigma >= 0:
            raise InputError("pixel_start", f"gives a negative noise level {self.pixel_sigma}", "set pixel_start in [0, 1]")
        check_choice(self.loss_space, "loss_space", LOSS_SPACES)
        check_range(self.chunk, "chunk", 1, None, integer=True)
        return self


class TemporalConsistencyGuidance:
    """Apply Eq. 8-10 gradient guidance to an x0 prediction; call once per model evaluation.

    Args:
        settings: :class:`GuidanceSettings`.
        to_rgb: differentiable ``latent frames [N, C, h, w] -> RGB [N, 3, H, W]`` in 0..1; needed for
            ``loss_space="pixel"``, for the semantic term and for flow re-estimation.
        embed: differentiable ``RGB [N, 3, H, W] -> [N, D]`` image encoder (CLIP), or None (no semantic term).
        flow: ``(backward [F-1, 2, H, W], mask [F-1, 1, H, W])`` in pixels of any resolution (resized
            to the loss grid and moved to its device once, then reused by every step), with F the latent's
            frame count; or None to re-estimate it every step. Build one guidance per sampling run.
        estimate_flow: ``frames [F, C, H, W] -> (backward, mask)``, used when ``flow`` is None: the flow
            for step t is estimated on step t+1's x0 (as in the paper), on the latent in latent space and
            on the decoded RGB in pixel space.
    """

    def __init__(self, settings: GuidanceSettings, to_rgb: Callable | None = None, embed: Callable | None = None,
                 flow: tuple[torch.Tensor, torch.Tensor] | None = None, estimate_flow: Callable | None = None):
        self.settings = settings.check()
        self.to_rgb = to_rgb
        self.embed = embed
        self.flow = flow
        self.estimate_flow = estimate_flow
        self._previous: list[torch.Tensor | None] = []
        self._device = torch.device("cpu")
        self._aligned: dict = {}  # (size, device) -> the fixed flow on the loss grid (per run)
        if settings.loss_space == "pixel" and to_rgb is None:
            raise InputError("vae", "loss_space 'pixel' needs a decoder", "connect a VAE, or set loss_space to 'latent'")

    @property
    def active(self) -> bool:
        return self.settings.scale > 0

    def _flow_at(self, video: int, size: tuple[int, int], frames: int):
        """``(backward, mask)`` on the loss grid ``size`` and device, or None: the fixed flow (cached), else re-estimated."""
        if self.flow is not None:
            key = (tuple(size), self._device)
            if key not in self._aligned:
                self._aligned[key] = self._aligned_flow(*self.flow, size, frames)
            return self._aligned[key]
        if self.estimate_flow is not None and video < len(self._previous) and self._previous[video] is not None:
            return self._aligned_flow(*self.estimate_flow(self._previous[video]), size, frames)
        return None

    def _aligned_flow(self, backward: torch.Tensor, mask: torch.Tensor | None, size: tuple[int, int], frames: int):
        """A flow resized to ``size`` and moved to the loss's device, as plain tensors autograd can use."""
        backward = backward.detach().clone()  # a plain tensor: ComfyUI's inference-mode tensors cannot enter autograd
        mask = None if mask is None else mask.detach().clone()
        if backward.shape[0] != frames - 1:
            raise InputError("flow", f"has {backward.shape[0] + 1} frames, the latent has {frames}",
                             "estimate the flow from the same video (same frame count) as the latent")
        if tuple(backward.shape[-2:]) != tuple(size):
            backward = resize_flow(backward.float(), size)
            mask = None if mask is None else resize_mask(mask.float(), size)
        return backward.to(self._device), None if mask is None else mask.to(self._device)

    def video_gradient(self, x0: torch.Tensor, sigma: float, video: int = 0) -> torch.Tensor | None:
        """``d L_TC / d x0`` (Eq. 10) for one video's frames ``[F, C, H, W]`` at noise level ``sigma``; None if no term applies.

        The decoder (``to_rgb``) and the encoder (``embed``) run ``settings.chunk`` frames at a time: their outputs are
        computed without a graph, the loss is differentiated with respect to them, and the gradient is pulled back
        through each chunk by a vector-Jacobian product (exact; memory of one chunk's graph, one extra forward pass).
        """
        s = self.settings
        self._device = x0.device
        use_pixel = sigma <= s.pixel_sigma
        use_semantic = self.embed is not None and s.gamma > 0 and self.to_rgb is not None
        x_leaf = x0.detach().requires_grad_(True)
        rgb = rgb_leaf = emb_leaf = None
        if s.loss_space == "pixel" or use_semantic:
            rgb = chunked_forward(self.to_rgb, x0, s.chunk)
            rgb_leaf = rgb.requires_grad_(True)
        target = rgb_leaf if s.loss_space == "pixel" else x_leaf
        pixel = semantic = None
        if use_pixel:
            flow = self._flow_at(video, target.shape[-2:], x0.shape[0])
            if flow is not None:
                pixel = pixel_consistency_loss(target, *flow)
        if use_semantic:
            emb_leaf = chunked_forward(self.embed, rgb, s.chunk).requires_grad_(True)
            semantic = semantic_consistency_loss(emb_leaf)
        if self.flow is None and self.estimate_flow is not None:
            while len(self._previous) <= video:
                self._previous.append(None)
            self._previous[video] = target.detach().clamp(0, 1) if s.loss_space == "pixel" else target.detach()
        total = temporal_consistency_loss(pixel, semantic, s.gamma)
        if not isinstance(total, torch.Tensor) or not total.requires_grad:
            return None
        leaves = [t for t in (x_leaf, rgb_leaf, emb_leaf) if t is not None]
        grads = dict(zip(map(id, leaves), torch.autograd.grad(total, leaves, allow_unused=True)))
        g_x = grads[id(x_leaf)]
        g_rgb = grads.get(id(rgb_leaf)) if rgb_leaf is not None else None
        if emb_leaf is not None and grads[id(emb_leaf)] is not None:
            g_sem = chunked_vjp(self.embed, rgb.detach(), grads[id(emb_leaf)], s.chunk)
            g_rgb = g_sem if g_rgb is None else g_rgb + g_sem
        if g_rgb is not None:
            g_dec = chunked_vjp(self.to_rgb, x0.detach(), g_rgb, s.chunk)
            g_x = g_dec if g_x is None else g_x + g_dec
        return g_x

    def __call__(self, x0: torch.Tensor, sigma: float) -> torch.Tensor:
        """Guided x0 prediction: one normalised gradient step on L_TC w.r.t. x0 (``[F, C, H, W]`` or ``[B, C, T, H, W]``)."""
        if not self.active:
            return x0
        frames, batch = to_frames(x0)
        videos = 1 if batch is None else batch
        per = frames.shape[0] // videos
        if per < 2:
            return x0
        with torch.inference_mode(False), torch.enable_grad():
            work = frames.detach().clone().float()
            grads = [self.video_gradient(part, float(sigma), v) for v, part in enumerate(split_streams(work, videos))]
        if all(g is None for g in grads):
            return x0
        grad = torch.cat([torch.zeros_like(work[:per]) if g is None else g.detach() for g in grads])
        guided = normalised_step(frames.detach().float(), grad, self.settings.scale)
        return from_frames(guided.to(x0.dtype), batch)


def chunked_forward(fn: Callable, x: torch.Tensor, chunk: int) -> torch.Tensor:
    """``fn(x)`` computed ``chunk`` frames at a time without an autograd graph (a plain, detached tensor)."""
    with torch.no_grad():
        return torch.cat([fn(x[i:i + chunk]) for i in range(0, x.shape[0], max(1, chunk))]).detach()


def chunked_vjp(fn: Callable, x: torch.Tensor, grad_out: torch.Tensor, chunk: int) -> torch.Tensor:
    """``(d fn / d x)^T grad_out`` for a frame-wise ``fn``, recomputing ``fn`` with a graph ``chunk`` frames at a time."""
    parts = []
    for i in range(0, x.shape[0], max(1, chunk)):
        leaf = x[i:i + chunk].detach().requires_grad_(True)
        out = fn(leaf)
        (g,) = torch.autograd.grad(out, leaf, grad_out[i:i + chunk].to(out.dtype), allow_unused=True)
        parts.append(torch.zeros_like(leaf) if g is None else g)
    return torch.cat(parts)
