"""Optical flow between consecutive frames, forward-backward occlusion masks, flow resizing.

Convention (shared with :mod:`.warp`): a flow is ``[N, 2, H, W]`` in pixels, channel 0 = dx (along W),
channel 1 = dy (along H). The flow ``f`` *from* frame ``a`` *to* frame ``b`` satisfies
``b(p + f(p)) ~= a(p)``; hence ``warp(b, f) ~= a``. Frame ``i`` warped into frame ``i + 1``'s
coordinates is ``warp(frames[:-1], flow.backward)``.

Estimators:

- ``"classical"``: coarse-to-fine dense Lucas-Kanade (Gaussian-weighted windows, Tikhonov-regularised
  2x2 solve per pixel, iterative warping at each pyramid level, median filtering of the field).
  Pure torch + kornia, no weights, works on any channel count (RGB frames or diffusion latents).
- ``"raft"``: torchvision's RAFT (large or small, picked from the checkpoint's keys) with weights from a
  user file (safetensors or ``torch.load(weights_only=True)``); torchvision is imported lazily.
- ``"auto"``: RAFT when a weights file is given, else classical.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from kornia.filters import gaussian_blur2d, median_blur, spatial_gradient
from kornia.geometry.transform import pyrdown

from .checks import InputError, check_choice, check_finite, check_frames, check_nonempty, check_rank
from .video import both_directions
from .warp import warp

METHODS = ("auto", "classical", "raft")


@dataclass
class VideoFlow:
    """Optical flow of a video (the value carried by the ``VEK_FLOW`` socket).

    forward: ``[F-1, 2, H, W]`` flow from frame i to frame i+1 (pixels, dx, dy).
    backward: ``[F-1, 2, H, W]`` flow from frame i+1 to frame i.
    valid_forward / valid_backward: ``[F-1, 1, H, W]``, 1 = forward-backward consistent, 0 = occluded.
    """

    forward: torch.Tensor
    backward: torch.Tensor
    valid_forward: torch.Tensor
    valid_backward: torch.Tensor

    @property
    def frames(self) -> int:
        """Number of frames of the video this flow describes."""
        return self.forward.shape[0] + 1

    @property
    def size(self) -> tuple[int, int]:
        """``(H, W)`` of the flow grid."""
        return tuple(self.forward.shape[-2:])

    def resized(self, size: tuple[int, int]) -> "VideoFlow":
        """The same flow on an ``(H, W)`` grid, vectors rescaled with the grid; masks resized by nearest."""
        size = (int(size[0]), int(size[1]))
        return VideoFlow(
            forward=resize_flow(self.forward, size),
            backward=resize_flow(self.backward, size),
            valid_forward=resize_mask(self.valid_forward, size),
            valid_backward=resize_mask(self.valid_backward, size),
        )

    def to(self, *args, **kwargs) -> "VideoFlow":
        """Move/cast every tensor (``torch.Tensor.to`` arguments)."""
        return VideoFlow(*(t.to(*args, **kwargs) for t in (self.forward, self.backward, self.valid_forward, self.valid_backward)))


def resize_flow(flow: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """Resize ``flow [N, 2, H, W]`` to ``size = (H', W')`` (bilinear) and scale dx by W'/W, dy by H'/H."""
    check_rank(flow, "flow", 4, "[N, 2, H, W]")
    h, w = flow.shape[-2:]
    size = (int(size[0]), int(size[1]))
    if size == (h, w):
        return flow
    if size[0] < 1 or size[1] < 1:
        raise InputError("size", f"must be positive, got {size}", "resize to at least 1x1")
    if size[0] <= h and size[1] <= w:  # area-average when shrinking (no aliasing of the field)
        out = F.interpolate(flow, size=size, mode="area")
    else:
        out = F.interpolate(flow, size=size, mode="bilinear", align_corners=False)
    scale = torch.tensor([size[1] / w, size[0] / h], dtype=flow.dtype, device=flow.device).view(1, 2, 1, 1)
    return out * scale


def resize_mask(mask: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """Resize a 0/1 mask ``[N, 1, H, W]``: a cell stays valid only if all pixels it covers are valid."""
    if tuple(mask.shape[-2:]) == tuple(size):
        return mask
    if size[0] <= mask.shape[-2] and size[1] <= mask.shape[-1]:
        return (F.interpolate(mask.float(), size=size, mode="area") > 0.999).to(mask.dtype)
    return F.interpolate(mask.float(), size=size, mode="nearest").to(mask.dtype)


# ----------------------------------------------------------------------------- occlusion


def in_bounds(flow: torch.Tensor) -> torch.Tensor:
    """``[N, 1, H, W]`` 1 where ``p + flow(p)`` lies inside the image."""
    h, w = flow.shape[-2:]
    ys = torch.arange(h, device=flow.device, dtype=flow.dtype).view(1, h, 1)
    xs = torch.arange(w, device=flow.device, dtype=flow.dtype).view(1, 1, w)
    x = xs + flow[:, 0]
    y = ys + flow[:, 1]
    inside = (x >= -0.5) & (x <= w - 0.5) & (y >= -0.5) & (y <= h - 0.5)
    return inside.unsqueeze(1).to(flow.dtype)


def consistency_mask(flow: torch.Tensor, reverse: torch.Tensor, alpha: float = 0.01, beta: float = 0.5) -> torch.Tensor:
    """Forward-backward check (Sundaram et al. 2010, used by Lai et al. 2018): ``[N, 1, H, W]`` 1 = consistent.

    ``flow`` goes a -> b, ``reverse`` b -> a. With ``r = reverse(p + flow(p))`` a pixel is occluded when
    ``|flow + r|^2 > alpha (|flow|^2 + |r|^2) + beta`` or when ``p + flow(p)`` leaves the image.
    """
    r = warp(reverse, flow)
    err = (flow + r).pow(2).sum(1, keepdim=True)
    bound = alpha * (flow.pow(2).sum(1, keepdim=True) + r.pow(2).sum(1, keepdim=True)) + beta
    return (err <= bound).to(flow.dtype) * in_bounds(flow)


# ----------------------------------------------------------------------------- classical estimator


def _window(x: torch.Tensor, sigma: float) -> torch.Tensor:
    """Gaussian-weighted local sum (the Lucas-Kanade window)."""
    k = max(3, int(2 * round(2.5 * sigma) + 1))
    return gaussian_blur2d(x, (k, k), (sigma, sigma), border_type="replicate")


def _normalise(x: torch.Tensor) -> torch.Tensor:
    """Per-pair zero-mean, unit-std channels (makes the regulariser scale-free)."""
    dims = tuple(range(1, x.ndim))
    return (x - x.mean(dims, keepdim=True)) / (x.std(dims, keepdim=True) + 1e-6)


def lucas_kanade_step(a: torch.Tensor, b_warped: torch.Tensor, window: float, reg: float) -> torch.Tensor:
    """One dense Lucas-Kanade update ``du [N, 2, H, W]`` such that ``b_warped(p + du) ~= a(p)``.

    Solves ``(sum J^T J + reg I) du = -sum J^T (b_warped - a)`` per pixel over a Gaussian window, with
    the gradient ``J`` of the average of both images, summed over channels.
    """
    grad = spatial_gradient(0.5 * (a + b_warped), mode="diff", normalized=False)  # [N, C, 2, H, W]
    gx, gy = grad[:, :, 0], grad[:, :, 1]
    it = b_warped - a
    sxx = _window((gx * gx).sum(1, keepdim=True), window)
    sxy = _window((gx * gy).sum(1, keepdim=True), window)
    syy = _window((gy * gy).sum(1, keepdim=True), window)
    sxt = _window((gx * it).sum(1, keepdim=True), window)
    syt = _window((gy * it).sum(1, keepdim=True), window)
    sxx, syy = sxx + reg, syy + reg
    det = sxx * syy - sxy * sxy
    du = (-syy * sxt + sxy * syt) / det
    dv = (sxy * sxt - sxx * syt) / det
    return torch.cat([du, dv], 1)


def classical_flow(
    a: torch.Tensor,
    b: torch.Tensor,
    levels: int | None = None,
    iterations: int = 5,
    window: float = 2.0,
    reg: float = 1e-3,
) -> torch.Tensor:
    """Coarse-to-fine Lucas-Kanade flow from ``a`` to ``b`` (both ``[N, C, H, W]``): ``[N, 2, H, W]``.

    levels: pyramid depth (default: halve until the short side is under 16 px, at most 6 levels).
    iterations: warping iterations per level. window: sigma of the Gaussian window (pixels).
    reg: Tikhonov weight on the normalised images (keeps flat regions at the coarser estimate).
    """
    a, b = a.float(), b.float()
    stats = torch.cat([a, b], 1)
    mean = stats.mean((1, 2, 3), keepdim=True)
    std = stats.std((1, 2, 3), keepdim=True) + 1e-6
    a, b = (a - mean) / std, (b - mean) / std
    if levels is None:
        levels = 1
        h, w = a.shape[-2:]
        while min(h, w) >= 32 and levels < 6:
            h, w, levels = h // 2, w // 2, levels + 1
    pyramid = [(a, b)]
    for _ in range(levels - 1):
        pa, pb = pyramid[-1]
        pyramid.append((pyrdown(pa, border_type="replicate"), pyrdown(pb, border_type="replicate")))
    flow = torch.zeros(a.shape[0], 2, *pyramid[-1][0].shape[-2:], dtype=a.dtype, device=a.device)
    for la, lb in reversed(pyramid):
        flow = resize_flow(flow, la.shape[-2:]) if flow.shape[-2:] != la.shape[-2:] else flow
        for _ in range(iterations):
            du = lucas_kanade_step(la, warp(lb, flow), window, reg)
            flow = flow + du.clamp(-2.0, 2.0)
        if min(flow.shape[-2:]) >= 5:
            flow = median_blur(flow, (5, 5)) if min(flow.shape[-2:]) >= 16 else median_blur(flow, (3, 3))
    return flow


# ----------------------------------------------------------------------------- RAFT (torchvision)

_RAFT_CACHE: dict = {}


def _torchvision_raft():
    """Import torchvision's RAFT module lazily, with a clear error if torchvision is unusable."""
    try:
        from torchvision.models import optical_flow
    except Exception as err:  # ImportError, or torchvision's C++ ops failing to register
        raise InputError(
            "raft_weights",
            f"RAFT needs torchvision, which could not be imported ({err})",
            "install the torchvision build that matches your torch (ComfyUI ships it), or use method 'classical'",
        ) from err
    return optical_flow


def load_state_dict(path: str) -> dict:
    """Tensors of a checkpoint file: safetensors, or a torch file loaded with ``weights_only=True``."""
    if not os.path.isfile(path):
        raise InputError("raft_weights", f"file not found: {path}", "put RAFT weights in models/optical_flow or pick another file")
    if path.endswith(".safetensors"):
        from safetensors.torch import load_file

        sd = load_file(path, device="cpu")
    else:
        sd = torch.load(path, map_location="cpu", weights_only=True)
    for key in ("state_dict", "model"):
        if isinstance(sd, dict) and key in sd and isinstance(sd[key], dict):
            sd = sd[key]
    if not isinstance(sd, dict) or not sd:
        raise InputError("raft_weights", f"{os.path.basename(path)} holds no state dict", "use a torchvision RAFT checkpoint (raft_large or raft_small)")
    return {k.removeprefix("module."): v for k, v in sd.items()}


def load_raft(path: str) -> torch.nn.Module:
    """torchvision RAFT (large or small, chosen from the checkpoint) with weights from ``path`` (cached)."""
    key = (os.path.abspath(path), os.path.getmtime(path) if os.path.exists(path) else None)
    if key in _RAFT_CACHE:
        return _RAFT_CACHE[key]
    sd = load_state_dict(path)
    optical_flow = _torchvision_raft()
    width = sd.get("feature_encoder.convnormrelu.0.weight")
    small = width is not None and width.shape[0] == 32
    model = (optical_flow.raft_small if small else optical_flow.raft_large)(weights=None, progress=False)
    missing, unexpected = model.load_state_dict(sd, strict=False)
    if missing or unexpected:
        raise InputError(
            "raft_weights",
            f"{os.path.basename(path)} does not match torchvision's raft_{'small' if small else 'large'} "
            f"({len(missing)} missing, {len(unexpected)} unexpected keys, e.g. {(missing or unexpected)[:3]})",
            "use torchvision's Raft_Large_Weights or Raft_Small_Weights state dict",
        )
    model.eval().requires_grad_(False)
    _RAFT_CACHE.clear()
    _RAFT_CACHE[key] = model
    return model


@torch.no_grad()
def raft_flow(model: torch.nn.Module, a: torch.Tensor, b: torch.Tensor, updates: int = 12, chunk: int = 4) -> torch.Tensor:
    """RAFT flow from ``a`` to ``b`` (``[N, 3, H, W]`` in 0..1): ``[N, 2, H, W]``.

    Pads (replicate) to a multiple of 8 and to at least 128 px per side (RAFT's correlation pyramid).
    """
    h, w = a.shape[-2:]
    ph, pw = max(128 - h, (-h) % 8), max(128 - w, (-w) % 8)
    device = next(model.parameters()).device
    dtype = next(model.parameters()).dtype
    out = []
    for i in range(0, a.shape[0], chunk):
        x = torch.stack([a[i : i + chunk], b[i : i + chunk]]).to(device, dtype) * 2 - 1
        x = F.pad(x.flatten(0, 1), (0, pw, 0, ph), mode="replicate").unflatten(0, (2, -1))
        flow = model(x[0], x[1], num_flow_updates=updates)[-1]
        out.append(flow[..., :h, :w].float().to(a.device))
    return torch.cat(out)


# ----------------------------------------------------------------------------- public entry


def estimate_flow(frames: torch.Tensor, method: str = "auto", raft_weights: str | None = None, trusted: bool = False, **classical) -> VideoFlow:
    """Flow of ``frames [F, C, H, W]`` (RGB in 0..1 for RAFT; any channels for classical) in both directions.

    method: ``"auto"`` (RAFT when ``raft_weights`` is given, else classical), ``"classical"`` or ``"raft"``.
    trusted: skip the value checks (empty, NaN: host reads) for frames the pack made itself inside the
    sampling loop. Extra keyword arguments go to :func:`classical_flow`. Returns a :class:`VideoFlow` with masks.
    """
    check_rank(frames, "frames", 4, "[F, C, H, W]")
    if not trusted:
        check_nonempty(frames, "frames")
        check_finite(frames, "frames")
    check_frames(frames.shape[0], "frames", 2)
    check_choice(method, "method", METHODS)
    if method == "auto":
        method = "raft" if raft_weights else "classical"
    a, b = both_directions(frames)
    if method == "raft":
        if not raft_weights:
            raise InputError("raft_weights", "method 'raft' needs a weights file", "put RAFT weights in models/optical_flow, or use method 'classical'")
        if frames.shape[1] != 3:
            raise InputError("frames", f"RAFT needs RGB frames, got {frames.shape[1]} channels", "use method 'classical' for latents or grayscale")
        both = raft_flow(load_raft(raft_weights), a, b)
    else:
        if min(frames.shape[-2:]) < 4:
            raise InputError("frames", f"frames of {tuple(frames.shape[-2:])} are too small for flow", "use frames of at least 4x4 pixels")
        both = classical_flow(a, b, **classical)
    n = frames.shape[0] - 1
    fwd, bwd = both[:n], both[n:]
    return VideoFlow(fwd, bwd, consistency_mask(fwd, bwd), consistency_mask(bwd, fwd))


# ----------------------------------------------------------------------------- alignment with a latent


def subsample_flow(backward: torch.Tensor, mask: torch.Tensor | None, stride: int):
    """Compose a per-frame backward flow ``[F-1, 2, H, W]`` into flows between frames ``stride`` apart.

    ``f_{a->a-s}(p) = f_{a->a-1}(p) + f_{a-1->a-s}(p + f_{a->a-1}(p))``; masks multiply along the chain.
    Returns ``[(F-1)/stride, 2, H, W]`` and the mask. Used to align a video's flow with a video latent
    whose frames are ``stride`` video frames apart (Wan: 4).
    """
    pairs = backward.shape[0]
    if stride < 1 or pairs % stride:
        raise InputError("flow", f"{pairs + 1} frames do not map onto latent frames {stride} apart",
                         "estimate the flow from the video that was encoded into this latent")
    flows, masks = [], []
    for end in range(stride, pairs + 1, stride):
        total = backward[end - 1:end].float()
        m = None if mask is None else mask[end - 1:end].float()
        for j in range(end - 2, end - stride - 1, -1):
            if m is not None:
                m = m * warp(mask[j:j + 1].float(), total, mode="nearest")
            total = total + warp(backward[j:j + 1].float(), total)
        flows.append(total)
        masks.append(m)
    return torch.cat(flows), (None if mask is None else torch.cat(masks))


def latent_flow(flow, frames: int, size: tuple[int, int]):
    """A video's flow (``VideoFlow``: ``backward [F-1, 2, H, W]``, ``valid_backward``) on a latent's frames and grid.

    ``frames``: the latent's frame count (F for an image model's frames-as-batch latent, T for a video
    latent whose frames are ``(F - 1) / (T - 1)`` video frames apart, e.g. 4 for Wan). ``size``: the
    latent's ``(h, w)``. Returns ``(backward [frames-1, 2, h, w], mask [frames-1, 1, h, w])``.
    """
    backward, mask = flow.backward.float(), flow.valid_backward.float()
    pairs = backward.shape[0]
    if frames < 2:
        raise InputError("latent", f"has {frames} frame(s); temporal tools need at least 2", "sample a video (a batch of frames)")
    if pairs != frames - 1:
        if pairs % (frames - 1):
            raise InputError("flow", f"is for {pairs + 1} frames, which does not map onto the latent's {frames} frames",
                             "estimate the flow from the video that was encoded into this latent (same frame count)")
        backward, mask = subsample_flow(backward, mask, pairs // (frames - 1))
    return resize_flow(backward, size), resize_mask(mask, size)


def end_point_error(flow: torch.Tensor, target: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
    """Mean end-point error ``|flow - target|_2`` over pixels (optionally where ``mask`` is 1)."""
    epe = (flow - target).pow(2).sum(1, keepdim=True).sqrt()
    if mask is None:
        return epe.mean()
    return (epe * mask).sum() / mask.sum().clamp_min(1)
