"""EVS Sampler: encapsulated T2I + [T2V] + T2I composition (EVS paper, Algorithm 1) as one ComfyUI node.

Thin adapter: each stage is a ComfyUI sampling run (CFGGuider + the chosen sampler) over a slice of that
model's schedule; the composition order, bridges, DDIM inversion and feature injection live in
samplers/composition.py, samplers/ddim_inversion.py and attention/feature_injection.py.
"""

from __future__ import annotations

import comfy.model_sampling
import comfy.patcher_extension
import comfy.sample
import comfy.samplers
import comfy.utils
import latent_preview
import torch
from comfy.ldm.modules.attention import optimized_attention
from comfy_api.latest import io

from ..attention.feature_injection import DEFAULT_DEPTH, DEFAULT_GAMMA, FeatureInjection
from ..samplers.composition import (
    Bridge,
    T2VBlock,
    encapsulated_sample,
    identity_bridge,
    layout_bridge,
    split_index,
    vae_bridge,
)
from ..samplers.ddim_inversion import ddim_invert
from ..samplers.noise_calibration import flow_rule, kdiffusion_rule
from ..utils.checks import InputError, check_frames, check_range
from ._common import image_frames, latent_samples, throw_if_interrupted, with_samples
from ._registry import CATEGORY

FEATURE = f"{CATEGORY}/evs"
WRAPPER_KEY = "video_enhance_kit_evs"

# Paper defaults (Sec. 4.1): T_I = 50 T2I steps with inversion strength s_I = t_I / T_I = 0.4; T_V = 8
# T2V steps (AnimateDiff-Lightning). t_T2V, t_V and n_V have no published values: ours.
DEFAULT_T2I_STEPS = 50
DEFAULT_T2I_STRENGTH = 0.4
DEFAULT_T2V_AT = 0.2
DEFAULT_T2V_STEPS = 8
DEFAULT_T2V_STRENGTH = 0.5


# ------------------------------------------------------------------------------------------ model helpers


def latent_format(model):
    """The model's ComfyUI latent format object."""
    return model.get_model_object("latent_format")


def noising_rule(model):
    """(a, s) rule of the model's sampling space: flow for CONST models, k-diffusion otherwise."""
    ms = model.get_model_object("model_sampling")
    return flow_rule if isinstance(ms, comfy.model_sampling.CONST) else kdiffusion_rule


def check_image_model(model, name: str):
    """Fail unless ``model`` is a ComfyUI MODEL with a 2-D (image) latent."""
    if not hasattr(model, "get_model_object"):
        raise InputError(name, f"expected a MODEL, got {type(model).__name__}", "connect a checkpoint or UNet loader")
    if latent_format(model).latent_dimensions != 2:
        raise InputError(name, "is a video model (5-D latent); the T2I stage needs an image model", "connect an image model (SD1.5, SDXL, Flux) here and the video model to t2v_model")


def interruptible(model):
    """A clone of ``model`` that checks for Cancel before every model call."""
    m = model.clone()

    def wrapper(executor, *args, **kwargs):
        throw_if_interrupted()
        return executor(*args, **kwargs)

    m.add_wrapper_with_key(comfy.patcher_extension.WrappersMP.APPLY_MODEL, WRAPPER_KEY, wrapper)
    return m


def stage_sigmas(model, scheduler: str, steps: int, strength: float, name: str) -> torch.Tensor:
    """The tail of a ``steps``-step schedule that SDEdit with ``strength`` runs ([round(steps*strength) + 1])."""
    full = comfy.samplers.calculate_sigmas(model.get_model_object("model_sampling"), scheduler, steps).cpu()
    keep = split_index(steps, strength, name)
    if keep < 1:
        raise InputError(name, f"{strength} of {steps} steps leaves no step to run", f"raise {name} or the steps")
    return full[-(keep + 1):]


# ----------------------------------------------------------------------------------------- stage runners


class Progress:
    """One progress bar over every model call of both models, with latent previews of the x0 predictions."""

    def __init__(self, total: int):
        self.total, self.done = total, 0
        self.pbar = comfy.utils.ProgressBar(total)
        self.previewers = {}

    def tick(self, model=None, x0=None) -> None:
        self.done += 1
        preview = None
        if model is not None and x0 is not None:
            key = type(model.model.latent_format)
            if key not in self.previewers:
                self.previewers[key] = latent_preview.get_previewer(model.load_device, model.model.latent_format)
            if self.previewers[key] is not None:
                preview = self.previewers[key].decode_latent_to_preview_image("JPEG", x0)
        self.pbar.update_absolute(self.done, self.total, preview)


def start_from(sampler, x_start: torch.Tensor):
    """A copy of a KSAMPLER that begins from the given internal-space latent instead of noising its input."""
    inner = sampler.sampler_function

    def fn(model, x, sigmas, *args, **kwargs):
        return inner(model, x_start.to(x), sigmas, *args, **kwargs)

    return comfy.samplers.KSAMPLER(fn, sampler.extra_options, sampler.inpaint_options)


class ComfyStage:
    """A :class:`samplers.composition.StageRunner` over one ComfyUI model (LATENT-space tensors in and out)."""

    def __init__(self, model, positive, negative, cfg: float, sampler_name: str, seed: int, tick):
        self.model, self.seed, self.tick = model, seed, tick
        self.sampler_name = sampler_name
        self.guider = comfy.samplers.CFGGuider(model)
        self.guider.set_conds(positive, negative)
        self.guider.set_cfg(cfg)
        self.positive, self.negative = positive, negative

    def to_latent(self, x):
        return self.model.model.process_latent_out(x.to(torch.float32)).cpu()

    def __call__(self, latent, noise, sigmas, start=None):
        last = {}

        def callback(step, x0, x, total):
            last["x0"] = x0
            self.tick(self.model, x0)

        sampler = comfy.samplers.sampler_object(self.sampler_name)
        if start is not None:
            sampler = start_from(sampler, start)
            noise = torch.zeros_like(latent)
        out = self.guider.sample(noise, latent, sampler, sigmas, callback=callback, disable_pbar=True, seed=self.seed)
        x0 = self.to_latent(last["x0"]) if "x0" in last else None
        return out.cpu(), x0

    def invert(self, latent, sigmas):
        """DDIM inversion of a clean LATENT over ``sigmas`` (cfg 1, positive prompt); the internal-space z_tV."""
        captured = {}
        rule = noising_rule(self.model)

        def tick():
            self.tick()

        def fn(model_k, x, sig, extra_args=None, callback=None, disable=None, **kwargs):
            extra_args = extra_args or {}
            z0 = model_k.latent_image

            def denoise(xx, s):
                return model_k(xx, s * xx.new_ones([xx.shape[0]]), **extra_args)

            captured["z"] = ddim_invert(denoise, rule, z0, sig, on_model_call=tick)
            return captured["z"]

        guider = comfy.samplers.CFGGuider(self.model)
        guider.set_conds(self.positive, self.negative)
        guider.set_cfg(1.0)  # inversion without guidance: CFG makes DDIM inversion drift (null-text inversion, Mokady et al.)
        guider.sample(torch.zeros_like(latent), latent, comfy.samplers.KSAMPLER(fn), sigmas, disable_pbar=True, seed=self.seed)
        return captured["z"]


# ---------------------------------------------------------------------------------- feature injection


def unet_attention_layers(diffusion_model):
    """``[(key, depth)]`` of every spatial self-attention of a UNet: key = (block, id, transformer index).

    Depth: resolution level / (levels + 1) in the encoder and decoder, 1.0 in the middle block.
    """
    from comfy.ldm.modules.attention import SpatialTransformer
    from comfy.ldm.modules.diffusionmodules.openaimodel import Downsample, Upsample

    found, level = [], 0
    for i, blk in enumerate(diffusion_model.input_blocks):
        for layer in blk:
            if isinstance(layer, Downsample):
                level += 1
            if isinstance(layer, SpatialTransformer):
                found += [(("input", i, j), level) for j in range(len(layer.transformer_blocks))]
    levels = level
    middle = [(("middle", 0, j), None) for layer in diffusion_model.middle_block if isinstance(layer, SpatialTransformer) for j in range(len(layer.transformer_blocks))]
    for i, blk in enumerate(diffusion_model.output_blocks):
        for layer in blk:
            if isinstance(layer, SpatialTransformer):
                found += [(("output", i, j), level) for j in range(len(layer.transformer_blocks))]
            if isinstance(layer, Upsample):
                level -= 1
    out = [(key, lvl / (levels + 1)) for key, lvl in found]
    return out + [(key, 1.0) for key, _ in middle]


def patch_feature_injection(model, injection: FeatureInjection):
    """A clone of the T2V ``model`` whose self-attention consults ``injection`` (UNet attn1 or Wan override)."""
    from comfy.ldm.modules.diffusionmodules.openaimodel import UNetModel

    dm = model.model.diffusion_model
    m = model.clone()
    if isinstance(dm, UNetModel):
        for key, depth in unet_attention_layers(dm):

            def replace(q, k, v, extra_options, key=key, depth=depth):
                q, k, v = injection.qkv(q, k, v, key, depth, float(extra_options["sigmas"].flatten()[0]))
                return optimized_attention(q, k, v, extra_options["n_heads"])

            m.set_model_attn1_replace(replace, *key)
        return m
    blocks = getattr(dm, "blocks", None)
    if blocks is not None and type(dm).__module__.startswith("comfy.ldm.wan"):
        n = len(blocks)
        for i in range(n):

            def block(args, extra, i=i):
                to = dict(args["transformer_options"])
                to["vek_sfi"] = {"layer": i, "depth": i / max(n - 1, 1), "calls": 0}
                return extra["original_block"]({**args, "transformer_options": to})

            m.set_model_patch_replace(block, "dit", "double_block", i)

        def override(func, *args, **kwargs):
            to = kwargs.get("transformer_options") or {}
            info = to.get("vek_sfi")
            if info is not None:
                info["calls"] += 1
                if info["calls"] == 1:  # the first attention of a Wan block is its self-attention
                    q, k, v = injection.qkv(args[0], args[1], args[2], info["layer"], info["depth"], float(to["sigmas"].flatten()[0]))
                    args = (q, k, v, *args[3:])
            return func(*args, **kwargs)

        m.model_options.setdefault("transformer_options", {})["optimized_attention_override"] = override
        return m
    raise InputError("t2v_model", f"selective feature injection supports UNet models (SD1.x/SD2.x/SDXL, AnimateDiff) and Wan, not {type(dm).__name__}", "turn sfi off for this model")


# --------------------------------------------------------------------------------------------- bridges


def make_bridge(t2i_model, t2v_model, t2i_vae, t2v_vae, frames: int) -> Bridge:
    """Identity when both models share a latent format, otherwise decode-then-encode through both VAEs."""
    fi, fv = latent_format(t2i_model), latent_format(t2v_model)
    if type(fi) is type(fv):
        return identity_bridge() if fv.latent_dimensions == 2 else layout_bridge()
    missing = [n for n, v in (("t2i_vae", t2i_vae), ("t2v_vae", t2v_vae)) if v is None]
    if missing:
        raise InputError(
            missing[0],
            f"the two models use different latent spaces ({type(fi).__name__} vs {type(fv).__name__}), so the bridge needs both VAEs",
            "connect the T2I model's VAE to t2i_vae and the T2V model's VAE to t2v_vae",
        )
    tc = t2v_vae.temporal_compression_decode() or 1
    if fv.latent_dimensions == 3 and (frames - 1) % tc:
        good = ", ".join(str(tc * k + 1) for k in (4, 8, 12, 20))
        raise InputError("latent", f"{frames} frames do not survive the T2V VAE's {tc}x temporal compression", f"use {tc}k + 1 frames (e.g. {good})")

    def pixels(images):
        return images.reshape(-1, *images.shape[-3:])[..., :3]

    def decode_i(z):
        return pixels(t2i_vae.decode(z))

    def encode_v(p):
        return t2v_vae.encode(p).cpu()

    def decode_v(z):
        return pixels(t2v_vae.decode(z))

    def encode_i(p):
        return t2i_vae.encode(p).cpu()

    return vae_bridge(decode_i, encode_v, decode_v, encode_i)


# ------------------------------------------------------------------------------------------------ node


def tooltip_range(lo, hi) -> str:
    return f" Range {lo} to {hi}."


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
                io.Int.Input("t2i_steps", default=DEFAULT_T2I_STEPS, min=1, max=1000, tooltip="T_I: steps of the full T2I schedule (paper: 50); SDEdit runs the last t2i_strength of them." + tooltip_range(1, 1000)),
                io.Float.Input("t2i_strength", default=DEFAULT_T2I_STRENGTH, min=0.0, max=1.0, step=0.01, tooltip="t_I / T_I: how much noise the T2I SDEdit adds (paper: 0.4). Higher repaints more." + tooltip_range(0, 1)),
                io.Float.Input("t2v_at", default=DEFAULT_T2V_AT, min=0.0, max=1.0, step=0.01, tooltip="t_T2V / T_I: where in the T2I schedule the T2V block runs, at most t2i_strength. Larger = earlier = more T2I steps after it (more detail, more flicker); 0 = after the last T2I step (plain T2I then T2V)." + tooltip_range(0, 1)),
                io.Combo.Input("t2i_sampler", options=samplers, default="ddim", tooltip="Sampler of the T2I stages (paper: DDIM)."),
                io.Combo.Input("t2i_scheduler", options=schedulers, default="ddim_uniform", tooltip="Scheduler of the T2I schedule."),
                io.Float.Input("t2i_cfg", default=7.5, min=0.0, max=100.0, step=0.1, tooltip="Classifier-free guidance of the image model." + tooltip_range(0, 100)),
                io.Int.Input("t2v_steps", default=DEFAULT_T2V_STEPS, min=1, max=1000, tooltip="T_V: steps of the full T2V schedule (paper: 8, AnimateDiff-Lightning)." + tooltip_range(1, 1000)),
                io.Float.Input("t2v_strength", default=DEFAULT_T2V_STRENGTH, min=0.0, max=1.0, step=0.01, tooltip="t_V / T_V: noise the T2V block adds to the bridged latent (or inverts to). Larger removes more flicker but pulls the look toward the video model (paper Fig. 7)." + tooltip_range(0, 1)),
                io.Int.Input("t2v_block_steps", default=0, min=0, max=1000, tooltip="n_V: T2V steps the block runs from t_V before it hands its clean prediction back; 0 = all the way down." + tooltip_range(0, 1000)),
                io.Combo.Input("t2v_sampler", options=samplers, default="euler", tooltip="Sampler of the T2V block (with SFI on the block always starts from the DDIM-inverted latent)."),
                io.Combo.Input("t2v_scheduler", options=schedulers, default="sgm_uniform", tooltip="Scheduler of the T2V schedule (AnimateDiff-Lightning: sgm_uniform; Wan: simple)."),
                io.Float.Input("t2v_cfg", default=1.0, min=0.0, max=100.0, step=0.1, tooltip="Classifier-free guidance of the video model (distilled Lightning models: 1)." + tooltip_range(0, 100)),
                io.Boolean.Input("t2v_enabled", default=True, tooltip="Off = a plain T2I SDEdit run with the same settings (for A/B comparison)."),
                io.Boolean.Input("sfi", default=False, tooltip="Selective feature injection: DDIM-invert the bridged latent with the T2V model, record self-attention Q, K, V, and inject them while denoising (Eq. 11). Turn on when the T2I look (a style) lies outside what the video model can make; costs the inversion's extra T2V calls and memory for the features."),
                io.Float.Input("sfi_gamma", default=DEFAULT_GAMMA, min=0.0, max=1.0, step=0.05, tooltip="gamma of Eq. 11: share of the recorded query (K and V are always replaced). Paper: 0.8 for deeper layers, 0.5 for shallower." + tooltip_range(0, 1)),
                io.Float.Input("sfi_depth_min", default=DEFAULT_DEPTH[0], min=0.0, max=1.0, step=0.05, tooltip="Shallowest injected self-attention, as normalised depth (0 = full-resolution UNet blocks / first DiT block)." + tooltip_range(0, 1)),
                io.Float.Input("sfi_depth_max", default=DEFAULT_DEPTH[1], min=0.0, max=1.0, step=0.05, tooltip="Deepest injected self-attention (1 = UNet middle block / last DiT block). 0-1 with gamma 1 reconstructs the input." + tooltip_range(0, 1)),
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
        check_image_model(t2i_model, "t2i_model")
        if not hasattr(t2v_model, "get_model_object"):
            raise InputError("t2v_model", f"expected a MODEL, got {type(t2v_model).__name__}", "connect a video model")
        check_range(t2i_steps, "t2i_steps", 1, 1000, integer=True)
        check_range(t2v_steps, "t2v_steps", 1, 1000, integer=True)
        check_range(t2v_block_steps, "t2v_block_steps", 0, 1000, integer=True)
        for name, value in (("t2i_cfg", t2i_cfg), ("t2v_cfg", t2v_cfg)):
            check_range(value, name, 0.0, 100.0)
        check_range(t2v_at, "t2v_at", 0.0, 1.0)
        if t2v_at > t2i_strength + 1e-9:
            raise InputError("t2v_at", f"{t2v_at} is above t2i_strength {t2i_strength}: the T2V block must sit inside the T2I schedule", "set t2v_at <= t2i_strength")

        # the input video -> T2I latent
        if latent is not None:
            base = latent
            z = latent_samples(latent, "latent", ranks=(4,))
        elif images is not None:
            if t2i_vae is None:
                raise InputError("t2i_vae", "is needed to encode images", "connect the image model's VAE, or give a latent")
            image_frames(images, "images", min_frames=2)
            z = t2i_vae.encode(images[..., :3]).cpu()
            base = {"samples": z}
        else:
            raise InputError("latent", "no input video", "connect a latent or images (with t2i_vae)")
        check_frames(z.shape[0], "latent" if latent is not None else "images")
        z = comfy.sample.fix_empty_latent_channels(t2i_model, z)
        if z.shape[1] != latent_format(t2i_model).latent_channels:
            raise InputError("latent", f"has {z.shape[1]} channels, t2i_model expects {latent_format(t2i_model).latent_channels}", "encode the video with the image model's VAE")

        sig_i = stage_sigmas(t2i_model, t2i_scheduler, t2i_steps, t2i_strength, "t2i_strength")
        n_i = len(sig_i) - 1
        k = n_i - min(split_index(t2i_steps, t2v_at, "t2v_at"), n_i)  # T2I steps before the block
        noise = comfy.sample.prepare_noise(z, seed)

        block, calls = None, n_i
        if t2v_enabled:
            sig_v = stage_sigmas(t2v_model, t2v_scheduler, t2v_steps, t2v_strength, "t2v_strength")
            m_v = len(sig_v) - 1
            n_v = m_v if t2v_block_steps == 0 else t2v_block_steps
            if n_v > m_v:
                raise InputError("t2v_block_steps", f"{n_v} is more than the {m_v} steps from t_V down", f"set t2v_block_steps between 1 and {m_v} (or 0 for all)")
            calls += n_v + (m_v if sfi else 0)
        tick = Progress(calls).tick

        t2i = ComfyStage(interruptible(t2i_model), t2i_positive, t2i_negative, t2i_cfg, t2i_sampler, seed, tick)
        if t2v_enabled:
            bridge = make_bridge(t2i_model, t2v_model, t2i_vae, t2v_vae, z.shape[0])
            injection = FeatureInjection(sfi_gamma, sfi_depth_min, sfi_depth_max) if sfi else None
            v_model = interruptible(t2v_model)
            if injection is not None:
                v_model = patch_feature_injection(v_model, injection)
            seed_v = (seed + 1) % 2**64
            t2v = ComfyStage(v_model, t2v_positive, t2v_negative, t2v_cfg, t2v_sampler, seed_v, tick)
            block = T2VBlock(
                lambda lat, nz, sig, start=None: t2v(lat, nz, sig, start),
                sig_v,
                n_v,
                noise=lambda z_v: comfy.sample.prepare_noise(z_v, seed_v),
                invert=t2v.invert if sfi else None,
                injection=injection,
                bridge=bridge,
            )
        out = encapsulated_sample(z, noise, sig_i, k, t2i, block)
        image = t2i_vae.decode(out) if t2i_vae is not None else None
        if image is not None and image.ndim == 5:
            image = image.reshape(-1, *image.shape[-3:])
        return io.NodeOutput(with_samples(base, out), image)


NODES = [EVSSampler]
