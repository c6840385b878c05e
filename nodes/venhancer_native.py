"""VEnhancer as native pieces: VEnhancer Conditioning, VEnhancer Sigmas, VEnhancer Decode.

With the loader's MODEL (:mod:`._venhancer_model`) any ComfyUI sampler samples VEnhancer:
loader -> conditioning -> sigmas -> SamplerCustomAdvanced (dpmpp_2m_sde = the official solver) -> decode.
The conditioning attaches the ControlNet's inputs to positive and negative (the unconditional pass gets them
too, as upstream) and outputs the LATENT SDEdit starts from, carrying what decoding needs to undo the padding.
"""

from __future__ import annotations

from fractions import Fraction

import torch
from comfy_api.latest import InputImpl, Types, io

from ..models.venhancer import OFFICIAL_CONFIG
from ..samplers import venhancer as S
from ..samplers.venhancer_schedule import NUM_TIMESTEPS, T_START
from ..utils.checks import InputError, check_choice
from ..utils.memory import PeakMemory
from ._common import bounds, check_ranges, image_frames
from ._venhancer_frames import CONTEXT_TOKENS, _decode, check_vae, encoded_frames, frames_between, memory_output
from ._venhancer_model import AUTO_FITS, COND_KEY, TERMINAL_SIGMA, is_venhancer, set_windows

CATEGORY = "video-enhance-kit/venhancer"
RANGES = {
    "fps": (1.0, 240.0), "up_scale": (1.0, 8.0), "target_fps": (0.0, 240.0), "frame_interpolation": (0, 8), "noise_aug": (0, 300),
    "s_cond": (1.0, 16.0), "steps": (2, 100), "start_timestep": (100, NUM_TIMESTEPS - 1),
}
SOLVER_MODES = ("fast", "normal")
RESOLUTION_RULES = ("official", "exact")
PADDINGS = ("official", "minimal")


def conditioning_inputs() -> list:
    """The inputs of VEnhancer Conditioning (VEnhancer Upscale shares them)."""
    return [
        io.Float.Input("up_scale", default=4.0, **bounds(RANGES, "up_scale"), step=0.1, tooltip="Spatial upscale factor. With resolution_rule 'official' the output area is kept between 1.5x 720p and 1152x2048 (as upstream)."),
        io.Combo.Input("resolution_rule", options=list(RESOLUTION_RULES), default="official", tooltip="official: area clamped to [1.5x 1280x720, 2048x1152] like the authors' code; exact: exactly up_scale (small sizes save memory, but the model was trained for >= 720p)."),
        io.Float.Input("target_fps", default=24.0, **bounds(RANGES, "target_fps"), step=0.5, tooltip="Output frame rate: new frames per gap = round(target_fps / fps) - 1 (0..8). 0: use frame_interpolation instead."),
        io.Int.Input("frame_interpolation", default=0, **bounds(RANGES, "frame_interpolation"), tooltip="New frames generated between two input frames (used when target_fps is 0). Output fps = fps x (1 + this)."),
        io.Int.Input("noise_aug", default=200, **bounds(RANGES, "noise_aug"), tooltip="Noise added to the key-frame condition (timestep of 1000). Higher: more generative, fixes more artefacts, drifts more from the input; lower: more faithful. Official 200 (run script 250)."),
        io.Float.Input("s_cond", default=8.0, **bounds(RANGES, "s_cond"), step=0.5, tooltip="Downscale-factor condition of the ControlNet. The official inference always uses 8 (not tied to up_scale); lower values ask for milder restoration."),
        io.Combo.Input("padding", options=list(PADDINGS), default="official", tooltip="official: centred white padding up to 720x1280 (as upstream); minimal: only what the UNet needs (less memory for small or odd-shaped clips)."),
        io.Int.Input("seed", default=666, min=0, max=0xFFFFFFFFFFFFFFFF, control_after_generate=True, tooltip="Seed of the key-frame noise. The same seed as the sampler's noise draws both as the official code does (official 666)."),
    ]


def attach(conditioning, name: str, entry: dict) -> list:
    """A copy of ``conditioning`` with the VEnhancer entry on every item and tokens truncated to 77 (the official tokenizer)."""
    if not isinstance(conditioning, list) or not conditioning or not isinstance(conditioning[0][0], torch.Tensor):
        raise InputError(name, "is not a CONDITIONING", "connect CLIP Text Encode")
    return [[ctx[:, :CONTEXT_TOKENS], {**opts, COND_KEY: entry}] for ctx, opts in conditioning]


def controlnet_entry(latents: torch.Tensor, interp: int, noise_aug: int, s_cond: float, seed: int) -> dict:
    """The ControlNet's inputs for latents [1, C, F, h, w] (scaled): hint, mask_cond, t_hint, s_cond, interp.

    The hint noise is the second draw of a generator seeded with ``seed`` after a start-noise-shaped draw, as the
    official code draws both from one generator (so the sampler's noise with the same seed is the official start noise).
    """
    keys = (latents.shape[2] - 1) // (interp + 1) + 1
    mask = torch.tensor([S.make_mask_cond(keys, interp)])
    gen = torch.Generator().manual_seed(int(seed))
    torch.randn(latents.shape, generator=gen, dtype=torch.float32)
    hint_noise = torch.randn(latents[:, :, :: interp + 1].shape, generator=gen, dtype=torch.float32)
    inputs = S.VEnhancerInputs(latents, mask, None, None, interp)
    cond = S.key_frame_conditions(S.VEnhancerSchedule.official(), inputs, int(noise_aug), float(s_cond), hint_noise, None)
    return {"hint": cond["hint"], "mask_cond": mask, "t_hint": cond["t_hint"].float(), "s_cond": cond["s_cond"].float(), "interp": interp}


def build_conditioning(positive, negative, vae, images, fps, up_scale, resolution_rule, target_fps, frame_interpolation, noise_aug, s_cond, padding, seed):
    """(positive, negative, LATENT) of VEnhancer Conditioning; the inputs are not changed."""
    image_frames(images, "images", min_frames=2)
    if images.shape[-1] != 3:
        raise InputError("images", f"has {images.shape[-1]} channels, expected RGB (3)", "convert the image to RGB")
    check_ranges(RANGES, fps=fps, up_scale=up_scale, target_fps=target_fps, frame_interpolation=frame_interpolation, noise_aug=noise_aug, s_cond=s_cond)
    check_choice(resolution_rule, "resolution_rule", RESOLUTION_RULES)
    check_choice(padding, "padding", PADDINGS)
    check_vae(vae, OFFICIAL_CONFIG)
    interp = frames_between(fps, target_fps, frame_interpolation)
    latents, size, pads = encoded_frames(vae, images, OFFICIAL_CONFIG, up_scale, resolution_rule, padding, interp)
    scaled = latents.movedim(0, 1)[None]  # [1, 4, F, h, w], scaled as the network sees it
    entry = controlnet_entry(scaled, interp, noise_aug, s_cond, seed)
    raw = (latents / S.LATENT_SCALE).movedim(0, 1)[None].contiguous()
    info = {"pads": tuple(pads), "size": tuple(size), "fps": float(fps) * (interp + 1), "interp": interp, "key_frames": images.shape[0]}
    return attach(positive, "positive", entry), attach(negative, "negative", entry), {"samples": raw, COND_KEY: info}


class VEnhancerConditioning(io.ComfyNode):
    @classmethod
    def define_schema(cls):
        return io.Schema(
            node_id="VEK_VEnhancerConditioning",
            display_name="VEnhancer Conditioning",
            category=CATEGORY,
            description=(
                "Prepare a clip for the VEnhancer MODEL as the official code does: resize, repeat key frames for the new "
                "frames, pad, VAE-encode; attach the video ControlNet's inputs (noise-augmented key-frame latents, mask_cond, "
                "s_cond, augmentation timestep) to positive and negative, and output the LATENT to sample (SDEdit start)."
            ),
            inputs=[
                io.Conditioning.Input("positive", tooltip="Prompt from CLIP Text Encode with the SD 2.x OpenCLIP ViT-H text encoder (the official suffix is in the example workflow)."),
                io.Conditioning.Input("negative", tooltip="Negative prompt; the ControlNet sees the key frames in the unconditional pass too."),
                io.Vae.Input("vae", tooltip="SD VAE (vae-ft-mse-840000-ema-pruned or the SD 2.1 VAE); VEnhancer Decode decodes with the same."),
                io.Image.Input("images", tooltip="The low-resolution clip (frames as a batch), e.g. from Get Video Components."),
                io.Float.Input("fps", default=8.0, **bounds(RANGES, "fps"), step=0.01, tooltip="Frame rate of the input clip (Get Video Components gives it)."),
                *conditioning_inputs(),
            ],
            outputs=[io.Conditioning.Output(display_name="positive"), io.Conditioning.Output(display_name="negative"), io.Latent.Output(display_name="latent")],
        )

    @classmethod
    def execute(cls, positive, negative, vae, images, fps, up_scale=4.0, resolution_rule="official", target_fps=24.0, frame_interpolation=0,
                noise_aug=200, s_cond=8.0, padding="official", seed=666):
        peak = PeakMemory(["encode"], device=getattr(vae, "device", None))
        with peak.phase("encode"):
            out = build_conditioning(positive, negative, vae, images, fps, up_scale, resolution_rule, target_fps, frame_interpolation,
                                     noise_aug, s_cond, padding, seed)
        return memory_output(out, peak, "VEnhancer Conditioning")


def official_sigmas(mode: str = "fast", steps: int = 15, start_timestep: int = T_START) -> torch.Tensor:
    """The official solver's VE sigmas (trailing from ``start_timestep``, penultimate dropped, final 0); finite at t = 999."""
    check_choice(mode, "solver_mode", SOLVER_MODES)
    check_ranges(RANGES, steps=steps, start_timestep=start_timestep)
    sig = S.solver_sigmas(S.VEnhancerSchedule.official(), mode, int(steps), int(start_timestep))
    return torch.where(torch.isinf(sig), torch.full_like(sig, TERMINAL_SIGMA), sig).float()


class VEnhancerSigmas(io.ComfyNode):
    @classmethod
    def define_schema(cls):
        return io.Schema(
            node_id="VEK_VEnhancerSigmas",
            display_name="VEnhancer Sigmas",
            category=CATEGORY,
            description=("The official VEnhancer schedule as SIGMAS: fast = 14 model calls at t = 899, 799, ..., 90; normal = 'steps' "
                         "trailing calls from t = 899. With SamplerCustomAdvanced + KSamplerSelect dpmpp_2m_sde and CFGGuider this is the official solver."),
            inputs=[
                io.Combo.Input("solver_mode", options=list(SOLVER_MODES), default="fast", tooltip="fast: 14 model calls (official default: 4 steps down to t=500, 10 below). normal: 'steps' evenly spaced trailing steps."),
                io.Int.Input("steps", default=15, **bounds(RANGES, "steps"), tooltip="Model calls in normal mode (the fast mode always makes 14)."),
                io.Int.Input("start_timestep", default=T_START, **bounds(RANGES, "start_timestep"), tooltip="Timestep the clip is noised to (official 899 of 1000). Lower: closer to the input; 999: pure noise."),
            ],
            outputs=[io.Sigmas.Output(display_name="sigmas")],
        )

    @classmethod
    def execute(cls, solver_mode="fast", steps=15, start_timestep=T_START):
        return io.NodeOutput(official_sigmas(solver_mode, steps, start_timestep))


def decode_clip(vae, latent) -> tuple[torch.Tensor, float, object]:
    """Tiled decode of a VEnhancer LATENT, padding removed: (IMAGE [F, H, W, 3], output fps, VIDEO)."""
    info = latent.get(COND_KEY) if isinstance(latent, dict) else None
    if info is None or not isinstance(latent.get("samples"), torch.Tensor) or latent["samples"].ndim != 5:
        raise InputError("samples", "is not a LATENT from VEnhancer Conditioning (sampled)", "decode the output of the sampler that sampled VEnhancer Conditioning's latent")
    check_vae(vae, OFFICIAL_CONFIG)
    (left, _, top, _), (th, tw) = info["pads"], info["size"]
    z = latent["samples"][0].movedim(0, 1).float()
    video = _decode(vae, z)[:, top : top + th, left : left + tw].clamp(0, 1)
    components = Types.VideoComponents(images=video, audio=None, frame_rate=Fraction(info["fps"]).limit_denominator(1000))
    return video, info["fps"], InputImpl.VideoFromComponents(components)


class VEnhancerDecode(io.ComfyNode):
    @classmethod
    def define_schema(cls):
        return io.Schema(
            node_id="VEK_VEnhancerDecode",
            display_name="VEnhancer Decode",
            category=CATEGORY,
            description="Decode a sampled VEnhancer LATENT with ComfyUI's tiled VAE decode and remove the padding: frames and a VIDEO at the output frame rate.",
            inputs=[
                io.Latent.Input("samples", tooltip="The sampler's output for VEnhancer Conditioning's latent (its padding and fps travel with it)."),
                io.Vae.Input("vae", tooltip="The VAE VEnhancer Conditioning encoded with."),
            ],
            outputs=[io.Image.Output(display_name="images"), io.Float.Output(display_name="fps"), io.Video.Output(display_name="video")],
        )

    @classmethod
    def execute(cls, samples, vae):
        peak = PeakMemory(["decode"], device=getattr(vae, "device", None))
        with peak.phase("decode"):
            out = decode_clip(vae, samples)
        return memory_output(out, peak, "VEnhancer Decode")


def auto_fit_input():
    """The ``auto_fit`` input (chunk_length "auto") of VEnhancer Windows and VEnhancer Upscale."""
    return io.Combo.Input("auto_fit", options=list(AUTO_FITS), default="off", optional=True,
                          tooltip=("chunk_length 'auto': off = the window (and tile) as set; auto = the longest key-frame-aligned window that "
                                   "fits the free device memory (chunk_length is the upper bound); auto + tiles = then also the largest "
                                   "spatial tile that fits (tile_size ignored). The choice is shown on the sampler and logged."))


class VEnhancerWindows(io.ComfyNode):
    @classmethod
    def define_schema(cls):
        return io.Schema(
            node_id="VEK_VEnhancerWindows",
            display_name="VEnhancer Windows",
            category=CATEGORY,
            description=("Set how a VEnhancer MODEL splits each prediction: official key-frame-aligned time windows (cross-faded at "
                         "every step, the loader's default: 32 frames, 50 %) and optional spatial tiles (raised-cosine blend). "
                         "Works under every sampler: it wraps the guider's prediction (CFG and its rescale per window, as upstream)."),
            inputs=[
                io.Model.Input("model", tooltip="The MODEL of VEnhancer Model Loader (it is cloned, not changed)."),
                io.Int.Input("chunk_length", default=32, min=0, max=256, tooltip="Frames per time window (official 32); 0: the whole clip in one call (memory grows with length)."),
                io.Float.Input("chunk_overlap", default=0.5, min=0.1, max=0.5, step=0.05, tooltip="Overlap of consecutive windows (official 0.5); the predictions are cross-faded over it."),
                io.Int.Input("tile_size", default=0, min=0, max=1024, tooltip="Spatial tile size in latent pixels (x8 in pixels); 0: no tiles (official). Tiles bound memory for large frames."),
                io.Int.Input("tile_overlap", default=8, min=0, max=256, tooltip="Overlap of neighbouring tiles in latent pixels, blended with raised-cosine weights."),
                auto_fit_input(),
            ],
            outputs=[io.Model.Output(display_name="model")],
        )

    @classmethod
    def execute(cls, model, chunk_length=32, chunk_overlap=0.5, tile_size=0, tile_overlap=8, auto_fit="off"):
        if not is_venhancer(model):
            raise InputError("model", "is not a VEnhancer MODEL", "connect VEnhancer Model Loader")
        if chunk_length and chunk_length < 3:
            raise InputError("chunk_length", f"{chunk_length} frames cannot hold two key frames", "set chunk_length to 0 (off) or at least 3 (official 32)")
        if not 0.1 <= chunk_overlap <= 0.5:
            raise InputError("chunk_overlap", f"must be in [0.1, 0.5], got {chunk_overlap}", "set chunk_overlap to 0.5 (official)")
        check_choice(auto_fit, "auto_fit", AUTO_FITS)
        out = model.clone()
        set_windows(out, int(chunk_length) or None, float(chunk_overlap), int(tile_size) or None, int(tile_overlap), auto_fit)
        return io.NodeOutput(out)


NODES = [VEnhancerConditioning, VEnhancerSigmas, VEnhancerDecode, VEnhancerWindows]
#: Tiny runs: this feature's tiny inputs are declared with the loader's, in nodes/venhancer.py's TINY.
