"""SLR Temporal Attention and optical flow nodes inside real ComfyUI, with the tiny SD1.5 and Wan 2.1 models."""

import pytest
import torch

from video_enhance_kit.host import ComfyHost, describe_missing_comfyui, find_comfyui

if find_comfyui() is None:
    pytest.skip(describe_missing_comfyui(), allow_module_level=True)

FRAMES = 3


@pytest.fixture(scope="module")
def host():
    torch.set_num_threads(1)
    return ComfyHost.start(tiny_models=True)


@pytest.fixture(scope="module")
def sd15(host):
    model, clip, _vae = host.run_node("CheckpointLoaderSimple", ckpt_name="vek-tiny-sd15.safetensors")
    pos, = host.run_node("CLIPTextEncode", clip=clip, text="a sharp photo")
    neg, = host.run_node("CLIPTextEncode", clip=clip, text="blurry")
    latent = {"samples": torch.randn(FRAMES, 4, 8, 8, generator=torch.Generator().manual_seed(0))}
    return dict(model=model, positive=pos, negative=neg, latent=latent)


def ksample(host, sd15, model, steps=3, cfg=4.0):
    out, = host.run_node(
        "KSampler", model=model, seed=3, steps=steps, cfg=cfg, sampler_name="euler", scheduler="normal",
        positive=sd15["positive"], negative=sd15["negative"], latent_image=sd15["latent"], denoise=1.0,
    )
    return out["samples"]


def patch(host, model, **kw):
    args = dict(cross_neighbour=True, trajectory=True, trajectory_start=0.2, output_blocks="all", search_window=3, boundary="clamp")
    args.update(kw)
    return host.run_node("VEK_SLRTemporalAttention", model=model, **args)[0]


def replaced(model):
    return model.model_options.get("transformer_options", {}).get("patches_replace", {}).get("attn1", {})


def test_patched_clone_runs_with_cfg_and_leaves_the_input_untouched(host, sd15):
    model = sd15["model"]
    before = ksample(host, sd15, model)
    patched = patch(host, model)
    assert patched is not model and set(replaced(patched)) == {("output", 0), ("output", 1)} and not replaced(model)
    out = ksample(host, sd15, patched)
    assert out.shape == before.shape and torch.isfinite(out).all()
    assert (out - before).abs().mean() > 1e-3  # the patch changes the result
    after = ksample(host, sd15, model)
    assert torch.equal(before, after)  # the unpatched input model is bit-identical after the patched run
    # trajectory attention really ran (x0_hat of earlier steps, links chosen per token)
    slr = next(iter(replaced(patched).values())).__self__
    assert sum(slr.layer.corrector.stats.counts.values()) > 0


def test_patch_survives_cloning_and_goes_with_the_clone(host, sd15):
    patched = patch(host, sd15["model"], trajectory=False)
    clone = patched.clone()
    assert set(replaced(clone)) == set(replaced(patched)) == {("output", 0), ("output", 1)}
    assert all(type(f.__self__).__name__ == "SLRPatch" for f in replaced(clone).values())
    assert len({id(f.__self__) for f in list(replaced(clone).values()) + list(replaced(patched).values())}) == 1  # one shared state
    assert torch.equal(ksample(host, sd15, clone, steps=2), ksample(host, sd15, patched, steps=2))
    del clone, patched
    assert not replaced(sd15["model"])


def test_cross_neighbour_only_with_identical_frames_matches_unpatched(host, sd15):
    same = dict(sd15, latent={"samples": sd15["latent"]["samples"][:1].repeat(FRAMES, 1, 1, 1)})
    plain = ksample(host, same, sd15["model"], steps=2)
    # identical frames and one shared noise: cross-neighbour attention equals self-attention
    noise_free = host.run_node(
        "KSamplerAdvanced", model=patch(host, sd15["model"], trajectory=False), add_noise="disable", noise_seed=0, steps=2, cfg=4.0,
        sampler_name="euler", scheduler="normal", positive=sd15["positive"], negative=sd15["negative"], latent_image=same["latent"],
        start_at_step=0, end_at_step=2, return_with_leftover_noise="disable",
    )[0]["samples"]
    reference = host.run_node(
        "KSamplerAdvanced", model=sd15["model"], add_noise="disable", noise_seed=0, steps=2, cfg=4.0,
        sampler_name="euler", scheduler="normal", positive=sd15["positive"], negative=sd15["negative"], latent_image=same["latent"],
        start_at_step=0, end_at_step=2, return_with_leftover_noise="disable",
    )[0]["samples"]
    assert torch.allclose(noise_free, reference, atol=1e-3)
    assert plain.shape == reference.shape


def test_flow_input_with_wrong_frame_count_is_named(host, sd15):
    images = torch.rand(FRAMES + 1, 64, 64, 3)
    flow, = host.run_node("VEK_EstimateOpticalFlow", images=images, method="classical", raft_weights="none")
    with pytest.raises(Exception) as err:
        ksample(host, sd15, patch(host, sd15["model"], trajectory_start=0.0, flow=flow))
    assert "flow" in str(err.value) and "frames" in str(err.value)


def test_video_dit_gets_a_clear_message(host):
    wan, = host.run_node("UNETLoader", unet_name="vek-tiny-wan21.safetensors", weight_dtype="default")
    with pytest.raises(Exception) as err:
        patch(host, wan)
    assert "model" in str(err.value) and "already attend across" in str(err.value)


@pytest.mark.parametrize(
    "kw, name",
    [
        (dict(output_blocks="7"), "output_blocks"),
        (dict(output_blocks="a,b"), "output_blocks"),
        (dict(search_window=4), "search_window"),
        (dict(trajectory_start=1.5), "trajectory_start"),
        (dict(trajectory_start=-0.1), "trajectory_start"),
        (dict(cross_neighbour=False, trajectory=False), "cross_neighbour"),
        (dict(boundary="wrap"), "boundary"),
    ],
)
def test_bad_inputs_name_the_input(host, sd15, kw, name):
    from video_enhance_kit.nodes.slr_attention import slr_patch
    from video_enhance_kit.utils.checks import InputError

    args = dict(cross_neighbour=True, trajectory=True, trajectory_start=0.9, output_blocks="all", search_window=5, boundary="clamp")
    args.update(kw)
    with pytest.raises(InputError) as err:
        slr_patch(sd15["model"], **args)
    assert err.value.input_name == name


def test_batch_not_a_multiple_of_streams_is_a_clear_error(host, sd15):
    from video_enhance_kit.nodes.slr_attention import slr_patch
    from video_enhance_kit.utils.checks import InputError

    _, state = slr_patch(sd15["model"])
    q = torch.randn(5, 64, 320)
    opts = {"cond_or_uncond": [1, 0], "sigmas": torch.tensor([1.0]), "block": ("output", 0), "activations_shape": [5, 320, 8, 8], "n_heads": 8}
    with pytest.raises(InputError) as err:
        state.attn1(q, q, q, opts)
    assert err.value.input_name == "latent batch" and "one latent per frame" in str(err.value)


def test_estimate_and_visualize_flow_nodes(host):
    g = torch.Generator().manual_seed(0)
    from kornia.filters import gaussian_blur2d

    big = gaussian_blur2d(torch.rand(1, 3, 48, 64, generator=g), (9, 9), (2.0, 2.0))
    frames = torch.cat([torch.roll(big, shifts=i, dims=-1) for i in range(3)])[..., 8:40, 8:56]  # 1 px/frame to the right
    images = frames.movedim(1, -1).contiguous()
    flow, = host.run_node("VEK_EstimateOpticalFlow", images=images, method="auto", raft_weights="none")
    assert flow.forward.shape == (2, 2, 32, 48)
    inner = flow.forward[..., 4:-4, 4:-4]
    assert (inner[:, 0] - 1).abs().mean() < 0.2 and inner[:, 1].abs().mean() < 0.2
    vis, = host.run_node("VEK_VisualizeFlow", flow=flow, direction="backward", max_magnitude=2.0, occlusion_overlay=1.0)
    assert vis.shape == (2, 32, 48, 3) and 0 <= vis.min() and vis.max() <= 1
    # backward flow (-1, 0) is drawn with one hue at half saturation; the uncovered left column is tinted
    centre = vis[:, 8:-8, 8:-8].reshape(-1, 3)
    assert centre.std(0).max() < 0.1 and (centre.mean(0).max() - centre.mean(0).min()) > 0.2
    assert torch.allclose(vis[:, :, 0], torch.tensor([0.5, 0.0, 0.0]).expand_as(vis[:, :, 0]), atol=1e-4)
    with pytest.raises(Exception) as err:
        host.run_node("VEK_EstimateOpticalFlow", images=images[:1], method="auto", raft_weights="none")
    assert "images" in str(err.value)


def test_each_sampling_run_starts_fresh(host, sd15):
    """x0_hat and trajectory history never leak from one run into the next (same start sigma, other frame count)."""
    patched = patch(host, sd15["model"], trajectory_start=0.0)
    first = ksample(host, sd15, patched, steps=2)
    state = next(iter(replaced(patched).values())).__self__
    assert state.layer.x0 is None and not state.layer.corrector.history  # dropped after the run
    more = dict(sd15, latent={"samples": torch.randn(FRAMES + 2, 4, 8, 8, generator=torch.Generator().manual_seed(5))})
    assert ksample(host, more, patched, steps=2).shape[0] == FRAMES + 2  # no stale 3-frame x0 / flow
    assert torch.equal(ksample(host, sd15, patched, steps=2), first)  # deterministic: nothing carried over


def test_slr_attention_goes_through_comfyui_optimized_attention(host, sd15, monkeypatch):
    """Both SLR parts call ComfyUI's optimized_attention (looked up at call time), so the user's backend applies."""
    import comfy.ldm.modules.attention as attention

    original = attention.optimized_attention
    calls = []

    def recording(q, k, v, heads, mask=None, attn_precision=None, **kwargs):
        calls.append((q.shape[1], k.shape[1], mask is not None))
        return original(q, k, v, heads, mask=mask, attn_precision=attn_precision, **kwargs)

    monkeypatch.setattr(attention, "optimized_attention", recording)
    ksample(host, sd15, patch(host, sd15["model"], trajectory_start=0.0), steps=2)
    assert any(m == 2 * n and not masked for n, m, masked in calls)  # cross-neighbour: keys of two neighbour frames
    assert any(n == 1 and m == FRAMES - 1 and masked for n, m, masked in calls)  # trajectory: one query per token
