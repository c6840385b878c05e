"""EVS composition (samplers/composition.py): schedule split, call counts, bridges, parameterisations."""

import torch
import torch.nn.functional as F
from video_enhance_kit.samplers.composition import (
    T2VBlock,
    ddim_runner,
    encapsulated_sample,
    identity_bridge,
    inversion,
    layout_bridge,
    naive_cascade,
    split_index,
    vae_bridge,
)
from video_enhance_kit.samplers.ddim_inversion import ddim_invert, ddim_sample
from video_enhance_kit.samplers.noising import flow_rule, kdiffusion_rule
from video_enhance_kit.utils.checks import InputError

torch.set_num_threads(1)


class Counter:
    """Wraps a denoiser and counts its calls."""

    def __init__(self, fn):
        self.fn, self.calls = fn, 0

    def __call__(self, x, sigma):
        self.calls += 1
        return self.fn(x, sigma)


def image_denoiser(seed=0, channels=4):
    """A frame-wise eps model (k-diffusion rule): a fixed random 3x3 conv, like an image model."""
    g = torch.Generator().manual_seed(seed)
    w = torch.randn(channels, channels, 3, 3, generator=g, dtype=torch.float64) * 0.2

    def denoise(x, sigma):
        s = float(sigma)
        eps = torch.tanh(F.conv2d(x / (s * s + 1) ** 0.5, w, padding=1))
        return x - s * eps

    return denoise


def video_flow_denoiser():
    """A flow (velocity) stand-in video model on [B, C, T, H, W]: predicts the temporal mean as x0."""

    def denoise(x, sigma):
        s = float(sigma)
        x0 = x.mean(dim=2, keepdim=True).expand_as(x) / max(1.0 - s, 1e-3) * (1 - s)
        v = (x - x0) / max(s, 1e-6) - x0  # velocity eps - x0 implied by x = (1-s) x0 + s eps
        return x - s * v

    return denoise


def schedule(n, top=3.0):
    return torch.cat([torch.linspace(top, 0.05, n, dtype=torch.float64), torch.zeros(1, dtype=torch.float64)])


def video(gen, frames=5, channels=4, size=8):
    base = torch.randn(1, channels, size, size, generator=gen, dtype=torch.float64)
    flicker = 0.5 * torch.randn(frames, channels, size, size, generator=gen, dtype=torch.float64)
    return base + flicker


def reference_sdedit(denoise, rule, latent, noise, sigmas):
    """Plain SDEdit + DDIM, written out independently of the composition code."""
    a, s = rule(float(sigmas[0]))
    x = a * latent + s * noise
    for i in range(len(sigmas) - 1):
        d = denoise(x, sigmas[i])
        a, s = rule(float(sigmas[i]))
        eps = (x - a * d) / s
        nxt = float(sigmas[i + 1])
        if nxt == 0:
            x = d
        else:
            a2, s2 = rule(nxt)
            x = a2 * d + s2 * eps
    return x


def test_disabled_block_equals_plain_sdedit_bit_for_bit(gen):
    z, eps = video(gen), torch.randn(5, 4, 8, 8, generator=gen, dtype=torch.float64)
    sig = schedule(6)
    den = image_denoiser()
    out = encapsulated_sample(z, eps, sig, 3, ddim_runner(den, kdiffusion_rule), None)
    ref = reference_sdedit(den, kdiffusion_rule, z, eps, sig)
    assert torch.equal(out, ref)


def test_same_model_block_at_start_is_a_plain_run(gen):
    """Block at k = 0 with T2V = T2I (same sigmas, noise, n_V = N): the [T2V] block IS the plain run; the
    whole composition is then Eq. 6 (that run followed by the T2I SDEdit of its result)."""
    z, eps = video(gen), torch.randn(5, 4, 8, 8, generator=gen, dtype=torch.float64)
    sig = schedule(5)
    den = image_denoiser(1)
    run = ddim_runner(den, kdiffusion_rule)
    plain = reference_sdedit(den, kdiffusion_rule, z, eps, sig)
    block = T2VBlock(run, sig, steps=5, noise=eps)
    assert torch.equal(block(z), plain)
    out = encapsulated_sample(z, eps, sig, 0, run, block)
    assert torch.equal(out, reference_sdedit(den, kdiffusion_rule, plain, eps, sig))


def test_pass_through_block_at_start_is_the_plain_run(gen):
    """A [T2V] block that returns its input, placed before the first T2I step: the plain SDEdit run, bit for bit."""
    z, eps = video(gen), torch.randn(5, 4, 8, 8, generator=gen, dtype=torch.float64)
    sig = schedule(5)
    den = image_denoiser(4)
    out = encapsulated_sample(z, eps, sig, 0, ddim_runner(den, kdiffusion_rule), lambda z0: z0)
    assert torch.equal(out, reference_sdedit(den, kdiffusion_rule, z, eps, sig))


def test_block_at_end_is_the_naive_cascade(gen):
    z, eps = video(gen), torch.randn(5, 4, 8, 8, generator=gen, dtype=torch.float64)
    sig = schedule(4)
    run = ddim_runner(image_denoiser(2), kdiffusion_rule)
    block = T2VBlock(run, schedule(3, 1.0), steps=3, noise=eps)
    assert torch.equal(encapsulated_sample(z, eps, sig, 4, run, block), naive_cascade(z, eps, sig, run, block))


def test_model_call_count(gen):
    z, eps = video(gen), torch.randn(5, 4, 8, 8, generator=gen, dtype=torch.float64)
    n_i, m_v, n_v, k = 7, 5, 3, 4
    t2i = Counter(image_denoiser())
    t2v_fn = video_flow_denoiser()
    t2v = Counter(lambda x, s: t2v_fn(x, s))
    bridge = layout_bridge()
    sig_v = schedule(m_v, 0.7)
    eps_v = torch.randn(1, 4, 5, 8, 8, generator=gen, dtype=torch.float64)
    block = T2VBlock(ddim_runner(t2v, flow_rule), sig_v, steps=n_v, noise=eps_v, bridge=bridge)
    encapsulated_sample(z, eps, schedule(n_i), k, ddim_runner(t2i, kdiffusion_rule), block)
    assert (t2i.calls, t2v.calls) == (n_i, n_v)
    # SFI on: DDIM inversion over the T2V schedule from 0 to t_V adds its m_V calls (= n_V when the block runs to the end)
    t2i.calls = t2v.calls = 0
    block = T2VBlock(ddim_runner(t2v, flow_rule), sig_v, steps=m_v, bridge=bridge, invert=inversion(t2v, flow_rule))
    encapsulated_sample(z, eps, schedule(n_i), k, ddim_runner(t2i, kdiffusion_rule), block)
    assert (t2i.calls, t2v.calls) == (n_i, 2 * m_v)


def test_on_model_call_hook_sees_every_call(gen):
    z, eps = video(gen), torch.randn(5, 4, 8, 8, generator=gen, dtype=torch.float64)
    ticks = []
    run = ddim_runner(image_denoiser(), kdiffusion_rule, on_model_call=lambda: ticks.append(1))
    block = T2VBlock(run, schedule(4, 1.0), steps=2, noise=eps, invert=inversion(image_denoiser(), kdiffusion_rule, lambda: ticks.append(1)))
    encapsulated_sample(z, eps, schedule(6), 2, run, block)
    assert len(ticks) == 6 + 2 + 4


def test_bridges_identity_and_decode_then_encode(gen):
    z = video(gen)
    assert torch.equal(identity_bridge().to_t2i(identity_bridge().to_t2v(z)), z)
    lb = layout_bridge()
    v = lb.to_t2v(z)
    assert v.shape == (1, 4, 5, 8, 8) and torch.equal(v[0, :, 2], z[2])
    assert torch.equal(lb.to_t2i(v), z)

    # two latent spaces: a toy image VAE (x2 pixels, 3 channels) and a toy video VAE compressing time 4x (Wan-like)
    def dec_i(f):
        return F.interpolate(f[:, :3], scale_factor=2)

    def enc_i(p):
        return torch.cat([F.avg_pool2d(p, 2), F.avg_pool2d(p, 2)[:, :1]], 1)

    def enc_v(p):  # [F, 3, H, W] -> [1, 3, (F - 1) // 4 + 1, H/2, W/2]
        keep = p[::4]
        return F.avg_pool2d(keep, 2).movedim(0, 1).unsqueeze(0)

    def dec_v(v):
        frames = F.interpolate(v[0].movedim(1, 0), scale_factor=2)
        return frames.repeat_interleave(4, 0)[: (v.shape[2] - 1) * 4 + 1]

    vb = vae_bridge(dec_i, enc_v, dec_v, enc_i)
    assert torch.equal(vb.to_t2v(z), enc_v(dec_i(z)))
    assert torch.equal(vb.to_t2i(vb.to_t2v(z)), enc_i(dec_v(enc_v(dec_i(z)))))
    assert vb.to_t2i(vb.to_t2v(z)).shape == z.shape  # 5 = 4k + 1 frames survive the 4x temporal VAE


def test_t2v_block_brings_temporal_consistency(gen):
    """eps T2I (frame-wise) + flow T2V (temporal prior) through the layout bridge: less flicker than T2I alone."""
    z, eps = video(gen), torch.randn(5, 4, 8, 8, generator=gen, dtype=torch.float64)
    sig = schedule(8)
    t2i = ddim_runner(image_denoiser(3), kdiffusion_rule)
    eps_v = torch.randn(1, 4, 5, 8, 8, generator=gen, dtype=torch.float64)
    block = T2VBlock(ddim_runner(video_flow_denoiser(), flow_rule), schedule(4, 0.6), steps=4, noise=eps_v, bridge=layout_bridge())

    def flicker(x):
        return float((x[1:] - x[:-1]).abs().mean())

    plain = encapsulated_sample(z, eps, sig, 4, t2i, None)
    evs = encapsulated_sample(z, eps, sig, 4, t2i, block)
    assert torch.isfinite(evs).all()
    assert flicker(evs) < 0.8 * flicker(plain)


def test_v_prediction_model_fits_as_x0_denoiser(gen):
    """A v-model (ComfyUI V_PREDICTION: x0 = c_skip x - c_out v) is just another x0 denoiser on the k-diffusion rule."""
    truth = video(gen)[:1]

    def v_denoiser(x, sigma):
        s = float(sigma)
        eps = (x - truth) / s
        v = (eps - s * truth) / (s * s + 1) ** 0.5  # v = alpha eps - sigma_vp x0 in the scaled space
        return x / (s * s + 1) - v * s / (s * s + 1) ** 0.5

    noise = torch.randn_like(truth)
    x, _ = ddim_runner(v_denoiser, kdiffusion_rule)(truth, noise, schedule(4))
    assert torch.allclose(x, truth, atol=1e-9)


def test_inversion_of_exact_model_is_exact(gen):
    """With a denoiser that knows the clean latent, inversion then DDIM returns it (sanity of the pairing)."""
    truth = video(gen)

    def oracle(x, sigma):
        return truth

    sig = schedule(5, 0.9)
    xt = ddim_invert(oracle, flow_rule, truth, sig)
    back, _ = ddim_sample(oracle, flow_rule, xt, sig)
    assert torch.allclose(back, truth, atol=1e-12)


def test_validation_names_inputs(gen):
    z, eps = video(gen), torch.randn(5, 4, 8, 8, generator=gen, dtype=torch.float64)
    run = ddim_runner(image_denoiser(), kdiffusion_rule)
    for bad in (-1, 7):
        try:
            encapsulated_sample(z, eps, schedule(6), bad, run, lambda q: q)
        except InputError as err:
            assert "t2v_at" in str(err)
        else:
            raise AssertionError("t2v_at out of range accepted")
    block = T2VBlock(run, schedule(3), steps=4, noise=eps)
    try:
        block(z)
    except InputError as err:
        assert "t2v_block_steps" in str(err)
    else:
        raise AssertionError("too many block steps accepted")
    assert split_index(50, 0.4, "t2i_strength") == 20
    try:
        split_index(50, 1.5, "t2i_strength")
    except InputError as err:
        assert "t2i_strength" in str(err)
