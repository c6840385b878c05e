"""Noise Calibration (NC-SDEdit, paper Algorithm 1 and Eq. 11-15) for any linear noising rule.

SDEdit starts sampling from ``x_t0 = a * x_ref + s * eps``. Noise Calibration refines ``eps`` with a few
fixed-point iterations so that the low frequencies of the model's clean estimate ``x0_hat`` match the
reference (paper Eq. 10):

    eps <- eps_hat + (a / s) * (HP(x0_hat) - HP(x_ref))                       (Eq. 14)

with ``eps_hat = (x_t0 - a * x0_hat) / s`` the noise the model implies. Equivalently (Eq. 15)
``x_t0 <- x_t0 + a * (LP(x_ref) - LP(x0_hat))``, and after the last call
``x_cal = a * (LP(x_ref) + HP(x0_hat)) + s * eps_hat``.

Any linear noising rule ``x_t = a(sigma) * x0 + s(sigma) * eps`` fits (see :mod:`.noising`: DDPM
``a = sqrt(alpha_bar), s = sqrt(1 - alpha_bar)``; k-diffusion eps/v models ``a = 1, s = sigma``;
rectified-flow models ``a = 1 - sigma, s = sigma``).

The denoiser is any callable ``x_t -> x0_hat`` at the calibration noise level (conditional only, or the
guided prediction: the caller decides). Nothing here imports ComfyUI.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field

import torch

from ..utils.checks import (
    InputError,
    check_finite,
    check_range,
    check_same_shape,
    check_tensor,
)
from ..utils.fft import DEFAULT_MASK, split_frequencies
from .noising import implied_noise, noised

Denoiser = Callable[[torch.Tensor], torch.Tensor]

DEFAULT_ITERATIONS = 3  # paper: N = 3 (1-3 recommended, Sec. 4.3)
DEFAULT_CUTOFF = 1.0  # paper: nu = 1.0 (Table 3 compromise with t0 = 600)
MAX_ITERATIONS = 20


@dataclass
class Calibration:
    """Result of :func:`calibrate_noise`.

    Attributes:
        noise: calibrated eps, shape of ``x_ref``.
        x_start: the calibrated SDEdit start ``a * x_ref + s * noise``.
        lf_errors: ``lf_errors[k]`` = ||LP(x0_hat) - LP(x_ref)||_2 of the prediction at the start after
            ``k`` iterations (``k = 0`` is plain SDEdit); ``N`` values, or ``N + 1`` with ``measure_final``.
        x0_hat: the last clean estimate the denoiser returned (None when no call was made).
        eps_hat: the noise implied by the last calibrating call (None when ``iterations == 0``); then
            ``x_start == a * (LP(x_ref) + HP(x0_hat)) + s * eps_hat`` (without ``measure_final``).
    """

    noise: torch.Tensor
    x_start: torch.Tensor
    lf_errors: list[float] = field(default_factory=list)
    x0_hat: torch.Tensor | None = None
    eps_hat: torch.Tensor | None = None


def calibration_step(eps_hat, hp_x0, hp_ref, a, s) -> torch.Tensor:
    """One fixed-point update eps = eps_hat + (a / s) (HP(x0_hat) - HP(x_ref)) (paper Eq. 14)."""
    return eps_hat + (a / s) * (hp_x0 - hp_ref)


def low_frequency_error(lp_x0, lp_ref) -> float:
    """Content loss ||LP(x0_hat) - LP(x_ref)||_2 (paper Eq. 10, Fig. 7)."""
    return float(torch.linalg.vector_norm((lp_x0 - lp_ref).double()))


def check_calibration_args(iterations, cutoff, a, s) -> None:
    """Validate N, nu and the rule coefficients (InputError naming the input)."""
    check_range(iterations, "iterations", 0, MAX_ITERATIONS, integer=True)
    check_range(cutoff, "cutoff", 0.0, 1.0)
    if not (math.isfinite(float(a)) and math.isfinite(float(s))):
        raise InputError("sigmas", f"noise rule coefficients are not finite (a={a}, s={s})", "use a finite start sigma")
    if float(s) <= 0:
        raise InputError("sigmas", f"start noise scale is {float(s)}: there is no noise to calibrate", "raise denoise (start sigma must be > 0)")


def calibrate_noise(
    denoiser: Denoiser,
    x_ref: torch.Tensor,
    noise: torch.Tensor,
    a: float,
    s: float,
    iterations: int = DEFAULT_ITERATIONS,
    cutoff: float = DEFAULT_CUTOFF,
    mask: str = DEFAULT_MASK,
    dims: int = 2,
    order: int = 2,
    measure_final: bool = False,
    callback: Callable[[int, torch.Tensor, float], None] | None = None,
) -> Calibration:
    """Noise Calibration (paper Algorithm 1): N fixed-point iterations on the SDEdit start noise.

    Args:
        denoiser: ``x_t -> x0_hat`` at the start noise level (one model call each).
        x_ref: reference latent (the input being refined), ``[N, C, H, W]`` or ``[B, C, T, H, W]``.
        noise: initial eps (standard normal), shape of ``x_ref``.
        a, s: the rule ``x_t = a * x0 + s * eps`` at the start noise level (``s > 0``).
        iterations: N (default 3; 0 returns ``noise`` unchanged: plain SDEdit).
        cutoff: threshold frequency nu in [0, 1] (default 1.0).
        mask, dims, order: the FFT filter (see :mod:`utils.fft`; default the published ideal box, per frame).
        measure_final: spend one more denoiser call to report the error after the last iteration.
        callback: ``callback(k, x0_hat, lf_error)`` after each denoiser call (progress, interruption).

    Returns:
        :class:`Calibration` with the calibrated noise, the start latent and the low-frequency errors.
    """
    check_tensor(x_ref, "latent")
    check_tensor(noise, "noise")
    check_same_shape(noise, x_ref, "noise", "latent")
    check_finite(x_ref, "latent")
    check_finite(noise, "noise")
    check_calibration_args(iterations, cutoff, a, s)
    filt = dict(cutoff=cutoff, mask=mask, dims=dims, order=order)
    lp_ref, hp_ref = split_frequencies(x_ref, **filt)
    eps, x0_hat, eps_hat, errors = noise, None, None, []
    for k in range(iterations + (1 if measure_final else 0)):
        x_t = noised(x_ref, eps, a, s)
        x0_hat = denoiser(x_t)
        check_finite(x0_hat, "model")
        lp_x0, hp_x0 = split_frequencies(x0_hat, **filt)  # one FFT per model call
        errors.append(low_frequency_error(lp_x0, lp_ref))
        if callback is not None:
            callback(k, x0_hat, errors[-1])
        if k < iterations:
            eps_hat = implied_noise(x_t, x0_hat, a, s)
            eps = calibration_step(eps_hat, hp_x0, hp_ref, a, s)
    return Calibration(noise=eps, x_start=noised(x_ref, eps, a, s), lf_errors=errors, x0_hat=x0_hat, eps_hat=eps_hat)
