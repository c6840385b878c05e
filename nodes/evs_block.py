"""EVS T2V Block: the encapsulated [T2V] block of EVS (Algorithm 1) as a SAMPLER wrapper for SamplerCustomAdvanced.

The T2I side is whatever SamplerCustomAdvanced is given: its GUIDER (CFGGuider, Temporal Consistency Guider,
DualCFG, PerpNeg, ... on any patched image model), NOISE (Random Noise, Shared Noise) and SIGMAS (their start
is t_I: e.g. BasicScheduler with denoise 0.4). The block samples with the wrapped SAMPLER down to t_T2V, takes
the T2I model's clean prediction there, runs the [T2V] block with the video model (SDEdit, or DDIM inversion with
selective feature injection), re-noises the result with the run's eps to t_T2V and hands the rest of the SIGMAS
back to the wrapped SAMPLER. The core is samplers/evs_block.py; the KSAMPLER is nodes/_evs.EVSBlockSampler.
"""

from __future__ import annotations

import comfy.samplers
from comfy_api.latest import io

from ..attention.feature_injection import DEFAULT_DEPTH, DEFAULT_GAMMA
from ..samplers.evs_block import t2v_index
from ..utils.checks import InputError, check_frames
from ._common import Progress, bounds, check_ranges
from ._compat import check_conditioning, check_model, check_vae
from ._evs import T2VSide, block_sampler, check_image_model, t2v_schedule
from ._sampling import KSAMPLER_FIX, check_ksampler
from .evs import DEFAULT_T2V_AT, DEFAULT_T2V_STEPS, DEFAULT_T2V_STRENGTH, FEATURE, RANGES, tooltip_range

BLOCK_RANGES = {**{k: RANGES[k] for k in ("t2v_at", "t2v_steps", "t2v_strength", "t2v_block_steps", "t2v_cfg", "sfi_gamma", "sfi_depth_min",
                                          "sfi_depth_max")}, "seed_offset": (0, 0xFFFFFFFF)}
TIP_T2V_AT = (
    "t_T2V: where in the T2I schedule the block runs, as a share of the model's whole noise range (the units of "
    "BasicScheduler's denoise, so at most that: with denoise 0.4, t2v_at 0.2 runs it halfway). The block runs before the "
    "first SIGMAS step starting at or below that noise level; 0 = after the last step (plain T2I then T2V)."
)


def denoise_of(model_sampling, sigma: float) -> float:
    """The share of the model's noise range at which its schedule reaches ``sigma`` (inverse of percent_to_sigma; bisection)."""
    lo, hi = 0.0, 1.0
    for _ in range(40):
        mid = (lo + hi) / 2
        if model_sampling.percent_to_sigma(1.0 - mid) < sigma:
            lo = mid
        else:
            hi = mid
    return (lo + hi) / 2


def block_index(model_sampling, levels: list[float], t2v_at: float) -> int:
    """``k`` for ``t2v_at`` on the SIGMAS ``levels``; InputError ('t2v_at') above the SIGMAS' start.

    The start of a scheduler's tail sits up to one of its steps below the denoise it was asked for (ddim_uniform:
    20 of 50 steps begin at 0.38), so t2v_at may reach one step above the start.
    """
    d0 = denoise_of(model_sampling, levels[0])
    gap = d0 - denoise_of(model_sampling, levels[1]) if len(levels) > 1 else 0.0
    if t2v_at > d0 + max(gap, 0.0) + 1e-6:
        raise InputError("t2v_at", f"{t2v_at} is above the SIGMAS' start ({d0:.3g} of the model's noise range): the block must sit inside the T2I schedule",
                         "set t2v_at at most the scheduler's denoise (BasicScheduler denoise 0.4: t2v_at <= 0.4), or raise that denoise")
    level = min(model_sampling.percent_to_sigma(1.0 - t2v_at), levels[0])
    return t2v_index(levels, level)


class EVST2VBlock(io.ComfyNode):
    @classmethod
    def define_schema(cls):
        samplers, schedulers = comfy.samplers.SAMPLER_NAMES, comfy.samplers.SCHEDULER_NAMES
        return io.Schema(
            node_id="VEK_EVST2VBlock",
            display_name="EVS T2V Block (SAMPLER)",
            category=FEATURE,
            description=(
                "Wraps a SAMPLER with EVS's encapsulated [T2V] block, for SamplerCustomAdvanced: the T2I stages are that run (its GUIDER, "
                "NOISE, SIGMAS from t_I, model patches); once, at t_T2V, the T2I model's clean prediction goes through the video model "
                "(noised to t_V or DDIM-inverted, n_V steps) and comes back, re-noised with the same eps, to finish the SIGMAS. "
                "Stacks with Noise Calibration, Shared Noise Sampler and Early Stop Sampler (see the README for which orders match)."
            ),
            inputs=[
                io.Sampler.Input("sampler", tooltip="The T2I sampler to wrap (KSamplerSelect, e.g. ddim, or another k-diffusion SAMPLER wrapper); it runs both T2I stages."),
                io.Model.Input("t2v_model", tooltip="Video model for temporal consistency: SD1.5 with an AnimateDiff motion module (same latent space) or a native video model such as Wan (bridged through the VAEs)."),
                io.Conditioning.Input("t2v_positive", tooltip="Positive prompt for the video model."),
                io.Conditioning.Input("t2v_negative", tooltip="Negative prompt for the video model (ignored at CFG 1)."),
                io.Float.Input("t2v_at", default=DEFAULT_T2V_AT, **bounds(BLOCK_RANGES, "t2v_at"), step=0.01, tooltip=TIP_T2V_AT + tooltip_range("t2v_at")),
                io.Int.Input("t2v_steps", default=DEFAULT_T2V_STEPS, **bounds(BLOCK_RANGES, "t2v_steps"), tooltip="T_V: steps of the full T2V schedule (paper: 8, AnimateDiff-Lightning)." + tooltip_range("t2v_steps")),
                io.Float.Input("t2v_strength", default=DEFAULT_T2V_STRENGTH, **bounds(BLOCK_RANGES, "t2v_strength"), step=0.01, tooltip="t_V / T_V: noise the block adds to the bridged latent (or inverts to). Larger removes more flicker but pulls the look toward the video model (paper Fig. 7)." + tooltip_range("t2v_strength")),
                io.Int.Input("t2v_block_steps", default=0, **bounds(BLOCK_RANGES, "t2v_block_steps"), tooltip="n_V: T2V steps the block runs from t_V before it hands its clean prediction back; 0 = all the way down." + tooltip_range("t2v_block_steps")),
                io.Combo.Input("t2v_sampler", options=samplers, default="euler", tooltip="Sampler of the T2V block (with SFI on the block always starts from the DDIM-inverted latent)."),
                io.Combo.Input("t2v_scheduler", options=schedulers, default="sgm_uniform", tooltip="Scheduler of the T2V schedule (AnimateDiff-Lightning: sgm_uniform; Wan: simple)."),
                io.Float.Input("t2v_cfg", default=1.0, **bounds(BLOCK_RANGES, "t2v_cfg"), step=0.1, tooltip="Classifier-free guidance of the video model (distilled Lightning models: 1)." + tooltip_range("t2v_cfg")),
                io.Boolean.Input("sfi", default=False, tooltip="Selective feature injection: DDIM-invert the bridged latent with the T2V model, record self-attention Q, K, V (per context window when the video model has context windows) and inject them while denoising (Eq. 11)."),
                io.Float.Input("sfi_gamma", default=DEFAULT_GAMMA, **bounds(BLOCK_RANGES, "sfi_gamma"), step=0.05, tooltip="gamma of Eq. 11: share of the recorded query (K and V are always replaced). Paper: 0.8 for deeper layers, 0.5 for shallower." + tooltip_range("sfi_gamma")),
                io.Float.Input("sfi_depth_min", default=DEFAULT_DEPTH[0], **bounds(BLOCK_RANGES, "sfi_depth_min"), step=0.05, tooltip="Shallowest injected self-attention, as normalised depth (0 = full-resolution UNet blocks / first DiT block)." + tooltip_range("sfi_depth_min")),
                io.Float.Input("sfi_depth_max", default=DEFAULT_DEPTH[1], **bounds(BLOCK_RANGES, "sfi_depth_max"), step=0.05, tooltip="Deepest injected self-attention (1 = UNet middle block / last DiT block)." + tooltip_range("sfi_depth_max")),
                io.Int.Input("seed_offset", default=1, **bounds(BLOCK_RANGES, "seed_offset"), tooltip="The block's SDEdit noise uses the run's seed (the NOISE's) plus this (1 = what EVS Sampler uses). Range 0 to 4294967295."),
                io.Vae.Input("t2i_vae", optional=True, tooltip="VAE of the image model: one side of the VAE bridge, needed only when the video model's latent space differs (e.g. Wan)."),
                io.Vae.Input("t2v_vae", optional=True, tooltip="VAE of the video model: needed only when its latent space differs from the image model's (e.g. Wan)."),
            ],
            outputs=[io.Sampler.Output(tooltip="The SAMPLER with the EVS block inside: connect it to SamplerCustomAdvanced (or another SAMPLER wrapper).")],
        )

    @classmethod
    def execute(cls, sampler, t2v_model, t2v_positive, t2v_negative, t2v_at, t2v_steps, t2v_strength, t2v_block_steps, t2v_sampler, t2v_scheduler,
                t2v_cfg, sfi, sfi_gamma, sfi_depth_min, sfi_depth_max, seed_offset, t2i_vae=None, t2v_vae=None) -> io.NodeOutput:
        check_ksampler(sampler, " by the EVS block", f"{KSAMPLER_FIX}: the block runs its sampler function on each T2I stage")
        check_model(t2v_model, "t2v_model")
        check_ranges(BLOCK_RANGES, t2v_at=t2v_at, t2v_steps=t2v_steps, t2v_strength=t2v_strength, t2v_block_steps=t2v_block_steps, t2v_cfg=t2v_cfg,
                     sfi_gamma=sfi_gamma, sfi_depth_min=sfi_depth_min, sfi_depth_max=sfi_depth_max, seed_offset=seed_offset)
        check_conditioning(t2v_model, t2v_positive, "t2v_positive", "t2v_model")
        check_conditioning(t2v_model, t2v_negative, "t2v_negative", "t2v_model")
        check_vae(t2v_model, t2v_vae, "t2v_vae", "t2v_model")
        sig_v, n_v = t2v_schedule(t2v_model, t2v_scheduler, t2v_steps, t2v_strength, t2v_block_steps)
        side = T2VSide(t2v_model, t2v_positive, t2v_negative, sig_v, n_v, t2v_sampler, t2v_cfg, sfi, sfi_gamma, (sfi_depth_min, sfi_depth_max), t2i_vae, t2v_vae)
        return io.NodeOutput(block_sampler(sampler, planner(side, t2v_at, seed_offset)))


def planner(side: T2VSide, t2v_at: float, seed_offset: int):
    """``plan(guider, latent, sigmas, seed) -> (k, block)`` for :func:`nodes._evs.block_sampler`: every check before a model call."""

    def plan(guider, latent, sigmas, seed):
        t2i = guider.model_patcher
        check_image_model(t2i, "guider")
        check_vae(t2i, side.t2i_vae, "t2i_vae", "the guider's model")
        if latent.ndim != 4:
            raise InputError("latent_image", f"expected frames as batch [F, C, H, W], got shape {tuple(latent.shape)}", "connect the image model's latent of the video")
        check_frames(latent.shape[0], "latent_image")
        k = block_index(guider.inner_model.model_sampling, sigmas.tolist(), t2v_at)  # the SIGMAS, read once per run
        return k, side.block(t2i, latent.shape[0], (seed + seed_offset) % 2**64, Progress(side.calls).tick, latent_name="latent_image")

    return plan


NODES = [EVST2VBlock]
