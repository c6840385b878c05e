"""The EVS [T2V] block as a wrapper of a k-diffusion sampler function (EVS Algorithm 1 inside one sampling run).

A host sampler (ComfyUI's KSAMPLER) noises the latent being refined to ``sigmas[0] = t_I`` and calls its
sampler function ``f(model, x, sigmas, extra_args=None, callback=None, disable=None, **options) -> x_end``.
:func:`encapsulated_sampler` wraps such an ``f`` so that one call runs:

1. ``f`` over ``sigmas[: k + 1]`` (Eq. 8), keeping the clean prediction of the step that lands on ``t_T2V = sigmas[k]``;
2. the [T2V] block on that prediction (Eq. 9; e.g. :class:`.composition.T2VBlock`);
3. re-noising of the block's output to ``t_T2V`` with the run's eps (Algorithm 1) and ``f`` over ``sigmas[k:]`` (Eq. 10).

Whatever guides the wrapped ``f`` (the host's guider, model patches, another wrapper's options) acts on both T2I
stages, and the model is evaluated once per schedule step: the result equals
:func:`.composition.encapsulated_sample` with the same denoiser. Nothing here imports ComfyUI: the host
describes its run with a :class:`BlockRun`.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from dataclasses import dataclass

import torch

from ..utils.checks import InputError

SamplerFunction = Callable[..., torch.Tensor]


@dataclass
class BlockRun:
    """What the wrapper needs of one host sampling run.

    Args:
        latent: the clean latent being refined, in the sampler's space (``[F, C, H, W]`` frames as batch).
        noise: the run's eps (the NOISE the host sampled), None when unknown (the block is wrapped by another sampler).
        start: ``latent`` noised with ``noise`` to ``sigmas[0]`` as the host does (None with ``noise`` None).
        noising: ``(sigma, eps, x0) -> x_t``, the host's own rule (used to re-enter at ``t_T2V``).
        implied_noise: ``x_t -> eps`` at ``sigmas[0]`` (for a start another wrapper changed, e.g. a calibrated one).
        block: the [T2V] block, clean latent -> clean latent in the block's space (e.g. :class:`.composition.T2VBlock`).
        k: the T2I steps before the block (:func:`t2v_index`), 0..N.
        to_latent, from_latent: the sampler's space -> the block's (clean latents) and back.
        set_latent: tells the host which clean latent a stage refines (the block's output for the last stage).
        after_block: runs after the block (e.g. the host reloads the T2I model the T2V model may have displaced).
        input_latent: the block's input for ``k = 0`` in the block's space (default ``to_latent(latent)``).
    """

    latent: torch.Tensor
    noise: torch.Tensor | None
    start: torch.Tensor | None
    noising: Callable[[torch.Tensor, torch.Tensor, torch.Tensor], torch.Tensor]
    implied_noise: Callable[[torch.Tensor], torch.Tensor]
    block: Callable[[torch.Tensor], torch.Tensor]
    k: int
    to_latent: Callable[[torch.Tensor], torch.Tensor] = lambda z: z
    from_latent: Callable[[torch.Tensor], torch.Tensor] = lambda z: z
    set_latent: Callable[[torch.Tensor], None] = lambda z: None
    after_block: Callable[[], None] = lambda: None
    input_latent: torch.Tensor | None = None


def t2v_index(levels: list[float], level: float, ceiling: float | None = None, name: str = "t2v_at") -> int:
    """``k``: how many steps of the schedule ``levels`` ([N + 1], descending) start above ``t_T2V = level``.

    The block runs before the first step that starts at or below ``level`` (relative tolerance 1e-5), so
    ``level`` 0 puts it after the last step (k = N). ``ceiling``: the highest ``level`` accepted (default
    ``levels[0]``); above it InputError names ``name``.
    """
    top = levels[0] if ceiling is None else ceiling
    if level > top * (1 + 1e-5) + 1e-12:
        raise InputError(name, f"puts t_T2V at noise level {level:.4g}, above the SIGMAS' start {levels[0]:.4g}: the block must sit inside the T2I schedule",
                         "lower t2v_at, or raise the denoise of the scheduler that makes the SIGMAS")
    tol = 1e-5 * max(abs(level), 1e-12)
    return sum(1 for s in levels[:-1] if s > level + tol)


def start_noise(run: BlockRun, x: torch.Tensor) -> torch.Tensor:
    """The eps the first stage starts from: the run's noise, or the one ``x`` implies (unknown noise, or a start a wrapper changed)."""
    if run.noise is not None and (x is run.start or torch.equal(x, run.start)):  # once per run
        return run.noise
    return run.implied_noise(x)


def accepted_options(function: SamplerFunction) -> Callable[[dict], dict]:
    """``options -> the ones function takes``: all of them when it takes ``**options``, else those it names.

    An outer wrapper may add options for the sampler it believes it wraps (Shared Noise Sampler's ``noise_sampler``
    sees the block's ``**options``); a deterministic sampler that names no such option ignores them, as it would unwrapped.
    """
    try:
        params = inspect.signature(function).parameters
    except (TypeError, ValueError):
        return lambda options: options
    if any(p.kind == p.VAR_KEYWORD for p in params.values()):
        return lambda options: options
    return lambda options: {k: v for k, v in options.items() if k in params}


def encapsulated_sampler(inner: SamplerFunction, begin: Callable[..., BlockRun], on_result: Callable[[torch.Tensor], None] | None = None) -> SamplerFunction:
    """A sampler function running T2I (``inner``) + [T2V] (the run's block) + T2I (``inner``) in one call.

    ``begin(model, x, sigmas, extra_args) -> BlockRun`` describes the run (and places and builds its block, so
    every check happens before a model call); ``on_result(z)`` receives the block's output (block space) when it
    is the result (k = N). Stage callbacks are forwarded with the step index of the whole schedule.
    """

    take = accepted_options(inner)

    def sample_evs_block(model, x, sigmas, extra_args=None, callback=None, disable=None, **options):
        options = take(options)
        run = begin(model, x, sigmas, extra_args)
        n, k = len(sigmas) - 1, run.k
        eps = start_noise(run, x)
        if k == 0:
            z0_i = run.to_latent(run.latent) if run.input_latent is None else run.input_latent
        else:
            last = {}

            def keep(info):
                last["denoised"] = info["denoised"]
                if callback is not None:
                    callback(info)

            inner(model, x, sigmas[: k + 1], extra_args=extra_args, callback=keep, disable=disable, **options)  # Eq. 8
            z0_i = run.to_latent(last["denoised"])
        z0_iv = run.block(z0_i)  # Eq. 9
        run.after_block()
        x0_iv = run.from_latent(z0_iv)
        if k == n:
            if on_result is not None:
                on_result(z0_iv)
            return x0_iv

        def shifted(info):
            callback({**info, "i": info["i"] + k})

        run.set_latent(x0_iv)
        try:  # Eq. 10: re-noise with the same eps and finish the schedule
            x_k = run.noising(sigmas[k], eps, x0_iv)
            return inner(model, x_k, sigmas[k:], extra_args=extra_args, callback=shifted if callback is not None else None, disable=disable, **options)
        finally:
            run.set_latent(run.latent)

    return sample_evs_block


__all__ = ["BlockRun", "accepted_options", "SamplerFunction", "encapsulated_sampler", "start_noise", "t2v_index"]
