"""ZVRD early-stopping sampling ("Early Stopping Sampling Strategy", T_ES).

Sampling stops after ``k`` of the schedule's steps and the x0 prediction of the last step is the
result: the late, high-noise-free steps that add flickering high-frequency detail (or re-create the
input's noise) are skipped. The paper gives no value for T_ES; ``k`` is a node input, set either
as a step count or as a noise level (stop once the next sigma is at or below it).

A sampler function here has k-diffusion's signature
``f(model, x, sigmas, extra_args=None, callback=None, disable=None, **options) -> x``, where
``callback`` receives ``{"x", "i", "sigma", "sigma_hat", "denoised"}`` once per step.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch

from ..utils.checks import InputError, check_range, check_sigmas


def early_stop_index(sigmas: torch.Tensor, stop_step: int = 0, stop_sigma: float = 0.0, stop_fraction: float = 1.0) -> int:
    """Number of steps ``k`` to run (1..steps) for a schedule ``sigmas [steps + 1]``.

    ``stop_step > 0`` stops after that many steps; otherwise ``stop_sigma > 0`` stops at the first step
    whose target sigma ``sigmas[k]`` is <= ``stop_sigma``; otherwise ``k = ceil(stop_fraction * steps)``
    (1.0, the default, runs every step).
    """
    check_sigmas(sigmas)
    steps = sigmas.shape[0] - 1
    check_range(stop_step, "stop_step", 0, None, integer=True)
    check_range(float(stop_sigma), "stop_sigma", 0.0, None)
    check_range(float(stop_fraction), "stop_fraction", 0.0, 1.0)
    if stop_step > 0:
        return min(int(stop_step), steps)
    if stop_sigma > 0:
        below = (sigmas[1:] <= stop_sigma).nonzero()
        return int(below[0]) + 1 if below.numel() else steps
    return max(1, math.ceil(stop_fraction * steps - 1e-9))


def early_stop_sigmas(sigmas: torch.Tensor, stop_step: int = 0, stop_sigma: float = 0.0, stop_fraction: float = 1.0) -> torch.Tensor:
    """The first ``k + 1`` sigmas (``k`` from :func:`early_stop_index`): sample these, keep the denoised output."""
    k = early_stop_index(sigmas, stop_step, stop_sigma, stop_fraction)
    return sigmas[: k + 1].clone()


def early_stopping_sampler(sampler_function: Callable, stop_step: int = 0, stop_sigma: float = 0.0, stop_fraction: float = 1.0) -> Callable:
    """Wrap a k-diffusion sampler function so it runs ``k`` steps and returns that step's x0 prediction."""
    if not callable(sampler_function):
        raise InputError("sampler", "is not a sampler function", "connect a SAMPLER output")

    def sample_early_stop(model, x, sigmas, extra_args=None, callback=None, disable=None, **options):
        k = early_stop_index(sigmas, stop_step, stop_sigma, stop_fraction)
        last = {}

        def keep_denoised(info):
            last["denoised"] = info["denoised"]
            if callback is not None:
                callback(info)

        out = sampler_function(model, x, sigmas[: k + 1], extra_args=extra_args, callback=keep_denoised,
                               disable=disable, **options)
        return last.get("denoised", out)

    return sample_early_stop
