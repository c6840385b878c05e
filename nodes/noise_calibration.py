"""Noise Calibration (NC-SDEdit) nodes: a SAMPLER wrapper for SamplerCustomAdvanced and a KSampler-like refiner.

Why a SAMPLER wrapper (not a NOISE node): inside ``Sampler.sample`` everything the calibration needs is
already prepared by the guider that runs the sampling: the loaded model with all its patches, the
processed conditioning, the CFG scale and model_options, the latent being refined (after
``process_latent_in``), the exact SIGMAS and the seed. A NOISE node would need the GUIDER, SIGMAS and
LATENT wired a second time (and would silently calibrate at the wrong noise level if they differed),
and would have to load the model outside sampling. The wrapper calibrates at ``sigmas[0]`` before it
hands the calibrated noise to the wrapped sampler, so the start does not depend on which sampler runs.
It composes with every NOISE node (the calibration starts from that noise, e.g. Shared Noise), every
GUIDER (CFG or Temporal Consistency: "guided" calibrates through it) and other SAMPLER wrappers: wrapping a
k-diffusion sampler it returns a plain KSAMPLER whose function calibrates the start x_t and then calls the
wrapped function, so Shared Noise Sampler / Early Stop Sampler can go inside or outside it (same start).
Samplers that are not KSAMPLERs are wrapped at the ``Sampler.sample`` level instead.
"""

from __future__ import annotations

import logging

import comfy.model_management
import comfy.sample
import comfy.samplers
import comfy.utils
import torch
from comfy_api.latest import io

from ..samplers.noise_calibration import (
    DEFAULT_CUTOFF,
    DEFAULT_ITERATIONS,
    MAX_ITERATIONS,
    calibrate_noise,
    check_calibration_args,
)
from ..utils.checks import InputError, check_choice, check_finite, check_sigmas
from ..utils.fft import DEFAULT_MASK, MASKS
from ._common import (
    Progress,
    bounds,
    check_ranges,
    latent_samples,
    throw_if_interrupted,
    with_samples,
)
from ._compat import check_conditioning, check_latent, check_model, sampler_seed
from ._registry import CATEGORY
from ._sampling import model_rule, wrap_ksampler

log = logging.getLogger("video_enhance_kit.noise_calibration")

FEATURE = f"{CATEGORY}/noise_calibration"
DIMS = {"2d (per frame)": 2, "3d (spatio-temporal)": 3}
GUIDANCE = ("guided (cfg)", "cond only (paper)")
RANGES = {"iterations": (0, MAX_ITERATIONS), "cutoff": (0.0, 1.0), "order": (1, 16), "steps": (1, 10000), "cfg": (0.0, 100.0), "denoise": (0.01, 1.0)}

TIP_ITERATIONS = "N: fixed-point calibration iterations, one extra model call each (guided: one CFG call). 0 = plain SDEdit. The paper recommends 1-3 (default 3); more can oversaturate colours."
TIP_CUTOFF = "nu: threshold frequency in [0, 1] below which the result must match the input. Higher keeps more of the input's detail (paper default 1.0; 0.5 for a looser match; 0 = no calibration)."
TIP_MASK = "FFT mask separating low from high frequencies. ideal_reference reproduces the authors' code (the paper's numbers); ideal is the symmetric box; gaussian and butterworth are smooth (no ringing)."
TIP_DIMS = "2d filters each frame in space (the paper's choice); 3d also filters across frames (for image models the batch is treated as time)."
TIP_GUIDANCE = "Which prediction is calibrated: the guided one the sampler will use (same CFG and patches; a CFG call costs two model passes) or the conditional one only, as the authors' code does (one pass)."
TIP_ORDER = "Butterworth order (sharper cut-off when higher); ignored by the other masks."


class Calibrator:
    """Noise Calibration settings plus the calibration at sigmas[0] against the latent being sampled (paper Algorithm 1)."""

    def __init__(self, iterations=DEFAULT_ITERATIONS, cutoff=DEFAULT_CUTOFF, mask=DEFAULT_MASK, dims=2, order=2, guided=True, reference=None, on_step=None):
        self.iterations, self.cutoff, self.mask, self.dims, self.order = iterations, cutoff, mask, dims, order
        self.guided, self.reference, self.on_step = guided, reference, on_step
        self.last_errors: list[float] = []

    def denoiser(self, guided_call, guider, sigma, extra_args):
        """x_t -> x0_hat at ``sigma`` with the sampling's model_options: the guided prediction or the conditional one."""
        conds = getattr(guider, "conds", None) or {}
        cond_only = not self.guided and conds.get("positive") is not None
        if not self.guided and not cond_only:
            log.warning("video-enhance-kit Noise Calibration: this guider has no 'positive' conditioning; calibrating with its guided prediction")
        model_options = extra_args.get("model_options", {})

        def predict(x):
            throw_if_interrupted()
            timestep = sigma * x.new_ones([x.shape[0]])
            if cond_only:
                return comfy.samplers.calc_cond_batch(guider.inner_model, [conds["positive"]], x, timestep, model_options)[0]
            return guided_call(x, timestep)

        return predict

    def reference_latent(self, guider, latent_image):
        """The latent to calibrate towards: ``latent_image`` (SDEdit) or the optional reference, checked."""
        if latent_image is None:
            raise InputError("latent_image", "is missing: Noise Calibration refines an existing latent (SDEdit)", "connect the latent to refine")
        check_finite(latent_image, "latent_image")
        if self.reference is None:
            return latent_image
        x_ref = guider.inner_model.process_latent_in(self.reference.to(latent_image.device, torch.float32))
        if tuple(x_ref.shape) != tuple(latent_image.shape):
            raise InputError("reference", f"shape {tuple(self.reference.shape)} does not match the sampled latent {tuple(latent_image.shape)}", "give the reference the same size and frame count as the latent being sampled, or disconnect it")
        return x_ref

    def calibrate(self, guided_call, guider, sigmas, extra_args, latent_image, start_noise=None, x_start=None):
        """The calibrated start ``(eps, x_t)`` at sigmas[0]; give the raw ``start_noise`` or the noised ``x_start``."""
        check_sigmas(sigmas, "sigmas")
        x_ref = self.reference_latent(guider, latent_image)
        given = start_noise if start_noise is not None else x_start
        if tuple(given.shape) != tuple(x_ref.shape):
            raise InputError("noise", f"shape {tuple(given.shape)} does not match the latent {tuple(x_ref.shape)}", "use a NOISE node that makes noise shaped like the latent")
        sigma = sigmas[0]
        max_denoise = comfy.samplers.Sampler().max_denoise(guider, sigmas)
        a, s = model_rule(guider.inner_model.model_sampling, max_denoise)(sigma)
        check_calibration_args(self.iterations, self.cutoff, a, s)
        x_ref = x_ref.float()
        # the sampler noises with (a, s) of the *latent being sampled*; recover eps from its start when given x_t
        eps = start_noise.float() if start_noise is not None else (x_start.float() - a * latent_image.float()) / s
        progress = Progress(self.iterations) if self.on_step is None else None

        def on_call(k, x0_hat, err):
            if self.on_step is not None:
                self.on_step(k, x0_hat, err)
            else:
                progress.at(k + 1)

        with torch.no_grad():
            result = calibrate_noise(
                self.denoiser(guided_call, guider, sigma, extra_args), x_ref, eps, a, s, iterations=self.iterations,
                cutoff=self.cutoff, mask=self.mask, dims=self.dims, order=self.order, callback=on_call,
            )
        self.last_errors = result.lf_errors
        log.info("video-enhance-kit Noise Calibration: sigma %.4f, low-frequency error per call %s", float(sigma), ", ".join(f"{e:.4g}" for e in result.lf_errors))
        throw_if_interrupted()
        # the sampler starts from a * latent_image + s * eps: with a reference that differs, shift eps accordingly
        eps_for_latent = result.noise + (a / s) * (x_ref - latent_image.float()) if self.reference is not None else result.noise
        return eps_for_latent, a * latent_image.float() + s * eps_for_latent


def calibrated_ksampler(inner: comfy.samplers.KSAMPLER, calibrator: Calibrator) -> comfy.samplers.KSAMPLER:
    """A KSAMPLER whose sampler function calibrates the start x_t (already noised by KSAMPLER.sample) and then runs ``inner``'s.

    Being a plain KSAMPLER, it can itself be wrapped by other k-diffusion SAMPLER wrappers (Shared Noise
    Sampler, Early Stop Sampler), and it can wrap them: either order gives the same calibrated start.
    """
    inner_function = inner.sampler_function

    def sample_noise_calibrated(model, x, sigmas, extra_args=None, callback=None, disable=None, **options):
        extra_args = {} if extra_args is None else extra_args
        guider = model.inner_model  # KSamplerX0Inpaint -> the GUIDER (CFGGuider or any guider)

        def guided_call(x_t, timestep):
            return model(x_t, timestep, **extra_args)

        _, x_cal = calibrator.calibrate(guided_call, guider, sigmas, extra_args, getattr(model, "latent_image", None), x_start=x)
        return inner_function(model, x_cal.to(x.dtype), sigmas, extra_args=extra_args, callback=callback, disable=disable, **options)

    sampler = wrap_ksampler(inner, sample_noise_calibrated)
    sampler.calibrator = calibrator
    return sampler


class NoiseCalibrationSampler(comfy.samplers.Sampler):
    """Wraps a SAMPLER that is not a KSAMPLER: calibrates the start noise at sigmas[0], then runs the wrapped sampler."""

    def __init__(self, inner, calibrator: Calibrator):
        self.inner, self.calibrator = inner, calibrator

    def max_denoise(self, model_wrap, sigmas):
        return self.inner.max_denoise(model_wrap, sigmas) if hasattr(self.inner, "max_denoise") else super().max_denoise(model_wrap, sigmas)

    def sample(self, model_wrap, sigmas, extra_args, callback, noise, latent_image=None, denoise_mask=None, disable_pbar=False):
        if self.calibrator.iterations > 0:
            def guided_call(x_t, timestep):
                return model_wrap(x_t, timestep, model_options=extra_args.get("model_options", {}), seed=extra_args.get("seed"))

            eps, _ = self.calibrator.calibrate(guided_call, model_wrap, sigmas, extra_args, latent_image, start_noise=noise)
            noise = eps.to(noise.dtype)
        return self.inner.sample(model_wrap, sigmas, extra_args, callback, noise, latent_image, denoise_mask, disable_pbar)


def wrap_sampler(sampler, calibrator: Calibrator):
    """Noise Calibration around ``sampler``: a KSAMPLER for k-diffusion samplers, else a Sampler wrapper; unchanged for N = 0."""
    if calibrator.iterations == 0:
        return sampler
    if isinstance(sampler, comfy.samplers.KSAMPLER):
        return calibrated_ksampler(sampler, calibrator)
    return NoiseCalibrationSampler(sampler, calibrator)


def check_nc_inputs(iterations, cutoff, mask, dims_name, guidance, order=2) -> None:
    """Validate the calibration widgets (also for API prompts that skip the UI's ranges)."""
    check_ranges(RANGES, iterations=iterations, cutoff=cutoff)
    check_choice(mask, "mask", MASKS)
    check_choice(dims_name, "dims", DIMS)
    check_choice(guidance, "calibrate_with", GUIDANCE)
    check_ranges(RANGES, order=order)


def nc_inputs(with_order: bool = True) -> list:
    """The calibration widgets shared by both nodes."""
    inputs = [
        io.Int.Input("iterations", default=DEFAULT_ITERATIONS, **bounds(RANGES, "iterations"), tooltip=TIP_ITERATIONS),
        io.Float.Input("cutoff", default=DEFAULT_CUTOFF, **bounds(RANGES, "cutoff"), step=0.05, tooltip=TIP_CUTOFF),
        io.Combo.Input("mask", options=list(MASKS), default=DEFAULT_MASK, tooltip=TIP_MASK),
        io.Combo.Input("dims", options=list(DIMS), default="2d (per frame)", tooltip=TIP_DIMS),
        io.Combo.Input("calibrate_with", options=list(GUIDANCE), default=GUIDANCE[0], tooltip=TIP_GUIDANCE),
    ]
    if with_order:
        inputs.append(io.Int.Input("order", default=2, **bounds(RANGES, "order"), tooltip=TIP_ORDER))
    return inputs


class NoiseCalibration(io.ComfyNode):
    @classmethod
    def define_schema(cls) -> io.Schema:
        return io.Schema(
            node_id="VEK_NoiseCalibration",
            display_name="Noise Calibration (NC-SDEdit sampler)",
            category=FEATURE,
            description=(
                "Wraps a SAMPLER for SamplerCustomAdvanced: before sampling, calibrates the SDEdit start noise at the first "
                "sigma in N fixed-point model calls so the low frequencies of the model's clean estimate match the latent "
                "being refined (Noise Calibration, Yang et al. 2024, Algorithm 1), then runs the wrapped sampler from it. "
                "Use with a partial-denoise schedule (e.g. BasicScheduler denoise 0.6 = t0 600/1000). It is a SAMPLER wrapper, "
                "not a NOISE node, because inside sampling it sees the exact model, patches, conditioning, CFG, latent and "
                "sigmas the guider uses: nothing to wire twice, and the calibrated start is the same whichever sampler it wraps. "
                "It composes with other SAMPLER wrappers (Shared Noise Sampler, Early Stop Sampler) in either order, with any NOISE "
                "(calibration starts from it) and any GUIDER (calibrate_with = guided uses it)."
            ),
            inputs=[
                io.Sampler.Input("sampler", tooltip="The sampler that runs after calibration (KSamplerSelect or any SAMPLER node)."),
                *nc_inputs(),
                io.Latent.Input("reference", optional=True, tooltip="Optional: noise and calibrate from this latent instead of the latent being sampled (same shape; the sampled latent still supplies the mask and batch fields). Leave empty for plain SDEdit refinement."),
            ],
            outputs=[io.Sampler.Output(tooltip="The wrapped sampler; connect to SamplerCustomAdvanced.")],
        )

    @classmethod
    def execute(cls, sampler, iterations, cutoff, mask, dims, calibrate_with, order=2, reference=None) -> io.NodeOutput:
        check_nc_inputs(iterations, cutoff, mask, dims, calibrate_with, order)
        if sampler is None or not hasattr(sampler, "sample"):
            raise InputError("sampler", "is not a SAMPLER", "connect KSamplerSelect or another SAMPLER node")
        ref = None if reference is None else latent_samples(reference, "reference")
        calibrator = Calibrator(iterations, cutoff, mask, DIMS[dims], order, calibrate_with == GUIDANCE[0], ref)
        return io.NodeOutput(wrap_sampler(sampler, calibrator))


def sdedit_sigmas(model, sampler_name: str, scheduler: str, steps: int, denoise: float) -> torch.Tensor:
    """KSampler's schedule for ``denoise``: the last ``steps + 1`` sigmas of ``int(steps / denoise)`` steps."""
    return comfy.samplers.KSampler(model, steps=steps, device="cpu", sampler=sampler_name, scheduler=scheduler, denoise=denoise, model_options=model.model_options).sigmas.cpu()


def refine_inputs(model, positive, negative, latent_image) -> torch.Tensor:
    """The latent to refine, after checking that the model, its prompts (token width) and the latent (rank, channels) belong together."""
    check_model(model)
    check_conditioning(model, positive, "positive")
    check_conditioning(model, negative, "negative")
    given = latent_samples(latent_image, "latent_image")
    samples = comfy.sample.fix_empty_latent_channels(model, given)
    check_latent(model, samples, "latent_image", given=given)
    return samples


class NCSDEditRefine(io.ComfyNode):
    @classmethod
    def define_schema(cls) -> io.Schema:
        return io.Schema(
            node_id="VEK_NCSDEditRefine",
            display_name="NC-SDEdit Refine",
            category=FEATURE,
            description=(
                "KSampler for refining an existing latent (image batch or video) with SDEdit plus Noise Calibration: noises the "
                "latent to the level set by denoise, calibrates that noise in N model calls so the content (low frequencies) is "
                "kept, then denoises with the chosen sampler. One progress bar covers calibration and sampling. With iterations 0 "
                "it gives exactly what KSampler gives with the same inputs."
            ),
            inputs=[
                io.Model.Input("model", tooltip="The model that refines (image model frame by frame, or a video model)."),
                io.Conditioning.Input("positive", tooltip="Prompt describing the video."),
                io.Conditioning.Input("negative", tooltip="Negative prompt (used when cfg > 1)."),
                io.Latent.Input("latent_image", tooltip="The latent to refine (VAE Encode of the input frames or video)."),
                io.Int.Input("seed", default=0, min=0, max=0xFFFFFFFFFFFFFFFF, control_after_generate=True, tooltip="Seed of the initial noise before calibration."),
                io.Int.Input("steps", default=30, **bounds(RANGES, "steps"), tooltip="Sampling steps actually run (the schedule has steps / denoise steps in all; paper: 30-step DDIM, t0 = 600)."),
                io.Float.Input("cfg", default=7.5, **bounds(RANGES, "cfg"), step=0.1, round=0.01, tooltip="Classifier-free guidance scale."),
                io.Combo.Input("sampler_name", options=comfy.samplers.SAMPLER_NAMES, default="ddim", tooltip="Sampler after calibration (the paper uses DDIM)."),
                io.Combo.Input("scheduler", options=comfy.samplers.SCHEDULER_NAMES, default="normal", tooltip="Noise schedule."),
                io.Float.Input("denoise", default=0.6, **bounds(RANGES, "denoise"), step=0.01, tooltip="SDEdit strength t0 as a fraction of the schedule (paper 0.6 = t0 600/1000). Higher fixes more artifacts but changes more content."),
                *nc_inputs(with_order=False),
            ],
            outputs=[io.Latent.Output(tooltip="The refined latent.")],
        )

    @classmethod
    def execute(cls, model, positive, negative, latent_image, seed, steps, cfg, sampler_name, scheduler, denoise, iterations, cutoff, mask, dims, calibrate_with) -> io.NodeOutput:
        check_nc_inputs(iterations, cutoff, mask, dims, calibrate_with)
        check_ranges(RANGES, steps=steps, cfg=cfg, denoise=denoise)
        check_choice(sampler_name, "sampler_name", comfy.samplers.SAMPLER_NAMES)
        check_choice(scheduler, "scheduler", comfy.samplers.SCHEDULER_NAMES)
        samples = refine_inputs(model, positive, negative, latent_image)
        noise = comfy.sample.prepare_noise(samples, seed, latent_image.get("batch_index"))
        sigmas = sdedit_sigmas(model, sampler_name, scheduler, steps, denoise)
        check_sigmas(sigmas, "denoise")

        guider = comfy.samplers.CFGGuider(model)
        guider.set_conds(positive, negative)
        guider.set_cfg(cfg)
        progress = Progress(iterations + steps)

        def on_calibration(k, x0_hat, err):
            progress.at(k + 1, model, x0_hat)

        def on_step(step, x0, x, total_steps):
            progress.at(iterations + step + 1, model, x0)

        calibrator = Calibrator(iterations, cutoff, mask, DIMS[dims], 2, calibrate_with == GUIDANCE[0], on_step=on_calibration)
        sampler = wrap_sampler(comfy.samplers.sampler_object(sampler_name), calibrator)
        out = guider.sample(noise, samples, sampler, sigmas, denoise_mask=latent_image.get("noise_mask"), callback=on_step, disable_pbar=not comfy.utils.PROGRESS_BAR_ENABLED, seed=sampler_seed(seed))
        return io.NodeOutput(with_samples(latent_image, out.to(comfy.model_management.intermediate_device())))


NODES = [NoiseCalibration, NCSDEditRefine]
