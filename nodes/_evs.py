"""The EVS stages in ComfyUI: stage runners, bridges, schedules and the T2V block as a KSAMPLER (shared by EVS Sampler and EVS T2V Block).

:class:`EVSBlockSampler` is the KSAMPLER both nodes sample with: its sampler function is
:func:`samplers.evs_block.encapsulated_sampler` around the wrapped sampler's, and it remembers the run's NOISE
while it samples (ComfyUI hands a sampler function only the noised start), so the re-entry at t_T2V uses the
very eps of the run. Wrapped by another SAMPLER wrapper it is called without that: the eps is then the one the
start it is given implies.
"""

from __future__ import annotations

from dataclasses import dataclass

import comfy.model_management
import comfy.patcher_extension
import comfy.sample
import comfy.samplers
import torch

from ..attention.feature_injection import FeatureInjection
from ..samplers.composition import Bridge, T2VBlock, identity_bridge, layout_bridge, split_index, vae_bridge
from ..samplers.ddim_inversion import ddim_invert
from ..samplers.evs_block import BlockRun, encapsulated_sampler
from ..samplers.noising import implied_noise
from ..utils.checks import InputError
from ._common import throw_if_interrupted
from ._compat import check_model, sampler_seed
from ._feature_injection import patch_feature_injection
from ._sampling import model_rule, wrap_ksampler

WRAPPER_KEY = "video_enhance_kit_evs"


# ------------------------------------------------------------------------------------------ model helpers


def latent_format(model):
    """The model's ComfyUI latent format object."""
    return model.get_model_object("latent_format")


def check_image_model(model, name: str):
    """Fail unless ``model`` is a ComfyUI MODEL with a 2-D (image) latent."""
    check_model(model, name)
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


def start_from(sampler, x_start: torch.Tensor):
    """A copy of a KSAMPLER that begins from the given internal-space latent instead of noising its input."""
    inner = sampler.sampler_function

    def fn(model, x, sigmas, *args, **kwargs):
        return inner(model, x_start.to(x), sigmas, *args, **kwargs)

    return wrap_ksampler(sampler, fn)


class ComfyStage:
    """A :class:`samplers.composition.StageRunner` over one ComfyUI model (LATENT-space tensors in and out).

    Latents stay on the model's device between stages (no GPU -> CPU -> GPU round trip per stage).
    """

    def __init__(self, model, positive, negative, cfg: float, sampler_name: str, seed: int, tick):
        self.model, self.seed, self.tick = model, seed, tick
        self.sampler_name = sampler_name
        self.guider = comfy.samplers.CFGGuider(model)
        self.guider.set_conds(positive, negative)
        self.guider.set_cfg(cfg)
        self.positive, self.negative = positive, negative

    def to_latent(self, x):
        return self.model.model.process_latent_out(x.to(torch.float32))

    def __call__(self, latent, noise, sigmas, start=None):
        last = {}

        def callback(step, x0, x, total):
            last["x0"] = x0
            self.tick(self.model, x0)

        sampler = comfy.samplers.sampler_object(self.sampler_name)
        if start is not None:
            sampler = start_from(sampler, start)
            noise = torch.zeros_like(latent)
        out = self.guider.sample(noise, latent, sampler, sigmas, callback=callback, disable_pbar=True, seed=sampler_seed(self.seed))
        x0 = self.to_latent(last["x0"]) if "x0" in last else None
        return out, x0

    def invert(self, latent, sigmas):
        """DDIM inversion of a clean LATENT over ``sigmas`` (cfg 1, positive prompt); the internal-space z_tV."""
        captured = {}
        rule = model_rule(self.model.get_model_object("model_sampling"))

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
        guider.sample(torch.zeros_like(latent), latent, comfy.samplers.KSAMPLER(fn), sigmas, disable_pbar=True, seed=sampler_seed(self.seed))
        return captured["z"]


# --------------------------------------------------------------------------------------------- bridges


def make_bridge(t2i_model, t2v_model, t2i_vae, t2v_vae, frames: int, latent_name: str = "latent") -> Bridge:
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
        raise InputError(latent_name, f"{frames} frames do not survive the T2V VAE's {tc}x temporal compression", f"use {tc}k + 1 frames (e.g. {good})")

    def pixels(images):
        return images.reshape(-1, *images.shape[-3:])[..., :3]

    def decode_i(z):
        return pixels(t2i_vae.decode(z))

    def encode_v(p):
        return t2v_vae.encode(p)

    def decode_v(z):
        return pixels(t2v_vae.decode(z))

    def encode_i(p):
        return t2i_vae.encode(p)

    return vae_bridge(decode_i, encode_v, decode_v, encode_i)


def t2v_schedule(t2v_model, scheduler: str, steps: int, strength: float, block_steps: int) -> tuple[torch.Tensor, int]:
    """``(sigmas from t_V down to 0, n_V)``: the T2V schedule tail and the steps the block runs (0 = all)."""
    sig_v = stage_sigmas(t2v_model, scheduler, steps, strength, "t2v_strength")
    m_v = len(sig_v) - 1
    n_v = m_v if block_steps == 0 else block_steps
    if n_v > m_v:
        raise InputError("t2v_block_steps", f"{n_v} is more than the {m_v} steps from t_V down", f"set t2v_block_steps between 1 and {m_v} (or 0 for all)")
    return sig_v, n_v


def t2v_stage(t2v_model, injection, positive, negative, cfg: float, sampler_name: str, seed: int, tick) -> ComfyStage:
    """The T2V model's stage runner: interruptible, with SFI patched in when ``injection`` is given."""
    v_model = interruptible(t2v_model)
    if injection is not None:
        v_model = patch_feature_injection(v_model, injection)
    return ComfyStage(v_model, positive, negative, cfg, sampler_name, seed, tick)


# ------------------------------------------------------------------------------------------- T2V side


@dataclass
class T2VSide:
    """The T2V side of the block as the nodes' inputs give it (checked), built into a :class:`T2VBlock` per run."""

    model: object
    positive: list
    negative: list
    sigmas: torch.Tensor
    steps: int
    sampler: str
    cfg: float
    sfi: bool = False
    sfi_gamma: float = 0.8
    sfi_depth: tuple = (0.5, 1.0)
    t2i_vae: object = None
    t2v_vae: object = None

    @property
    def calls(self) -> int:
        """T2V model calls per run: n_V (+ the inversion's with SFI)."""
        return self.steps + (len(self.sigmas) - 1 if self.sfi else 0)

    def block(self, t2i_model, frames: int, seed: int, tick, latent_name: str = "latent") -> T2VBlock:
        """The [T2V] block for a run of ``frames`` frames on ``t2i_model``'s latents (bridge checked here, before any model call)."""
        bridge = make_bridge(t2i_model, self.model, self.t2i_vae, self.t2v_vae, frames, latent_name)
        injection = FeatureInjection(self.sfi_gamma, *self.sfi_depth) if self.sfi else None
        t2v = t2v_stage(self.model, injection, self.positive, self.negative, self.cfg, self.sampler, seed, tick)
        return T2VBlock(
            lambda lat, nz, sig, start=None: t2v(lat, nz, sig, start),
            self.sigmas,
            self.steps,
            noise=lambda z_v: comfy.sample.prepare_noise(z_v, seed),
            invert=t2v.invert if self.sfi else None,
            injection=injection,
            bridge=bridge,
        )


# ----------------------------------------------------------------------------------------- the KSAMPLER


class EVSBlockSampler(comfy.samplers.KSAMPLER):
    """A KSAMPLER running T2I (the wrapped sampler) + [T2V] + T2I (the wrapped sampler) in one sampling run.

    ``plan(guider, latent, sigmas, seed) -> (k, block)`` places and builds the block for a run (every check before any
    model call). ``input_latent`` (block space) replaces the sampler's latent as the block's input for k = 0 and
    ``result`` keeps the block's output when it is the result (k = N): EVS Sampler uses both to hand on its
    latents without a process_latent_in / _out round trip.
    """

    def sample(self, model_wrap, sigmas, extra_args, callback, noise, latent_image=None, denoise_mask=None, disable_pbar=False):
        self.run_noise = noise
        try:
            return super().sample(model_wrap, sigmas, extra_args, callback, noise, latent_image, denoise_mask, disable_pbar)
        finally:
            self.run_noise = None

    def begin(self, model_k, x, sigmas, extra_args) -> BlockRun:
        """The run as :func:`encapsulated_sampler` sees it: ComfyUI's noising, latent spaces and model reloading."""
        guider = model_k.inner_model
        base, ms = guider.inner_model, guider.inner_model.model_sampling
        latent = model_k.latent_image
        seed = (extra_args or {}).get("seed") or 0
        k, block = self.plan(guider, latent, sigmas, seed)
        # the run's NOISE: remembered by sample(); wrapped by another KSAMPLER, the one its sample() gave the model
        # (not the NOISE for samplers with random inpaint noise, e.g. ddim: start_noise then finds the start differs)
        noise = getattr(self, "run_noise", None)
        if noise is None:
            noise = getattr(model_k, "noise", None)
        first = comfy.samplers.Sampler().max_denoise(guider, sigmas)
        start = ms.noise_scaling(sigmas[0], noise, latent, first) if noise is not None else None

        def implied(x_t):
            a, s = model_rule(ms, first)(sigmas[0])
            return implied_noise(x_t, latent, a, s)

        def noising(sigma, eps, x0):
            return ms.noise_scaling(sigma, eps, x0, comfy.samplers.Sampler().max_denoise(guider, sigma.reshape(1)))

        def from_latent(z):
            z = z.to(latent.device)
            return base.process_latent_in(z) if torch.count_nonzero(z) > 0 else z  # as CFGGuider.inner_sample

        def set_latent(z):
            model_k.latent_image = z

        return BlockRun(latent, noise, start, noising, implied, block=block, k=k, to_latent=lambda z: base.process_latent_out(z.to(torch.float32)),
                        from_latent=from_latent, set_latent=set_latent, after_block=lambda: reload(guider), input_latent=self.input_latent)


def reload(guider) -> None:
    """After the T2V model sampled inside the T2I run: the T2I model (and what it needs) loaded and current again."""
    patcher = guider.model_patcher
    comfy.model_management.load_models_gpu([patcher] + list(getattr(guider, "loaded_models", []) or []))
    if getattr(patcher.model, "current_patcher", patcher) is not patcher:
        patcher.pre_run()  # the T2V run's cleanup cleared it on a model both share


def block_sampler(sampler, plan, input_latent=None) -> EVSBlockSampler:
    """The EVS block around the KSAMPLER ``sampler`` (``sampler`` itself is not changed)."""
    out = wrap_ksampler(sampler, None, kind=EVSBlockSampler)
    out.plan, out.input_latent, out.run_noise, out.result = plan, input_latent, None, None

    def keep(z):
        out.result = z

    out.sampler_function = encapsulated_sampler(sampler.sampler_function, out.begin, keep)
    return out
