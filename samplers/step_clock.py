"""The sampling run's noise levels as Python floats, read once per run, and the step the sampler is in.

Per-step decisions that depend on the noise level (trajectory attention below ``trajectory_start``, the
pixel term of temporal guidance below T_TC) compare these floats, so nothing reads a device value inside
the sampling loop. The step advances through the sampler's per-step callback (k-diffusion calls it after
step ``i`` with ``i``), so every model evaluation of step ``i`` sees ``sigma = sigmas[i]``, the level the
step starts from. For the samplers that evaluate the model once per step (euler, euler_ancestral, ddim,
dpmpp_2m, lcm, ...) that is the evaluation's own sigma; samplers with several evaluations per step
(heun, dpm_2, dpmpp_2s_ancestral, dpmpp_sde) decide once per step, like the paper's step thresholds.
"""

from __future__ import annotations

from collections.abc import Callable

import torch


class StepClock:
    """``sigmas [steps + 1]`` of one run as floats (one host read) and the current step (``sigma`` = its start level)."""

    def __init__(self, sigmas: torch.Tensor):
        self.sigmas = [float(s) for s in torch.as_tensor(sigmas).flatten().tolist()]
        self.step = 0

    @property
    def sigma(self) -> float:
        """Noise level the current step starts from (the last one after the final step)."""
        return self.sigmas[min(self.step, len(self.sigmas) - 1)]

    def tick(self, step: int) -> None:
        """Step ``step`` is done: the next model evaluation belongs to step ``step + 1``."""
        self.step = step + 1

    def wrap(self, callback: Callable | None) -> Callable:
        """A sampler callback ``(step, *args)`` that ticks this clock, then calls ``callback`` (if any)."""

        def on_step(step, *args, **kwargs):
            self.tick(step)
            return None if callback is None else callback(step, *args, **kwargs)

        return on_step
