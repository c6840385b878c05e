"""Full-reference video quality metrics (pure torch, no ComfyUI).

Every metric takes frames as a batch ``[F, C, H, W]`` or videos ``[B, C, T, H, W]`` (flattened to
``B * T`` frames, batch-major, by :func:`utils.video.to_frames`), with values in the input's own range
(images 0..1: ``data_range = 1``). ``*_per_frame`` functions return one value per frame ``[F]`` (``[B * T]``);
the plain names return the mean over frames as a 0-D tensor.

- MSE, PSNR (``10 log10(L^2 / MSE)`` per frame, averaged over frames; identical frames give ``inf``).
- SSIM (Wang et al. 2004) by :func:`kornia.metrics.ssim`: gaussian window (sigma 1.5, 11 taps), map
  averaged over channels and pixels.
- MSE_l, the NC paper's low-frequency MSE: MSE between the FFT low-pass (threshold frequency nu = 0.5,
  the paper's Eq. 9 box filter over H, W) of the result and of the reference.
- SF, spatial frequency ``sqrt(RF^2 + CF^2)``, RF / CF the root-mean-square of the horizontal /
  vertical first differences (mean over the ``H (W - 1)`` / ``(H - 1) W`` differences and the channels);
  ``D_SF = SF(result) - SF(reference)`` (NC paper: > 0 means more detail than the reference).
- WE, warping error (Lai et al. 2018, the temporal metric ZVRD reports): for each pair of consecutive frames,
  the mean over non-occluded pixels and channels of the *squared* difference between frame ``i + 1`` and
  frame ``i`` backward-warped by the flow from ``i + 1`` to ``i``. ZVRD's tables print it x100 ("%").
"""

from __future__ import annotations

import math

import torch
from kornia.metrics import ssim as _kornia_ssim

from .checks import (
    InputError,
    check_finite,
    check_nonempty,
    check_range,
    check_rank,
    check_same_shape,
)
from .video import to_frames
from .warp import warp

__all__ = [
    "d_sf",
    "d_sf_per_frame",
    "flow_map_error",
    "flow_map_error_per_pair",
    "frame_similarity",
    "frame_similarity_per_pair",
    "mse",
    "mse_low",
    "mse_low_per_frame",
    "mse_per_frame",
    "psnr",
    "psnr_per_frame",
    "relative_rms",
    "spatial_frequency",
    "spatial_frequency_per_frame",
    "ssim",
    "ssim_per_frame",
    "warping_error",
    "warping_error_per_pair",
]


# ----------------------------------------------------------------------------------------- inputs
def as_frames(x: torch.Tensor, name: str) -> torch.Tensor:
    """Checked ``[F, C, H, W]`` float frames from ``[F, C, H, W]`` or ``[B, C, T, H, W]``."""
    check_rank(x, name, (4, 5), "[F, C, H, W] or [B, C, T, H, W]")
    check_nonempty(x, name)
    check_finite(x, name)
    frames, _ = to_frames(x)
    return frames if frames.is_floating_point() else frames.float()


def frame_pair(result: torch.Tensor, reference: torch.Tensor, names=("result", "reference")):
    """Both inputs as frames of the same shape (an InputError naming both otherwise)."""
    check_rank(result, names[0], (4, 5), "[F, C, H, W] or [B, C, T, H, W]")
    check_rank(reference, names[1], (4, 5), "[F, C, H, W] or [B, C, T, H, W]")
    check_same_shape(result, reference, names[0], names[1])
    a, b = as_frames(result, names[0]), as_frames(reference, names[1])
    dtype = torch.promote_types(a.dtype, b.dtype)
    return a.to(dtype), b.to(dtype)


#: Frames processed at once by the heavier metrics (SSIM, MSE_l, WE): bounds memory on long, large videos.
CHUNK = 8


def _chunked(fn, *tensors: torch.Tensor, chunk: int | None = None) -> torch.Tensor:
    """``fn(*tensor_chunks) -> [n]`` applied to ``chunk`` (default :data:`CHUNK`) frames at a time, concatenated: ``[N]``."""
    n, chunk = tensors[0].shape[0], chunk or CHUNK
    return torch.cat([fn(*(t[i : i + chunk] for t in tensors)) for i in range(0, n, chunk)])


def _check_data_range(data_range: float) -> float:
    if not isinstance(data_range, (int, float)) or isinstance(data_range, bool):
        raise InputError("data_range", f"must be a number, got {type(data_range).__name__}", "pass 1.0 for images in 0..1, 255.0 for 0..255")
    if not math.isfinite(data_range) or data_range <= 0:
        raise InputError("data_range", f"must be a positive finite number, got {data_range!r}", "pass 1.0 for images in 0..1, 255.0 for 0..255")
    return float(data_range)


# ----------------------------------------------------------------------------------- MSE and PSNR
def mse_per_frame(result: torch.Tensor, reference: torch.Tensor) -> torch.Tensor:
    """Mean squared error of each frame, ``mean_{c,h,w} (x - y)^2``: ``[F]``."""
    a, b = frame_pair(result, reference)
    return (a - b).square().flatten(1).mean(1)


def mse(result: torch.Tensor, reference: torch.Tensor) -> torch.Tensor:
    """MSE over the whole video (mean of the per-frame MSE; frames are the same size)."""
    return mse_per_frame(result, reference).mean()


def psnr_from_mse(err: torch.Tensor, data_range: float = 1.0) -> torch.Tensor:
    """``PSNR = 10 log10(L^2 / MSE)`` in dB; ``inf`` where ``MSE = 0``."""
    data_range = _check_data_range(data_range)
    return 10.0 * torch.log10(data_range**2 / err)


def psnr_per_frame(result: torch.Tensor, reference: torch.Tensor, data_range: float = 1.0) -> torch.Tensor:
    """PSNR of each frame in dB, ``10 log10(L^2 / MSE_f)``: ``[F]`` (``inf`` for identical frames)."""
    data_range = _check_data_range(data_range)
    return psnr_from_mse(mse_per_frame(result, reference), data_range)


def psnr(result: torch.Tensor, reference: torch.Tensor, data_range: float = 1.0) -> torch.Tensor:
    """Video PSNR: the mean of the per-frame PSNR (the usual video convention), dB."""
    return psnr_per_frame(result, reference, data_range).mean()


def relative_rms(x: torch.Tensor, reference: torch.Tensor) -> torch.Tensor:
    """``RMS(x - reference) / RMS(reference)`` (= ``||x - ref||_2 / ||ref||_2``) over all elements, in float32: 0-D.

    Any shapes that match (outputs, weights, latents); 0 when both are zero, ``inf`` when only the reference is.
    """
    check_same_shape(x, reference, "x", "reference")
    for t, name in ((x, "x"), (reference, "reference")):
        check_nonempty(t, name)
        check_finite(t, name)
    a, b = x.detach().float(), reference.detach().float()
    num, den = (a - b).square().mean().sqrt(), b.square().mean().sqrt()
    zero = torch.zeros((), device=num.device)
    return torch.where(den > 0, num / den.clamp_min(torch.finfo(torch.float32).tiny), torch.where(num > 0, zero + torch.inf, zero))


# ------------------------------------------------------------------------------------------ SSIM
def ssim_window(window_size: int, height: int, width: int) -> int:
    """The odd SSIM window used on an ``H x W`` frame: ``window_size``, shrunk so its radius fits the frame."""
    check_range(window_size, "window_size", 3, 63, integer=True)
    if window_size % 2 == 0:
        raise InputError("window_size", f"must be odd, got {window_size}", f"use {window_size + 1}")
    largest = 2 * (min(height, width) - 1) - 1  # reflect padding needs radius < size
    if largest < 1:
        raise InputError("frames", f"are {height}x{width}: SSIM needs frames of at least 2x2 pixels", "use larger frames")
    return int(min(window_size, largest if largest % 2 else largest - 1))


def ssim_per_frame(result: torch.Tensor, reference: torch.Tensor, data_range: float = 1.0, window_size: int = 11) -> torch.Tensor:
    """Mean SSIM of each frame (Wang et al. 2004, gaussian window sigma 1.5, by kornia): ``[F]``.

    ``window_size`` (odd, default 11) shrinks on frames smaller than the window.
    """
    data_range = _check_data_range(data_range)
    a, b = frame_pair(result, reference)
    window = ssim_window(window_size, a.shape[-2], a.shape[-1])
    work = torch.float32 if a.dtype in (torch.float16, torch.bfloat16) else a.dtype
    return _chunked(lambda x, y: _kornia_ssim(x.to(work), y.to(work), window, max_val=data_range).flatten(1).mean(1), a, b)


def ssim(result: torch.Tensor, reference: torch.Tensor, data_range: float = 1.0, window_size: int = 11) -> torch.Tensor:
    """Video SSIM: the mean of the per-frame SSIM."""
    return ssim_per_frame(result, reference, data_range, window_size).mean()


# --------------------------------------------------------------------------- low-frequency MSE
def low_pass(x: torch.Tensor, cutoff: float, mask: str | None = None) -> torch.Tensor:
    """The NC paper's FFT low-pass ``f_l^nu`` (Eq. 9), per frame over H, W (utils/fft.py; default mask: the published box)."""
    from . import fft

    return fft.low_pass(x, cutoff) if mask is None else fft.low_pass(x, cutoff, mask=mask)


def mse_low_per_frame(result: torch.Tensor, reference: torch.Tensor, cutoff: float = 0.5, mask: str | None = None) -> torch.Tensor:
    """MSE_l of each frame: ``mean (f_l^nu(x) - f_l^nu(x_r))^2`` with threshold frequency ``nu = cutoff``: ``[F]``.

    ``cutoff`` in (0, 1]: the fraction of the half-spectrum kept on each axis (NC paper: 0.5).
    ``mask``: a utils.fft mask name; None = utils.fft's default (``ideal_reference``, the authors' box).
    """
    check_range(cutoff, "cutoff", 0.0, 1.0)
    if cutoff <= 0:
        raise InputError("cutoff", "is 0: the low band is empty and MSE_l would always be 0", "use a cutoff in (0, 1], e.g. 0.5")
    a, b = frame_pair(result, reference)
    work = torch.float32 if a.dtype in (torch.float16, torch.bfloat16) else a.dtype

    def per_frame(x, y):
        return (low_pass(x.to(work), cutoff, mask) - low_pass(y.to(work), cutoff, mask)).square().flatten(1).mean(1)

    return _chunked(per_frame, a, b)


def mse_low(result: torch.Tensor, reference: torch.Tensor, cutoff: float = 0.5, mask: str | None = None) -> torch.Tensor:
    """Video MSE_l (NC paper, nu = 0.5): the mean of the per-frame MSE_l."""
    return mse_low_per_frame(result, reference, cutoff, mask).mean()


# --------------------------------------------------------------------------- spatial frequency
def spatial_frequency_per_frame(frames: torch.Tensor) -> torch.Tensor:
    """Spatial frequency of each frame, ``SF = sqrt(RF^2 + CF^2)``: ``[F]``.

    ``RF^2`` = mean of ``(x[h, w] - x[h, w-1])^2`` (horizontal differences), ``CF^2`` = mean of
    ``(x[h, w] - x[h-1, w])^2`` (vertical), both over channels too. A constant frame has SF 0.
    """
    x = as_frames(frames, "frames")
    if x.shape[-1] < 2 or x.shape[-2] < 2:
        raise InputError("frames", f"are {x.shape[-2]}x{x.shape[-1]}: spatial frequency needs at least 2x2 pixels", "use larger frames")
    rf2 = (x[..., :, 1:] - x[..., :, :-1]).square().flatten(1).mean(1)
    cf2 = (x[..., 1:, :] - x[..., :-1, :]).square().flatten(1).mean(1)
    return (rf2 + cf2).sqrt()


def spatial_frequency(frames: torch.Tensor) -> torch.Tensor:
    """Video SF: the mean of the per-frame spatial frequency."""
    return spatial_frequency_per_frame(frames).mean()


def d_sf_per_frame(result: torch.Tensor, reference: torch.Tensor) -> torch.Tensor:
    """``D_SF = SF(result) - SF(reference)`` per frame (NC paper; > 0: more detail than the reference): ``[F]``."""
    a, b = frame_pair(result, reference)
    return spatial_frequency_per_frame(a) - spatial_frequency_per_frame(b)


def d_sf(result: torch.Tensor, reference: torch.Tensor) -> torch.Tensor:
    """Video D_SF: the mean over frames of ``SF(result) - SF(reference)``."""
    return d_sf_per_frame(result, reference).mean()


# ------------------------------------------------------------------------------- warping error
def _video_pairs(frames: torch.Tensor, name: str) -> tuple[torch.Tensor, torch.Tensor]:
    """Consecutive frame pairs ``(x_i, x_{i+1})``, each ``[P, C, H, W]``; a 5-D input pairs within each video."""
    check_rank(frames, name, (4, 5), "[F, C, H, W] or [B, C, T, H, W]")
    if frames.ndim == 5:
        length = frames.shape[2]
        x = as_frames(frames, name).unflatten(0, (frames.shape[0], length))  # [B, T, C, H, W]
    else:
        length = frames.shape[0]
        x = as_frames(frames, name).unsqueeze(0)
    if length < 2:
        raise InputError(name, f"has {length} frame(s); the warping error needs at least 2", "connect a video (a batch of frames)")
    return x[:, :-1].flatten(0, 1), x[:, 1:].flatten(0, 1)


def warping_error_per_pair(frames: torch.Tensor, flow: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
    """Warping error of each consecutive pair (Lai et al. 2018): ``[F - 1]`` (``[B * (T - 1)]`` for 5-D input).

    ``WE_i = sum_p M_i(p) |x_{i+1}(p) - warp(x_i, flow_i)(p)|^2 / (C * sum_p M_i(p))``, the squared error
    averaged over channels and non-occluded pixels.

    Args:
        frames: ``[F, C, H, W]`` or ``[B, C, T, H, W]``.
        flow: ``[F - 1, 2, H, W]`` backward flow in pixels (ch0 = dx, ch1 = dy) from frame ``i + 1`` to frame ``i``,
            so that ``warp(x_i, flow_i)`` is frame ``i`` in frame ``i + 1``'s coordinates.
        mask: ``[F - 1, 1, H, W]`` (or ``[F - 1, H, W]``), 1 = valid, 0 = occluded, in frame ``i + 1``'s coordinates;
            None counts every pixel. A fully occluded pair scores 0 (as Lai et al.'s evaluation code does).
    """
    prev, nxt = _video_pairs(frames, "frames")
    pairs, channels, h, w = nxt.shape
    check_rank(flow, "flow", 4, "[F-1, 2, H, W]")
    check_finite(flow, "flow")
    if tuple(flow.shape) != (pairs, 2, h, w):
        raise InputError(
            "flow",
            f"shape {tuple(flow.shape)} does not fit the video ({pairs} frame pairs of {h}x{w}); expected {(pairs, 2, h, w)}",
            "estimate the flow from this video, or resize it to the frames' resolution (utils.flow.resize_flow)",
        )
    if mask is None:
        mask = torch.ones(pairs, 1, h, w, dtype=nxt.dtype, device=nxt.device)
    else:
        check_rank(mask, "mask", (3, 4), "[F-1, 1, H, W]")
        check_finite(mask, "mask")
        if mask.ndim == 3:
            mask = mask.unsqueeze(1)
        if tuple(mask.shape) != (pairs, 1, h, w):
            raise InputError(
                "mask",
                f"shape {tuple(mask.shape)} does not fit the video; expected {(pairs, 1, h, w)}",
                "use the occlusion mask that came with the flow (same pairs and resolution)",
            )
        mask = mask.to(device=nxt.device, dtype=nxt.dtype)
    work = torch.float32 if nxt.dtype in (torch.float16, torch.bfloat16) else nxt.dtype
    def per_pair(x0, x1, fl, m):
        warped = warp(x0.to(work), fl.to(device=x1.device, dtype=work))
        sq = (x1.to(work) - warped).square() * m.to(work)
        count = m.to(work).flatten(1).sum(1) * channels
        return sq.flatten(1).sum(1) / count.clamp_min(torch.finfo(work).tiny)

    return _chunked(per_pair, prev, nxt, flow, mask)


def warping_error(frames: torch.Tensor, flow: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
    """Video warping error WE: the mean over frame pairs of :func:`warping_error_per_pair` (ZVRD prints it x100)."""
    return warping_error_per_pair(frames, flow, mask).mean()


# ------------------------------------------------------------------------------------ all at once
def frame_similarity_per_pair(embeds: torch.Tensor) -> torch.Tensor:
    """FS of each neighbour pair: ``cos(E_i, E_{i+1})`` of image embeddings ``[F, D]`` (CLIP) -> ``[F - 1]``."""
    check_rank(embeds, "embeds", 2, "[F, D]")
    if embeds.shape[0] < 2:
        raise InputError("embeds", f"has {embeds.shape[0]} frame(s); frame similarity needs at least 2", "connect a video")
    e = embeds.float()
    return torch.nn.functional.cosine_similarity(e[:-1], e[1:], dim=-1)


def frame_similarity(embeds: torch.Tensor) -> torch.Tensor:
    """FS (ZVRD's semantic temporal consistency, Wu et al. 2023): the mean neighbour cosine similarity; 1 for a still clip."""
    return frame_similarity_per_pair(embeds).mean()


def flow_map_error_per_pair(flow: torch.Tensor, reference_flow: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
    """OFME of each pair: mean end-point error ``|f - f_ref|_2`` over (valid) pixels, flows ``[F - 1, 2, H, W]`` -> ``[F - 1]``."""
    check_rank(flow, "flow", 4, "[F-1, 2, H, W]")
    if flow.shape != reference_flow.shape or flow.shape[1] != 2:
        raise InputError("reference_flow", f"shape {tuple(reference_flow.shape)} does not match the flow's {tuple(flow.shape)}",
                         "estimate both flows on videos of the same length and size")
    epe = (flow.float() - reference_flow.float()).pow(2).sum(dim=1, keepdim=True).sqrt()
    if mask is None:
        return epe.mean(dim=(1, 2, 3))
    m = mask.float()
    return (epe * m).sum(dim=(1, 2, 3)) / m.sum(dim=(1, 2, 3)).clamp_min(1.0)


def flow_map_error(flow: torch.Tensor, reference_flow: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
    """OFME (ZVRD, after Wang et al. 2024): mean end-point error between the result's and the reference's optical flow."""
    return flow_map_error_per_pair(flow, reference_flow, mask).mean()


METRICS = ("psnr_ssim", "mse_low", "spatial_frequency", "warping_error")


def video_metrics(
    result: torch.Tensor,
    reference: torch.Tensor,
    *,
    metrics=METRICS,
    cutoff: float = 0.5,
    window_size: int = 11,
    data_range: float = 1.0,
    flow: torch.Tensor | None = None,
    mask: torch.Tensor | None = None,
) -> dict[str, torch.Tensor]:
    """Per-frame metrics of ``result`` against ``reference`` (``[F, C, H, W]`` or ``[B, C, T, H, W]``).

    ``metrics`` picks groups from :data:`METRICS`. Returns a dict of 1-D tensors: ``mse``, ``psnr``, ``ssim``
    (``[F]``, group ``psnr_ssim``), ``mse_l`` (``[F]``), ``sf`` and ``d_sf`` (``[F]``, SF of the result and
    its difference to the reference's), ``we`` (``[F - 1]``, only when ``flow`` is given: the backward flow
    ``[F - 1, 2, H, W]`` from frame i+1 to i, ``mask`` its validity).
    """
    for m in metrics:
        check_choice_metric(m)
    frame_pair(result, reference)  # shapes, rank and NaN, whichever groups are picked
    out: dict[str, torch.Tensor] = {}
    if "psnr_ssim" in metrics:
        out["mse"] = mse_per_frame(result, reference)
        out["psnr"] = psnr_from_mse(out["mse"], data_range)
        out["ssim"] = ssim_per_frame(result, reference, data_range, window_size)
    if "mse_low" in metrics:
        out["mse_l"] = mse_low_per_frame(result, reference, cutoff)
    if "spatial_frequency" in metrics:
        out["sf"] = spatial_frequency_per_frame(result)
        out["d_sf"] = out["sf"] - spatial_frequency_per_frame(reference)
    if "warping_error" in metrics and flow is not None:
        out["we"] = warping_error_per_pair(result, flow, mask)
    return out


def check_choice_metric(name: str) -> str:
    """Fail unless ``name`` is one of :data:`METRICS`."""
    if name not in METRICS:
        raise InputError("metrics", f"unknown metric group {name!r}", f"use some of {list(METRICS)}")
    return name
