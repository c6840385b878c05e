"""Sampling adapters shared by the feature files: a ComfyUI model_sampling as a noising rule, KSAMPLER re-wrapping."""

from __future__ import annotations

from collections.abc import Callable

import comfy.samplers
import torch

from ..samplers.noising import Rule
from ..utils.checks import InputError

KSAMPLER_FIX = "connect a KSamplerSelect (or another k-diffusion sampler) output"


def model_rule(model_sampling, max_denoise: bool = False) -> Rule:
    """The model's noising rule ``sigma -> (a, s)``, ``x = a * x0 + s * eps``, read off its ``noise_scaling``.

    eps / v models give (1, sigma) (with ``max_denoise``: (1, sqrt(1 + sigma^2)), the start of a full
    denoise), flow (CONST) models (1 - sigma, sigma). The rule is evaluated in the precision of the sigma
    it is given: a tensor sigma (the sampler's own, float32) as the sampler noises; a Python float in
    float64 on the CPU, which for these models equals :func:`~..samplers.noising.kdiffusion_rule` /
    :func:`~..samplers.noising.flow_rule` exactly. Raises InputError ('model') for a rule that is not linear.
    """

    def rule(sigma) -> tuple[float, float]:
        if isinstance(sigma, torch.Tensor):
            sig, dtype = sigma, torch.float32
        else:
            sig, dtype = torch.tensor(float(sigma), dtype=torch.float64), torch.float64

        def probe(noise_value: float, latent_value: float) -> torch.Tensor:
            noise = torch.full([1], noise_value, device=sig.device, dtype=dtype)
            latent = torch.full([1], latent_value, device=sig.device, dtype=dtype)
            return model_sampling.noise_scaling(sig, noise, latent, max_denoise).flatten()[0].double()

        a, s = float(probe(0.0, 1.0)), float(probe(1.0, 0.0))
        if abs(float(probe(2.0, 3.0)) - (2 * s + 3 * a)) > 1e-4 * (1 + abs(a) + abs(s)):
            raise InputError("model", f"{type(model_sampling).__name__} does not noise as x = a*x0 + s*eps", "use an eps, v or flow model (SD1.5, SDXL, Wan, HunyuanVideo, LTX-Video, ...)")
        return a, s

    return rule


def check_ksampler(sampler, why: str = "", fix: str = KSAMPLER_FIX) -> comfy.samplers.KSAMPLER:
    """``sampler`` if it is a k-diffusion KSAMPLER (the only kind whose sampler function can be wrapped), else InputError ('sampler')."""
    if not isinstance(sampler, comfy.samplers.KSAMPLER):
        raise InputError("sampler", f"a {type(sampler).__name__} cannot be wrapped{why}", fix)
    return sampler


def wrap_ksampler(sampler, sampler_function: Callable, kind: type = comfy.samplers.KSAMPLER) -> comfy.samplers.KSAMPLER:
    """A new KSAMPLER (of class ``kind``, a KSAMPLER subclass) running ``sampler_function`` with copies of ``sampler``'s extra and inpaint options.

    ``sampler_function(model, x, sigmas, extra_args=None, callback=None, disable=None, **options)`` usually
    calls ``sampler.sampler_function``; ``sampler`` itself is never changed.
    """
    check_ksampler(sampler)
    return kind(sampler_function, extra_options=dict(sampler.extra_options), inpaint_options=dict(sampler.inpaint_options))


__all__ = ["KSAMPLER_FIX", "check_ksampler", "model_rule", "wrap_ksampler"]
