"""ZVRD early-stopping sampling (T_ES)."""

import pytest
import torch
from video_enhance_kit.samplers.early_stop import (
    early_stop_index,
    early_stop_sigmas,
    early_stopping_sampler,
)
from video_enhance_kit.utils.checks import InputError


def sample_euler(model, x, sigmas, extra_args=None, callback=None, disable=None, s_noise=1.0):
    """k-diffusion's Euler sampler, reduced (same signature and callback)."""
    for i in range(len(sigmas) - 1):
        denoised = model(x, sigmas[i])
        if callback is not None:
            callback({"x": x, "i": i, "sigma": sigmas[i], "sigma_hat": sigmas[i], "denoised": denoised})
        x = x + (x - denoised) / sigmas[i] * (sigmas[i + 1] - sigmas[i])
    return x


def toy_model(x, sigma):
    return torch.tanh(x) * (1.0 / (1.0 + sigma))


SIGMAS = torch.tensor([10.0, 6.0, 3.0, 1.5, 0.6, 0.2, 0.0])


@pytest.mark.parametrize("k", [1, 3, 6])
def test_stop_at_step_k_equals_denoised_of_run_over_first_k_plus_1_sigmas(gen, k):
    x = torch.randn(2, 4, 8, 8, generator=gen) * 10
    seen = []
    sample_euler(toy_model, x.clone(), SIGMAS[: k + 1], callback=lambda d: seen.append(d["denoised"]))
    calls = []
    out = early_stopping_sampler(sample_euler, stop_step=k)(toy_model, x.clone(), SIGMAS, callback=lambda d: calls.append(d["i"]))
    assert torch.equal(out, seen[-1])
    assert calls == list(range(k))  # the host's progress callback still sees every step that ran


def test_stop_sigma_picks_first_step_at_or_below(gen):
    assert early_stop_index(SIGMAS, 0, 1.5) == 3
    assert early_stop_index(SIGMAS, 0, 2.0) == 3
    assert early_stop_index(SIGMAS, 0, 0.0) == 6
    assert early_stop_index(SIGMAS, 2, 1.5) == 2  # the step count wins
    assert early_stop_index(SIGMAS, 99) == 6
    assert torch.equal(early_stop_sigmas(SIGMAS, 0, 0.6), SIGMAS[:5])
    assert early_stop_index(SIGMAS, 0, 0.0, 0.5) == 3
    assert early_stop_index(SIGMAS, 0, 0.0, 0.7) == 5
    assert early_stop_index(SIGMAS, 0, 0.0, 0.0) == 1


def test_full_run_matches_plain_sampler_x0(gen):
    x = torch.randn(1, 4, 8, 8, generator=gen)
    plain = sample_euler(toy_model, x.clone(), SIGMAS)
    out = early_stopping_sampler(sample_euler, 0, 0.0)(toy_model, x.clone(), SIGMAS)
    assert torch.allclose(out, plain)  # last sigma is 0: Euler's final x is its x0


def test_checks():
    with pytest.raises(InputError, match="stop_step"):
        early_stop_index(SIGMAS, -1)
    with pytest.raises(InputError, match="stop_sigma"):
        early_stop_index(SIGMAS, 0, -0.5)
    with pytest.raises(InputError, match="sigmas"):
        early_stop_index(torch.tensor([1.0]), 1)
