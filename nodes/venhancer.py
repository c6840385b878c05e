"""VEnhancer nodes: load the official checkpoints as a ComfyUI MODEL; VEnhancer Upscale, the one-node convenience.

The loader gives a native ComfyUI model (:mod:`._venhancer_model`: v-prediction on VEnhancer's schedule, the
ControlNet's inputs as model conditioning) that any sampler samples with the pieces of :mod:`.venhancer_native`.
VEnhancer Upscale runs exactly those pieces (conditioning, sigmas, CFGGuider + dpmpp_2m_sde through
SamplerCustomAdvanced, decode), so its output equals the graph of pieces. The host-free faithful sampler
(:mod:`..samplers.venhancer`) stays the reference the pieces are tested against.
"""

from __future__ import annotations

import os

import comfy.model_management as mm
import folder_paths
import torch
from comfy_api.latest import io

from ..models.venhancer import VEnhancerUNet
from ..models.venhancer_loading import CheckpointError, check_keys, infer_config, read_state_dict
from ..samplers.venhancer import GUIDE_RESCALE
from ..utils.checks import InputError, check_choice
from ..utils.memory import PeakMemory
from ._common import bounds, check_ranges, show_text
from ._venhancer_frames import PHASES, frames_between, memory_output
from ._venhancer_model import AUTO_FITS, is_venhancer, native_patcher, set_windows
from .venhancer_native import RANGES as NATIVE_RANGES
from .venhancer_native import SOLVER_MODES, auto_fit_input, build_conditioning, conditioning_inputs, decode_clip, official_sigmas

CATEGORY = "video-enhance-kit/venhancer"
FOLDER = "venhancer"
DTYPES = {"fp16": torch.float16, "bf16": torch.bfloat16, "fp32": torch.float32, "fp8_e4m3fn": torch.float8_e4m3fn}
RANGES = {**NATIVE_RANGES, "cfg": (1.0, 20.0), "chunk_length": (4, 256), "chunk_overlap": (0.1, 0.5)}
#: The phases of VEnhancer Upscale's memory report (VAE encode includes the resize; decode includes unpadding).
MEMORY_PHASES = ("encode", "sampling", "decode")
MODEL_FIX = ("connect VEnhancer Model Loader's MODEL (a workflow saved with the old VEK_VENHANCER_MODEL output: "
             "delete the link and connect the loader's output again)")

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
                "(fp32 or fp16) as a ComfyUI MODEL (v-prediction on VEnhancer's own schedule) that any ComfyUI sampler samples "
                "with VEnhancer Conditioning; official CFG rescale and 32-frame windows are set on it."
            ),
            inputs=[
                io.Combo.Input(
                    "ckpt_name",
                    options=folder_paths.get_filename_list(FOLDER),
                    tooltip="Checkpoint in models/venhancer: venhancer_v2.pt (recommended), venhancer_paper.pt (v1), or their safetensors conversions.",
                ),
                io.Combo.Input(
                    "dtype",
                    options=["auto", *DTYPES],
                    default="auto",
                    tooltip="Weight dtype. auto: ComfyUI's choice for the device (fp16 on most GPUs, the official setting, 4.1 GB; fp32 on CPU). bf16 avoids fp16 overflow; fp8_e4m3fn stores weights in 2 GB and computes in fp16/bf16.",
                ),
                io.Float.Input("guidance_rescale", default=GUIDE_RESCALE, min=0.0, max=1.0, step=0.05, optional=True,
                               tooltip="Guidance rescale after CFG (official 0.2): the guided v-prediction is pulled towards the conditional one's spread. 0: plain CFG."),
            ],
            outputs=[io.Model.Output(display_name="model")],
        )

    @classmethod
    def execute(cls, ckpt_name, dtype="auto", guidance_rescale=GUIDE_RESCALE):
        check_choice(dtype, "dtype", ["auto", *DTYPES])
        check_ranges({"guidance_rescale": (0.0, 1.0)}, guidance_rescale=guidance_rescale)
        path = folder_paths.get_full_path(FOLDER, ckpt_name)
        if path is None:
            raise InputError("ckpt_name", f"{ckpt_name!r} is not in models/{FOLDER}", f"download venhancer_v2.pt into ComfyUI/models/{FOLDER}/ and refresh")
        try:
            sd, meta = read_state_dict(path)
            cfg = infer_config(sd, meta)
            with torch.device("meta"):
                check_keys(sd, VEnhancerUNet(cfg), os.path.basename(path))
        except CheckpointError as err:
            raise InputError("ckpt_name", str(err), "pick an official VEnhancer checkpoint") from None
        torch_dtype = DTYPES.get(dtype)
        if dtype == "auto" and mm.get_torch_device().type == "cpu":
            torch_dtype = torch.float32
        return io.NodeOutput(native_patcher(sd, cfg, torch_dtype, float(guidance_rescale)))


# ------------------------------------------------------------------------------------- upscale
def upscale_inputs() -> list:
    """VEnhancer Upscale's inputs after the clip and prompts, in the order of earlier versions (saved widget values stay valid)."""
    shared = {spec.id: spec for spec in conditioning_inputs()}
    return [
        shared["up_scale"], shared["resolution_rule"], shared["target_fps"], shared["frame_interpolation"], shared["noise_aug"], shared["s_cond"],
        io.Float.Input("cfg", default=7.5, **bounds(RANGES, "cfg"), step=0.1, tooltip="Classifier-free guidance scale (official 7.5), followed by the loader's guidance rescale (0.2). 1 skips the negative pass (half the time)."),
        io.Combo.Input("solver_mode", options=list(SOLVER_MODES), default="fast", tooltip="fast: 14 model calls (official default: 4 steps down to t=500, 10 below). normal: 'steps' evenly spaced trailing steps."),
        io.Int.Input("steps", default=15, **bounds(RANGES, "steps"), tooltip="Solver steps in normal mode (the fast mode always makes 14 calls)."),
        io.Int.Input("seed", default=666, min=0, max=0xFFFFFFFFFFFFFFFF, control_after_generate=True, tooltip="Seed of the start noise, the key-frame noise and the SDE's Brownian noise (official 666)."),
        io.Int.Input("chunk_length", default=32, **bounds(RANGES, "chunk_length"), tooltip="Frames per temporal window (official 32). Memory grows with it; longer clips are processed in overlapping windows with flat memory."),
        io.Float.Input("chunk_overlap", default=0.5, **bounds(RANGES, "chunk_overlap"), step=0.05, tooltip="Overlap of consecutive windows (official 0.5); the predictions are cross-faded over it at every step."),
        shared["padding"],
        auto_fit_input(),
    ]


class VEnhancerUpscale(io.ComfyNode):
    @classmethod
    def define_schema(cls):
        return io.Schema(
            node_id="VEK_VEnhancerUpscale",
            display_name="VEnhancer Upscale",
            category=CATEGORY,
            description=(
                "Generative space-time super-resolution (VEnhancer) in one node: up to 8x resolution and 9x frame rate with "
                "refined detail and less flicker. Runs the native pieces with the official settings: VEnhancer Conditioning, "
                "VEnhancer Sigmas, CFGGuider + dpmpp_2m_sde (SamplerCustomAdvanced), 32-frame windows, VEnhancer Decode."
            ),
            inputs=[
                io.Model.Input("venhancer_model", tooltip="The MODEL of VEnhancer Model Loader."),
                io.Image.Input("images", tooltip="The low-resolution clip (frames as a batch), e.g. from Get Video Components."),
                io.Float.Input("fps", default=8.0, **bounds(RANGES, "fps"), step=0.01, tooltip="Frame rate of the input clip (Get Video Components gives it)."),
                io.Conditioning.Input("positive", tooltip="Prompt from CLIP Text Encode with the SD 2.x OpenCLIP ViT-H text encoder; the official pipeline appends 'Cinematic, High Contrast, highly detailed, ...' (see the example workflow)."),
                io.Conditioning.Input("negative", tooltip="Negative prompt (the official one is in the example workflow). The ControlNet sees it too in the unconditional pass."),
                io.Vae.Input("vae", tooltip="SD VAE (e.g. vae-ft-mse-840000-ema-pruned or the SD 2.1 VAE); decoding is tiled."),
                *upscale_inputs(),
            ],
            outputs=[io.Image.Output(display_name="images"), io.Float.Output(display_name="fps"), io.Video.Output(display_name="video")],
        )

    @classmethod
    def execute(cls, venhancer_model, images, fps, positive, negative, vae, up_scale=4.0, resolution_rule="official",
                target_fps=24.0, frame_interpolation=0, noise_aug=200, s_cond=8.0, cfg=7.5, solver_mode="fast", steps=15,
                seed=666, chunk_length=32, chunk_overlap=0.5, padding="official", auto_fit="off"):
        if not is_venhancer(venhancer_model):
            raise InputError("venhancer_model", "is not a VEnhancer MODEL", MODEL_FIX)
        check_ranges(RANGES, fps=fps, cfg=cfg, chunk_length=chunk_length, chunk_overlap=chunk_overlap)
        frames_between(fps, target_fps, frame_interpolation, chunk_length)
        peak = PeakMemory(MEMORY_PHASES, device=mm.get_torch_device())
        with peak.phase("encode"):
            pos, neg, latent = build_conditioning(positive, negative, vae, images, fps, up_scale, resolution_rule, target_fps,
                                                  frame_interpolation, noise_aug, s_cond, padding, seed)
        model = venhancer_model.clone()
        check_choice(auto_fit, "auto_fit", AUTO_FITS)
        set_windows(model, chunk_length, chunk_overlap, auto_fit=auto_fit)
        show_text(f"VEnhancer: {PHASES[2]} (3/{len(PHASES)})")
        with peak.phase("sampling"):
            samples = sample_pieces(model, pos, neg, latent, official_sigmas(solver_mode, steps), float(cfg), int(seed))
        with peak.phase("decode"):
            out = decode_clip(vae, samples)
        return memory_output(out, peak, "VEnhancer Upscale")


def sample_pieces(model, positive, negative, latent: dict, sigmas, cfg: float, seed: int) -> dict:
    """The graph's sampling: RandomNoise(seed), CFGGuider(cfg), KSamplerSelect dpmpp_2m_sde, SamplerCustomAdvanced."""
    from comfy_extras.nodes_custom_sampler import CFGGuider, KSamplerSelect, RandomNoise, SamplerCustomAdvanced

    (guider,) = CFGGuider().get_guider(model, positive, negative, cfg)
    (sampler,) = KSamplerSelect().get_sampler("dpmpp_2m_sde")
    (noise,) = RandomNoise().get_noise(seed)
    out, _ = SamplerCustomAdvanced().sample(noise, guider, sampler, sigmas, latent)
    return out


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
        "VEK_VEnhancerConditioning": {"resolution_rule": "exact", "up_scale": 1.0, "padding": "minimal"},
    },
}
