"""The model families the README names, as tiny models ComfyUI detects (host/tiny_families.py): loading,
Noise Calibration on each, SLR attention on SDXL's and SD2.x's decoder layouts, EVS with SDXL / Flux as T2I
and Wan 2.2 as T2V through the VAE bridge."""

import pytest
import torch
from video_enhance_kit.host import tiny_families as tf

DIMS2, DIMS3 = "2d (per frame)", "3d (spatio-temporal)"
STEPS = 3

#: family -> (file, latent shape, conditioning width, pooled width, NC dims); LTX-Video's T5 encoder also gives the token mask
MASK = {"attention_mask": torch.ones(1, 4, dtype=torch.long)}
FAMILIES = {
    "sdxl": (tf.SDXL_MODEL, (2, 4, 8, 8), 2048, 1280, DIMS2),
    "sd21v": (tf.SD21V_MODEL, (2, 4, 8, 8), 1024, None, DIMS2),
    "flux": (tf.FLUX_MODEL, (2, 16, 8, 8), 4096, 768, DIMS2),
    "ltxv": (tf.LTXV_MODEL, (1, 128, 2, 4, 4), 4096, None, DIMS3),
    "hunyuan_video": (tf.HUNYUAN_VIDEO_MODEL, (1, 16, 2, 8, 8), 4096, 768, DIMS3),
    "wan22": (tf.WAN22_MODEL, (1, 48, 2, 4, 4), 4096, None, DIMS3),
}


@pytest.fixture(scope="module")
def host(comfy_host):
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # the machine's cores are shared; restored for the modules after this one
    comfy_host.install_tiny_models(models=tf.family_models())
    yield comfy_host
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def load(host):
    """``load(filename)``: the family model (UNETLoader) or VAE (VAELoader) through ComfyUI's stock loaders, once."""
    cache = {}

    def get(name):
        if name not in cache:
            with tf.sized_loading():
                if tf.FAMILY_MODELS[name][0].folder == "vae":
                    cache[name], = host.run_node("VAELoader", vae_name=name)
                else:
                    cache[name], = host.run_node("UNETLoader", unet_name=name, weight_dtype="default")
        return cache[name]

    return get


def family(load, name):
    """model, positive, negative, latent of one family (conditioning tensors of the width its text encoder gives)."""
    filename, shape, width, pooled, dims = FAMILIES[name]
    latent = {"samples": torch.randn(shape, generator=torch.Generator().manual_seed(1))}
    extra = MASK if name == "ltxv" else {}
    return dict(model=load(filename), positive=tf.conditioning(width, seed=2, pooled=pooled, **extra),
                negative=tf.conditioning(width, seed=3, pooled=pooled, **extra), latent=latent, dims=dims)


@pytest.mark.parametrize("name", sorted(tf.FAMILY_MODELS))
def test_family_models_load_through_the_stock_loaders_as_their_family(host, load, name):
    model = load(name)
    expected = tf.FAMILY_MODELS[name][1]
    if expected is None:  # the VAEs
        channels, ratio = {tf.WAN22_VAE: (48, 16), tf.TAEF1_VAE: (16, 8)}[name]
        assert model.latent_channels == channels and model.spacial_compression_decode() == ratio
        if name == tf.WAN22_VAE:
            assert model.temporal_compression_decode() == 4 and type(model.first_stage_model).__module__ == "comfy.ldm.wan.vae2_2"
        return
    assert type(model.model.model_config).__name__ == expected
    assert tf.FAMILY_MODELS[name][0].folder == "diffusion_models" and name in host.object_info()["UNETLoader"]["input"]["required"]["unet_name"][0]


def test_sd21v_is_v_prediction_and_sdxl_is_eps(load):
    import comfy.model_base

    assert load(tf.SD21V_MODEL).model.model_type == comfy.model_base.ModelType.V_PREDICTION
    assert load(tf.SDXL_MODEL).model.model_type == comfy.model_base.ModelType.EPS


def test_sized_loading_reads_comfyuis_own_widths_for_the_full_size_files(host):
    """For the published Flux and Wan 2.2 VAE layouts, sized_loading reads exactly the widths ComfyUI fixes."""
    import comfy.model_detection
    import comfy.ops
    from comfy.ldm.flux.model import Flux
    from comfy.ldm.wan.vae2_2 import WanVAE

    full = Flux(in_channels=16, out_channels=16, vec_in_dim=768, context_in_dim=4096, hidden_size=3072, mlp_ratio=4.0, num_heads=24, depth=1,
                depth_single_blocks=1, axes_dim=[16, 56, 56], theta=10000, patch_size=2, qkv_bias=True, guidance_embed=True, device="meta",
                dtype=torch.float32, operations=comfy.ops.disable_weight_init).state_dict()
    plain = comfy.model_detection.detect_unet_config(full, "")
    with tf.sized_loading():
        assert comfy.model_detection.detect_unet_config(full, "") == plain
    assert comfy.model_detection.detect_unet_config(full, "") == plain  # restored
    with torch.device("meta"):
        vae = WanVAE(dim=160, z_dim=48, dim_mult=[1, 2, 4, 4], num_res_blocks=2, attn_scales=[], temperal_downsample=[False, True, True]).state_dict()
    assert (vae["encoder.conv1.weight"].shape[0], vae["decoder.conv1.weight"].shape[0] // 4) == (160, 256)


# ---- Noise Calibration on every family


def nc_sampler(host, base, iterations, dims):
    return host.run_node("VEK_NoiseCalibration", sampler=base, iterations=iterations, cutoff=1.0, mask="ideal_reference", dims=dims,
                         calibrate_with="guided (cfg)", order=2)[0]


def custom(host, m, sampler):
    noise, = host.run_node("RandomNoise", noise_seed=7)
    guider, = host.run_node("CFGGuider", model=m["model"], positive=m["positive"], negative=m["negative"], cfg=3.0)
    sigmas, = host.run_node("BasicScheduler", model=m["model"], scheduler="normal", steps=STEPS, denoise=0.6)
    return host.run_node("SamplerCustomAdvanced", noise=noise, guider=guider, sampler=sampler, sigmas=sigmas, latent_image=m["latent"])[0]["samples"]


@pytest.mark.parametrize("name", sorted(FAMILIES))
def test_noise_calibration_on_each_family(host, load, name):
    """The low-frequency error of the first x0 falls from N=0 to N=1; iterations 0 is plain sampling bit for bit."""
    m = family(load, name)
    base, = host.run_node("KSamplerSelect", sampler_name="euler")
    plain = custom(host, m, base)
    assert torch.equal(custom(host, m, nc_sampler(host, base, 0, m["dims"])), plain)
    wrapped = nc_sampler(host, base, 2, m["dims"])
    out = custom(host, m, wrapped)
    errors = wrapped.calibrator.last_errors
    assert len(errors) == 2 and errors[1] < errors[0], errors
    assert out.shape == plain.shape and torch.isfinite(out).all() and not torch.equal(out, plain)
    ks, = host.run_node("KSampler", model=m["model"], positive=m["positive"], negative=m["negative"], latent_image=m["latent"], seed=5, steps=2,
                        cfg=3.0, sampler_name="euler", scheduler="normal", denoise=0.6)
    refined, = host.run_node("VEK_NCSDEditRefine", model=m["model"], positive=m["positive"], negative=m["negative"], latent_image=m["latent"], seed=5,
                             steps=2, cfg=3.0, sampler_name="euler", scheduler="normal", denoise=0.6, iterations=0, cutoff=1.0,
                             mask="ideal_reference", dims=m["dims"], calibrate_with="guided (cfg)")
    assert torch.equal(refined["samples"], ks["samples"])


# ---- SLR attention on the real decoder layouts


class Recording:
    """Stands in for an SLRPatch's layer: records (block, token grid, trajectory on) of every call, then runs it."""

    def __init__(self, layer):
        self.inner, self.calls = layer, []

    def __call__(self, q, k, v, heads, streams, size, layer=None, trajectory_active=False, **kwargs):
        self.calls.append((layer[1], tuple(size), trajectory_active))
        return self.inner(q, k, v, heads, streams, size, layer=layer, trajectory_active=trajectory_active, **kwargs)

    def __getattr__(self, name):
        return getattr(self.inner, name)


@pytest.mark.parametrize("name, patched, trajectory_blocks, grid", [("sdxl", range(6), {3, 4, 5}, (4, 4)), ("sd21v", (9, 10, 11), {9, 10, 11}, (8, 8))])
def test_slr_attention_on_the_decoder_layout(host, load, name, patched, trajectory_blocks, grid):
    """SDXL: decoder blocks 0-5 carry attention (0-2 at latent/4, 3-5 at latent/2); trajectories at the largest, 3-5."""
    m = family(load, name)
    model, = host.run_node("VEK_SLRTemporalAttention", model=m["model"], cross_neighbour=True, trajectory=True, trajectory_start=0.0,
                           output_blocks="all", search_window=3, boundary="clamp")
    replaced = model.model_options["transformer_options"]["patches_replace"]["attn1"]
    assert set(replaced) == {("output", b) for b in patched}
    state = next(iter(replaced.values())).__self__
    assert state.trajectory_blocks == trajectory_blocks
    state.layer = Recording(state.layer)
    kw = dict(positive=m["positive"], negative=m["negative"], latent_image=m["latent"], seed=3, steps=2, cfg=3.0, sampler_name="euler",
              scheduler="normal", denoise=1.0)
    out, = host.run_node("KSampler", model=model, **kw)
    plain, = host.run_node("KSampler", model=m["model"], **kw)
    assert torch.isfinite(out["samples"]).all() and not torch.equal(out["samples"], plain["samples"])
    calls = state.layer.calls
    assert {b for b, _, _ in calls} == set(patched)
    assert {(b, size) for b, size, on in calls if on} == {(b, grid) for b in trajectory_blocks}
    assert all(size[0] < grid[0] for b, size, _ in calls if b not in trajectory_blocks)  # the other blocks are coarser


# ---- EVS: SDXL or Flux as T2I, Wan 2.2 as T2V through the VAE bridge


@pytest.mark.parametrize("name, t2i_vae, sampler, scheduler", [("sdxl", "vek-tiny-taesd.safetensors", "ddim", "ddim_uniform"),
                                                               ("flux", tf.TAEF1_VAE, "ddim", "ddim_uniform")])
def test_evs_with_wan22_through_the_vae_bridge(host, load, name, t2i_vae, sampler, scheduler):
    t2i = family(load, name)
    channels = FAMILIES[name][1][1]
    latent = {"samples": torch.randn(5, channels, 4, 4, generator=torch.Generator().manual_seed(4))}
    vae, = host.run_node("VAELoader", vae_name=t2i_vae)
    wan = family(load, "wan22")
    kw = dict(t2i_model=t2i["model"], t2i_positive=t2i["positive"], t2i_negative=t2i["negative"], t2v_model=wan["model"], t2v_positive=wan["positive"],
              t2v_negative=wan["negative"], seed=5, t2i_steps=10, t2i_strength=0.4, t2v_at=0.2, t2i_sampler=sampler, t2i_scheduler=scheduler, t2i_cfg=3.0,
              t2v_steps=4, t2v_strength=0.5, t2v_block_steps=0, t2v_sampler="euler", t2v_scheduler="simple", t2v_cfg=1.0, t2v_enabled=True, sfi=False,
              sfi_gamma=0.8, sfi_depth_min=0.0, sfi_depth_max=1.0, latent=latent, t2i_vae=vae, t2v_vae=load(tf.WAN22_VAE))
    out, image = host.run_node("VEK_EVSSampler", **kw)
    assert out["samples"].shape == (5, channels, 4, 4) and torch.isfinite(out["samples"]).all()
    assert image.shape == (5, 32, 32, 3) and torch.isfinite(image).all()
    plain, _ = host.run_node("VEK_EVSSampler", **dict(kw, t2v_enabled=False))
    assert not torch.equal(out["samples"], plain["samples"])  # the Wan 2.2 block changed the result


def test_family_files_are_small_and_deterministic(host):
    """DiTs and VAEs of a few M params; the UNets as small as SDXL's / SD2.x's match allows; same builder, same weights."""
    import comfy.utils

    params = {name: sum(v.numel() for v in comfy.utils.load_torch_file(str(host.tiny_models[name])).values()) for name in tf.FAMILY_MODELS}
    assert all(params[n] < 3e6 for n in (tf.FLUX_MODEL, tf.LTXV_MODEL, tf.HUNYUAN_VIDEO_MODEL, tf.WAN22_MODEL, tf.TAEF1_VAE))
    assert params[tf.WAN22_VAE] < 11e6 and params[tf.SDXL_MODEL] < 1.6e8 and params[tf.SD21V_MODEL] < 8e7
    a, b = tf.hunyuan_video_state_dict(), tf.hunyuan_video_state_dict()
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
