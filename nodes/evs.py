"""EVS Sampler: encapsulated T2I + [T2V] + T2I composition (EVS paper, Algorithm 1) as one ComfyUI node.

Thin adapter: each stage is a ComfyUI sampling run (CFGGuider + the chosen sampler) over a slice of that
model's schedule; the composition order, bridges, DDIM inversion and feature injection live in
samplers/composition.py, samplers/ddim_inversion.py and attention/feature_injection.py (patched into the
T2V model by nodes/_feature_injection.py). Latents stay on the model's device from stage to stage; the
output LATENT goes to ComfyUI's intermediate device once, at the end.
"""

from __future__ import annotations

import comfy.model_management
import comfy.sample
import comfy.samplers
import torch
from comfy_api.latest import io

from ..attention.feature_injection import DEFAULT_DEPTH, DEFAULT_GAMMA
from ..samplers.composition import split_index
from ..utils.checks import InputError, check_frames
from ._common import (
    Progress,
    bounds,
    check_ranges,
    image_frames,
    latent_samples,
    with_samples,
)
from ._compat import (
    check_conditioning,
    check_latent,
    check_model,
    check_vae,
    sampler_seed,
)
from ._evs import ComfyStage, T2VSide, block_sampler, check_image_model, interruptible, stage_sigmas, t2v_schedule
from ._registry import CATEGORY

FEATURE = f"{CATEGORY}/evs"

# Paper defaults (Sec. 4.1): T_I = 50 T2I steps with inversion strength s_I = t_I / T_I = 0.4; T_V = 8
# T2V steps (AnimateDiff-Lightning). t_T2V, t_V and n_V have no published values: ours.
DEFAULT_T2I_STEPS = 50
DEFAULT_T2I_STRENGTH = 0.4
DEFAULT_T2V_AT = 0.2
DEFAULT_T2V_STEPS = 8
DEFAULT_T2V_STRENGTH = 0.5
UNIT = (0.0, 1.0)
RANGES = {
    "t2i_steps": (1, 1000), "t2i_strength": UNIT, "t2v_at": UNIT, "t2i_cfg": (0.0, 100.0), "t2v_steps": (1, 1000), "t2v_strength": UNIT,
    "t2v_block_steps": (0, 1000), "t2v_cfg": (0.0, 100.0), "sfi_gamma": UNIT, "sfi_depth_min": UNIT, "sfi_depth_max": UNIT,
}


# ------------------------------------------------------------------------------------------------ node


def tooltip_range(name: str) -> str:
    """" Range LOW to HIGH." of an input, from :data:`RANGES`."""
    low, high = RANGES[name]
    return f" Range {low:g} to {high:g}."


class EVSSampler(io.ComfyNode):
    @classmethod
    def define_schema(cls):
        samplers, schedulers = comfy.samplers.SAMPLER_NAMES, comfy.samplers.SCHEDULER_NAMES
        return io.Schema(
            node_id="VEK_EVSSampler",
            display_name="EVS Sampler (T2I + [T2V] + T2I)",
            category=FEATURE,
            description=(
                "Enhances a video with an image model's detail and a video model's motion (EVS). The T2I model refines the "
                "frames by SDEdit; once, at t_T2V, its predicted clean latent goes through an encapsulated T2V block "
                "(noised to t_V or DDIM-inverted, n_V video-model steps) and comes back to finish the T2I denoising. "
                "Optional selective feature injection keeps the T2I look while taking only the T2V motion prior."
            ),
            inputs=[
                io.Model.Input("t2i_model", tooltip="Image model (SD1.5, SDXL, Flux...) that sets the detail and look of the frames."),
                io.Conditioning.Input("t2i_positive", tooltip="Positive prompt for the image model."),
                io.Conditioning.Input("t2i_negative", tooltip="Negative prompt for the image model (ignored at CFG 1)."),
                io.Model.Input("t2v_model", tooltip="Video model for temporal consistency: SD1.5 with an AnimateDiff motion module (same latent space) or a native video model such as Wan (bridged through the VAEs)."),
                io.Conditioning.Input("t2v_positive", tooltip="Positive prompt for the video model."),
                io.Conditioning.Input("t2v_negative", tooltip="Negative prompt for the video model (ignored at CFG 1)."),
                io.Int.Input("seed", default=0, min=0, max=0xFFFFFFFFFFFFFFFF, control_after_generate=True, tooltip="Seed of the SDEdit noise (the T2V block uses seed + 1)."),
                io.Int.Input("t2i_steps", default=DEFAULT_T2I_STEPS, **bounds(RANGES, "t2i_steps"), tooltip="T_I: steps of the full T2I schedule (paper: 50); SDEdit runs the last t2i_strength of them." + tooltip_range("t2i_steps")),
                io.Float.Input("t2i_strength", default=DEFAULT_T2I_STRENGTH, **bounds(RANGES, "t2i_strength"), step=0.01, tooltip="t_I / T_I: how much noise the T2I SDEdit adds (paper: 0.4). Higher repaints more." + tooltip_range("t2i_strength")),
                io.Float.Input("t2v_at", default=DEFAULT_T2V_AT, **bounds(RANGES, "t2v_at"), step=0.01, tooltip="t_T2V / T_I: where in the T2I schedule the T2V block runs, at most t2i_strength. Larger = earlier = more T2I steps after it (more detail, more flicker); 0 = after the last T2I step (plain T2I then T2V)." + tooltip_range("t2v_at")),
                io.Combo.Input("t2i_sampler", options=samplers, default="ddim", tooltip="Sampler of the T2I stages (paper: DDIM)."),
                io.Combo.Input("t2i_scheduler", options=schedulers, default="ddim_uniform", tooltip="Scheduler of the T2I schedule."),
                io.Float.Input("t2i_cfg", default=7.5, **bounds(RANGES, "t2i_cfg"), step=0.1, tooltip="Classifier-free guidance of the image model." + tooltip_range("t2i_cfg")),
                io.Int.Input("t2v_steps", default=DEFAULT_T2V_STEPS, **bounds(RANGES, "t2v_steps"), tooltip="T_V: steps of the full T2V schedule (paper: 8, AnimateDiff-Lightning)." + tooltip_range("t2v_steps")),
                io.Float.Input("t2v_strength", default=DEFAULT_T2V_STRENGTH, **bounds(RANGES, "t2v_strength"), step=0.01, tooltip="t_V / T_V: noise the T2V block adds to the bridged latent (or inverts to). Larger removes more flicker but pulls the look toward the video model (paper Fig. 7)." + tooltip_range("t2v_strength")),
                io.Int.Input("t2v_block_steps", default=0, **bounds(RANGES, "t2v_block_steps"), tooltip="n_V: T2V steps the block runs from t_V before it hands its clean prediction back; 0 = all the way down." + tooltip_range("t2v_block_steps")),
                io.Combo.Input("t2v_sampler", options=samplers, default="euler", tooltip="Sampler of the T2V block (with SFI on the block always starts from the DDIM-inverted latent)."),
                io.Combo.Input("t2v_scheduler", options=schedulers, default="sgm_uniform", tooltip="Scheduler of the T2V schedule (AnimateDiff-Lightning: sgm_uniform; Wan: simple)."),
                io.Float.Input("t2v_cfg", default=1.0, **bounds(RANGES, "t2v_cfg"), step=0.1, tooltip="Classifier-free guidance of the video model (distilled Lightning models: 1)." + tooltip_range("t2v_cfg")),
                io.Boolean.Input("t2v_enabled", default=True, tooltip="Off = a plain T2I SDEdit run with the same settings (for A/B comparison)."),
                io.Boolean.Input("sfi", default=False, tooltip="Selective feature injection: DDIM-invert the bridged latent with the T2V model, record self-attention Q, K, V, and inject them while denoising (Eq. 11). Turn on when the T2I look (a style) lies outside what the video model can make; costs the inversion's extra T2V calls and memory for the features."),
                io.Float.Input("sfi_gamma", default=DEFAULT_GAMMA, **bounds(RANGES, "sfi_gamma"), step=0.05, tooltip="gamma of Eq. 11: share of the recorded query (K and V are always replaced). Paper: 0.8 for deeper layers, 0.5 for shallower." + tooltip_range("sfi_gamma")),
                io.Float.Input("sfi_depth_min", default=DEFAULT_DEPTH[0], **bounds(RANGES, "sfi_depth_min"), step=0.05, tooltip="Shallowest injected self-attention, as normalised depth (0 = full-resolution UNet blocks / first DiT block)." + tooltip_range("sfi_depth_min")),
                io.Float.Input("sfi_depth_max", default=DEFAULT_DEPTH[1], **bounds(RANGES, "sfi_depth_max"), step=0.05, tooltip="Deepest injected self-attention (1 = UNet middle block / last DiT block). 0-1 with gamma 1 reconstructs the input." + tooltip_range("sfi_depth_max")),
                io.Latent.Input("latent", optional=True, tooltip="The input video as a T2I latent (frames as batch). Give this or images + t2i_vae."),
                io.Image.Input("images", optional=True, tooltip="The input video frames; encoded with t2i_vae when no latent is given."),
                io.Vae.Input("t2i_vae", optional=True, tooltip="VAE of the image model: encodes images, decodes the IMAGE output, and is one side of the VAE bridge."),
                io.Vae.Input("t2v_vae", optional=True, tooltip="VAE of the video model: needed only when its latent space differs from the image model's (e.g. Wan)."),
            ],
            outputs=[
                io.Latent.Output(display_name="LATENT", tooltip="The enhanced video latent (T2I space, frames as batch)."),
                io.Image.Output(display_name="IMAGE", tooltip="The enhanced frames decoded with t2i_vae (None without t2i_vae)."),
            ],
        )

    @classmethod
    def execute(cls, t2i_model, t2i_positive, t2i_negative, t2v_model, t2v_positive, t2v_negative, seed, t2i_steps, t2i_strength, t2v_at,
                t2i_sampler, t2i_scheduler, t2i_cfg, t2v_steps, t2v_strength, t2v_block_steps, t2v_sampler, t2v_scheduler, t2v_cfg,
                t2v_enabled, sfi, sfi_gamma, sfi_depth_min, sfi_depth_max, latent=None, images=None, t2i_vae=None, t2v_vae=None) -> io.NodeOutput:
        check_evs_inputs(t2i_model, t2v_model, t2i_strength, t2i_steps=t2i_steps, t2v_steps=t2v_steps, t2v_block_steps=t2v_block_steps,
                         t2i_cfg=t2i_cfg, t2v_cfg=t2v_cfg, t2v_at=t2v_at)
        check_pairings({"t2i": t2i_model, "t2v": t2v_model if t2v_enabled else None}, t2i_vae, t2v_vae, t2i_positive=t2i_positive,
                       t2i_negative=t2i_negative, t2v_positive=t2v_positive, t2v_negative=t2v_negative)
        base, z = input_latent(t2i_model, latent, images, t2i_vae)
        sig_i = stage_sigmas(t2i_model, t2i_scheduler, t2i_steps, t2i_strength, "t2i_strength")
        n_i = len(sig_i) - 1
        k = n_i - min(split_index(t2i_steps, t2v_at, "t2v_at"), n_i)  # T2I steps before the block
        side = None
        if t2v_enabled:
            sig_v, n_v = t2v_schedule(t2v_model, t2v_scheduler, t2v_steps, t2v_strength, t2v_block_steps)
            side = T2VSide(t2v_model, t2v_positive, t2v_negative, sig_v, n_v, t2v_sampler, t2v_cfg, sfi, sfi_gamma, (sfi_depth_min, sfi_depth_max),
                           t2i_vae, t2v_vae)
        progress = Progress(n_i + (side.calls if side is not None else 0))
        out = evs_sample(interruptible(t2i_model), t2i_positive, t2i_negative, t2i_cfg, t2i_sampler, z, sig_i, k, seed, side, progress)
        return io.NodeOutput(with_samples(base, out.to(comfy.model_management.intermediate_device())), decoded(t2i_vae, out))


def evs_sample(t2i_model, positive, negative, cfg: float, sampler_name: str, z: torch.Tensor, sigmas: torch.Tensor, k: int, seed: int, side, progress):
    """Algorithm 1 as one T2I sampling run with the EVS block as its sampler (a plain SDEdit run without ``side``)."""
    noise = comfy.sample.prepare_noise(z, seed)
    if side is None:
        return ComfyStage(t2i_model, positive, negative, cfg, sampler_name, seed, progress.tick)(z, noise, sigmas)[0]
    seed_v = (seed + 1) % 2**64

    def plan(guider, latent, run_sigmas, run_seed):
        return k, side.block(t2i_model, z.shape[0], seed_v, progress.tick)

    sampler = block_sampler(comfy.samplers.sampler_object(sampler_name), plan, input_latent=z)
    guider = comfy.samplers.CFGGuider(t2i_model)
    guider.set_conds(positive, negative)
    guider.set_cfg(cfg)

    def callback(step, x0, x, total):
        progress.tick(t2i_model, x0)

    out = guider.sample(noise, z, sampler, sigmas, callback=callback, disable_pbar=True, seed=sampler_seed(seed))
    return sampler.result if k == len(sigmas) - 1 else out


def check_evs_inputs(t2i_model, t2v_model, t2i_strength, **ranged) -> None:
    """The models, the numeric inputs against :data:`RANGES` and t2v_at <= t2i_strength."""
    check_image_model(t2i_model, "t2i_model")
    check_model(t2v_model, "t2v_model")
    check_ranges(RANGES, **ranged)
    t2v_at = ranged["t2v_at"]
    if t2v_at > t2i_strength + 1e-9:
        raise InputError("t2v_at", f"{t2v_at} is above t2i_strength {t2i_strength}: the T2V block must sit inside the T2I schedule", "set t2v_at <= t2i_strength")


def check_pairings(models: dict, t2i_vae, t2v_vae, **prompts) -> None:
    """Each prompt's token width and each VAE's latents against its side's model (``models["t2v"]`` None: T2V side unused)."""
    for name, conditioning in prompts.items():
        side = name[:3]
        if models[side] is not None:
            check_conditioning(models[side], conditioning, name, f"{side}_model")
    check_vae(models["t2i"], t2i_vae, "t2i_vae", "t2i_model")
    if models["t2v"] is not None:
        check_vae(models["t2v"], t2v_vae, "t2v_vae", "t2v_model")


def input_latent(t2i_model, latent, images, t2i_vae) -> tuple[dict, torch.Tensor]:
    """The input video as a checked T2I latent: ``(LATENT dict whose other fields the output keeps, samples [F, C, H, W])``."""
    given = None
    if latent is not None:
        base = latent
        z = given = latent_samples(latent, "latent")
    elif images is not None:
        if t2i_vae is None:
            raise InputError("t2i_vae", "is needed to encode images", "connect the image model's VAE, or give a latent")
        image_frames(images, "images", min_frames=2)
        z = t2i_vae.encode(images[..., :3])
        base = {"samples": z}
    else:
        raise InputError("latent", "no input video", "connect a latent or images (with t2i_vae)")
    name = "latent" if latent is not None else "images"
    z = comfy.sample.fix_empty_latent_channels(t2i_model, z)
    check_latent(t2i_model, z, name, "t2i_model", given=given)
    check_frames(z.shape[0], name)
    return base, z


def decoded(vae, samples: torch.Tensor):
    """IMAGE ``[F, H, W, C]`` of a T2I latent (None without a VAE)."""
    if vae is None:
        return None
    image = vae.decode(samples)
    return image.reshape(-1, *image.shape[-3:]) if image.ndim == 5 else image


NODES = [EVSSampler]
