"""ZVRD sampler-side nodes inside real ComfyUI (tiny SD1.5 and Wan 2.1 models): Temporal Consistency Guider,
Shared Noise, Shared Noise Sampler, Early Stop Sampler / Sigmas.

No tiny CLIP vision checkpoint exists in the harness (ComfyUI fixes CLIP vision sizes): the semantic term is tested
in tests/test_guidance.py with a stand-in encoder, and here through the node's CLIP vision adapter with a stand-in
module that has CLIP vision's interface.
"""

import pytest
import torch
from video_enhance_kit.samplers.guidance import pixel_consistency_loss
from video_enhance_kit.utils.flow import VideoFlow

STEPS = 3
VP = "variance_preserving"


@pytest.fixture(scope="module")
def host(comfy_host):
    """The harness's ComfyUI (tests/host/conftest.py)."""
    return comfy_host


@pytest.fixture(scope="module")
def InputError(pack):
    """The pack's InputError as ComfyUI imported it (the pack loads under its folder's module name)."""
    return pack("utils.checks").InputError


@pytest.fixture(scope="module")
def sd15(host):
    model, clip, vae = host.run_node("CheckpointLoaderSimple", ckpt_name="vek-tiny-sd15.safetensors")
    pos, = host.run_node("CLIPTextEncode", clip=clip, text="a sharp photo")
    neg, = host.run_node("CLIPTextEncode", clip=clip, text="blurry")
    latent = {"samples": torch.randn(3, 4, 8, 8, generator=torch.Generator().manual_seed(0))}
    return {"model": model, "positive": pos, "negative": neg, "vae": vae, "latent": latent, "flow": pan_flow(3, 64, 64, 8.0)}


@pytest.fixture(scope="module")
def wan(host):
    model, = host.run_node("UNETLoader", unet_name="vek-tiny-wan21.safetensors", weight_dtype="default")
    clip, = host.run_node("CLIPLoader", clip_name="vek-tiny-clip-l.safetensors", type="sd3")
    pos, = host.run_node("CLIPTextEncode", clip=clip, text="a sharp video")
    neg, = host.run_node("CLIPTextEncode", clip=clip, text="")
    latent = {"samples": torch.randn(1, 16, 3, 8, 8, generator=torch.Generator().manual_seed(1))}
    return {"model": model, "positive": pos, "negative": neg, "latent": latent, "flow": pan_flow(9, 64, 64, 2.0)}  # 9 frames -> T = 3


def pan_flow(frames, h, w, dx):
    """A VideoFlow of a pan right by dx px per frame (backward flow -dx), all valid."""
    fwd = torch.zeros(frames - 1, 2, h, w)
    fwd[:, 0] = dx
    ones = torch.ones(frames - 1, 1, h, w)
    return VideoFlow(fwd, -fwd, ones, ones.clone())


def parts(host, m, sampler_name="euler_ancestral"):
    noise, = host.run_node("RandomNoise", noise_seed=7)
    guider, = host.run_node("CFGGuider", model=m["model"], positive=m["positive"], negative=m["negative"], cfg=3.0)
    sampler, = host.run_node("KSamplerSelect", sampler_name=sampler_name)
    sigmas, = host.run_node("BasicScheduler", model=m["model"], scheduler="simple", steps=STEPS, denoise=1.0)
    return noise, guider, sampler, sigmas


def sample(host, m, noise, guider, sampler, sigmas):
    out, denoised = host.run_node("SamplerCustomAdvanced", noise=noise, guider=guider, sampler=sampler, sigmas=sigmas,
                                  latent_image=m["latent"])
    return out["samples"], denoised["samples"]


def guide(host, guider, scale=0.2, **kw):
    args = {"guider": guider, "guidance_scale": scale, "semantic_weight": 1.0, "pixel_start": 0.0, "loss_space": "latent"}
    args.update(kw)
    return host.run_node("VEK_TemporalConsistencyGuider", **args)[0]


def snapshot(model):
    return repr(model.model_options), {k: v.clone() for k, v in list(model.model.state_dict().items())[:4]}


def same(a, b):
    return a[0] == b[0] and all(torch.equal(a[1][k], b[1][k]) for k in a[1])


@pytest.mark.parametrize("family", ["sd15", "wan"])
def test_guider_zero_scale_bit_identical_and_scale_changes_result(request, host, family):
    m = request.getfixturevalue(family)
    before = snapshot(m["model"])
    noise, guider, sampler, sigmas = parts(host, m)
    plain, _ = sample(host, m, noise, guider, sampler, sigmas)
    off, _ = sample(host, m, noise, guide(host, guider, 0.0, flow=m["flow"]), sampler, sigmas)
    assert torch.equal(off, plain)
    on, _ = sample(host, m, noise, guide(host, guider, 0.2, flow=m["flow"]), sampler, sigmas)
    assert on.shape == plain.shape and torch.isfinite(on).all()
    assert not torch.equal(on, plain)
    assert same(before, snapshot(m["model"]))  # the input model is unchanged
    assert "transformer_options" not in guider.model_options or "wrappers" not in guider.model_options["transformer_options"] \
        or not guider.model_options["transformer_options"]["wrappers"].get("predict_noise")


def test_guider_calls_model_once_per_step_and_lowers_flicker(host, sd15):
    calls = []
    counted = sd15["model"].clone()

    def count(apply_model, args):
        calls.append(torch.is_grad_enabled())
        return apply_model(args["input"], args["timestep"], **args["c"])

    counted.set_model_unet_function_wrapper(count)
    m = dict(sd15, model=counted)
    noise, guider, sampler, sigmas = parts(host, m, "euler")
    plain, _ = sample(host, m, noise, guider, sampler, sigmas)
    plain_calls = len(calls)
    guided, _ = sample(host, m, noise, guide(host, guider, 0.3, flow=sd15["flow"]), sampler, sigmas)
    assert len(calls) == 2 * plain_calls and plain_calls >= STEPS
    assert not any(calls)  # never differentiated
    flow = sd15["flow"].resized((8, 8))
    loss = [float(pixel_consistency_loss(x, flow.backward, flow.valid_backward)) for x in (plain, guided)]
    assert loss[1] < loss[0]


def test_guider_reestimates_flow_and_pixel_space(host, sd15):
    noise, guider, sampler, sigmas = parts(host, sd15)
    plain, _ = sample(host, sd15, noise, guider, sampler, sigmas)
    est, _ = sample(host, sd15, noise, guide(host, guider, 0.2), sampler, sigmas)  # no flow: estimated from x0
    assert not torch.equal(est, plain) and torch.isfinite(est).all()
    pix, _ = sample(host, sd15, noise, guide(host, guider, 0.2, loss_space="pixel", vae=sd15["vae"], flow=sd15["flow"]),
                    sampler, sigmas)
    assert not torch.equal(pix, plain) and torch.isfinite(pix).all()


def test_guider_errors(host, sd15, InputError):
    _, guider, _, _ = parts(host, sd15)
    with pytest.raises(InputError, match="vae"):
        guide(host, guider, loss_space="pixel")
    with pytest.raises(InputError, match="guidance_scale"):
        guide(host, guider, scale=-1.0)
    with pytest.raises(InputError, match="guider"):
        guide(host, "not a guider")
    with pytest.raises(InputError, match="flow"):
        guide(host, guider, flow=torch.zeros(2, 2, 8, 8))
    with pytest.raises(InputError, match="flow"):
        host.run_node("VEK_SharedNoise", noise_seed=1, share_weight=1.0, blend_lambda=0.5, blend_mode=VP, flow="x")
    noise, guider, sampler, sigmas = parts(host, sd15)
    one = dict(sd15, latent={"samples": torch.zeros(1, 4, 8, 8)})
    with pytest.raises(InputError, match="latent_image"):
        sample(host, one, noise, guide(host, guider), sampler, sigmas)


@pytest.mark.parametrize("family", ["sd15", "wan"])
def test_shared_noise_identical_across_frames_and_off_equals_random_noise(request, host, family):
    m = request.getfixturevalue(family)
    shared, = host.run_node("VEK_SharedNoise", noise_seed=7, share_weight=1.0, blend_lambda=0.5, blend_mode=VP)
    z = shared.generate_noise(m["latent"])
    frames = z if z.ndim == 4 else z[0].movedim(1, 0)
    assert all(torch.equal(frames[i], frames[0]) for i in range(frames.shape[0]))
    off, = host.run_node("VEK_SharedNoise", noise_seed=7, share_weight=0.0, blend_lambda=1.0, blend_mode=VP)
    rnd, = host.run_node("RandomNoise", noise_seed=7)
    assert torch.equal(off.generate_noise(m["latent"]), rnd.generate_noise(m["latent"]))
    flowed, = host.run_node("VEK_SharedNoise", noise_seed=7, share_weight=0.0, blend_lambda=0.5, blend_mode=VP, flow=m["flow"])
    zf = flowed.generate_noise(m["latent"])
    assert zf.shape == z.shape and not torch.equal(zf, off.generate_noise(m["latent"]))
    per, = host.run_node("VEK_SharedNoise", noise_seed=7, share_weight=0.0, blend_lambda=1.0, blend_mode=VP, frame_weights="0, 1")
    zp = per.generate_noise(m["latent"])
    fp = zp if zp.ndim == 4 else zp[0].movedim(1, 0)
    assert torch.equal(fp[1], fp[0]) and torch.equal(fp[2], fp[0])  # the last weight repeats


@pytest.mark.parametrize("family", ["sd15", "wan"])
def test_shared_noise_sampler_off_equals_wrapped_and_on_changes(request, host, family):
    m = request.getfixturevalue(family)
    noise, guider, sampler, sigmas = parts(host, m)
    plain, _ = sample(host, m, noise, guider, sampler, sigmas)
    off, = host.run_node("VEK_SharedNoiseSampler", sampler=sampler, share_weight=0.0, blend_lambda=1.0, blend_mode=VP, flow=m["flow"])
    assert torch.equal(sample(host, m, noise, guider, off, sigmas)[0], plain)
    on, = host.run_node("VEK_SharedNoiseSampler", sampler=sampler, share_weight=1.0, blend_lambda=0.5, blend_mode=VP, flow=m["flow"])
    out = sample(host, m, noise, guider, on, sigmas)[0]
    assert torch.isfinite(out).all() and not torch.equal(out, plain)
    euler, = host.run_node("KSamplerSelect", sampler_name="euler")
    same_sampler, = host.run_node("VEK_SharedNoiseSampler", sampler=euler, share_weight=1.0, blend_lambda=0.5, blend_mode=VP)
    assert same_sampler is euler  # deterministic: no per-step noise to share


@pytest.mark.parametrize("family", ["sd15", "wan"])
def test_early_stop_equals_denoised_of_truncated_run(request, host, family, InputError):
    m = request.getfixturevalue(family)
    noise, guider, sampler, sigmas = parts(host, m)
    for k in (1, 2):
        early, = host.run_node("VEK_EarlyStopSampler", sampler=sampler, stop_step=k, stop_sigma=0.0, stop_fraction=1.0)
        out, den = sample(host, m, noise, guider, early, sigmas)
        cut, = host.run_node("VEK_EarlyStopSigmas", sigmas=sigmas, stop_step=k, stop_sigma=0.0, stop_fraction=1.0)
        assert torch.equal(cut, sigmas[: k + 1])
        _, ref = sample(host, m, noise, guider, sampler, cut)
        assert torch.equal(out, ref) and torch.equal(den, ref)
    with pytest.raises(InputError, match="stop_fraction"):
        host.run_node("VEK_EarlyStopSampler", sampler=sampler, stop_step=0, stop_sigma=0.0, stop_fraction=0.0)
    with pytest.raises(InputError, match="sampler"):
        host.run_node("VEK_EarlyStopSampler", sampler="euler", stop_step=1, stop_sigma=0.0, stop_fraction=1.0)


class _StandInVision(torch.nn.Module):
    """A tiny module with CLIPVisionModelProjection's call signature: returns (hidden, intermediate, image_embeds)."""

    def __init__(self):
        super().__init__()
        self.conv = torch.nn.Conv2d(3, 8, 4, stride=4)

    def forward(self, pixel_values, intermediate_output=None):
        h = torch.relu(self.conv(pixel_values))
        return h, h, h.mean((2, 3))


def test_guider_semantic_term_through_clip_vision_adapter(host, sd15):
    """No tiny CLIP vision checkpoint exists: a stand-in with CLIP vision's interface (weights made in inference mode,
    as ComfyUI loads them) checks the node's differentiable preprocessing and the semantic term end to end."""
    import comfy.model_patcher

    with torch.inference_mode():
        module = _StandInVision()
    vision = type("StandInClipVision", (), {})()
    vision.model = module
    vision.patcher = comfy.model_patcher.ModelPatcher(module, load_device=torch.device("cpu"), offload_device=torch.device("cpu"))
    vision.image_size, vision.image_mean, vision.image_std = 32, [0.5, 0.5, 0.5], [0.25, 0.25, 0.25]
    vision.load_device = torch.device("cpu")
    noise, guider, sampler, sigmas = parts(host, sd15)
    plain, _ = sample(host, sd15, noise, guider, sampler, sigmas)
    # pixel_start 1: no flow term at all, so any change comes from the semantic term
    sem, _ = sample(host, sd15, noise, guide(host, guider, 0.2, pixel_start=1.0, clip_vision=vision), sampler, sigmas)
    assert torch.isfinite(sem).all() and not torch.equal(sem, plain)
    off, _ = sample(host, sd15, noise, guide(host, guider, 0.2, pixel_start=1.0, semantic_weight=0.0, clip_vision=vision),
                    sampler, sigmas)
    assert torch.equal(off, plain)
    assert all(p.grad is None for p in module.parameters())


def test_guider_pixel_space_on_video_latent(host, wan):
    """Pixel loss on a 5-D latent: each latent frame is decoded on its own by the (causal) Wan VAE, differentiably."""
    vae, = host.run_node("VAELoader", vae_name="vek-tiny-wan21-vae.safetensors")
    noise, guider, sampler, sigmas = parts(host, wan, "euler")
    short, = host.run_node("VEK_EarlyStopSigmas", sigmas=sigmas, stop_step=2, stop_sigma=0.0, stop_fraction=1.0)
    plain, _ = sample(host, wan, noise, guider, sampler, short)
    pix, _ = sample(host, wan, noise, guide(host, guider, 0.2, loss_space="pixel", vae=vae, flow=wan["flow"]), sampler, short)
    assert pix.shape == plain.shape and torch.isfinite(pix).all() and not torch.equal(pix, plain)


@pytest.mark.parametrize("kind", ["BasicGuider", "DualCFGGuider"])
def test_guider_wraps_other_guiders(host, sd15, kind):
    noise, _, sampler, sigmas = parts(host, sd15)
    if kind == "BasicGuider":
        inner, = host.run_node("BasicGuider", model=sd15["model"], conditioning=sd15["positive"])
    else:
        inner, = host.run_node("DualCFGGuider", model=sd15["model"], cond1=sd15["positive"], cond2=sd15["negative"],
                               negative=sd15["negative"], cfg_conds=3.0, cfg_cond2_negative=2.0, style="regular")
    plain, _ = sample(host, sd15, noise, inner, sampler, sigmas)
    assert torch.equal(sample(host, sd15, noise, guide(host, inner, 0.0, flow=sd15["flow"]), sampler, sigmas)[0], plain)
    on, _ = sample(host, sd15, noise, guide(host, inner, 0.2, flow=sd15["flow"]), sampler, sigmas)
    assert torch.isfinite(on).all() and not torch.equal(on, plain)
