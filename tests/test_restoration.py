"""Restoration guidance (GDP gradient step, DDNM projection) with stand-in decoders and a known ground truth."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from video_enhance_kit.samplers.restoration import (
    RestorationGuidance,
    RestorationSettings,
    ddnm_projection,
    gdp_gradient,
    range_null_space,
)
from video_enhance_kit.utils.checks import InputError
from video_enhance_kit.utils.degradation import (
    Downsample,
    GaussianBlur,
    Grayscale,
    Inpaint,
    LowLight,
)


def decode(z):
    """A stand-in VAE decoder: 2x nearest upsampling of a 3-channel latent, squashed to 0..1."""
    return torch.sigmoid(F.interpolate(z, scale_factor=2, mode="nearest"))


def encode(x):
    """Its inverse on 2x2-constant frames (average, then logit)."""
    return torch.logit(F.avg_pool2d(x, 2).clamp(1e-4, 1 - 1e-4))


def _truth(frames=3, size=16, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(frames, 3, size // 2, size // 2, generator=g, dtype=torch.float64)


OPS = {
    "sr4": lambda: Downsample(4, "avgpool"),
    "inpaint": lambda: Inpaint((torch.rand(3, 1, 16, 16, generator=torch.Generator().manual_seed(1)) > 0.4).double()),
    "gray": lambda: Grayscale(),
    "blur": lambda: GaussianBlur(1.0),
}


def _error(z, op, y):
    return float((op(decode(z)) - y).pow(2).mean())


def test_gdp_gradient_matches_autograd_through_the_whole_chain():
    op, z = Downsample(2, "bicubic"), _truth()
    y = op(decode(_truth(seed=3)))
    leaf = z.clone().requires_grad_(True)
    (expected,) = torch.autograd.grad((op(decode(leaf)) - y).pow(2).sum(), leaf)
    assert torch.allclose(gdp_gradient(z, decode, op, y, chunk=2), expected, atol=1e-10)


@pytest.mark.parametrize("name", sorted(OPS))
def test_gdp_steps_bring_the_decode_towards_the_observation(name):
    op, truth = OPS[name](), _truth()
    y = op(decode(truth))
    guide = RestorationGuidance(RestorationSettings("gdp", scale=0.05, chunk=2), op, y, decode)
    z = torch.randn(truth.shape, generator=torch.Generator().manual_seed(9), dtype=truth.dtype)
    errors = [_error(z, op, y)]
    for _ in range(20):
        z = guide(z, 1.0)
        errors.append(_error(z, op, y))
    assert errors[-1] < 0.5 * errors[0], errors[::5]


@pytest.mark.parametrize("name", ["sr4", "inpaint", "gray"])
def test_ddnm_projection_is_exact_in_pixel_space(name):
    op, truth = OPS[name](), _truth()
    y = op(decode(truth))
    pixels = decode(torch.zeros_like(truth))
    assert torch.allclose(op(range_null_space(pixels, op, y)), y, atol=1e-10)
    z = ddnm_projection(torch.zeros_like(truth), decode, encode, op, y, chunk=2)
    assert _error(z, op, y) <= _error(torch.zeros_like(truth), op, y)


def test_low_light_projection_and_blind_fit():
    truth = _truth()
    op = LowLight(torch.tensor([0.2, 0.3, 0.25], dtype=torch.float64), torch.tensor([0.01, 0.0, 0.02], dtype=torch.float64))
    y = op(decode(truth))
    assert torch.allclose(range_null_space(decode(truth * 0), op, y), decode(truth), atol=1e-6)
    blind = RestorationGuidance(RestorationSettings("gdp", scale=0.05, fit_low_light=True), LowLight(), y, decode)
    z = truth + 0.1
    assert torch.isfinite(blind(z, 0.5)).all()


def test_scale_zero_and_outside_the_window_return_the_input_unchanged():
    op, truth = OPS["sr4"](), _truth()
    y = op(decode(truth))
    z = torch.randn_like(truth)
    off = RestorationGuidance(RestorationSettings("gdp", scale=0.0), op, y, decode)
    late = RestorationGuidance(RestorationSettings("gdp", scale=0.5, sigma_max=1.0, sigma_min=0.5), op, y, decode)
    assert off(z, 1.0) is z
    assert late(z, 2.0) is z and late(z, 0.1) is z
    assert not torch.equal(late(z, 0.7), z)


def test_bad_settings_name_the_input():
    op, y = OPS["blur"](), torch.zeros(3, 3, 16, 16)
    with pytest.raises(InputError, match="gdp"):
        RestorationGuidance(RestorationSettings("ddnm"), op, y, decode, encode)
    with pytest.raises(InputError, match="vae"):
        RestorationGuidance(RestorationSettings("ddnm"), OPS["sr4"](), y, decode)
    with pytest.raises(InputError, match="method"):
        RestorationSettings("dps").check()
    with pytest.raises(InputError, match="end"):
        RestorationSettings(sigma_max=0.1, sigma_min=0.5).check()
    with pytest.raises(InputError, match="image-model latents"):
        RestorationGuidance(RestorationSettings(), OPS["sr4"](), y, decode)(torch.zeros(1, 4, 2, 8, 8), 1.0)


def test_noise_sigma_brings_the_residual_to_the_noise_level_not_to_zero():
    from video_enhance_kit.samplers.restoration import noise_ball_factor

    op, truth = OPS["sr4"](), _truth()
    y = op(decode(truth))
    pixels = decode(torch.zeros_like(truth))
    r0 = (op(pixels) - y).pow(2).flatten(1).mean(1).sqrt()
    sigma = float(r0.min()) / 2
    projected = range_null_space(pixels, op, y, noise_sigma=sigma)
    r1 = (op(projected) - y).pow(2).flatten(1).mean(1).sqrt()
    assert torch.allclose(r1, torch.full_like(r1, sigma), rtol=1e-6)
    assert float(noise_ball_factor(op(pixels) - y, float(r0.max()) * 2).abs().max()) == 0.0  # inside the noise: no step
    assert noise_ball_factor(op(pixels) - y, 0.0) == 1.0
    guide = RestorationGuidance(RestorationSettings("gdp", scale=0.5, noise_sigma=float(r0.max()) * 2), op, y, decode)
    z = torch.zeros_like(truth)
    assert torch.equal(guide(z, 1.0), z)  # every frame already within the noise level
