"""VEnhancer as native pieces inside real ComfyUI (tiny VEnhancer, TAESD, CLIP-L): equivalence with the faithful sampler,
ComfyUI samplers, the pack's sampler wrappers, windows, Cancel, previews and bad inputs."""

import functools

import pytest
import torch
from video_enhance_kit.host import describe_missing_comfyui, find_comfyui

if find_comfyui() is None:
    pytest.skip(describe_missing_comfyui(), allow_module_level=True)

from video_enhance_kit.host import tiny as tm

TINY = "vek-tiny-venhancer.safetensors"
SEED = 5


@pytest.fixture(scope="module")
def parts(comfy_host, run_node):
    torch.set_num_threads(1)
    comfy_host.install_tiny_models()
    (model,) = run_node("VEK_VEnhancerModelLoader", ckpt_name=TINY, dtype="fp32")
    (vae,) = run_node("VAELoader", vae_name=tm.TAESD_VAE)
    (clip,) = run_node("CLIPLoader", clip_name=tm.CLIP_L, type="stable_diffusion")
    (pos,) = run_node("CLIPTextEncode", clip=clip, text="a disc orbiting over a texture")
    (neg,) = run_node("CLIPTextEncode", clip=clip, text="blurring, lowres")
    return {"model": model, "vae": vae, "positive": pos, "negative": neg}


def clip(frames=3, h=24, w=32, seed=0):
    return torch.rand(frames, h, w, 3, generator=torch.Generator().manual_seed(seed))


def condition(run_node, parts, images, **kw):
    args = dict(positive=parts["positive"], negative=parts["negative"], vae=parts["vae"], images=images, fps=8.0, up_scale=1.0,
                resolution_rule="exact", target_fps=0.0, frame_interpolation=1, noise_aug=200, s_cond=8.0, padding="minimal", seed=SEED)
    args.update(kw)
    return run_node("VEK_VEnhancerConditioning", **args)


def native(run_node, model, pos, neg, latent, sigmas, cfg=2.0, sampler_name="dpmpp_2m_sde", eta=None, seed=SEED):
    (noise,) = run_node("RandomNoise", noise_seed=seed)
    (guider,) = run_node("CFGGuider", model=model, positive=pos, negative=neg, cfg=cfg)
    if eta is None:
        (sampler,) = run_node("KSamplerSelect", sampler_name=sampler_name)
    else:
        (sampler,) = run_node("SamplerDPMPP_2M_SDE", solver_type="midpoint", eta=eta, s_noise=1.0, noise_device="cpu")
    out, denoised = run_node("SamplerCustomAdvanced", noise=noise, guider=guider, sampler=sampler, sigmas=sigmas, latent_image=latent)
    return out, denoised


def faithful(pack, model, pos, neg, latent, cfg=2.0, eta=1.0, chunk_length=32, seed=SEED, mode="fast", steps=15):
    """The host-free reference: samplers/venhancer.venhancer_sample with the same noise, on the same network."""
    from comfy.k_diffusion.sampling import BrownianTreeNoiseSampler

    S = pack("samplers.venhancer")
    V = pack("models.venhancer")
    net = model.model.diffusion_model
    entry = pos[0][1]["venhancer"]
    lat = latent["samples"] * S.LATENT_SCALE
    inputs = S.VEnhancerInputs(lat, entry["mask_cond"], pos[0][0], neg[0][0], entry["interp"])
    sig = S.solver_sigmas(S.VEnhancerSchedule.official(), mode, steps)
    ns = BrownianTreeNoiseSampler(lat, sig[sig > 0].min(), sig.max(), seed=seed, cpu=True)
    with torch.no_grad():
        return S.venhancer_sample(functools.partial(V.VEnhancerUNet.forward, net), inputs, noise_aug=200, s_cond=8.0, cfg=cfg, eta=eta,
                                  generator=torch.Generator().manual_seed(seed), noise_sampler=ns, chunk_length=chunk_length, mode=mode, steps=steps)


def rel(a, b):
    return float((a - b).abs().max() / b.abs().max())


@pytest.mark.parametrize("eta,cfg", [(0.0, 2.0), (1.0, 2.0), (1.0, 1.0)])
def test_native_graph_equals_the_faithful_sampler(run_node, parts, pack, eta, cfg):
    pos, neg, latent = condition(run_node, parts, clip())
    (sigmas,) = run_node("VEK_VEnhancerSigmas", solver_mode="fast", steps=15, start_timestep=899)
    out, _ = native(run_node, parts["model"], pos, neg, latent, sigmas, eta=eta, cfg=cfg)
    ref = faithful(pack, parts["model"], pos, neg, latent, eta=eta, cfg=cfg)
    S = pack("samplers.venhancer")
    assert rel(out["samples"] * S.LATENT_SCALE, ref) < 1e-4
    assert out["venhancer"] == latent["venhancer"]


def test_native_windows_equal_the_faithful_chunked_sampler(run_node, parts, pack):
    model = parts["model"].clone()
    pack("nodes._venhancer_model").set_windows(model, 8, 0.5)
    pos, neg, latent = condition(run_node, parts, clip(frames=9, h=16, w=16))
    assert latent["samples"].shape[2] == 17  # 9 key frames, one new frame per gap: three 8-frame windows
    (sigmas,) = run_node("VEK_VEnhancerSigmas", solver_mode="fast", steps=15, start_timestep=899)
    out, _ = native(run_node, model, pos, neg, latent, sigmas)
    ref = faithful(pack, model, pos, neg, latent, chunk_length=8)
    whole = faithful(pack, model, pos, neg, latent, chunk_length=32)
    S = pack("samplers.venhancer")
    assert rel(out["samples"] * S.LATENT_SCALE, ref) < 1e-4
    assert rel(ref, whole) > 1e-3  # the windows change the result: the test sees them


def test_sigmas_node_gives_the_official_timesteps(run_node, parts, pack):
    ms = parts["model"].get_model_object("model_sampling")
    (fast,) = run_node("VEK_VEnhancerSigmas", solver_mode="fast", steps=15, start_timestep=899)
    (normal,) = run_node("VEK_VEnhancerSigmas", solver_mode="normal", steps=15, start_timestep=899)
    assert ms.timestep(fast[:-1]).long().tolist() == [899, 799, 699, 599, 500, 454, 409, 363, 318, 272, 227, 181, 136, 90]
    assert ms.timestep(normal[:-1]).long().tolist() == [899, 843, 786, 730, 674, 618, 562, 505, 449, 393, 336, 280, 224, 168, 112]
    assert float(fast[-1]) == 0.0 and float(fast[0]) == pytest.approx(23.4717, rel=1e-4)
    (top,) = run_node("VEK_VEnhancerSigmas", solver_mode="normal", steps=4, start_timestep=999)
    assert torch.isfinite(top).all() and float(top[0]) == pytest.approx(float(ms.sigma_max))


def test_comfyui_dpmpp_2m_sde_is_the_packs_algorithm(pack, comfy_host):
    """ComfyUI's sample_dpmpp_2m_sde and samplers/venhancer.sample_dpmpp_2m_sde on the same denoiser and noise."""
    import comfy.k_diffusion.sampling as K

    S = pack("samplers.venhancer")
    Mod = pack("nodes._venhancer_model")
    sigmas = S.solver_sigmas(S.VEnhancerSchedule.official(), "fast")
    g = torch.Generator().manual_seed(0)
    target, x = torch.randn(1, 4, 3, 6, 8, generator=g), torch.randn(1, 4, 3, 6, 8, generator=g) * sigmas[0]
    noises = [torch.randn(1, 4, 3, 6, 8, generator=g) for _ in sigmas]

    def denoise(v, s):
        return target + 0.3 * torch.tanh(v) * s / (1 + s)

    class Wrapped:  # what ComfyUI's sampler expects: model(x, sigma) and model.inner_model.model_patcher
        class inner_model:  # noqa: N801
            class model_patcher:  # noqa: N801
                get_model_object = staticmethod(lambda name: Mod.VEnhancerModelSampling())

        def __call__(self, v, s, **kw):
            return denoise(v, s.flatten()[0])

    for eta in (0.0, 1.0):
        it_a, it_b = iter(noises), iter(noises)
        ours = S.sample_dpmpp_2m_sde(denoise, x, sigmas, eta=eta, noise_sampler=lambda a, b: next(it_a))
        theirs = K.sample_dpmpp_2m_sde(Wrapped(), x, sigmas, eta=eta, noise_sampler=lambda a, b: next(it_b))
        assert rel(theirs, ours) < 1e-5
