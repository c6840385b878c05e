"""Zero-shot restoration guidance on the clean prediction: GDP's gradient step and DDNM's range-null-space projection.

ZVRD (Cao et al.) plugs its temporal pieces into zero-shot image-restoration backbones that keep the result
consistent with the observation ``y = A(x)`` of a known degradation ``A`` (:mod:`..utils.degradation`). In a
latent model both act on the x0 prediction ``x0_hat`` through the VAE, decoder ``D`` and encoder ``E``:

- GDP (Fei et al. 2023): ``x0_hat <- x0_hat - s * grad_{x0} ||A(D(x0_hat)) - y||^2`` (one step per model call,
  normalised as the temporal guidance normalises its steps, :func:`.guidance.normalised_step`). The gradient is
  exact: ``A`` is linear (affine for low light), so ``d/dD = 2 A^T (A(D) - y)`` and only the decoder is
  differentiated, a few frames at a time (:func:`.guidance.chunked_vjp`).
- DDNM (Wang et al. 2022): ``x0_hat <- E(A^+ y + (I - A^+ A) D(x0_hat))``: the range-space part of the decoded
  frames is replaced by the observation's, the null-space part (what ``A`` cannot see) is kept. Exact in pixel
  space; the encode back is not (the VAE round trip), which bounds how close the final decode gets to ``y``.

GDP's blind low-light enhancement estimates the operator during sampling: with ``fit_low_light`` the
per-channel scale and offset are refitted to the current decode at every call (closed-form least squares).

Shapes: x0 ``[F, C, h, w]`` latent frames of an image model (frames as batch); ``y`` ``[F, C_y, H_y, W_y]``
pixels in 0..1, ``C_y`` and the size as ``A`` gives them (e.g. ``H / 4`` for 4x super-resolution, 1 channel
for grayscale).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch

from ..utils.checks import InputError, check_choice, check_range
from ..utils.degradation import Degradation, fit_low_light
from .guidance import chunked_forward, chunked_vjp, normalised_step

METHODS = ("gdp", "ddnm")


def consistency_residual(pixels: torch.Tensor, op: Degradation, y: torch.Tensor) -> torch.Tensor:
    """``A(x) - y``: how far decoded frames are from the observation."""
    return op(pixels) - y


def gdp_gradient(x0: torch.Tensor, decode: Callable, op: Degradation, y: torch.Tensor, chunk: int,
                 noise_sigma: float = 0.0) -> torch.Tensor:
    """``grad_{x0} ||A(D(x0)) - y||^2 = J_D^T 2 A^T (A(D(x0)) - y)``, the decoder differentiated ``chunk`` frames at a time.

    With ``noise_sigma`` > 0 each frame's residual is weighted by :func:`noise_ball_factor` (0 inside the noise level).
    """
    pixels = chunked_forward(decode, x0, chunk)
    residual = consistency_residual(pixels, op, y)
    grad_pixels = op.adjoint(2 * residual * noise_ball_factor(residual, noise_sigma))
    return chunked_vjp(decode, x0, grad_pixels, chunk)


def noise_ball_factor(residual: torch.Tensor, noise_sigma: float) -> torch.Tensor | float:
    """Per frame ``max(0, 1 - noise_sigma / rms(A x - y))``: how much of the residual to remove (1 when noise-free).

    With a noisy observation ``y = A x + n`` (``n`` of RMS ``noise_sigma``) an estimate whose residual is already within
    the noise is left alone, and a larger residual is shrunk to the noise level (the discrepancy principle), so the
    guidance does not fit the noise. Decided on the device (no host read).
    """
    if noise_sigma <= 0:
        return 1.0
    rms = residual.float().pow(2).flatten(1).mean(1).sqrt().clamp_min(1e-12)
    return (1.0 - noise_sigma / rms).clamp_min(0.0).view(-1, *([1] * (residual.ndim - 1))).to(residual.dtype)


def range_null_space(pixels: torch.Tensor, op: Degradation, y: torch.Tensor, noise_sigma: float = 0.0) -> torch.Tensor:
    """DDNM's ``A^+ y + (I - A^+ A) x`` (also right for the affine low-light model); with ``noise_sigma`` > 0 the
    range-space correction is shrunk per frame by :func:`noise_ball_factor` (residual brought to the noise level)."""
    correction = op.pinv(y) - op.pinv(op(pixels))
    if noise_sigma > 0:
        correction = correction * noise_ball_factor(consistency_residual(pixels, op, y), noise_sigma)
    return pixels + correction


def ddnm_projection(x0: torch.Tensor, decode: Callable, encode: Callable, op: Degradation, y: torch.Tensor,
                    chunk: int, noise_sigma: float = 0.0) -> torch.Tensor:
    """``E(A^+ y + (I - A^+ A) D(x0))``: decode, replace the range-space part, encode back."""
    pixels = chunked_forward(decode, x0, chunk)
    corrected = range_null_space(pixels, op, y, noise_sigma).clamp(0, 1)
    return chunked_forward(encode, corrected, chunk)


@dataclass
class RestorationSettings:
    """Inputs of the restoration guidance.

    method: ``"gdp"`` or ``"ddnm"``. scale: GDP's step in units of x0's RMS (0 disables; DDNM ignores it
    unless 0). sigma_max / sigma_min: the guidance acts on calls with ``sigma_min <= sigma <= sigma_max``
    (the node turns the schedule fractions ``start`` / ``end`` into these once per run). chunk: frames per
    decoder / encoder pass. fit_low_light: refit a low-light operator's parameters at every call (blind).
    noise_sigma: RMS of the observation's noise (0..1 pixel units): residuals are brought down to it, not to 0.
    """

    method: str = "gdp"
    scale: float = 0.5
    sigma_max: float = float("inf")
    sigma_min: float = 0.0
    chunk: int = 4
    fit_low_light: bool = False
    noise_sigma: float = 0.0

    def check(self) -> RestorationSettings:
        check_choice(self.method, "method", METHODS)
        check_range(self.scale, "scale", 0.0, 10.0)
        check_range(self.chunk, "chunk", 1, None, integer=True)
        check_range(self.noise_sigma, "noise_sigma", 0.0, 1.0)
        if not self.sigma_min <= self.sigma_max:
            raise InputError("end", "comes before start in the schedule", "set end at or after start")
        return self


class RestorationGuidance:
    """Consistency with an observation ``y = A(x)`` on the x0 prediction; call once per model evaluation.

    Args:
        settings: :class:`RestorationSettings`.
        op: the degradation ``A``.
        y: the observation, ``[F, C_y, H_y, W_y]`` pixels in 0..1 (moved once to the device of the first call).
        decode: differentiable latent frames ``[N, C, h, w] -> RGB [N, 3, H, W]`` in 0..1 (the VAE decoder).
        encode: RGB frames -> latent frames (the VAE encoder), needed for ``"ddnm"``.
    """

    def __init__(self, settings: RestorationSettings, op: Degradation, y: torch.Tensor, decode: Callable,
                 encode: Callable | None = None):
        self.settings = settings.check()
        if settings.method == "ddnm":
            if encode is None:
                raise InputError("vae", "method 'ddnm' encodes the projected frames back", "connect a VAE")
            if not op.has_pinv:
                op.pinv(y)  # raises the operator's own clear error
        self.op, self.decode, self.encode = op, decode, encode
        self._y_host, self._y = y, None

    @property
    def active(self) -> bool:
        return self.settings.scale > 0

    def observation(self, like: torch.Tensor) -> torch.Tensor:
        """``y`` on ``like``'s device and dtype, moved once per run."""
        if self._y is None or self._y.device != like.device or self._y.dtype != like.dtype:
            self._y = self._y_host.to(device=like.device, dtype=like.dtype)
        return self._y

    def operator_for(self, x0: torch.Tensor, y: torch.Tensor) -> Degradation:
        """``A``, or for blind low light the operator refitted to the current decode."""
        if not self.settings.fit_low_light:
            return self.op
        return fit_low_light(chunked_forward(self.decode, x0, self.settings.chunk), y)

    def __call__(self, x0: torch.Tensor, sigma: float) -> torch.Tensor:
        """Guided x0 prediction ``[F, C, h, w]`` at noise level ``sigma`` (a Python float)."""
        s = self.settings
        if not self.active or not s.sigma_min <= sigma <= s.sigma_max:
            return x0
        if x0.ndim != 4:
            raise InputError("model", f"restoration guidance works on image-model latents [F, C, h, w], got {x0.ndim}-D",
                             "use an image model (SD1.x, SD2.x, SDXL) that samples the video as a batch of frames")
        with torch.inference_mode(False), torch.enable_grad():
            work = x0.detach().clone().float()
            y = self.observation(work)
            op = self.operator_for(work, y)
            if s.method == "ddnm":
                return ddnm_projection(work, self.decode, self.encode, op, y, s.chunk, s.noise_sigma).to(x0.dtype)
            grad = gdp_gradient(work, self.decode, op, y, s.chunk, s.noise_sigma)
            return normalised_step(work, grad, s.scale).to(x0.dtype)


__all__ = [
    "METHODS", "RestorationGuidance", "RestorationSettings", "consistency_residual", "ddnm_projection",
    "gdp_gradient", "noise_ball_factor", "range_null_space",
]
