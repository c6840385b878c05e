"""VEnhancer nodes: load the official checkpoints, upscale a clip in space and time.

Thin adapters over :mod:`..models.venhancer` (network), :mod:`..models.venhancer_loading` (checkpoints)
and :mod:`..samplers.venhancer` (the official inference). ComfyUI supplies the VAE (tiled decode), the
text encoder (SD2.x OpenCLIP ViT-H through CLIPLoader + CLIPTextEncode) and model management: the
network is wrapped in a ``comfy.model_patcher.ModelPatcher`` and loaded with ``load_models_gpu``.
"""

from __future__ import annotations

import functools
import os
from fractions import Fraction

import comfy.model_management as mm
import comfy.model_patcher
import folder_paths
import torch
import torch.nn.functional as F
from comfy_api.latest import InputImpl, Types, io

from ..models.venhancer import latent_size_ok
from ..models.venhancer_loading import CheckpointError, load_venhancer
from ..samplers import venhancer as S
from ..utils.checks import InputError, check_choice
from ._common import (
    Progress,
    bounds,
    check_ranges,
    comfy_attention,
    image_frames,
    show_text,
    throw_if_interrupted,
)
from ._compat import check_vae_channels

CATEGORY = "video-enhance-kit/venhancer"
FOLDER = "venhancer"
VEnhancerModel = io.Custom("VEK_VENHANCER_MODEL")
DTYPES = {"fp16": torch.float16, "bf16": torch.bfloat16, "fp32": torch.float32}
CONTEXT_TOKENS = 77  # the official OpenCLIP tokenizer truncates to 77 tokens
RANGES = {
    "fps": (1.0, 240.0), "up_scale": (1.0, 8.0), "target_fps": (0.0, 240.0), "frame_interpolation": (0, 8), "noise_aug": (0, 300),
    "s_cond": (1.0, 16.0), "cfg": (1.0, 20.0), "steps": (2, 100), "chunk_length": (4, 256), "chunk_overlap": (0.1, 0.5),
}
SOLVER_MODES = ("fast", "normal")
RESOLUTION_RULES = ("official", "exact")
PADDINGS = ("official", "minimal")

# the `venhancer` models folder (models/venhancer/), with the file types the loader reads
if FOLDER not in folder_paths.folder_names_and_paths:
    folder_paths.folder_names_and_paths[FOLDER] = ([os.path.join(folder_paths.models_dir, FOLDER)], {".pt", ".pth", ".safetensors", ".sft"})


# ------------------------------------------------------------------------------------- loader
class VEnhancerModelLoader(io.ComfyNode):
    @classmethod
    def define_schema(cls):
        return io.Schema(
            node_id="VEK_VEnhancerModelLoader",
            display_name="VEnhancer Model Loader",
            category=CATEGORY,
            description=(
                "Load a VEnhancer checkpoint (UNet + video ControlNet) from models/venhancer: the official "
                "venhancer_paper.pt / venhancer_v2.pt (read without executing code) or a safetensors conversion "
                "(fp32 or fp16). ComfyUI's model management moves it to the GPU when used and offloads it after."
            ),
            inputs=[
                io.Combo.Input(
                    "ckpt_name",
                    options=folder_paths.get_filename_list(FOLDER),
                    tooltip="Checkpoint in models/venhancer: venhancer_v2.pt (recommended), venhancer_paper.pt (v1), or their safetensors conversions.",
                ),
                io.Combo.Input(
                    "dtype",
                    options=["auto", "fp16", "bf16", "fp32"],
                    default="auto",
                    tooltip="Weight dtype. auto: fp16 on GPU (the official setting, 4.1 GB), fp32 on CPU. bf16 avoids fp16 overflow on recent GPUs.",
                ),
            ],
            outputs=[io.Custom("VEK_VENHANCER_MODEL").Output(display_name="venhancer_model")],
        )

    @classmethod
    def execute(cls, ckpt_name, dtype="auto"):
        check_choice(dtype, "dtype", ["auto", *DTYPES])
        path = folder_paths.get_full_path(FOLDER, ckpt_name)
        if path is None:
            raise InputError("ckpt_name", f"{ckpt_name!r} is not in models/{FOLDER}", f"download venhancer_v2.pt into ComfyUI/models/{FOLDER}/ and refresh")
        load_device, offload_device = mm.get_torch_device(), mm.unet_offload_device()
        if dtype == "auto":
            torch_dtype = torch.float32 if load_device.type == "cpu" else torch.float16
        else:
            torch_dtype = DTYPES[dtype]
        try:
            model = load_venhancer(path, dtype=torch_dtype)
        except CheckpointError as err:
            raise InputError("ckpt_name", str(err), "pick an official VEnhancer checkpoint") from None
        patcher = comfy.model_patcher.ModelPatcher(model, load_device=load_device, offload_device=offload_device)
        return io.NodeOutput(patcher)


# ------------------------------------------------------------------------------------- upscale
def _text_context(conditioning, name: str, context_dim: int, truncate: bool) -> torch.Tensor:
    """The token tensor [1, L, D] of a CONDITIONING (first entry), checked against the network's width."""
    if not isinstance(conditioning, list) or not conditioning or not isinstance(conditioning[0][0], torch.Tensor):
        raise InputError(name, "is not a CONDITIONING", "connect CLIP Text Encode")
    ctx = conditioning[0][0]
    if ctx.ndim != 3 or ctx.shape[-1] != context_dim:
        raise InputError(
            name,
            f"has token width {ctx.shape[-1] if ctx.ndim == 3 else tuple(ctx.shape)}, the VEnhancer model needs {context_dim}",
            "encode the prompt with the SD 2.x text encoder (OpenCLIP ViT-H, e.g. CLIPLoader type stable_diffusion with open_clip_vit_h / sd2 clip)",
        )
    return ctx[:1, :CONTEXT_TOKENS] if truncate else ctx[:1]


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
    show_text(f"VEnhancer Upscale: {PHASES[index]} ({index + 1}/{len(PHASES)})")
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


class VEnhancerUpscale(io.ComfyNode):
    @classmethod
    def define_schema(cls):
        return io.Schema(
            node_id="VEK_VEnhancerUpscale",
            display_name="VEnhancer Upscale",
            category=CATEGORY,
            description=(
                "Generative space-time super-resolution (VEnhancer): up to 8x resolution and 9x frame rate with "
                "refined detail and less flicker. Reproduces the official inference: key-frame repetition, "
                "noise-augmented key-frame conditioning, DPM-Solver++(2M) SDE from t=899, CFG with rescale 0.2, "
                "32-frame windows cross-faded at every step, tiled VAE decoding."
            ),
            inputs=[
                VEnhancerModel.Input("venhancer_model", tooltip="From VEnhancer Model Loader."),
                io.Image.Input("images", tooltip="The low-resolution clip (frames as a batch), e.g. from Get Video Components."),
                io.Float.Input("fps", default=8.0, **bounds(RANGES, "fps"), step=0.01, tooltip="Frame rate of the input clip (Get Video Components gives it)."),
                io.Conditioning.Input("positive", tooltip="Prompt from CLIP Text Encode with the SD 2.x OpenCLIP ViT-H text encoder; the official pipeline appends 'Cinematic, High Contrast, highly detailed, ...' (see the example workflow)."),
                io.Conditioning.Input("negative", tooltip="Negative prompt (the official one is in the example workflow). The ControlNet sees it too in the unconditional pass."),
                io.Vae.Input("vae", tooltip="SD VAE (e.g. vae-ft-mse-840000-ema-pruned or the SD 2.1 VAE); decoding is tiled (576x1024 px tiles)."),
                io.Float.Input("up_scale", default=4.0, **bounds(RANGES, "up_scale"), step=0.1, tooltip="Spatial upscale factor. With resolution_rule 'official' the output area is kept between 1.5x 720p and 1152x2048 (as upstream)."),
                io.Combo.Input("resolution_rule", options=list(RESOLUTION_RULES), default="official", tooltip="official: area clamped to [1.5x 1280x720, 2048x1152] like the authors' code; exact: exactly up_scale (small sizes save memory, but the model was trained for >= 720p)."),
                io.Float.Input("target_fps", default=24.0, **bounds(RANGES, "target_fps"), step=0.5, tooltip="Output frame rate: new frames per gap = round(target_fps / fps) - 1 (0..8). 0: use frame_interpolation instead."),
                io.Int.Input("frame_interpolation", default=0, **bounds(RANGES, "frame_interpolation"), tooltip="New frames generated between two input frames (used when target_fps is 0). Output fps = fps x (1 + this)."),
                io.Int.Input("noise_aug", default=200, **bounds(RANGES, "noise_aug"), tooltip="Noise added to the key-frame condition (timestep of 1000). Higher: more generative, fixes more artefacts, drifts more from the input; lower: more faithful. Official 200 (run script 250)."),
                io.Float.Input("s_cond", default=8.0, **bounds(RANGES, "s_cond"), step=0.5, tooltip="Downscale-factor condition of the ControlNet. The official inference always uses 8 (not tied to up_scale); lower values ask for milder restoration."),
                io.Float.Input("cfg", default=7.5, **bounds(RANGES, "cfg"), step=0.1, tooltip="Classifier-free guidance scale (official 7.5), followed by guidance rescale 0.2. 1 skips the negative pass (half the time)."),
                io.Combo.Input("solver_mode", options=list(SOLVER_MODES), default="fast", tooltip="fast: 14 model calls (official default: 4 steps down to t=500, 10 below). normal: 'steps' evenly spaced trailing steps."),
                io.Int.Input("steps", default=15, **bounds(RANGES, "steps"), tooltip="Solver steps in normal mode (the fast mode always makes 14 calls)."),
                io.Int.Input("seed", default=666, min=0, max=0xFFFFFFFFFFFFFFFF, control_after_generate=True, tooltip="Seed of the start noise, the key-frame noise and the SDE's Brownian noise (official 666)."),
                io.Int.Input("chunk_length", default=32, **bounds(RANGES, "chunk_length"), tooltip="Frames per temporal window (official 32). Memory grows with it; longer clips are processed in overlapping windows with flat memory."),
                io.Float.Input("chunk_overlap", default=0.5, **bounds(RANGES, "chunk_overlap"), step=0.05, tooltip="Overlap of consecutive windows (official 0.5); the predictions are cross-faded over it at every step."),
                io.Combo.Input("padding", options=list(PADDINGS), default="official", tooltip="official: centred white padding up to 720x1280 (as upstream); minimal: only what the UNet needs (less memory for small or odd-shaped clips)."),
            ],
            outputs=[
                io.Image.Output(display_name="images"),
                io.Float.Output(display_name="fps"),
                io.Video.Output(display_name="video"),
            ],
        )

    @classmethod
    def execute(cls, venhancer_model, images, fps, positive, negative, vae, up_scale=4.0, resolution_rule="official",
                target_fps=24.0, frame_interpolation=0, noise_aug=200, s_cond=8.0, cfg=7.5, solver_mode="fast", steps=15,
                seed=666, chunk_length=32, chunk_overlap=0.5, padding="official"):
        patcher = venhancer_patcher(venhancer_model)
        net = patcher.model
        check_upscale_inputs(images, solver_mode, resolution_rule, padding, fps=fps, up_scale=up_scale, target_fps=target_fps,
                             frame_interpolation=frame_interpolation, noise_aug=noise_aug, s_cond=s_cond, cfg=cfg, steps=steps,
                             chunk_length=chunk_length, chunk_overlap=chunk_overlap)
        interp = frames_between(fps, target_fps, frame_interpolation, chunk_length)
        out_fps = float(fps) * (interp + 1)
        context = _text_context(positive, "positive", net.cfg.context_dim, truncate=True)
        uncontext = _text_context(negative, "negative", net.cfg.context_dim, truncate=True)
        check_vae(vae, net.cfg)
        latents, (th, tw), pads = encoded_frames(vae, images, net.cfg, up_scale, resolution_rule, padding, interp)
        settings = {"noise_aug": int(noise_aug), "s_cond": float(s_cond), "cfg": float(cfg), "mode": solver_mode, "steps": int(steps),
                    "chunk_length": int(chunk_length), "chunk_overlap": float(chunk_overlap)}
        z = sample(patcher, latents, images.shape[0], interp, context, uncontext, int(seed), settings)
        video = _decode(vae, z)[:, pads[2] : pads[2] + th, pads[0] : pads[0] + tw].clamp(0, 1)
        components = Types.VideoComponents(images=video, audio=None, frame_rate=Fraction(out_fps).limit_denominator(1000))
        return io.NodeOutput(video, out_fps, InputImpl.VideoFromComponents(components))


def venhancer_patcher(model) -> comfy.model_patcher.ModelPatcher:
    """The VEnhancer Model Loader's ModelPatcher, checked."""
    if not isinstance(model, comfy.model_patcher.ModelPatcher) or not hasattr(model.model, "VideoControlNet"):
        raise InputError("venhancer_model", "is not a VEnhancer model", "connect VEnhancer Model Loader")
    return model


def check_upscale_inputs(images, solver_mode: str, resolution_rule: str, padding: str, **ranged) -> None:
    """The clip (2+ RGB frames), the numbers against :data:`RANGES` and the choices."""
    image_frames(images, "images", min_frames=2)
    if images.shape[-1] != 3:
        raise InputError("images", f"has {images.shape[-1]} channels, expected RGB (3)", "convert the image to RGB")
    check_ranges(RANGES, **ranged)
    check_choice(solver_mode, "solver_mode", SOLVER_MODES)
    check_choice(resolution_rule, "resolution_rule", RESOLUTION_RULES)
    check_choice(padding, "padding", PADDINGS)


def frames_between(fps: float, target_fps: float, frame_interpolation: int, chunk_length: int) -> int:
    """New frames per gap between key frames (from target_fps, else frame_interpolation), checked against the window."""
    interp = S.interp_frames(fps, target_fps) if target_fps > 0 else int(frame_interpolation)
    if chunk_length < 2 * (interp + 1) + 1:
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


def network_attention(attn_precision=None):
    """The network's attention function through ComfyUI's backend (:func:`comfy_attention`): q, k, v
    ``[N, heads, L, d]`` -> ``[N, L, heads * d]``; ComfyUI applies a forced upcast (``--force-upcast-attention``) on top."""
    attend = comfy_attention(attn_precision)

    def attention(q, k, v):
        return attend(q, k, v, q.shape[1], skip_reshape=True)

    return attention


def sample(patcher, latents: torch.Tensor, key_frames: int, interp: int, context, uncontext, seed: int, settings: dict) -> torch.Tensor:
    """The official sampling on the model's device (managed by ComfyUI): clean latents [F, 4, h, w] (unscaled) on the intermediate device."""
    mm.load_models_gpu([patcher], force_full_load=True)
    device, net = patcher.load_device, patcher.model
    lat = latents.movedim(0, 1)[None].to(device)
    mask = torch.tensor([S.make_mask_cond(key_frames, interp)], device=device)
    inputs = S.VEnhancerInputs(lat, mask, context.to(device), uncontext.to(device), interp)
    total = S.model_calls_per_run(latents.shape[0], interp, settings["mode"], settings["steps"], settings["cfg"], settings["chunk_length"], settings["chunk_overlap"])
    progress = phase(2, total)
    sigmas = S.solver_sigmas(S.VEnhancerSchedule.official(), settings["mode"], settings["steps"])
    from comfy.k_diffusion.sampling import BrownianTreeNoiseSampler

    noise_sampler = BrownianTreeNoiseSampler(lat, sigmas[sigmas > 0].min(), sigmas.max(), seed=seed, cpu=True)
    model = functools.partial(net, attention=network_attention(getattr(net, "attn_precision", None)))
    with torch.no_grad():
        z = S.venhancer_sample(model, inputs, generator=torch.Generator().manual_seed(seed), noise_sampler=noise_sampler, on_model_call=progress.call, **settings)
    z = (z[0].movedim(0, 1).float() / S.LATENT_SCALE).to(mm.intermediate_device())
    del lat, inputs
    mm.soft_empty_cache()
    return z


NODES = [VEnhancerModelLoader, VEnhancerUpscale]
#: Tiny runs (plain data, read by the host package without importing this file; see nodes/_registry.py):
#: a small VEnhancer in the official key layout, and the clip's own size (the official >= 1.5x 720p
#: output would take minutes on a CPU).
TINY = {
    "models": [{"folder": "venhancer", "filename": "vek-tiny-venhancer.safetensors",
                "network": "models.venhancer:tiny_venhancer", "seed": 7007, "dtype": "float32"}],
    "inputs": {
        "VEK_VEnhancerModelLoader": {"ckpt_name": "vek-tiny-venhancer.safetensors"},
        "VEK_VEnhancerUpscale": {"resolution_rule": "exact", "up_scale": 1.0, "padding": "minimal"},
    },
}
