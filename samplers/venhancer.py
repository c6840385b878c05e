"""VEnhancer inference: schedule, conditioning, chunked DPM-Solver++(2M) SDE sampling (VEnhancer Sec. 3.3-3.4).

Reproduces the official inference (see ../../shared/facts/venhancer.md in the workspace):

- VP schedule ``logsnr_cosine_interp`` rescaled to zero terminal SNR (:mod:`.venhancer_schedule`);
  ``x_t = alpha_t x0 + sigma_t eps`` with ``alpha_t = sqrt(1 - sigma_t^2)``.
- v-prediction: ``x0 = alpha_t x_t - sigma_t v``; classifier-free guidance ``u + g (c - u)`` then
  guidance rescale 0.2 (per-sample std ratio of c to the guided output).
- Solver on the VE sigmas ``s = sigma/alpha`` with trailing discretisation from t = 899 (fast: 4 + 11
  timesteps, normal: ``steps + 1``), the penultimate step discarded, DPM-Solver++(2M) SDE (eta 1, midpoint).
- Key frames repeated ``interp + 1`` times; ``mask_cond`` maps each frame to its key frame or -1; the
  key-frame latents are diffused to ``noise_aug - 1`` (the hint) and the ControlNet also gets ``s_cond``.
- More than ``chunk_length`` frames: windows aligned to key frames with 50 % overlap; the x0 predictions
  of the windows are cross-faded linearly over each overlap at every solver step.

Everything is plain torch: a ``model(x, t, context, hint=, t_hint=, s_cond=, mask_cond=) -> v`` callable
(e.g. :class:`~video_enhance_kit.models.venhancer.VEnhancerUNet`) and latents ``[B, C, F, H, W]``.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import torch

from .venhancer_schedule import (
    T_START,
    VEnhancerSchedule,
    model_call_timesteps,
    solver_sigmas,
)

GUIDE_RESCALE = 0.2
LATENT_SCALE = 0.18215  # SD VAE scale factor (the VEnhancer latents are scaled SD-VAE latents)
POSITIVE_SUFFIX = (
    ", Cinematic, High Contrast, highly detailed, taken using a Canon EOS R camera, hyper detailed photo - "
    "realistic maximum detail, 32k, Color Grading, ultra HD, extreme meticulous detailing, skin pore detailing, "
    "hyper sharpness, perfect without deformations."
)
NEGATIVE_PROMPT = (
    "painting, oil painting, illustration, drawing, art, sketch, oil painting, cartoon, CG Style, 3D render, "
    "unreal engine, blurring, dirty, messy, worst quality, low quality, frames, watermark, signature, "
    "jpeg artifacts, deformed, lowres, over-smooth"
)


# --------------------------------------------------------------------------- frames, sizes, chunks


def interp_frames(input_fps: float, target_fps: float) -> int:
    """New frames between two key frames: min(max(round(target / input) - 1, 0), 8)."""
    return int(min(max(round(target_fps / input_fps) - 1, 0), 8))


def make_mask_cond(key_frames: int, interp: int) -> list[int]:
    """Per output frame: the index of its key frame, or -1 for a frame to generate."""
    out: list[int] = []
    for i in range(key_frames):
        out.append(i)
        if i != key_frames - 1:
            out += [-1] * interp
    return out


def repeat_key_frames(frames: torch.Tensor, interp: int) -> torch.Tensor:
    """Each key frame but the last repeated interp + 1 times along axis 0: [K, ...] -> [(K-1)(interp+1)+1, ...]."""
    reps = torch.full((frames.shape[0],), interp + 1, dtype=torch.long)
    reps[-1] = 1
    return frames.repeat_interleave(reps.to(frames.device), dim=0)


def adjust_resolution(h: int, w: int, up_scale: float) -> tuple[int, int]:
    """Official target size: h, w times up_scale, the area kept between 1.5 x 720p and 1152 x 2048, even sizes."""
    if h * w * up_scale * up_scale < 720 * 1280 * 1.5:
        s = math.sqrt(720 * 1280 * 1.5 / (h * w))
    elif h * w * up_scale * up_scale > 1152 * 2048:
        s = math.sqrt(1152 * 2048 / (h * w))
    else:
        s = up_scale
    return int(s * h // 2 * 2), int(s * w // 2 * 2)


def scaled_resolution(h: int, w: int, up_scale: float) -> tuple[int, int]:
    """Exactly up_scale (even sizes, at least 2): the 'exact' resolution mode."""
    return max(2, int(up_scale * h // 2 * 2)), max(2, int(up_scale * w // 2 * 2))


def _centre(size: int, target: int) -> tuple[int, int]:
    a = (target - size) // 2
    return a, target - size - a


def pad_to_fit(h: int, w: int) -> tuple[int, int, int, int]:
    """Official padding (left, right, top, bottom) in pixels (F.pad order).

    Below 720 x 1280 each side is centred up to 720 / 1280; above, padded at the end to H = 16 mod 64
    (one extra 64 block, as upstream) and W = next multiple of 64 plus one extra block.
    """
    if h < 720:
        top, bottom = _centre(h, 720)
    elif h == 720:
        top = bottom = 0
    else:
        top, bottom = 0, int((h + 48) // 64 * 64) + 64 - 48 - h
    if w < 1280:
        left, right = _centre(w, 1280)
    elif w == 1280:
        left = right = 0
    else:
        left, right = 0, int(w // 64 * 64) + 64 - w
    return left, right, top, bottom


def pad_minimal(h: int, w: int, size_ok: Callable[[int, int], bool], factor: int = 8) -> tuple[int, int, int, int]:
    """Smallest centred padding (left, right, top, bottom) whose latent size (pixels / factor) fits the UNet."""
    hs = [h + (-h) % factor + factor * i for i in range(65)]
    ws = [w + (-w) % factor + factor * i for i in range(65)]
    fits = [(hh * ww, hh, ww) for hh in hs for ww in ws if size_ok(hh // factor, ww // factor)]
    if not fits:
        raise ValueError(f"no padding of {h}x{w} fits the UNet")
    _, hh, ww = min(fits)
    top, bottom = _centre(h, hh)
    left, right = _centre(w, ww)
    return left, right, top, bottom


def sliding_windows(total: int, window: int, overlap: int) -> list[tuple[int, int]]:
    """Windows [start, end) of ``window`` frames with ``overlap``; the last absorbs a tail of up to 1.33 windows."""
    stride = window - overlap
    out, i = [], 0
    while i < total:
        if i + round(window * 1.33) >= total or i + window >= total:
            out.append((i, total))
            break
        out.append((i, i + window))
        i += stride
    return out


def make_chunks(frames: int, interp: int, chunk_length: int = 32, overlap_ratio: float = 0.5) -> list[tuple[int, int]] | None:
    """Temporal windows aligned to key frames (official: 32 frames, 50 % overlap); None when one window suffices."""
    if frames <= chunk_length:
        return None
    step = interp + 1
    length = int((chunk_length - 1) // step * step + 1)
    overlap = int((chunk_length * overlap_ratio - 1) // step * step + 1)
    return sliding_windows(frames, length, overlap)


def crossfade_chunks(chunks: list[torch.Tensor], windows: list[tuple[int, int]]) -> torch.Tensor:
    """Join per-window predictions [B, C, f_i, H, W] along time, blending linearly over each overlap.

    In the overlap of windows k-1 and k the weight of window k rises as j / overlap, j = 0 .. overlap-1.
    """
    overlap = windows[0][1] - windows[1][0] if len(windows) > 1 else 0
    parts, prev = [], None
    for k, chunk in enumerate(chunks):
        if prev is not None and overlap > 0:  # blend with the previous window as already blended (upstream order)
            n = min(overlap, prev.shape[2], chunk.shape[2])
            coef = (torch.arange(n, dtype=torch.float32, device=chunk.device) / n).to(chunk.dtype).view(1, 1, n, 1, 1)
            head = prev[:, :, -n:] * (1 - coef) + chunk[:, :, :n] * coef
            chunk = torch.cat([head, chunk[:, :, n:]], dim=2)
        parts.append(chunk[:, :, : chunk.shape[2] - overlap] if k != len(chunks) - 1 else chunk)
        prev = chunk
    return torch.cat(parts, dim=2)


# --------------------------------------------------------------------------- guidance and solver


def rescaled_cfg(cond: torch.Tensor, uncond: torch.Tensor, scale: float, rescale: float = GUIDE_RESCALE) -> torch.Tensor:
    """u + g (c - u), then multiplied by rescale * std(c) / std(out) + (1 - rescale) per sample."""
    out = uncond + scale * (cond - uncond)
    if rescale:
        dims = tuple(range(1, out.ndim))
        ratio = cond.flatten(1).std(dim=1) / (out.flatten(1).std(dim=1) + 1e-12)
        out = out * (rescale * ratio.view(-1, *([1] * len(dims))) + (1 - rescale))
    return out


def sample_dpmpp_2m_sde(
    denoise: Callable[[torch.Tensor, torch.Tensor], torch.Tensor],
    x: torch.Tensor,
    sigmas: torch.Tensor,
    eta: float = 1.0,
    noise_sampler: Callable[[torch.Tensor, torch.Tensor], torch.Tensor] | None = None,
    callback: Callable[[int, torch.Tensor, torch.Tensor], None] | None = None,
) -> torch.Tensor:
    """DPM-Solver++(2M) SDE (midpoint) on VE sigmas; ``denoise(x, sigma) -> x0`` with x the VE sample.

    x: the VE sample at sigmas[0]; sigmas ends with 0. noise_sampler(sigma, sigma_next) -> unit noise
    (default: torch.randn_like). callback(i, x, x0) after each step. One ``denoise`` call per step, in order;
    the loop reads nothing back from the device.
    """
    old_x0, h_last = None, None
    last = (sigmas == 0).tolist()  # where the schedule ends, read once per run
    for i in range(len(sigmas) - 1):
        s, s_next = sigmas[i], sigmas[i + 1]
        x0 = denoise(x, s)
        if last[i + 1]:
            x = x0
        else:
            t, t_next = -s.log(), -s_next.log()
            h = t_next - t
            eta_h = eta * h
            x = s_next / s * (-eta_h).exp() * x + (-h - eta_h).expm1().neg() * x0
            if old_x0 is not None:
                r = h_last / h
                x = x + 0.5 * (-h - eta_h).expm1().neg() * (1 / r) * (x0 - old_x0)
            if eta:
                noise = noise_sampler(s, s_next) if noise_sampler is not None else torch.randn_like(x)
                x = x + noise * s_next * (-2 * eta_h).expm1().neg().sqrt()
            h_last = h
        old_x0 = x0
        if callback is not None:
            callback(i, x, x0)
    return x


# --------------------------------------------------------------------------- the whole sampling


@dataclass
class VEnhancerInputs:
    """What one sampling run needs (latents already padded and scaled by LATENT_SCALE).

    latents [B, C, F, H, W] of the repeated frames; mask_cond [B, F]; context / uncontext [B, L, D].
    """

    latents: torch.Tensor
    mask_cond: torch.Tensor
    context: torch.Tensor
    uncontext: torch.Tensor
    interp: int


def venhancer_sample(
    model: Callable,
    inputs: VEnhancerInputs,
    *,
    noise_aug: int = 200,
    s_cond: float = 8.0,
    cfg: float = 7.5,
    guide_rescale: float = GUIDE_RESCALE,
    mode: str = "fast",
    steps: int = 15,
    t_start: int = T_START,
    eta: float = 1.0,
    chunk_length: int = 32,
    chunk_overlap: float = 0.5,
    noise: torch.Tensor | None = None,
    hint_noise: torch.Tensor | None = None,
    generator: torch.Generator | None = None,
    noise_sampler: Callable | None = None,
    schedule: VEnhancerSchedule | None = None,
    on_model_call: Callable[[], None] | None = None,
    callback: Callable[[int, torch.Tensor, torch.Tensor], None] | None = None,
) -> torch.Tensor:
    """Official VEnhancer sampling; returns the clean latents [B, C, F, H, W] (still padded, scaled).

    noise_aug: key-frame noise augmentation timestep (0..300; the hint is diffused to noise_aug - 1).
    s_cond: the ControlNet's downscale-factor condition (8). cfg: guidance scale (7.5, 1 = no uncond pass).
    t_start: the input latents are diffused to this timestep (899) and denoised from there.
    noise / hint_noise: the Gaussian noise for the start and for the hint (default: drawn from ``generator``).
    on_model_call: called before every network call (progress, interruption).
    """
    schedule = schedule or VEnhancerSchedule.official()
    lat = inputs.latents
    if noise is None:
        noise = torch.randn(lat.shape, generator=generator, dtype=torch.float32).to(lat.device)
    conditions = key_frame_conditions(schedule, inputs, noise_aug, s_cond, hint_noise, generator)
    x_start = schedule.diffuse(lat, t_start, noise.to(lat))
    sigmas = solver_sigmas(schedule, mode, steps, t_start)
    timesteps = schedule.model_timesteps(sigmas[:-1])  # per run, on the CPU
    sigmas = sigmas.to(lat.device)
    if noise_sampler is None and eta:
        noise_sampler = lambda s, s_next: torch.randn(lat.shape, generator=generator, dtype=torch.float32).to(lat)
    predict = GuidedPrediction(model, inputs, conditions, schedule, cfg, guide_rescale, on_model_call)
    denoise = chunked_denoiser(predict, timesteps, make_chunks(lat.shape[2], inputs.interp, chunk_length, chunk_overlap) or [(0, lat.shape[2])])
    return sample_dpmpp_2m_sde(denoise, x_start * sigmas[0], sigmas, eta=eta, noise_sampler=noise_sampler, callback=callback)


def key_frame_conditions(schedule: VEnhancerSchedule, inputs: VEnhancerInputs, noise_aug: int, s_cond: float, hint_noise, generator) -> dict:
    """The ControlNet's conditions: the key-frame latents diffused to ``noise_aug - 1`` (hint, t_hint) and s_cond."""
    lat = inputs.latents
    dev = lat.device
    keys = lat[:, :, :: inputs.interp + 1]
    if hint_noise is None:
        hint_noise = torch.randn(keys.shape, generator=generator, dtype=torch.float32).to(dev)
    if noise_aug > 0:
        hint = schedule.diffuse(keys, noise_aug - 1, hint_noise.to(keys))
        t_hint = torch.full((lat.shape[0],), noise_aug - 1, device=dev)
    else:  # departure: upstream would index t = -1 (pure noise); 0 means a clean hint here
        hint, t_hint = keys, torch.zeros(lat.shape[0], device=dev)
    return {"hint": hint, "t_hint": t_hint, "s_cond": torch.full((lat.shape[0],), float(s_cond), device=dev)}


class GuidedPrediction:
    """x0 of one window at integer timestep t: v-prediction with CFG and guidance rescale (``x0 = alpha x_t - sigma v``)."""

    def __init__(self, model, inputs: VEnhancerInputs, conditions: dict, schedule: VEnhancerSchedule, cfg: float, guide_rescale: float, on_model_call):
        dev = inputs.latents.device
        self.model, self.inputs, self.conditions = model, inputs, conditions
        self.cfg, self.guide_rescale, self.on_model_call = cfg, guide_rescale, on_model_call
        self.vp_s, self.vp_a = schedule.sigmas.to(dev), schedule.alphas.to(dev)

    def __call__(self, xt: torch.Tensor, t: int, sl: slice) -> torch.Tensor:
        tt = torch.full((xt.shape[0],), t, device=xt.device, dtype=torch.long)
        kw = {**self.conditions, "mask_cond": self.inputs.mask_cond[:, sl]}
        if self.on_model_call:
            self.on_model_call()
        v = self.model(xt, tt, self.inputs.context, **kw)
        if self.cfg != 1.0:
            if self.on_model_call:
                self.on_model_call()
            u = self.model(xt, tt, self.inputs.uncontext, **kw)
            v = rescaled_cfg(v, u, self.cfg, self.guide_rescale)
        return self.vp_a[t] * xt - self.vp_s[t] * v


def chunked_denoiser(predict: GuidedPrediction, timesteps: list[int], windows: list[tuple[int, int]]):
    """``denoise(x, sigma) -> x0`` on the VE sample: per window x0 at the step's timestep, cross-faded over the overlaps.

    ``timesteps`` holds the integer timestep of each solver step (computed once per run), so a step reads
    nothing back from the device; the solver calls ``denoise`` once per step, in order.
    """
    step = iter(timesteps)

    def denoise(x: torch.Tensor, sigma: torch.Tensor) -> torch.Tensor:
        t = next(step)
        xt = x * (1 / (sigma**2 + 1.0) ** 0.5)  # c_in: the VP sample
        chunks = [predict(xt[:, :, a:b], t, slice(a, b)) for a, b in windows]
        return crossfade_chunks(chunks, windows) if len(windows) > 1 else chunks[0]

    return denoise


def model_calls_per_run(frames: int, interp: int, mode: str, steps: int, cfg: float, chunk_length: int = 32, chunk_overlap: float = 0.5) -> int:
    """Number of network calls one sampling run makes (for progress bars)."""
    windows = make_chunks(frames, interp, chunk_length, chunk_overlap) or [(0, frames)]
    n_steps = len(model_call_timesteps(mode, steps))
    return n_steps * len(windows) * (1 if cfg == 1.0 else 2)
