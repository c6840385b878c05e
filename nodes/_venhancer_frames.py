"""VEnhancer's frame handling in the node layer: resize, key-frame repetition, padding, tiled encode and decode.

Shared by VEnhancer Conditioning / Decode and VEnhancer Upscale; each phase runs in frame batches with its own
progress bar, Cancel checked between batches.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from ..models.venhancer import latent_size_ok
from ..samplers import venhancer as S
from ..utils.checks import InputError
from ..utils.memory import PeakMemory, memory_ui, report_lines
from ._common import Progress, show_text, throw_if_interrupted
from ._compat import check_vae_channels

CONTEXT_TOKENS = 77  # the official OpenCLIP tokenizer truncates to 77 tokens


#: The upscale's phases, in order; each has its own progress bar and is named on the node when it starts.
PHASES = ("resize", "VAE encode", "sampling", "VAE decode")
#: Pixels per frame batch of the resize, encode and decode phases: 8 frames up to 512x512, 1 frame from about
#: 1.4 MP. Cancel is checked and progress reported between batches, so a batch bounds how long Cancel waits.
PIXEL_BUDGET = 8 * 512 * 512


def frame_batch(height: int, width: int) -> int:
    """Frames per batch at ``height`` x ``width`` pixels: 1 to 8 within :data:`PIXEL_BUDGET`."""
    return max(1, min(8, PIXEL_BUDGET // max(1, height * width)))


def phase(index: int, total: int) -> Progress:
    """The progress bar of phase ``PHASES[index]`` over ``total`` units, named on the node ("VEnhancer Upscale: VAE encode (2/4)")."""
    show_text(f"VEnhancer: {PHASES[index]} ({index + 1}/{len(PHASES)})")  # Conditioning: 1-2, the sampler: 3, Decode: 4
    return Progress(total)


def in_batches(fn, x: torch.Tensor, size: int, phase_index: int) -> torch.Tensor:
    """``fn`` over batches of ``size`` frames of ``x`` (axis 0), concatenated: Cancel checked before, progress after each batch."""
    starts = range(0, x.shape[0], size)
    progress = phase(phase_index, len(starts))
    out = []
    for i in starts:
        throw_if_interrupted()
        out.append(fn(x[i : i + size]))
        progress.tick()
    return torch.cat(out, dim=0)


def _resize(frames: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """Bilinear resize of [F, 3, H, W] frames in 0..1 to ``size``, in frame batches (phase 1)."""
    def resize(batch):
        return F.interpolate(batch, size=size, mode="bilinear", align_corners=False).clamp(0, 1)

    return in_batches(resize, frames, frame_batch(*size), 0)


def _decode(vae, latents: torch.Tensor) -> torch.Tensor:
    """Tiled VAE decode of [F, C, h, w] (already divided by the latent scale) in frame batches -> [F, H, W, 3] (phase 4)."""
    def decode(batch):
        img = vae.decode_tiled(batch, tile_x=128, tile_y=72, overlap=16)
        return img.reshape(-1, *img.shape[-3:]).float().cpu()

    return in_batches(decode, latents, frame_batch(latents.shape[-2] * 8, latents.shape[-1] * 8), 3)


def _encode(vae, pixels: torch.Tensor) -> torch.Tensor:
    """VAE encode [F, H, W, 3] in frame batches -> [F, C, h, w] (ComfyUI's unscaled latents; phase 2)."""
    def encode(batch):
        return vae.encode(batch).float().cpu()

    return in_batches(encode, pixels, frame_batch(pixels.shape[1], pixels.shape[2]), 1)


def frames_between(fps: float, target_fps: float, frame_interpolation: int, chunk_length: int | None = None) -> int:
    """New frames per gap between key frames (from target_fps, else frame_interpolation), checked against the window."""
    interp = S.interp_frames(fps, target_fps) if target_fps > 0 else int(frame_interpolation)
    if chunk_length is not None and chunk_length < 2 * (interp + 1) + 1:
        raise InputError("chunk_length", f"{chunk_length} frames cannot hold two key frames with {interp} new frames between them",
                         f"set chunk_length to at least {2 * (interp + 1) + 1} or lower the frame rate increase")
    return interp


def encoded_frames(vae, images: torch.Tensor, cfg, up_scale: float, resolution_rule: str, padding: str, interp: int):
    """Resize (bilinear), repeat the key frames, pad (white) and encode: ``(latents [F, 4, h, w] scaled, (H, W), pads)``."""
    _, h, w, _ = images.shape
    th, tw = (S.adjust_resolution if resolution_rule == "official" else S.scaled_resolution)(h, w, up_scale)
    frames = S.repeat_key_frames(_resize(images.movedim(-1, 1).float(), (th, tw)), interp)
    pads = S.pad_to_fit(th, tw) if padding == "official" else S.pad_minimal(th, tw, lambda a, b: latent_size_ok(a, b, cfg))
    if not latent_size_ok((th + pads[2] + pads[3]) // 8, (tw + pads[0] + pads[1]) // 8, cfg):
        pads = S.pad_minimal(th, tw, lambda a, b: latent_size_ok(a, b, cfg))
    frames = F.pad(frames, pads, mode="constant", value=1.0)
    latents = _encode(vae, frames.movedim(1, -1)) * S.LATENT_SCALE  # [F, 4, h, w]
    return latents, (th, tw), pads


def check_vae(vae, cfg) -> None:
    """Fail unless ``vae`` is an 8x image VAE with the network's latent channels (SD1.x / SD2.x), before anything is encoded."""
    fix = "load the SD 2.1 / SD 1.x VAE (vae-ft-mse-840000-ema-pruned)"
    check_vae_channels(vae, "vae", cfg.in_channels, 2, fix)
    down = getattr(vae, "downscale_ratio", 8)
    if not isinstance(down, int) or down != 8:
        raise InputError("vae", f"has downscale ratio {down}, VEnhancer needs an 8x SD VAE", fix)


def memory_output(outputs: tuple, peak: PeakMemory, title: str):
    """``io.NodeOutput(*outputs)`` with ``peak``'s report in the UI output (``vek_memory``), its lines shown on the node and logged."""
    from comfy_api.latest import io

    report = peak.report()
    show_text("\n".join(report_lines(report, f"{title} peak memory")))
    return io.NodeOutput(*outputs, ui=memory_ui(report))
