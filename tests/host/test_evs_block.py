"""EVS T2V Block (a SAMPLER wrapper) in SamplerCustomAdvanced: tiny SD1.5 as T2I and same-space T2V, tiny Wan through the VAEs."""

import pytest
import torch

NODE = "VEK_EVST2VBlock"
SEED = 5


@pytest.fixture(scope="module")
def sd15(run_node):
    model, clip, vae = run_node("CheckpointLoaderSimple", ckpt_name="vek-tiny-sd15.safetensors")
    (pos,) = run_node("CLIPTextEncode", clip=clip, text="a red ball rolling on grass")
    (neg,) = run_node("CLIPTextEncode", clip=clip, text="")
    return model, pos, neg, vae


@pytest.fixture(scope="module")
def wan(run_node):
    (model,) = run_node("UNETLoader", unet_name="vek-tiny-wan21.safetensors", weight_dtype="default")
    (vae,) = run_node("VAELoader", vae_name="vek-tiny-wan21-vae.safetensors")
    (clip,) = run_node("CLIPLoader", clip_name="vek-tiny-clip-l.safetensors", type="sd3")
    (pos,) = run_node("CLIPTextEncode", clip=clip, text="a red ball rolling on grass")
    (neg,) = run_node("CLIPTextEncode", clip=clip, text="")
    return model, pos, neg, vae


def latent(frames=3, size=4, seed=0):
    return {"samples": torch.randn(frames, 4, size, size, generator=torch.Generator().manual_seed(seed))}


BLOCK = {"t2v_at": 0.2, "t2v_steps": 4, "t2v_strength": 0.5, "t2v_block_steps": 0, "t2v_sampler": "euler", "t2v_scheduler": "sgm_uniform",
         "t2v_cfg": 1.0, "sfi": False, "sfi_gamma": 0.8, "sfi_depth_min": 0.0, "sfi_depth_max": 1.0, "seed_offset": 1}
EVS = {"seed": SEED, "t2i_steps": 10, "t2i_strength": 0.4, "t2i_sampler": "ddim", "t2i_scheduler": "ddim_uniform", "t2i_cfg": 3.0, "t2v_enabled": True}


def block(run_node, t2v, sampler=None, **over):
    """The EVS T2V Block SAMPLER around ``sampler`` (default: KSamplerSelect ddim)."""
    model, pos, neg, _ = t2v
    if sampler is None:
        (sampler,) = run_node("KSamplerSelect", sampler_name="ddim")
    (out,) = run_node(NODE, sampler=sampler, t2v_model=model, t2v_positive=pos, t2v_negative=neg, **{**BLOCK, **over})
    return out


def sample(run_node, t2i, sampler, lat, noise=None, guider=None, steps=4, denoise=0.4):
    """SamplerCustomAdvanced with CFGGuider (cfg 3), RandomNoise(SEED) and BasicScheduler ddim_uniform: (output, denoised_output)."""
    model, pos, neg, _ = t2i
    if guider is None:
        (guider,) = run_node("CFGGuider", model=model, positive=pos, negative=neg, cfg=3.0)
    if noise is None:
        (noise,) = run_node("RandomNoise", noise_seed=SEED)
    (sigmas,) = run_node("BasicScheduler", model=model, scheduler="ddim_uniform", steps=steps, denoise=denoise)
    return run_node("SamplerCustomAdvanced", noise=noise, guider=guider, sampler=sampler, sigmas=sigmas, latent_image=lat)


def evs(run_node, t2i, t2v, lat, **over):
    model, pos, neg, _ = t2i
    vmodel, vpos, vneg, _ = t2v
    kw = {**EVS, **BLOCK, **over}
    kw.pop("seed_offset")
    return run_node("VEK_EVSSampler", t2i_model=model, t2i_positive=pos, t2i_negative=neg, t2v_model=vmodel, t2v_positive=vpos, t2v_negative=vneg,
                    latent=lat, **kw)


def counted(model, key="vek_block_count"):
    """A clone of ``model`` that counts its model calls."""
    import comfy.patcher_extension

    m = model.clone()
    m.vek_calls = 0

    def wrapper(executor, *args, **kwargs):
        m.vek_calls += 1
        return executor(*args, **kwargs)

    m.add_wrapper_with_key(comfy.patcher_extension.WrappersMP.APPLY_MODEL, key, wrapper)
    return m


@pytest.mark.parametrize("sfi", [False, True])
@pytest.mark.parametrize("bridge", ["identity", "vae"])
def test_block_in_sampler_custom_advanced_equals_evs_sampler_bit_for_bit(run_node, sd15, wan, bridge, sfi):
    """CFGGuider + RandomNoise + BasicScheduler(4 steps, denoise 0.4) + ddim: EVS Sampler's latent (10 steps, strength 0.4)."""
    if bridge == "identity":
        t2v, lat, vaes, over = sd15, latent(), {}, {}
    else:
        t2v, lat, vaes, over = wan, latent(frames=5, size=2), {"t2i_vae": sd15[3], "t2v_vae": wan[3]}, {"t2v_scheduler": "simple"}
    out, _ = sample(run_node, sd15, block(run_node, t2v, sfi=sfi, **vaes, **over), lat)
    ref, _ = evs(run_node, sd15, t2v, lat, sfi=sfi, **vaes, **over)
    assert torch.equal(out["samples"], ref["samples"])
    plain, _ = sample(run_node, sd15, run_node("KSamplerSelect", sampler_name="ddim")[0], lat)
    assert (out["samples"] - plain["samples"]).abs().max() > 1e-4  # the block did something


def wrapped(run_node, kind, sampler):
    """``sampler`` inside one of the pack's other SAMPLER wrappers."""
    if kind == "nc":
        return run_node("VEK_NoiseCalibration", sampler=sampler, iterations=1, cutoff=1.0, mask="ideal_reference", dims="2d (per frame)",
                        calibrate_with="guided (cfg)", order=2)[0]
    if kind == "shared":
        return run_node("VEK_SharedNoiseSampler", sampler=sampler, share_weight=1.0, blend_lambda=0.2, blend_mode="variance_preserving")[0]
    return run_node("VEK_EarlyStopSampler", sampler=sampler, stop_step=3, stop_sigma=0.0, stop_fraction=0.9)[0]


@pytest.mark.parametrize("kind, outside, inside", [("none", 4, 4), ("nc", 4 + 1, 4 + 2), ("shared", 4, 4), ("early_stop", 3, 4)])
def test_model_calls_whatever_wraps_the_block(run_node, sd15, kind, outside, inside):
    """T2I calls: the steps from t_I (+ the wrapper's own); T2V calls: n_V. Inside: the wrapper runs on each T2I stage."""
    (ddim,) = run_node("KSamplerSelect", sampler_name="ddim")
    for order, expected in (("outside", outside), ("inside", inside)):
        t2i, t2v = counted(sd15[0]), counted(sd15[0])
        if kind == "none":
            sampler = block(run_node, (t2v, *sd15[1:]), ddim)
        elif order == "outside":
            sampler = wrapped(run_node, kind, block(run_node, (t2v, *sd15[1:]), ddim))
        else:
            sampler = block(run_node, (t2v, *sd15[1:]), wrapped(run_node, kind, ddim))
        out, _ = sample(run_node, (t2i, *sd15[1:]), sampler, latent())
        assert (t2i.vek_calls, t2v.vek_calls) == (expected, 2), (kind, order)
        assert torch.isfinite(out["samples"]).all()


def test_orders_that_match_and_orders_that_do_not(run_node, sd15):
    """README table: Shared Noise Sampler on a deterministic sampler is the same on either side of the block (bit for bit
    with euler; with ddim, whose inpaint noise is random, outside re-enters with the eps its start implies: float rounding);
    Noise Calibration is not (inside it also calibrates the re-entry)."""
    results = {}
    for name, kind in (("euler", "shared"), ("ddim", "shared"), ("ddim", "nc")):
        (base,) = run_node("KSamplerSelect", sampler_name=name)
        outside = wrapped(run_node, kind, block(run_node, sd15, base))
        inside = block(run_node, sd15, wrapped(run_node, kind, base))
        plain = block(run_node, sd15, base)
        results[name, kind] = [sample(run_node, sd15, s, latent())[0]["samples"] for s in (outside, inside, plain)]
    outside, inside, plain = results["euler", "shared"]
    assert torch.equal(outside, plain) and torch.equal(inside, plain)
    outside, inside, plain = results["ddim", "shared"]
    assert torch.equal(inside, plain) and torch.allclose(outside, plain, rtol=1e-4, atol=1e-4)
    outside, inside, _ = results["ddim", "nc"]
    assert (outside - inside).abs().max() > 1e-5


def test_guider_and_noise_act_on_the_t2i_stages(run_node, sd15, pack, monkeypatch):
    """Temporal Consistency Guider as the GUIDER and Shared Noise as the NOISE: the block's first T2I stage is exactly
    that guided run with that noise (its clean prediction is what the block receives), and the result differs from the plain one."""
    composition = pack("samplers.composition")
    seen = []
    original = composition.T2VBlock.__call__

    def spy(self, z0):
        seen.append(z0.clone())
        return original(self, z0)

    monkeypatch.setattr(composition.T2VBlock, "__call__", spy)
    model, pos, neg, _ = sd15
    (cfg,) = run_node("CFGGuider", model=model, positive=pos, negative=neg, cfg=3.0)
    (tcg,) = run_node("VEK_TemporalConsistencyGuider", guider=cfg, guidance_scale=0.5, semantic_weight=0.0, pixel_start=0.0, loss_space="latent")
    (shared,) = run_node("VEK_SharedNoise", noise_seed=SEED, share_weight=1.0, blend_lambda=0.2, blend_mode="variance_preserving")
    (ddim,) = run_node("KSamplerSelect", sampler_name="ddim")
    guided, _ = sample(run_node, sd15, block(run_node, sd15, ddim), latent(), noise=shared, guider=tcg)
    plain, _ = sample(run_node, sd15, block(run_node, sd15, ddim), latent())
    assert len(seen) == 2 and (guided["samples"] - plain["samples"]).abs().max() > 1e-4
    # the reference: the same GUIDER and NOISE over the SIGMAS down to t_T2V (2 of the 4 steps), its denoised output
    (sigmas,) = run_node("BasicScheduler", model=model, scheduler="ddim_uniform", steps=4, denoise=0.4)
    (head,) = run_node("SplitSigmas", sigmas=sigmas, step=2)[:1]
    _, x0 = run_node("SamplerCustomAdvanced", noise=shared, guider=tcg, sampler=ddim, sigmas=head, latent_image=latent())
    assert torch.equal(seen[0], x0["samples"].to(seen[0]))
    assert not torch.equal(seen[0], seen[1])


def test_errors_name_the_input(run_node, sd15, wan):
    (ddim,) = run_node("KSamplerSelect", sampler_name="ddim")
    cases = [
        (lambda: sample(run_node, sd15, block(run_node, sd15, ddim, t2v_at=0.6), latent()), "t2v_at", "above the SIGMAS' start"),
        (lambda: sample(run_node, sd15, block(run_node, wan, ddim, t2v_scheduler="simple"), latent(frames=5, size=2)), "t2i_vae", "different latent spaces"),
        (lambda: sample(run_node, sd15, block(run_node, wan, ddim, t2v_scheduler="simple", t2i_vae=sd15[3], t2v_vae=wan[3]), latent(frames=4, size=2)),
         "latent_image", "4k + 1"),
        (lambda: sample(run_node, wan, block(run_node, sd15, ddim), {"samples": torch.randn(1, 16, 2, 2, 2)}), "guider", "video model"),
        (lambda: block(run_node, sd15, ddim, t2v_block_steps=3), "t2v_block_steps", "more than the 2 steps"),
        (lambda: block(run_node, sd15, object()), "sampler", "cannot be wrapped"),
        (lambda: block(run_node, (sd15[0], wan[1], sd15[2], sd15[3]), ddim), "t2v_positive", "wide"),
    ]
    for run, name, words in cases:
        with pytest.raises(ValueError) as err:
            run()
        assert f"input '{name}'" in str(err.value) and words in str(err.value), (name, str(err.value))


def test_t2v_at_matches_evs_samplers_split_on_ddim_uniform(pack):
    """The block's t2v_at (a share of the noise range) puts the block where EVS Sampler's (a share of the steps) does."""
    import comfy.samplers

    block_index = pack("nodes.evs_block").block_index
    from comfy.model_sampling import ModelSamplingDiscrete

    ms = ModelSamplingDiscrete()
    for total, strength, t2v_at in ((10, 0.4, 0.2), (50, 0.4, 0.2), (50, 0.4, 0.1), (50, 0.4, 0.4), (20, 0.5, 0.0)):
        keep = round(total * strength)
        sigmas = comfy.samplers.calculate_sigmas(ms, "ddim_uniform", total)[-(keep + 1):]
        assert block_index(ms, sigmas.tolist(), t2v_at) == keep - round(total * t2v_at), (total, strength, t2v_at)


def test_sfi_with_context_windows_records_and_injects_per_window(run_node, sd15, wan, pack, monkeypatch):
    """A clip of 3 Wan latent frames (9 frames) on a T2V model with context windows of 2 latent frames (WAN Context Windows):
    features are filed per window, window 2's are not window 1's, and every injected call attends with its own window's."""
    fi = pack("attention.feature_injection").FeatureInjection
    records, injected = {}, []
    original = fi.qkv

    def spy(self, q, k, v, layer, depth, sigma):
        out = original(self, q, k, v, layer, depth, sigma)
        if self.mode == "record":
            records.setdefault(layer, []).append(k.clone())
        elif self.mode == "inject":
            injected.append((layer, out[1].clone()))
        return out

    monkeypatch.setattr(fi, "qkv", spy)
    (windowed,) = run_node("WanContextWindowsManual", model=wan[0], context_length=5, context_overlap=0, context_schedule="standard_static",
                           context_stride=1, closed_loop=False, fuse_method="pyramid")
    sampler = block(run_node, (windowed, *wan[1:]), sfi=True, sfi_gamma=1.0, t2v_scheduler="simple", t2i_vae=sd15[3], t2v_vae=wan[3])
    out, _ = sample(run_node, sd15, sampler, latent(frames=9, size=2))
    assert torch.isfinite(out["samples"]).all()
    assert all(isinstance(layer, tuple) and isinstance(layer[1], tuple) for layer in records)  # every record names its window
    windows = sorted({layer[1] for layer in records})
    assert len(windows) >= 2, windows
    for layer in {layer[0] for layer in records}:
        first, second = records[(layer, windows[0])], records[(layer, windows[1])]
        assert len(first) == len(second) == 2  # one record per inversion call (2 levels) and window
        assert all(not torch.equal(a, b) for a, b in zip(first, second))
    assert {layer[1] for layer, _ in injected} == set(windows)
    for layer, k_used in injected:  # the injected keys are recorded ones of the same window
        assert any(torch.equal(k_used, rec.to(k_used)) for rec in records[layer])


def test_window_keys_of_both_context_window_conventions(pack):
    """ComfyUI's context_window (index_list) and AnimateDiff-Evolved's ad_params sub_idxs name the window; none: the layer itself."""
    import comfy.context_windows

    fi = pack("nodes._feature_injection")
    window = comfy.context_windows.IndexListContextWindow([4, 5, 6, 7])
    assert fi.windowed(("input", 1, 0), {"context_window": window}) == (("input", 1, 0), (4, 5, 6, 7))
    assert fi.windowed(3, {"ad_params": {"sub_idxs": [0, 1]}}) == (3, (0, 1))
    assert fi.windowed(3, {"ad_params": {}}) == 3 and fi.windowed(3, {}) == 3
