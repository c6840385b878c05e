"""Noise Calibration core (samplers/noise_calibration.py): published-algorithm equality, identity, convergence."""

import math

import pytest
import torch
from video_enhance_kit.samplers import noise_calibration as nc
from video_enhance_kit.samplers import noising
from video_enhance_kit.utils import fft
from video_enhance_kit.utils.checks import InputError


def published_filter(x, scale, is_low):
    """The published filter (facts file): fftshift, half-open box slicing, ifftshift, `.real`."""
    X = torch.fft.fftshift(torch.fft.fftn(x, dim=(-2, -1)), dim=(-2, -1))
    H, W = x.shape[-2:]
    crow, ccol = H // 2, W // 2
    box = torch.zeros_like(X.real)
    box[..., crow - int(crow * scale): crow + int(crow * scale), ccol - int(ccol * scale): ccol + int(ccol * scale)] = 1
    X = torch.fft.ifftshift(X * (box if is_low else 1 - box), dim=(-2, -1))
    return torch.fft.ifftn(X, dim=(-2, -1)).real


def published_calibration(eps_model, x_r, e, a_t, N, scale):
    """Algorithm 1 as the authors coded it (DDPM rule, eps model, no CFG), from the facts file."""
    for _ in range(N):
        x = math.sqrt(a_t) * x_r + math.sqrt(1 - a_t) * e
        eps_hat = eps_model(x)
        x0_hat = (x - math.sqrt(1 - a_t) * eps_hat) / math.sqrt(a_t)
        e = eps_hat + math.sqrt(a_t) / math.sqrt(1 - a_t) * (published_filter(x0_hat, scale, False) - published_filter(x_r, scale, False))
    return math.sqrt(a_t) * x_r + math.sqrt(1 - a_t) * e


def sd_alpha_bar(t: int) -> float:
    """alphas_cumprod[t] of SD's scaled-linear DDPM schedule (1000 steps)."""
    betas = torch.linspace(0.00085**0.5, 0.012**0.5, 1000, dtype=torch.float64) ** 2
    return float(torch.cumprod(1 - betas, 0)[t])


def tiny_eps_model(channels, gen):
    """A small random conv net predicting eps (float64)."""
    net = torch.nn.Sequential(
        torch.nn.Conv2d(channels, 8, 3, padding=1), torch.nn.SiLU(), torch.nn.Conv2d(8, channels, 3, padding=1)
    ).double()
    with torch.no_grad():
        for p in net.parameters():
            p.copy_(torch.randn(p.shape, generator=gen, dtype=torch.float64) * 0.2)

    def eps_model(x):  # video latent [B, C, T, H, W]: frames through the 2-D net
        b, c, t, h, w = x.shape
        with torch.no_grad():
            y = net(x.permute(0, 2, 1, 3, 4).reshape(b * t, c, h, w))
        return y.reshape(b, t, c, h, w).permute(0, 2, 1, 3, 4)

    return eps_model


@pytest.mark.parametrize("hw", [(10, 16), (9, 13), (8, 7)])
@pytest.mark.parametrize("nu", [0.3, 0.5, 1.0])
@pytest.mark.parametrize("N", [1, 3])
def test_matches_published_algorithm_ddpm(gen, hw, nu, N):
    x_r = torch.randn(1, 4, 3, *hw, generator=gen, dtype=torch.float64)
    e = torch.randn(x_r.shape, generator=gen, dtype=torch.float64)
    eps_model = tiny_eps_model(4, gen)
    alpha_bar = sd_alpha_bar(600)
    a, s = noising.ddpm_rule(alpha_bar)
    expected = published_calibration(eps_model, x_r, e, alpha_bar, N, nu)

    def denoiser(x):  # the same model seen as an x0 predictor
        return (x - s * eps_model(x)) / a

    got = nc.calibrate_noise(denoiser, x_r, e, a, s, iterations=N, cutoff=nu, mask="ideal_reference")
    assert got.x_start.dtype == torch.float64
    assert torch.allclose(got.x_start, expected, rtol=0, atol=1e-12)
    # identity: x_cal = a (LP(x_ref) + HP(x0_hat)) + s eps_hat, from the last model call
    lp_ref = fft.low_pass(x_r, nu)
    hp_x0 = fft.high_pass(got.x0_hat, nu)
    assert torch.allclose(got.x_start, a * (lp_ref + hp_x0) + s * got.eps_hat, rtol=0, atol=1e-12)
    assert len(got.lf_errors) == N


def test_zero_iterations_is_plain_sdedit(gen):
    x_r = torch.randn(2, 4, 8, 8, generator=gen)
    e = torch.randn(x_r.shape, generator=gen)
    calls = []
    got = nc.calibrate_noise(lambda x: calls.append(1) or x, x_r, e, 1.0, 0.7, iterations=0)
    assert calls == [] and torch.equal(got.noise, e)
    assert torch.equal(got.x_start, x_r + 0.7 * e)


def test_cutoff_zero_changes_nothing(gen):
    """nu = 0: no low band to match, so the update returns the current start (Eq. 15 with LP = 0)."""
    x_r = torch.randn(1, 4, 8, 8, generator=gen, dtype=torch.float64)
    e = torch.randn(x_r.shape, generator=gen, dtype=torch.float64)
    got = nc.calibrate_noise(lambda x: 0.5 * x, x_r, e, 0.8, 0.6, iterations=2, cutoff=0.0)
    assert torch.allclose(got.x_start, 0.8 * x_r + 0.6 * e, atol=1e-12)


def test_inputs_not_mutated_and_callback_counts(gen):
    x_r = torch.randn(1, 4, 8, 8, generator=gen)
    e = torch.randn(x_r.shape, generator=gen)
    x_copy, e_copy, seen = x_r.clone(), e.clone(), []
    got = nc.calibrate_noise(lambda x: 0.9 * x, x_r, e, 1.0, 0.5, iterations=3, measure_final=True, callback=lambda k, x0, err: seen.append((k, err)))
    assert torch.equal(x_r, x_copy) and torch.equal(e, e_copy)
    assert [k for k, _ in seen] == [0, 1, 2, 3] and len(got.lf_errors) == 4
    assert [err for _, err in seen] == got.lf_errors


# ---- a tiny model per parameterisation: the Gaussian-optimal x0 plus a small random conv error ----

def gaussian_optimal_x0(x, a, s, power):
    """E[x0 | x_t] for x0 a stationary Gaussian field with spectrum ``power``: gain a P / (a^2 P + s^2)."""
    gain = a * power / (a**2 * power + s**2)
    return torch.fft.ifftn(torch.fft.fftn(x, dim=(-2, -1)) * gain, dim=(-2, -1)).real


def make_power(h, w):
    fy = torch.fft.fftfreq(h, dtype=torch.float64)[:, None]
    fx = torch.fft.fftfreq(w, dtype=torch.float64)[None, :]
    return 4.0 / (1 + ((fy**2 + fx**2) / 0.01)) ** 1.5


def sample_field(shape, power, gen):
    white = torch.randn(shape, generator=gen, dtype=torch.float64)
    return torch.fft.ifftn(torch.fft.fftn(white, dim=(-2, -1)) * power.sqrt(), dim=(-2, -1)).real


def tiny_model(parameterisation, sigma, power, gen):
    """(denoiser x_t -> x0, a, s) for a model whose raw output is eps, v or flow velocity (ComfyUI's conventions)."""
    error_net = tiny_eps_model(4, gen)
    if parameterisation == "flow":
        a, s = noising.flow_rule(sigma)
    else:
        a, s = noising.kdiffusion_rule(sigma)

    def raw_output(x):  # what the network outputs, slightly wrong
        x0 = gaussian_optimal_x0(x, a, s, power)
        if parameterisation == "eps":  # ComfyUI EPS: x0 = x - sigma * eps
            target = (x - x0) / sigma
        elif parameterisation == "v":  # ComfyUI V_PREDICTION (sigma_data = 1): x0 = x / (s^2 + 1) - v s / sqrt(s^2 + 1)
            target = (x / (sigma**2 + 1) - x0) * math.sqrt(sigma**2 + 1) / sigma
        else:  # ComfyUI CONST (flow): x0 = x - sigma * v
            target = (x - x0) / sigma
        return target + 0.03 * error_net(x / math.sqrt(sigma**2 + 1) if parameterisation != "flow" else x)

    def denoiser(x):
        out = raw_output(x)
        if parameterisation == "eps":
            return x - sigma * out
        if parameterisation == "v":
            return x / (sigma**2 + 1) - out * sigma / math.sqrt(sigma**2 + 1)
        return x - sigma * out

    return denoiser, a, s


@pytest.mark.parametrize("parameterisation, sigma", [("eps", 1.5), ("v", 1.5), ("flow", 0.6)])
@pytest.mark.parametrize("mask, nu", [("ideal_reference", 1.0), ("ideal_reference", 0.5), ("gaussian", 0.5)])
def test_low_frequency_error_falls_on_tiny_model(gen, parameterisation, sigma, mask, nu):
    power = make_power(16, 16)
    x_ref = sample_field((1, 4, 3, 16, 16), power, gen)
    e = torch.randn(x_ref.shape, generator=gen, dtype=torch.float64)
    denoiser, a, s = tiny_model(parameterisation, sigma, power, gen)
    errs = nc.calibrate_noise(denoiser, x_ref, e, a, s, iterations=3, cutoff=nu, mask=mask, measure_final=True).lf_errors
    assert len(errs) == 4
    assert errs[1] < 0.9 * errs[0], errs  # one iteration removes much of the content drift
    assert errs[2] <= errs[1] * 1.001 and errs[3] <= errs[2] * 1.001, errs  # and later ones do not undo it


def test_same_result_for_4d_frames_and_5d_video(gen):
    """Per-frame (dims=2) calibration of an image-model batch equals that of the same frames as a video latent."""
    power = make_power(8, 8)
    video = sample_field((1, 4, 3, 8, 8), power, gen)
    e = torch.randn(video.shape, generator=gen, dtype=torch.float64)
    a, s = noising.kdiffusion_rule(2.0)
    den = lambda x: gaussian_optimal_x0(x, a, s, power)
    v = nc.calibrate_noise(den, video, e, a, s, iterations=2).x_start
    to_frames = lambda t: t[0].permute(1, 0, 2, 3)
    f = nc.calibrate_noise(den, to_frames(video), to_frames(e), a, s, iterations=2).x_start
    assert torch.allclose(to_frames(v), f, atol=1e-12)


@pytest.mark.parametrize(
    "kwargs, name",
    [
        (dict(iterations=-1), "iterations"),
        (dict(iterations=1.5), "iterations"),
        (dict(cutoff=1.2), "cutoff"),
        (dict(cutoff=-0.5), "cutoff"),
        (dict(s=0.0), "sigmas"),
        (dict(mask="round"), "mask"),
    ],
)
def test_bad_arguments(gen, kwargs, name):
    x = torch.randn(1, 4, 8, 8, generator=gen)
    args = dict(denoiser=lambda t: t, x_ref=x, noise=torch.randn_like(x), a=1.0, s=1.0, iterations=1)
    args.update(kwargs)
    with pytest.raises(InputError) as err:
        nc.calibrate_noise(**args)
    assert err.value.input_name == name


def test_bad_tensors(gen):
    x = torch.randn(1, 4, 8, 8, generator=gen)
    with pytest.raises(InputError, match="noise"):
        nc.calibrate_noise(lambda t: t, x, torch.randn(1, 4, 8, 6), 1.0, 1.0)
    bad = x.clone()
    bad[0, 0, 0, 0] = float("nan")
    with pytest.raises(InputError, match="latent"):
        nc.calibrate_noise(lambda t: t, bad, x, 1.0, 1.0)
    with pytest.raises(InputError, match="model"):
        nc.calibrate_noise(lambda t: t * float("nan"), x, x, 1.0, 1.0, iterations=1)


def test_calibrated_sdedit_result_keeps_the_low_frequencies(gen):
    """End to end on the tiny model: DDIM (Euler in k-diffusion form) from the calibrated start drifts less (MSE_l)."""
    power = make_power(16, 16)
    x_ref = sample_field((1, 4, 3, 16, 16), power, gen)
    e = torch.randn(x_ref.shape, generator=gen, dtype=torch.float64)
    sigmas = torch.linspace(2.0, 0.0, 11, dtype=torch.float64)

    def denoiser_at(sigma):
        den, _, _ = tiny_model("eps", float(sigma), power, torch.Generator().manual_seed(5))
        return den

    def sdedit(noise):
        x = x_ref + sigmas[0] * noise
        for s0, s1 in zip(sigmas[:-1], sigmas[1:]):
            x0 = denoiser_at(s0)(x)
            x = x0 + s1 * (x - x0) / s0
        return x

    a, s = noising.kdiffusion_rule(float(sigmas[0]))
    mse_l = {}
    for n in (0, 3):
        cal = nc.calibrate_noise(denoiser_at(sigmas[0]), x_ref, e, a, s, iterations=n, cutoff=1.0)
        out = sdedit(cal.noise)
        mse_l[n] = float(((fft.low_pass(out, 0.5) - fft.low_pass(x_ref, 0.5)) ** 2).mean())
    assert mse_l[3] < 0.5 * mse_l[0], mse_l
