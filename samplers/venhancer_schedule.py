"""VEnhancer's noise schedule and solver discretisation (VEnhancer Sec. 3.4; the official inference).

- VP schedule ``logsnr_cosine_interp`` (1000 steps, logSNR in [-15, 15], shift scale 2 -> 4) rescaled to
  zero terminal SNR; ``x_t = alpha_t x0 + sigma_t eps`` with ``alpha_t = sqrt(1 - sigma_t^2)``.
- The solver runs on the VE sigmas ``s = sigma/alpha`` with trailing discretisation from t = 899 (fast:
  4 + 11 timesteps, normal: ``steps + 1``), the penultimate step discarded.

Plain torch on the CPU (the schedule is computed once per run); see :mod:`.venhancer` for the sampling.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from .noising import noised

NUM_TIMESTEPS = 1000
T_START = 899  # official total_noise_levels 900 - 1


def logsnr_cosine(n: int, logsnr_min: float = -15.0, logsnr_max: float = 15.0) -> torch.Tensor:
    """logSNR(t) = -2 log tan(a_min + t (a_max - a_min)), t from 1 to 0 over n steps."""
    a_min = math.atan(math.exp(-0.5 * logsnr_min))
    a_max = math.atan(math.exp(-0.5 * logsnr_max))
    t = torch.linspace(1, 0, n)
    return -2 * torch.log(torch.tan(a_min + t * (a_max - a_min)))


def logsnr_cosine_interp(n: int = NUM_TIMESTEPS, scale_min: float = 2.0, scale_max: float = 4.0) -> torch.Tensor:
    """Shifted cosine logSNR interpolated from shift scale_min (t=0) to scale_max (t=n-1)."""
    base = logsnr_cosine(n)
    t = torch.linspace(1, 0, n)
    low = base + 2 * math.log(1 / scale_min)
    high = base + 2 * math.log(1 / scale_max)
    return t * low + (1 - t) * high


def vp_sigmas(n: int = NUM_TIMESTEPS, zero_terminal_snr: bool = True) -> torch.Tensor:
    """VP noise levels sigma_t = sqrt(sigmoid(-logSNR_t)) [n], rescaled so sigma_{n-1} = 1 (zero terminal SNR)."""
    sigmas = torch.sqrt(torch.sigmoid(-logsnr_cosine_interp(n)))
    if zero_terminal_snr and sigmas.max() != 1.0:
        lo = sigmas.min()
        sigmas = lo + (1.0 - lo) / (sigmas.max() - lo) * (sigmas - lo)
    return sigmas


@dataclass
class VEnhancerSchedule:
    """The discrete VP schedule and its VE view (sigma_VE = sigma / alpha)."""

    sigmas: torch.Tensor  # [1000] VP sigma_t

    @classmethod
    def official(cls) -> VEnhancerSchedule:
        return cls(vp_sigmas())

    @property
    def alphas(self) -> torch.Tensor:
        return torch.sqrt(1 - self.sigmas**2)

    @property
    def log_ve_sigmas(self) -> torch.Tensor:
        """log(sigma_t / alpha_t) [1000] (+inf at the zero-SNR end)."""
        return torch.sqrt(self.sigmas**2 / (1 - self.sigmas**2)).log()

    def diffuse(self, x0: torch.Tensor, t: int, noise: torch.Tensor) -> torch.Tensor:
        """q(x_t | x0) sample: alpha_t x0 + sigma_t noise (integer t; negative t counts from the end)."""
        return noised(x0, noise, self.alphas[t].item(), self.sigmas[t].item())

    def t_to_sigma(self, t: torch.Tensor) -> torch.Tensor:
        """VE sigma at fractional timesteps: log-linear interpolation between neighbouring integers."""
        t = t.float()
        lo, hi, w = t.floor().long(), t.ceil().long(), t.frac()
        log_s = self.log_ve_sigmas.to(t)
        out = (1 - w) * log_s[lo] + w * log_s[hi]
        out[torch.isnan(out) | torch.isinf(out)] = float("inf")
        return out.exp()

    def sigma_to_t(self, sigma: torch.Tensor) -> torch.Tensor:
        """Fractional timestep of a VE sigma (inverse of t_to_sigma)."""
        sigma = torch.as_tensor(sigma, dtype=torch.float32).reshape(-1)
        return sigma_to_timestep(sigma, self.log_ve_sigmas.to(sigma))

    def model_timestep(self, sigma: torch.Tensor) -> int:
        """The integer timestep the network sees for VE sigma (rounded)."""
        return int(self.sigma_to_t(sigma).round().long().item())

    def model_timesteps(self, sigmas: torch.Tensor) -> list[int]:
        """:meth:`model_timestep` of every VE sigma in ``sigmas`` [n], in one read (once per run)."""
        return self.sigma_to_t(sigmas).round().long().tolist()


def sigma_to_timestep(sigma: torch.Tensor, log_sigmas: torch.Tensor) -> torch.Tensor:
    """Fractional timestep of VE sigmas [n] in a table of log sigmas [N] (log-linear interpolation); on sigma's device, no sync."""
    ls = sigma.reshape(-1).to(log_sigmas).log()
    low = ((log_sigmas[:, None] <= ls[None]).sum(0) - 1).clamp(0, len(log_sigmas) - 2)
    lo_v, hi_v = log_sigmas[low], log_sigmas[low + 1]
    w = ((lo_v - ls) / (lo_v - hi_v)).clamp(0, 1)
    return (1 - w) * low + w * (low + 1)


def trailing_timesteps(mode: str = "fast", steps: int = 15, t_max: int = T_START, t_min: int = 0) -> torch.Tensor:
    """Trailing discretisation (before the penultimate step is dropped).

    fast: 4 steps from t_max down to 500, then 11 from 500 to t_min (``steps`` is ignored, as upstream);
    normal: ``steps + 1`` evenly spaced trailing timesteps from t_max.
    """
    if mode == "fast":
        t_mid = 500
        a = torch.arange(t_max, t_mid - 1, -((t_max - t_mid + 1) / 4))
        b = torch.arange(t_mid, t_min - 1, -((t_mid - t_min + 1) / 11))
        ts = torch.cat([a, b])
    elif mode == "normal":
        n = steps + 1  # one extra: the penultimate step is discarded
        ts = torch.arange(t_max, t_min - 1, -((t_max - t_min + 1) / n))
    else:
        raise ValueError(f"solver mode must be 'fast' or 'normal', got {mode!r}")
    return ts.clamp(t_min, t_max).float()


def solver_sigmas(schedule: VEnhancerSchedule, mode: str = "fast", steps: int = 15, t_max: int = T_START) -> torch.Tensor:
    """VE sigmas of the solver: trailing timesteps, a final 0, the penultimate entry discarded."""
    sig = schedule.t_to_sigma(trailing_timesteps(mode, steps, t_max))
    sig = torch.cat([sig, sig.new_zeros(1)])
    return torch.cat([sig[:-2], sig[-1:]])


def model_call_timesteps(mode: str = "fast", steps: int = 15, t_max: int = T_START, schedule: VEnhancerSchedule | None = None) -> list[int]:
    """The integer timesteps at which the network is called (fast: 14 calls; normal: ``steps``)."""
    schedule = schedule or VEnhancerSchedule.official()
    sig = solver_sigmas(schedule, mode, steps, t_max)
    return schedule.model_timesteps(sig[:-1])
