"""Selective feature injection (attention/feature_injection.py) with DDIM inversion on a tiny attention model."""

import torch
import torch.nn.functional as F
from video_enhance_kit.attention.feature_injection import (
    FeatureInjection,
    blend_query,
    layer_selected,
    match_batch,
)
from video_enhance_kit.samplers.composition import T2VBlock, ddim_runner, inversion
from video_enhance_kit.samplers.noising import kdiffusion_rule
from video_enhance_kit.utils.checks import InputError

torch.set_num_threads(1)


class TinyAttentionNet(torch.nn.Module):
    """A 4-layer transformer eps-model on pixels-as-tokens; every self-attention goes through ``injection``.

    Residual branches are damped (x 0.3) and the output amplified (x 3) so that, as in a trained network,
    the noise estimate depends strongly on the input and mostly through attention.
    """

    residual = 0.3
    out_gain = 3.0

    def __init__(self, channels=4, dim=32, layers=4, heads=2, seed=0):
        super().__init__()
        torch.manual_seed(seed)
        self.heads = heads
        self.inp = torch.nn.Linear(channels + 1, dim)
        self.qkv = torch.nn.ModuleList(torch.nn.Linear(dim, 3 * dim) for _ in range(layers))
        self.out = torch.nn.ModuleList(torch.nn.Linear(dim, dim) for _ in range(layers))
        self.mlp = torch.nn.ModuleList(torch.nn.Sequential(torch.nn.Linear(dim, dim), torch.nn.GELU(), torch.nn.Linear(dim, dim)) for _ in range(layers))
        self.head = torch.nn.Linear(dim, channels)
        self.double()
        self.injection = None

    def embed(self, x, sigma):
        """``(s, hidden tokens, the noise level handed to the injection)``."""
        s = float(sigma)
        tokens = (x / (s * s + 1) ** 0.5).flatten(2).transpose(1, 2)
        return s, self.inp(torch.cat([tokens, torch.full_like(tokens[..., :1], s)], -1)), s

    def forward(self, x, sigma):
        f, c, h, w = x.shape
        s, hid, level = self.embed(x, sigma)
        n = len(self.qkv)
        for i in range(n):
            q, k, v = self.qkv[i](F.layer_norm(hid, hid.shape[-1:])).chunk(3, -1)
            if self.injection is not None:
                q, k, v = self.injection.qkv(q, k, v, layer=i, depth=i / (n - 1), sigma=level)
            split = lambda t: t.unflatten(-1, (self.heads, -1)).transpose(1, 2)
            att = F.scaled_dot_product_attention(split(q), split(k), split(v)).transpose(1, 2).flatten(2)
            hid = self.residual * hid + self.out[i](att)
            hid = hid + self.residual * self.mlp[i](F.layer_norm(hid, hid.shape[-1:]))
        eps = self.out_gain * self.head(hid).transpose(1, 2).reshape(f, c, h, w)
        return x - s * eps


def reconstruction_error(gamma=None, depth_min=0.0, depth_max=1.0, steps=6, top=2.0):
    """Relative RMS error of DDIM inversion + DDIM denoising (SFI with ``gamma``; None: no injection)."""
    gen = torch.Generator().manual_seed(7)
    net = TinyAttentionNet()
    z0 = torch.randn(3, 4, 6, 6, generator=gen, dtype=torch.float64)
    sig = torch.cat([torch.linspace(top, 0.1, steps, dtype=torch.float64), torch.zeros(1, dtype=torch.float64)])
    inj = None if gamma is None else FeatureInjection(gamma, depth_min, depth_max)
    net.injection = inj
    with torch.no_grad():
        block = T2VBlock(ddim_runner(net, kdiffusion_rule), sig, steps=steps, invert=inversion(net, kdiffusion_rule), injection=inj)
        out = block(z0)
    return float((out - z0).pow(2).mean().sqrt() / z0.pow(2).mean().sqrt()), inj


def test_full_injection_reconstructs_and_error_grows_as_injection_is_reduced():
    errors = {
        "gamma1_all": reconstruction_error(1.0, 0.0, 1.0)[0],
        "gamma0.5_all": reconstruction_error(0.5, 0.0, 1.0)[0],
        "gamma0_all": reconstruction_error(0.0, 0.0, 1.0)[0],
        "gamma1_deep_half": reconstruction_error(1.0, 0.5, 1.0)[0],
        "gamma1_deepest": reconstruction_error(1.0, 1.0, 1.0)[0],
        "none": reconstruction_error(None)[0],
    }
    print("relative RMS reconstruction error:", {k: f"{v:.4g}" for k, v in errors.items()})
    # 6-step DDIM inversion + denoising: ~0.06 % with full injection, ~10 % without
    assert errors["gamma1_all"] < 0.002
    assert errors["none"] > 0.05
    assert errors["gamma1_all"] < errors["gamma1_deep_half"] < errors["gamma1_deepest"] < errors["none"]
    # K and V are always replaced (Eq. 11), so gamma moves the error little (0.060 % -> 0.069 %), but in order
    assert errors["gamma1_all"] < errors["gamma0.5_all"] < errors["gamma0_all"] < errors["gamma1_deep_half"]


def test_injection_pairs_levels_and_cleans_up():
    gen = torch.Generator().manual_seed(3)
    _, inj = reconstruction_error(1.0, 0.0, 1.0, steps=4)
    assert inj.mode == "off" and not inj.store  # records freed after the block
    inj = FeatureInjection(1.0, 0.0, 1.0)
    q = torch.randn(2, 5, 8, generator=gen)
    inj.set_mode("record")
    for sigma in (0.5, 1.0):
        inj.qkv(q * sigma, q + sigma, q - sigma, layer="a", depth=0.3, sigma=sigma)
    inj.set_mode("inject")
    q2, k2, _v2 = inj.qkv(torch.zeros(4, 5, 8), torch.zeros(4, 5, 8), torch.zeros(4, 5, 8), layer="a", depth=0.3, sigma=0.98)
    assert torch.equal(q2, torch.cat([q, q])) and torch.equal(k2, torch.cat([q + 1.0] * 2))  # nearest level, 2 streams
    assert inj.injected_calls == 1


def test_eq11_blend_and_layer_selection():
    q, qi = torch.zeros(2, 3), torch.ones(2, 3)
    assert torch.equal(blend_query(q, qi, 1.0), qi) and torch.equal(blend_query(q, qi, 0.0), q)
    assert torch.allclose(blend_query(q, qi, 0.8), torch.full((2, 3), 0.8))
    assert layer_selected(0.5, 0.5, 1.0) and not layer_selected(0.49, 0.5, 1.0)
    inj = FeatureInjection(0.5, 0.5, 1.0)
    inj.set_mode("record")
    x = torch.randn(1, 4, 8)
    inj.qkv(x, x, x, layer=0, depth=0.0, sigma=1.0)  # shallow layer, outside the range: not recorded
    assert not inj.store
    assert match_batch(torch.ones(2, 1), 6).shape == (6, 1)


def test_invalid_settings_name_the_input():
    for kwargs, name in (({"gamma": 1.5}, "sfi_gamma"), ({"depth_min": -0.1}, "sfi_depth_min"), ({"depth_min": 0.9, "depth_max": 0.2}, "sfi_depth_min")):
        try:
            FeatureInjection(**kwargs)
        except InputError as err:
            assert name in str(err)
        else:
            raise AssertionError(kwargs)
    try:
        match_batch(torch.ones(3, 2), 4)
    except InputError as err:
        assert "batch" in str(err)


# ------------------------------------------------------------------ noise level as a device tensor (no host sync)

SYNC_CALLS = ("item", "__bool__", "__float__", "__int__", "tolist", "cpu")


def count_syncs(monkeypatch):
    """Wrap the calls that read a tensor back to the host; returns the live counter ``{"n": calls}``."""
    counter = {"n": 0}
    for name in SYNC_CALLS:
        original = getattr(torch.Tensor, name)

        def wrapped(self, *args, _original=original, **kwargs):
            counter["n"] += 1
            return _original(self, *args, **kwargs)

        monkeypatch.setattr(torch.Tensor, name, wrapped)
    return counter


class DeviceSigmaNet(TinyAttentionNet):
    """TinyAttentionNet computed from the sigma tensor; the injection gets that tensor (or, as before, its float)."""

    tensor_sigma = True

    def embed(self, x, sigma):
        s = sigma.to(x.dtype)
        tokens = (x / (s * s + 1) ** 0.5).flatten(2).transpose(1, 2)
        hid = self.inp(torch.cat([tokens, s.expand_as(tokens[..., :1])], -1))
        return s, hid, sigma if self.tensor_sigma else float(sigma)


def sfi_block(tensor_sigma, steps=4, gamma=0.8, depth=(0.0, 1.0), top=2.0):
    """One SFI [T2V] block (DDIM inversion recording, DDIM denoising injecting) on DeviceSigmaNet: (out, injection)."""
    gen = torch.Generator().manual_seed(7)
    net = DeviceSigmaNet()
    net.tensor_sigma = tensor_sigma
    z0 = torch.randn(3, 4, 6, 6, generator=gen, dtype=torch.float64)
    sig = torch.cat([torch.linspace(top, 0.1, steps, dtype=torch.float64), torch.zeros(1, dtype=torch.float64)])
    inj = net.injection = FeatureInjection(gamma, *depth)
    calls = {"n": 0}
    original = inj.qkv

    def counted_qkv(*args, **kwargs):
        calls["n"] += 1
        return original(*args, **kwargs)

    inj.qkv = counted_qkv
    with torch.no_grad():
        out = T2VBlock(ddim_runner(net, kdiffusion_rule), sig, steps=steps, invert=inversion(net, kdiffusion_rule), injection=inj)(z0)
    return out, inj, calls["n"]


def test_tensor_noise_levels_give_the_float_result_bit_for_bit():
    plain, _, _ = sfi_block(True, depth=(1.0, 1.0), gamma=1.0, top=2.0, steps=4)
    for gamma, depth in ((1.0, (0.0, 1.0)), (0.8, (0.5, 1.0)), (0.0, (1.0, 1.0))):
        by_float, _, _ = sfi_block(False, gamma=gamma, depth=depth)
        by_tensor, _, _ = sfi_block(True, gamma=gamma, depth=depth)
        assert torch.equal(by_float, by_tensor)
        assert gamma == 0.0 or not torch.equal(by_tensor, plain)  # and the injection did something


def test_tensor_levels_pair_as_floats_do_including_a_layer_with_a_missing_level():
    gen = torch.Generator().manual_seed(3)
    q = torch.randn(2, 5, 8, generator=gen)
    results = []
    for as_tensor in (False, True):
        level = (lambda x: torch.tensor(x)) if as_tensor else float
        inj = FeatureInjection(1.0, 0.0, 1.0)
        inj.set_mode("record")
        for sigma in (0.5, 1.0, 1.0, 2.0):  # 1.0 twice: the later record replaces the first
            inj.qkv(q * sigma, q + sigma, q - sigma, layer="a", depth=0.3, sigma=level(sigma))
        inj.qkv(q * 3, q, q, layer="b", depth=0.3, sigma=level(2.0))  # layer b only has the level 2.0
        inj.set_mode("inject")
        zeros = torch.zeros(4, 5, 8)
        outs = [inj.qkv(zeros, zeros, zeros, layer=layer, depth=0.3, sigma=level(s)) for layer in ("a", "b", "c") for s in (0.9, 1.6, 5.0, 0.0)]
        results.append((outs, inj.injected_calls, inj.sigmas))
    (float_outs, float_calls, float_levels), (tensor_outs, tensor_calls, tensor_levels) = results
    assert float_levels == tensor_levels == [0.5, 1.0, 2.0]
    assert float_calls == tensor_calls == 4 + 2  # layer a at every level, layer b at 1.6 and 5.0 (nearest 2.0)
    for f, t in zip(float_outs, tensor_outs):
        assert all(torch.equal(x, y) for x, y in zip(f, t))


def test_no_host_sync_per_attention_call_and_none_more_with_steps(monkeypatch):
    counts = {}
    for steps in (3, 6):
        counter = count_syncs(monkeypatch)
        _, inj, attention_calls = sfi_block(True, steps=steps)
        before_inject = counter["n"]
        assert attention_calls == 2 * steps * 4  # inversion + denoising calls x 4 layers
        counts[steps] = before_inject
        print("syncs per SFI block run", steps, "steps:", before_inject)
        monkeypatch.undo()
    # per run: the schedule read once per DDIM loop, its checks, and one read of the recorded levels
    assert counts[3] == counts[6]
    # per attention call: zero (the old float(sigma) per call made it grow by one per call)
    counter = count_syncs(monkeypatch)
    inj = FeatureInjection(1.0, 0.0, 1.0)
    x = torch.randn(2, 5, 8)
    inj.set_mode("record")
    for sigma in (1.0, 0.5):
        before = counter["n"]
        inj.qkv(x, x, x, layer=0, depth=0.5, sigma=torch.tensor(sigma))
        assert counter["n"] == before
    inj.set_mode("inject")  # reads the recorded levels: the one sync of the run
    before = counter["n"]
    for sigma in (1.0, 0.7, 0.5):
        inj.qkv(x, x, x, layer=0, depth=0.5, sigma=torch.tensor(sigma))
    assert counter["n"] == before
    monkeypatch.undo()
    assert inj.injected_calls == 3
