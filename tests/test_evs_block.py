"""The EVS block as a sampler-function wrapper (samplers/evs_block.py) against the core composition, with stand-ins.

A stand-in host: a k-diffusion-style sampler function (DDIM) over a denoiser ``(x, sigma) -> x0`` and a model
object carrying the latent being refined, as ComfyUI's KSamplerX0Inpaint does.
"""

import importlib.util
from pathlib import Path

import pytest
import torch
from video_enhance_kit.attention.feature_injection import FeatureInjection
from video_enhance_kit.samplers.composition import (
    T2VBlock,
    ddim_runner,
    encapsulated_sample,
    identity_bridge,
    inversion,
    layout_bridge,
    vae_bridge,
)
from video_enhance_kit.samplers.ddim_inversion import ddim_sample
from video_enhance_kit.samplers.evs_block import BlockRun, encapsulated_sampler, t2v_index
from video_enhance_kit.samplers.noising import flow_rule, implied_noise, kdiffusion_rule, noised
from video_enhance_kit.utils.checks import InputError

torch.set_num_threads(1)
RULE = kdiffusion_rule


def sibling(name):
    """A sibling test module (the suite runs in importlib mode: no test directory on sys.path)."""
    spec = importlib.util.spec_from_file_location(f"vek_{name}", Path(__file__).with_name(f"{name}.py"))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


_comp = sibling("test_evs_composition")
Counter, image_denoiser, schedule, video, video_flow_denoiser = (_comp.Counter, _comp.image_denoiser, _comp.schedule, _comp.video,
                                                                  _comp.video_flow_denoiser)
TinyAttentionNet = sibling("test_evs_injection").TinyAttentionNet


class StandInModel:
    """What a sampler function is handed: a denoiser with the latent being refined (``latent_image``)."""

    def __init__(self, denoiser, latent):
        self.denoiser, self.latent_image, self.seen_latents = denoiser, latent, []

    def __call__(self, x, sigma):
        self.seen_latents.append(self.latent_image)
        return self.denoiser(x, sigma)


def ddim_function(model, x, sigmas, extra_args=None, callback=None, disable=None, **options):
    """A k-diffusion-style DDIM sampler function (the arithmetic of ddim_sample, with k-diffusion's callback)."""
    step = {"i": 0}

    def denoise(xx, sigma):
        x0 = model(xx, sigma)
        if callback is not None:
            callback({"x": xx, "i": step["i"], "sigma": sigma, "sigma_hat": sigma, "denoised": x0})
        step["i"] += 1
        return x0

    return ddim_sample(denoise, RULE, x, sigmas)[0]


def host_sample(function, denoiser, latent, noise, sigmas):
    """The host's KSAMPLER.sample: noise the latent to sigmas[0] and call the sampler function."""
    model = StandInModel(denoiser, latent)
    x = noised(latent, noise, *RULE(float(sigmas[0])))
    return function(model, x, sigmas, extra_args={}, callback=None), model


def begin_with(block, k, noise, events=None):
    def begin(model, x, sigmas, extra_args):
        latent = model.latent_image
        start = noised(latent, noise, *RULE(float(sigmas[0])))

        def set_latent(z):
            model.latent_image = z

        return BlockRun(latent, noise, start, lambda s, eps, x0: noised(x0, eps, *RULE(float(s))),
                        lambda x_t: implied_noise(x_t, latent, *RULE(float(sigmas[0]))), block, k, set_latent=set_latent,
                        after_block=(lambda: events.append("after_block")) if events is not None else (lambda: None))

    return begin


def sdedit_block(seed=3, bridge=None, steps=2, sfi=False):
    """A [T2V] block on a frame-mixing denoiser (SDEdit), or on TinyAttentionNet with inversion and SFI."""
    if sfi:
        net = TinyAttentionNet()
        injection = net.injection = FeatureInjection(1.0, 0.0, 1.0)
        counted = Counter(net)
        return T2VBlock(ddim_runner(counted, RULE), schedule(3, top=1.5), steps, invert=inversion(counted, RULE), injection=injection), counted
    mixer = Counter(lambda x, s: 0.5 * (x + x.mean(0, keepdim=True)) / (1 + float(s) ** 2) ** 0.5)
    noise = torch.randn(video(torch.Generator().manual_seed(seed)).shape, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)
    return T2VBlock(ddim_runner(mixer, RULE), schedule(3, top=1.5), steps, noise=noise, bridge=bridge or identity_bridge()), mixer


@pytest.mark.parametrize("k", [0, 2, 5])
@pytest.mark.parametrize("sfi", [False, True])
def test_wrapped_sampler_equals_the_core_composition_bit_for_bit(k, sfi):
    gen = torch.Generator().manual_seed(1)
    latent = video(gen)
    noise = torch.randn(latent.shape, generator=gen, dtype=torch.float64)
    sigmas, t2i = schedule(5), image_denoiser()
    block, _ = sdedit_block(sfi=sfi)
    ref = encapsulated_sample(latent, noise, sigmas, k, ddim_runner(t2i, RULE), block)
    out, _ = host_sample(encapsulated_sampler(ddim_function, begin_with(block, k, noise)), t2i, latent, noise, sigmas)
    assert torch.equal(out, ref)


def test_layout_and_vae_bridges_bit_for_bit():
    gen = torch.Generator().manual_seed(2)
    latent = video(gen, frames=5, channels=4)
    noise = torch.randn(latent.shape, generator=gen, dtype=torch.float64)
    sigmas, t2i = schedule(4), image_denoiser()
    vflow = video_flow_denoiser()
    w = torch.randn(3, 4, generator=gen, dtype=torch.float64)
    vae = vae_bridge(lambda z: torch.einsum("pc,fchw->fphw", w, z), lambda p: p.unsqueeze(0).transpose(1, 2) * 0.5,
                     lambda z: z[0].transpose(0, 1) * 2.0, lambda p: torch.einsum("cp,fphw->fchw", torch.linalg.pinv(w), p))
    for bridge in (layout_bridge(), vae):
        block = T2VBlock(ddim_runner(vflow, flow_rule), torch.tensor([0.6, 0.3, 0.0], dtype=torch.float64), 2,
                         noise=lambda z: torch.ones_like(z) * 0.1, bridge=bridge)
        ref = encapsulated_sample(latent, noise, sigmas, 2, ddim_runner(t2i, RULE), block)
        out, _ = host_sample(encapsulated_sampler(ddim_function, begin_with(block, 2, noise)), t2i, latent, noise, sigmas)
        assert torch.equal(out, ref)


def test_guided_denoiser_and_shared_noise_act_on_both_t2i_stages():
    """A stand-in for a guider (Temporal Consistency: every x0 pulled toward the frames' mean) and Shared Noise."""
    gen = torch.Generator().manual_seed(4)
    latent = video(gen)
    shared = torch.randn(1, *latent.shape[1:], generator=gen, dtype=torch.float64).expand_as(latent).clone()
    sigmas, t2i = schedule(5), image_denoiser()
    block, _ = sdedit_block()

    def guided(x, s):
        x0 = t2i(x, s)
        return x0 + 0.3 * (x0.mean(0, keepdim=True) - x0)

    ref = encapsulated_sample(latent, shared, sigmas, 2, ddim_runner(guided, RULE), block)
    out, model = host_sample(encapsulated_sampler(ddim_function, begin_with(block, 2, shared)), guided, latent, shared, sigmas)
    plain, _ = host_sample(encapsulated_sampler(ddim_function, begin_with(block, 2, shared)), t2i, latent, shared, sigmas)
    assert torch.equal(out, ref)
    assert (out - plain).abs().max() > 1e-3
    # the last stage refines the block's output, and the host's latent is handed back afterwards
    assert model.seen_latents[0] is latent and model.seen_latents[-1] is not latent and model.latent_image is latent


@pytest.mark.parametrize("sfi", [False, True])
def test_model_calls_whatever_wraps_the_block(sfi):
    gen = torch.Generator().manual_seed(5)
    latent = video(gen)
    noise = torch.randn(latent.shape, generator=gen, dtype=torch.float64)
    sigmas, t2i = schedule(6), Counter(image_denoiser())
    block, t2v = sdedit_block(sfi=sfi, steps=2)
    events = []
    inner = encapsulated_sampler(ddim_function, begin_with(block, 3, noise, events))

    def outer(model, x, sigmas, extra_args=None, callback=None, disable=None, **options):  # a wrapper with one call of its own
        model(x, sigmas[0])
        return inner(model, x, sigmas, extra_args=extra_args, callback=callback, disable=disable, **options)

    host_sample(outer, t2i, latent, noise, sigmas)
    assert t2i.calls == 6 + 1  # every T2I step once (3 before the block, 3 after) + the wrapper's own
    assert t2v.calls == 2 + (3 if sfi else 0)  # n_V (+ the inversion over the 3-step T2V schedule)
    assert events == ["after_block"]


def test_callbacks_carry_the_whole_schedules_step_index():
    gen = torch.Generator().manual_seed(6)
    latent = video(gen)
    noise = torch.randn(latent.shape, generator=gen, dtype=torch.float64)
    block, _ = sdedit_block()
    steps = []
    fn = encapsulated_sampler(ddim_function, begin_with(block, 2, noise))
    x = noised(latent, noise, *RULE(3.0))
    fn(StandInModel(image_denoiser(), latent), x, schedule(5), callback=lambda info: steps.append(info["i"]))
    assert steps == [0, 1, 2, 3, 4]


def test_a_start_changed_by_a_wrapper_re_enters_with_the_noise_it_implies():
    """A wrapper outside the block that changes the start (Noise Calibration): the re-entry eps is the one that start implies."""
    gen = torch.Generator().manual_seed(7)
    latent = video(gen)
    noise = torch.randn(latent.shape, generator=gen, dtype=torch.float64)
    calibrated = noise + 0.25
    sigmas, t2i = schedule(5), image_denoiser()
    block, _ = sdedit_block()
    fn = encapsulated_sampler(ddim_function, begin_with(block, 2, noise))
    x = noised(latent, calibrated, *RULE(3.0))
    out = fn(StandInModel(t2i, latent), x, sigmas)
    ref = encapsulated_sample(latent, calibrated, sigmas, 2, ddim_runner(t2i, RULE), block)
    assert torch.allclose(out, ref, atol=1e-9) and not torch.equal(calibrated, noise)


def test_t2v_index_places_the_block_and_names_t2v_at():
    levels = [3.0, 2.0, 1.0, 0.5, 0.0]
    assert t2v_index(levels, 3.0) == 0 and t2v_index(levels, 2.5) == 1 and t2v_index(levels, 2.0) == 1
    assert t2v_index(levels, 0.7) == 3 and t2v_index(levels, 0.0) == 4
    assert t2v_index(levels, 3.5, ceiling=4.0) == 0
    with pytest.raises(InputError, match="input 't2v_at'.*above the SIGMAS' start"):
        t2v_index(levels, 3.5)


def test_options_the_wrapped_sampler_does_not_take_are_dropped():
    """An outer wrapper's option (Shared Noise Sampler's noise_sampler) reaches a sampler that takes it, not one that does not."""
    gen = torch.Generator().manual_seed(8)
    latent = video(gen)
    noise = torch.randn(latent.shape, generator=gen, dtype=torch.float64)
    block, _ = sdedit_block()
    seen = []

    def taking(model, x, sigmas, extra_args=None, callback=None, disable=None, noise_sampler=None):
        seen.append(noise_sampler)
        return ddim_function(model, x, sigmas, extra_args, callback, disable)

    def strict(model, x, sigmas, extra_args=None, callback=None, disable=None):  # as k-diffusion's sample_euler: no **options
        return ddim_function(model, x, sigmas, extra_args, callback, disable)

    x = noised(latent, noise, *RULE(3.0))
    for inner in (strict, taking):
        fn = encapsulated_sampler(inner, begin_with(block, 2, noise))
        fn(StandInModel(image_denoiser(), latent), x, schedule(5), noise_sampler="shared")
    assert seen == ["shared", "shared"]  # strict (no such option) ran without it (a TypeError else); `taking` got it on both stages
