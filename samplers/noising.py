"""Linear noising rules ``x_t = a(sigma) * x0 + s(sigma) * eps`` and the noise a clean estimate implies.

A rule is a callable ``rule(sigma) -> (a, s)`` of Python floats (:data:`Rule`):

- DDPM (NC paper Eq. 1): ``a = sqrt(alpha_bar)``, ``s = sqrt(1 - alpha_bar)`` (:func:`ddpm_rule`, given alpha_bar);
- k-diffusion, i.e. ComfyUI's eps and v models: ``a = 1``, ``s = sigma`` (:func:`kdiffusion_rule`);
- rectified flow (ComfyUI's CONST models: Wan, Flux, SD3, ...): ``a = 1 - sigma``, ``s = sigma`` (:func:`flow_rule`).

Under any of them an x0 predictor implies the noise ``eps_hat = (x_t - a * x0_hat) / s``
(:func:`implied_noise`; EVS Eq. 3 and NC Eq. 14 solved for eps), so eps-, v- and flow-parameterised
networks all fit once wrapped as x0 predictors. Nothing here imports ComfyUI.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch

Rule = Callable[[float], tuple[float, float]]


def ddpm_rule(alpha_bar: float) -> tuple[float, float]:
    """DDPM forward rule (a, s) = (sqrt(alpha_bar), sqrt(1 - alpha_bar))."""
    return math.sqrt(alpha_bar), math.sqrt(1.0 - alpha_bar)


def kdiffusion_rule(sigma: float) -> tuple[float, float]:
    """k-diffusion (eps and v models in ComfyUI) rule x = x0 + sigma * eps: (a, s) = (1, sigma)."""
    return 1.0, float(sigma)


def flow_rule(sigma: float) -> tuple[float, float]:
    """Rectified-flow rule x = (1 - sigma) * x0 + sigma * eps: (a, s) = (1 - sigma, sigma)."""
    return 1.0 - float(sigma), float(sigma)


def noised(x0: torch.Tensor, eps: torch.Tensor, a: float, s: float) -> torch.Tensor:
    """Forward rule x_t = a * x0 + s * eps (NC paper Eq. 1 in general form)."""
    return a * x0 + s * eps


def implied_noise(x_t: torch.Tensor, x0_hat: torch.Tensor, a: float, s: float) -> torch.Tensor:
    """eps_hat = (x_t - a * x0_hat) / s: the noise a clean estimate implies (the rule solved for eps)."""
    return (x_t - a * x0_hat) / s


__all__ = ["Rule", "ddpm_rule", "flow_rule", "implied_noise", "kdiffusion_rule", "noised"]
