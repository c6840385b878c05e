"""EVS encapsulated composition T2I + [T2V] + T2I (EVS paper Sec. 3.2, Eq. 8-10, Algorithm 1).

The schedule split, with the T2I schedule ``sigmas_i = [s_0 (= t_I), ..., s_N = 0]``:

1. T2I SDEdit (Eq. 8): noise the input to ``s_0`` and denoise down to ``t_T2V = s_k`` (``k`` steps).
2. Bridge: the T2I model's predicted clean latent on reaching ``t_T2V`` (the x0 estimate of the step that
   lands on ``s_k``; the input itself when ``k = 0``) goes to the T2V model's latent space.
3. [T2V] block (Eq. 9): SDEdit-noise it to ``t_V`` (or DDIM-invert it there, recording attention features
   for SFI), denoise ``n_V`` steps with the T2V model, take that model's last clean prediction.
4. Bridge back, re-noise to ``t_T2V`` (Algorithm 1) and finish the T2I schedule (Eq. 10).

Models are plain "stage runners" (see :class:`StageRunner`): the core never sees ComfyUI. ``k = 0`` makes
the composition the basic composition of Eq. 6 (T2V then T2I) and ``k = N`` the one of Eq. 7 (T2I then
T2V, see :func:`naive_cascade`). Model calls: ``N`` T2I + ``n_V`` T2V (+ the inversion's calls with SFI).

Where the paper is silent (the authors' code is not public) we chose:
- the clean latent taken at ``t_T2V`` is the prediction of the T2I step that reaches ``t_T2V``, so the
  T2I model is evaluated exactly once per schedule step (Algorithm 1 as written would either discard
  its re-noised latent or evaluate ``t_T2V`` twice);
- the re-entry noise defaults to the initial SDEdit noise (Algorithm 1 writes the same eps); a caller may
  pass any other;
- the DDIM inversion runs over the whole T2V schedule from 0 to ``t_V``, so with ``n_V`` short of the
  end the block still starts from a fully inverted latent.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Protocol

import torch

from ..attention.feature_injection import FeatureInjection
from ..utils.checks import InputError, check_range, check_sigmas
from ..utils.video import frames_to_video, video_to_frames
from .ddim_inversion import Denoiser, Hook, ddim_invert, ddim_sample
from .noising import Rule, noised


class StageRunner(Protocol):
    """One model's sampler over part of its schedule.

    ``runner(latent, noise, sigmas, start=None) -> (x_end, x0_hat)``: noise ``latent`` to ``sigmas[0]``
    with ``noise`` under the model's own rule (or begin from the noisy ``start`` when given), sample down
    ``sigmas`` and return the latent at ``sigmas[-1]`` and the model's last clean prediction (None when
    ``sigmas`` has a single value).
    """

    def __call__(self, latent: torch.Tensor, noise: torch.Tensor | None, sigmas: torch.Tensor, start: torch.Tensor | None = None): ...


def ddim_runner(denoiser: Denoiser, rule: Rule, on_model_call: Hook = None) -> StageRunner:
    """A :class:`StageRunner` from a plain denoiser ``(x, sigma) -> x0`` and its rule, sampling with DDIM."""

    def run(latent, noise, sigmas, start=None):
        if start is None:
            start = noised(latent, noise, *rule(float(sigmas[0])))
        return ddim_sample(denoiser, rule, start, sigmas, on_model_call)

    return run


# ---------------------------------------------------------------------------------------------- bridge


@dataclass
class Bridge:
    """Latent-space conversion between the two models (applied to clean latents only, so at sigma 0).

    ``to_t2v``: T2I latent (frames as batch ``[F, C, H, W]``) -> T2V latent; ``to_t2i``: back.
    """

    to_t2v: Callable[[torch.Tensor], torch.Tensor]
    to_t2i: Callable[[torch.Tensor], torch.Tensor]


def identity_bridge() -> Bridge:
    """Both models in one latent space and one layout (SD1.5 with an AnimateDiff motion module): no-op."""
    return Bridge(lambda z: z, lambda z: z)


def layout_bridge() -> Bridge:
    """One latent space, image model frames-as-batch ``[F, C, H, W]`` <-> video model ``[1, C, F, H, W]``."""
    return Bridge(lambda z: frames_to_video(z, 1), video_to_frames)


def vae_bridge(
    decode_t2i: Callable[[torch.Tensor], torch.Tensor],
    encode_t2v: Callable[[torch.Tensor], torch.Tensor],
    decode_t2v: Callable[[torch.Tensor], torch.Tensor],
    encode_t2i: Callable[[torch.Tensor], torch.Tensor],
) -> Bridge:
    """Two latent spaces: decode with one model's VAE to pixels, encode with the other's."""
    return Bridge(lambda z: encode_t2v(decode_t2i(z)), lambda z: encode_t2i(decode_t2v(z)))


# ------------------------------------------------------------------------------------------- T2V block


@dataclass
class T2VBlock:
    """The encapsulated [T2V] block (Eq. 9; Algorithm 1's inner loop).

    Args:
        runner: the T2V model's :class:`StageRunner`.
        sigmas: the T2V schedule from ``t_V`` down to 0 ([m + 1], descending).
        steps: ``n_V`` denoising steps taken (1..m); the block returns the clean prediction of the last.
        noise: SDEdit noise (T2V latent shape), or a callable making it from the bridged latent; unused
            with ``invert``.
        invert: DDIM inversion ``(z0, sigmas) -> z_tV`` (see :func:`ddim_inversion.ddim_invert`); None for SDEdit.
        injection: the :class:`FeatureInjection` the T2V model consults (recorded while inverting,
            injected while denoising); None for no SFI.
        bridge: latent-space conversion (default: identity).
    """

    runner: StageRunner
    sigmas: torch.Tensor
    steps: int
    noise: torch.Tensor | Callable[[torch.Tensor], torch.Tensor] | None = None
    invert: Callable[[torch.Tensor, torch.Tensor], torch.Tensor] | None = None
    injection: FeatureInjection | None = None
    bridge: Bridge = field(default_factory=identity_bridge)

    def __call__(self, z0_t2i: torch.Tensor) -> torch.Tensor:
        """z0^I (T2I space) -> z0^IV (T2I space)."""
        check_sigmas(self.sigmas, "t2v sigmas")
        check_range(self.steps, "t2v_block_steps", 1, len(self.sigmas) - 1, integer=True)
        z = self.bridge.to_t2v(z0_t2i)
        sigmas = self.sigmas[: self.steps + 1]
        if self.invert is None:
            if self.noise is None:
                raise InputError("noise", "the SDEdit [T2V] block needs noise", "pass noise or an inversion")
            noise = self.noise(z) if callable(self.noise) else self.noise
            _, x0 = self.runner(z, noise, sigmas)
        else:
            try:
                if self.injection is not None:
                    self.injection.clear()
                    self.injection.set_mode("record")
                z_tv = self.invert(z, self.sigmas)
                if self.injection is not None:
                    self.injection.set_mode("inject")
                _, x0 = self.runner(z, None, sigmas, start=z_tv)
            finally:
                if self.injection is not None:
                    self.injection.set_mode("off")
                    self.injection.clear()
        return self.bridge.to_t2i(x0)


def inversion(denoiser: Denoiser, rule: Rule, on_model_call: Hook = None):
    """DDIM inversion as the ``invert`` callable of :class:`T2VBlock`."""
    return lambda z0, sigmas: ddim_invert(denoiser, rule, z0, sigmas, on_model_call)


# ----------------------------------------------------------------------------------------- composition


def encapsulated_sample(
    latent: torch.Tensor,
    noise: torch.Tensor,
    sigmas: torch.Tensor,
    t2v_at: int,
    t2i: StageRunner,
    block: Callable[[torch.Tensor], torch.Tensor] | None,
    reentry_noise: torch.Tensor | None = None,
) -> torch.Tensor:
    """T2I + [T2V] + T2I (Algorithm 1): the enhanced latent (T2I space).

    Args:
        latent: the input video latent ``z0`` in the T2I space, frames as batch ``[F, C, H, W]``.
        noise: the T2I SDEdit noise eps (shape of ``latent``).
        sigmas: the T2I schedule from ``t_I`` to 0 ([N + 1], descending).
        t2v_at: ``k``, the T2I step index of ``t_T2V = sigmas[k]`` (0 = before the first T2I step,
            N = after the last).
        t2i: the T2I model's :class:`StageRunner`.
        block: the [T2V] block (e.g. a :class:`T2VBlock`); None disables it (a plain T2I SDEdit run).
        reentry_noise: noise for re-entering the T2I schedule at ``t_T2V`` (default: ``noise``).
    """
    check_sigmas(sigmas, "t2i sigmas")
    n = len(sigmas) - 1
    check_range(t2v_at, "t2v_at", 0, n, integer=True)
    if block is None:
        return t2i(latent, noise, sigmas)[0]
    if t2v_at == 0:
        z0_i = latent
    else:
        _, z0_i = t2i(latent, noise, sigmas[: t2v_at + 1])  # Eq. 8: z0^I = T2I(z0, t_I, t_T2V)
    z0_iv = block(z0_i)  # Eq. 9
    if t2v_at == n:
        return z0_iv
    return t2i(z0_iv, noise if reentry_noise is None else reentry_noise, sigmas[t2v_at:])[0]  # Eq. 10


def naive_cascade(
    latent: torch.Tensor,
    noise: torch.Tensor,
    sigmas: torch.Tensor,
    t2i: StageRunner,
    block: Callable[[torch.Tensor], torch.Tensor],
) -> torch.Tensor:
    """The basic composition of Eq. 7: full T2I SDEdit, then the T2V SDEdit of its result."""
    x, _ = t2i(latent, noise, sigmas)
    return block(x)


def split_index(steps: int, strength: float, name: str) -> int:
    """How many of ``steps`` a strength in [0, 1] keeps (the schedule tail of SDEdit): round(steps * strength)."""
    check_range(strength, name, 0.0, 1.0)
    return round(steps * strength)


__all__ = [
    "Bridge",
    "StageRunner",
    "T2VBlock",
    "ddim_runner",
    "encapsulated_sample",
    "identity_bridge",
    "inversion",
    "layout_bridge",
    "naive_cascade",
    "split_index",
    "vae_bridge",
]
