"""Nodes that take a MODEL with a LATENT, CONDITIONING or VAE check up front that they belong together (nodes/_compat.py),
and every seed a seed widget allows runs (issue 16, item 1). Tiny SD1.5 and Wan 2.1 in real ComfyUI.

Each bad input of the issue gives an InputError naming the input, and none of torch's own messages.
"""

import pytest
import torch

MAX_SEED = 0xFFFFFFFFFFFFFFFF
TORCH_PHRASES = ("mat1 and mat2", "size of tensor", "Expected 3D", "Overflow", "tuple index")
DIMS2, GUIDED = "2d (per frame)", "guided (cfg)"


@pytest.fixture(scope="module")
def sd15(run_node):
    torch.set_num_threads(1)
    model, clip, vae = run_node("CheckpointLoaderSimple", ckpt_name="vek-tiny-sd15.safetensors")
    (pos,) = run_node("CLIPTextEncode", clip=clip, text="a sharp photo")
    (neg,) = run_node("CLIPTextEncode", clip=clip, text="blurry")
    latent = {"samples": torch.randn(3, 4, 8, 8, generator=torch.Generator().manual_seed(0))}
    return dict(model=model, positive=pos, negative=neg, vae=vae, latent=latent)


@pytest.fixture(scope="module")
def wan(run_node):
    (model,) = run_node("UNETLoader", unet_name="vek-tiny-wan21.safetensors", weight_dtype="default")
    (vae,) = run_node("VAELoader", vae_name="vek-tiny-wan21-vae.safetensors")
    # Wan's text encoder in tiny runs: the tiny CLIP-L loaded as type "sd3" (what the runner substitutes for type "wan"), 4096 wide
    (clip,) = run_node("CLIPLoader", clip_name="vek-tiny-clip-l.safetensors", type="sd3")
    (pos,) = run_node("CLIPTextEncode", clip=clip, text="a sharp video")
    (neg,) = run_node("CLIPTextEncode", clip=clip, text="")
    latent = {"samples": torch.randn(1, 16, 2, 8, 8, generator=torch.Generator().manual_seed(1))}
    return dict(model=model, positive=pos, negative=neg, vae=vae, latent=latent)


def refine(run_node, m, **kw):
    args = dict(model=m["model"], positive=m["positive"], negative=m["negative"], latent_image=m["latent"], seed=5, steps=2, cfg=3.0,
                sampler_name="ddim", scheduler="normal", denoise=0.6, iterations=1, cutoff=1.0, mask="ideal_reference", dims=DIMS2,
                calibrate_with=GUIDED)
    args.update(kw)
    return run_node("VEK_NCSDEditRefine", **args)[0]


def evs(run_node, t2i, t2v, **kw):
    args = {"t2i_model": t2i["model"], "t2i_positive": t2i["positive"], "t2i_negative": t2i["negative"], "t2v_model": t2v["model"],
            "t2v_positive": t2v["positive"], "t2v_negative": t2v["negative"], "seed": 5, "t2i_steps": 10, "t2i_strength": 0.4, "t2v_at": 0.2,
            "t2i_sampler": "ddim", "t2i_scheduler": "ddim_uniform", "t2i_cfg": 3.0, "t2v_steps": 4, "t2v_strength": 0.5, "t2v_block_steps": 0,
            "t2v_sampler": "euler", "t2v_scheduler": "simple", "t2v_cfg": 1.0, "t2v_enabled": True, "sfi": False, "sfi_gamma": 0.8,
            "sfi_depth_min": 0.0, "sfi_depth_max": 1.0,
            "latent": {"samples": torch.randn(5, 4, 2, 2, generator=torch.Generator().manual_seed(2))}}
    args.update(kw)
    return run_node("VEK_EVSSampler", **args)


def assert_named(call, name: str, *fragments: str) -> str:
    """``call()`` raises an error naming input ``name`` (and the fragments), free of torch's own messages."""
    with pytest.raises(ValueError) as err:
        call()
    message = str(err.value)
    assert f"input '{name}'" in message, message
    assert not any(p in message for p in TORCH_PHRASES), message
    for fragment in fragments:
        assert fragment in message, (fragment, message)
    return message


# ---------------------------------------------------------------------------------------------- NC-SDEdit Refine


def test_refine_wan_model_with_an_sd15_latent(run_node, wan, sd15):
    msg = assert_named(lambda: refine(run_node, wan, latent_image=sd15["latent"]), "latent_image", "4 channels", "Wan 2.1", "16-channel")
    assert "VAE" in msg


def test_refine_conditioning_of_another_text_encoder(run_node, sd15, wan):
    msg = assert_named(lambda: refine(run_node, sd15, positive=wan["positive"]), "positive", "4096 wide", "SD1.5", "768 (CLIP-L)")
    assert "checkpoint's CLIP" in msg
    assert_named(lambda: refine(run_node, wan, negative=sd15["negative"]), "negative", "768 wide", "takes 4096", "CLIPLoader type 'wan'")


def test_refine_video_latent_for_an_image_model(run_node, sd15):
    five_d = {"samples": torch.randn(1, 4, 3, 8, 8)}
    assert_named(lambda: refine(run_node, sd15, latent_image=five_d), "latent_image", "5-D", "takes 4-D")


def test_refine_largest_seed_runs_and_lower_seeds_match_ksampler(run_node, sd15):
    out = refine(run_node, sd15, seed=MAX_SEED)["samples"]
    assert out.shape == (3, 4, 8, 8) and torch.isfinite(out).all()
    assert not torch.equal(out, refine(run_node, sd15, seed=0)["samples"])  # the largest seed is not folded onto seed 0's noise
    seed = 2**63 - 1  # below 2**63: bit for bit what ComfyUI's KSampler gives (iterations 0)
    (ks,) = run_node("KSampler", model=sd15["model"], positive=sd15["positive"], negative=sd15["negative"], latent_image=sd15["latent"],
                     seed=seed, steps=2, cfg=3.0, sampler_name="ddim", scheduler="normal", denoise=0.6)
    assert torch.equal(refine(run_node, sd15, seed=seed, iterations=0)["samples"], ks["samples"])


def test_refine_largest_seed_with_every_noise_using_sampler(run_node, sd15):
    for sampler in ("euler_ancestral", "dpmpp_sde", "dpmpp_2m_sde"):
        assert torch.isfinite(refine(run_node, sd15, seed=MAX_SEED, sampler_name=sampler)["samples"]).all()


# ---------------------------------------------------------------------------------------------- EVS Sampler


def test_evs_conditioning_of_another_text_encoder(run_node, sd15, wan):
    bridge = {"t2i_vae": sd15["vae"], "t2v_vae": wan["vae"]}
    assert_named(lambda: evs(run_node, sd15, wan, t2i_positive=wan["positive"], **bridge), "t2i_positive", "4096 wide", "SD1.5 t2i_model")
    assert_named(lambda: evs(run_node, sd15, wan, t2v_negative=sd15["negative"], **bridge), "t2v_negative", "768 wide", "Wan 2.1 t2v_model")
    assert_named(lambda: evs(run_node, sd15, sd15, t2v_positive=wan["positive"]), "t2v_positive", "4096 wide")


def test_evs_vae_of_another_family(run_node, sd15, wan):
    assert_named(lambda: evs(run_node, sd15, wan, t2i_vae=wan["vae"], t2v_vae=wan["vae"]), "t2i_vae", "16-channel video latents", "SD1.5")
    assert_named(lambda: evs(run_node, sd15, wan, t2i_vae=sd15["vae"], t2v_vae=sd15["vae"]), "t2v_vae", "4-channel image latents", "Wan 2.1")
    images = torch.rand(3, 16, 16, 3)
    assert_named(lambda: evs(run_node, sd15, sd15, latent=None, images=images, t2i_vae=wan["vae"]), "t2i_vae")


def test_evs_latent_of_another_family(run_node, sd15, wan):
    assert_named(lambda: evs(run_node, sd15, sd15, latent={"samples": torch.randn(3, 16, 4, 4)}), "latent", "16 channels", "t2i_model")
    assert_named(lambda: evs(run_node, sd15, sd15, latent=wan["latent"]), "latent", "5-D")


def test_evs_largest_seed_runs(run_node, sd15, wan):
    out, _ = evs(run_node, sd15, sd15, seed=MAX_SEED, t2v_scheduler="sgm_uniform", t2v_sampler="euler_ancestral",
                 latent={"samples": torch.randn(3, 4, 4, 4, generator=torch.Generator().manual_seed(0))})
    assert out["samples"].shape == (3, 4, 4, 4) and torch.isfinite(out["samples"]).all()
    out, _ = evs(run_node, sd15, wan, seed=MAX_SEED, sfi=True, t2i_vae=sd15["vae"], t2v_vae=wan["vae"])
    assert torch.isfinite(out["samples"]).all()


# ---------------------------------------------------------------------------------------------- the other nodes


def test_shared_noise_largest_seed_with_ddim(run_node, sd15):
    (noise,) = run_node("VEK_SharedNoise", noise_seed=MAX_SEED, share_weight=0.5, blend_lambda=0.2, blend_mode="variance_preserving")
    (guider,) = run_node("CFGGuider", model=sd15["model"], positive=sd15["positive"], negative=sd15["negative"], cfg=3.0)
    (sampler,) = run_node("KSamplerSelect", sampler_name="ddim")
    (sigmas,) = run_node("BasicScheduler", model=sd15["model"], scheduler="normal", steps=2, denoise=0.6)
    out, _ = run_node("SamplerCustomAdvanced", noise=noise, guider=guider, sampler=sampler, sigmas=sigmas, latent_image=sd15["latent"])
    assert torch.isfinite(out["samples"]).all()


def test_temporal_guider_vae_of_another_family(run_node, sd15, wan):
    (guider,) = run_node("CFGGuider", model=sd15["model"], positive=sd15["positive"], negative=sd15["negative"], cfg=3.0)
    assert_named(lambda: run_node("VEK_TemporalConsistencyGuider", guider=guider, guidance_scale=0.2, semantic_weight=1.0, pixel_start=0.7,
                                  loss_space="pixel", vae=wan["vae"]), "vae", "SD1.5")


def test_compat_helpers_read_the_models(pack, sd15, wan):
    compat = pack("nodes._compat")
    assert compat.context_width(sd15["model"]) == 768 and compat.context_width(wan["model"]) == 4096
    assert compat.family(sd15["model"]) == "SD1.5" and compat.family(wan["model"]) == "Wan 2.1"
    assert [compat.sampler_seed(s) for s in (0, 5, 2**63, MAX_SEED - 1, MAX_SEED)] == [0, 5, 2**63, MAX_SEED - 1, 0]
    compat.check_conditioning(object(), sd15["positive"], "positive")  # a model whose width cannot be known: not checked
