"""DDIM sampling and DDIM inversion for any linear noising rule (EVS paper Eq. 1-3).

Noising rule ``x_t = a(sigma) * x0 + s(sigma) * eps`` given as a callable ``rule(sigma) -> (a, s)``
(:data:`.noising.Rule`: k-diffusion eps/v models ``a = 1, s = sigma``; rectified flow ``a = 1 - sigma,
s = sigma``). A denoiser is any callable ``(x, sigma) -> x0_hat`` (``sigma`` a 0-D tensor); the noise it
implies is :func:`.noising.implied_noise` (Eq. 3 solved for eps), so eps-, v- and flow-parameterised
networks all fit once wrapped as x0 predictors. The schedule is read to the host once per run (no sync
per step).

Nothing here imports ComfyUI.
"""

from __future__ import annotations

from collections.abc import Callable

import torch

from ..utils.checks import InputError, check_sigmas, check_tensor
from .noising import Rule, implied_noise

Denoiser = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]
Hook = Callable[[], None] | None


def ddim_step(x: torch.Tensor, x0_hat: torch.Tensor, rule: Rule, sigma: float, sigma_next: float) -> torch.Tensor:
    """Deterministic DDIM step (Eq. 2): x_next = a(sigma_next) x0_hat + s(sigma_next) eps_hat.

    ``sigma_next == 0`` returns ``x0_hat`` itself (a(0) = 1, s(0) = 0 for every supported rule).
    """
    if sigma_next <= 0:
        return x0_hat
    a, s = rule(sigma)
    a_next, s_next = rule(sigma_next)
    return a_next * x0_hat + s_next * implied_noise(x, x0_hat, a, s)


def tabulated(rule: Rule, levels: list[float]) -> Rule:
    """``rule`` evaluated once per run at each schedule level (a host-side table, looked up per step)."""
    return {sigma: rule(sigma) for sigma in levels}.__getitem__


def ddim_sample(denoiser: Denoiser, rule: Rule, x: torch.Tensor, sigmas: torch.Tensor, on_model_call: Hook = None):
    """DDIM from ``x`` at ``sigmas[0]`` down the schedule ``sigmas`` ([steps + 1], descending).

    Returns ``(x_end, x0_hat)``: the latent at ``sigmas[-1]`` and the last clean prediction (None without
    steps). ``on_model_call`` runs before each of the ``len(sigmas) - 1`` denoiser calls (progress,
    interruption).
    """
    x0_hat, levels = None, sigmas.tolist()
    rule = tabulated(rule, levels)
    for i in range(len(sigmas) - 1):
        if on_model_call is not None:
            on_model_call()
        sigma, sigma_next = levels[i], levels[i + 1]
        x0_hat = denoiser(x, sigmas[i])
        x = ddim_step(x, x0_hat, rule, sigma, sigma_next)
    return x, x0_hat


def ddim_invert(
    denoiser: Denoiser,
    rule: Rule,
    x0: torch.Tensor,
    sigmas: torch.Tensor,
    on_model_call: Hook = None,
    on_step: Callable[[int, float], None] | None = None,
) -> torch.Tensor:
    """DDIM inversion: walk ``x0`` (the latent at ``sigmas[-1]``, usually 0) up to ``sigmas[0]``.

    ``sigmas`` is the *denoising* schedule ([steps + 1], descending), so inverting and then sampling with
    :func:`ddim_sample` over the same ``sigmas`` reconstructs ``x0`` when the model's noise estimate at
    each level matches. As in DDIM inversion practice (diffusers' DDIMInverseScheduler), step
    ``sigma_lo -> sigma_hi`` calls the model at ``sigma_hi`` on the latent at ``sigma_lo``; the call of
    denoising step ``i`` and the inversion call that produced its start share ``sigmas[i]``, which is what
    lets feature injection pair them. ``on_step(i, sigma)`` runs before the call at ``sigmas[i]``.
    Costs ``len(sigmas) - 1`` model calls. Returns the latent at ``sigmas[0]``.
    """
    check_tensor(x0, "latent")
    check_sigmas(sigmas, "sigmas")
    x, levels = x0, sigmas.tolist()
    rule = tabulated(rule, levels)
    for i in reversed(range(len(sigmas) - 1)):
        sigma_hi, sigma_lo = levels[i], levels[i + 1]
        if on_step is not None:
            on_step(i, sigma_hi)
        if on_model_call is not None:
            on_model_call()
        x0_hat = denoiser(x, sigmas[i])
        a_hi, s_hi = rule(sigma_hi)
        eps = implied_noise(x, x0_hat, a_hi, s_hi)
        a_lo, s_lo = rule(sigma_lo)
        x0_lo = (x - s_lo * eps) / a_lo  # the clean latent x implies at its own level (x itself at sigma 0)
        x = a_hi * x0_lo + s_hi * eps
    check_finite_result(x)
    return x


def check_finite_result(x: torch.Tensor) -> None:
    """Fail loudly if inversion diverged (a rule with a(sigma) = 0, e.g. flow at sigma = 1)."""
    if not bool(torch.isfinite(x).all()):
        raise InputError(
            "t2v_strength",
            "DDIM inversion produced NaN or infinity (the schedule reaches a level with no signal left)",
            "lower t2v_strength below 1.0 or turn SFI off",
        )


__all__ = ["Denoiser", "ddim_invert", "ddim_sample", "ddim_step"]
