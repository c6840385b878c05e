"""The native VEnhancer pieces with ComfyUI's samplers and the pack's sampler wrappers (tiny VEnhancer, TAESD, CLIP-L)."""

from pathlib import Path

import pytest
import torch
from video_enhance_kit.host import describe_missing_comfyui, find_comfyui

if find_comfyui() is None:
    pytest.skip(describe_missing_comfyui(), allow_module_level=True)

import importlib.util

_spec = importlib.util.spec_from_file_location("vek_test_venhancer_native", Path(__file__).with_name("test_venhancer_native.py"))
_shared = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(_shared)
SEED, clip, condition, native, parts = _shared.SEED, _shared.clip, _shared.condition, _shared.native, _shared.parts  # parts: the module fixture

OLD_WORKFLOW = Path(__file__).resolve().parents[1] / "data" / "venhancer_upscale_before_issue_11.json"


@pytest.fixture(scope="module")
def piece(run_node, parts):  # noqa: F811
    pos, neg, latent = condition(run_node, parts, clip(frames=2, h=16, w=16))
    (sigmas,) = run_node("VEK_VEnhancerSigmas", solver_mode="normal", steps=4, start_timestep=899)
    return {"positive": pos, "negative": neg, "latent": latent, "sigmas": sigmas}


def weights(model):
    return {k: v.clone() for k, v in model.model.diffusion_model.state_dict().items()}


@pytest.mark.parametrize("sampler_name", ["euler", "dpmpp_2m", "uni_pc", "ddim"])
def test_comfyui_samplers_sample_it(run_node, parts, piece, sampler_name):  # noqa: F811
    out, denoised = native(run_node, parts["model"], piece["positive"], piece["negative"], piece["latent"], piece["sigmas"], sampler_name=sampler_name)
    assert out["samples"].shape == piece["latent"]["samples"].shape and torch.isfinite(out["samples"]).all()
    assert (out["samples"] - piece["latent"]["samples"]).abs().mean() > 1e-3  # it refined the clip
    assert out["venhancer"] == piece["latent"]["venhancer"]


def test_ksampler_samples_it_and_decode_unpads(run_node, parts, piece):  # noqa: F811
    (out,) = run_node("KSampler", model=parts["model"], seed=SEED, steps=4, cfg=2.0, sampler_name="euler", scheduler="simple",
                      positive=piece["positive"], negative=piece["negative"], latent_image=piece["latent"], denoise=0.3)
    assert torch.isfinite(out["samples"]).all()
    images, fps, video = run_node("VEK_VEnhancerDecode", samples=out, vae=parts["vae"])
    assert images.shape == (3, 16, 16, 3) and fps == pytest.approx(16.0)
    assert float(video.get_components().frame_rate) == pytest.approx(16.0)


def test_pack_wrappers_act_on_it_and_the_model_is_unchanged(run_node, parts, piece):  # noqa: F811
    before = weights(parts["model"])
    options_before = repr(sorted(parts["model"].model_options))
    (base,) = run_node("KSamplerSelect", sampler_name="euler")
    (ancestral,) = run_node("KSamplerSelect", sampler_name="euler_ancestral")  # shared noise acts on the sampler's fresh noise
    (nc,) = run_node("VEK_NoiseCalibration", sampler=base, iterations=3, cutoff=1.0, mask="ideal_reference", dims="3d (spatio-temporal)",
                     calibrate_with="guided (cfg)", order=2)
    wrapped = {"nc": (nc, "euler"),
               "shared": (run_node("VEK_SharedNoiseSampler", sampler=ancestral, share_weight=0.5, blend_lambda=0.2, blend_mode="variance_preserving")[0], "euler_ancestral"),
               "early": (run_node("VEK_EarlyStopSampler", sampler=base, stop_step=2, stop_sigma=0.0, stop_fraction=1.0)[0], "euler")}
    outs = {}
    for name, (sampler, inner) in wrapped.items():
        plain, _ = native(run_node, parts["model"], piece["positive"], piece["negative"], piece["latent"], piece["sigmas"], sampler_name=inner)
        out = run_node("SamplerCustomAdvanced", noise=run_node("RandomNoise", noise_seed=SEED)[0], sampler=sampler, sigmas=piece["sigmas"], latent_image=piece["latent"],
                       guider=run_node("CFGGuider", model=parts["model"], positive=piece["positive"], negative=piece["negative"], cfg=2.0)[0])
        outs[name] = out
        assert (out[0]["samples"] - plain["samples"]).abs().max() > 1e-4, name  # each wrapper changes the result
    errs = nc.calibrator.last_errors
    assert len(errs) == 3 and errs[-1] < errs[0]  # the low-frequency error of the calibrated start falls
    # early stop after step 2 of 4 returns that step's x0: the x0 of the second model call, the denoised output of sigmas[:2] + [0]
    cut = torch.cat([piece["sigmas"][:2], piece["sigmas"].new_zeros(1)])
    _, two = native(run_node, parts["model"], piece["positive"], piece["negative"], piece["latent"], cut, sampler_name="euler")
    assert torch.allclose(outs["early"][0]["samples"], two["samples"], atol=1e-5, rtol=1e-4)
    after = weights(parts["model"])
    assert all(torch.equal(before[k], after[k]) for k in before) and repr(sorted(parts["model"].model_options)) == options_before


def test_cancel_stops_between_model_calls(run_node, parts, piece):  # noqa: F811
    import comfy.model_management as mm

    net = parts["model"].model.diffusion_model
    calls = []

    def count(*_):  # returns None: the call's inputs stay as they are
        calls.append(1)
        if len(calls) == 3:
            mm.interrupt_current_processing(True)  # the user presses Cancel during the third model call

    hook = net.register_forward_pre_hook(count)
    try:
        with pytest.raises(mm.InterruptProcessingException):
            native(run_node, parts["model"], piece["positive"], piece["negative"], piece["latent"], piece["sigmas"], cfg=1.0, sampler_name="euler")
    finally:
        hook.remove()
        mm.interrupt_current_processing(False)
    assert len(calls) == 3  # the call after Cancel never ran a layer: the check is at the start of each model call


def test_latent_preview_is_produced(run_node, parts, piece, monkeypatch):  # noqa: F811
    import comfy.utils
    import latent_preview

    previews = []
    original = comfy.utils.ProgressBar.update_absolute
    monkeypatch.setattr(latent_preview, "default_preview_method", latent_preview.LatentPreviewMethod.Latent2RGB, raising=False)
    monkeypatch.setattr(latent_preview.args, "preview_method", latent_preview.LatentPreviewMethod.Latent2RGB)

    def update_absolute(self, value, total=None, preview=None):
        previews.append(preview)
        return original(self, value, total, preview)

    monkeypatch.setattr(comfy.utils.ProgressBar, "update_absolute", update_absolute)
    native(run_node, parts["model"], piece["positive"], piece["negative"], piece["latent"], piece["sigmas"], sampler_name="euler")
    shown = [p for p in previews if p is not None]
    h, w = piece["latent"]["samples"].shape[-2:]
    assert len(shown) == 4 and shown[0][1].size == (w, h)  # one Latent2RGB preview of the first frame per step


def test_bad_inputs_name_the_input(run_node, parts, piece):  # noqa: F811
    with pytest.raises(Exception, match="input 'positive'.*token width"):
        wide = [[torch.zeros(1, 77, 1024), {**piece["positive"][0][1]}]]
        native(run_node, parts["model"], wide, wide, piece["latent"], piece["sigmas"])
    (empty,) = run_node("EmptyLatentImage", width=16, height=16, batch_size=3)
    with pytest.raises(Exception, match="input 'latent_image'.*VEnhancer conditioning"):
        native(run_node, parts["model"], piece["positive"], piece["negative"], empty, piece["sigmas"])
    _, _, other = condition(run_node, parts, clip(frames=3, h=16, w=16))  # another clip's latent (5 frames, not 3)
    with pytest.raises(Exception, match="input 'latent_image'.*3 frames"):
        native(run_node, parts["model"], piece["positive"], piece["negative"], other, piece["sigmas"])
    with pytest.raises(Exception, match="input 'positive'.*no VEnhancer ControlNet inputs"):
        native(run_node, parts["model"], parts["positive"], parts["negative"], piece["latent"], piece["sigmas"])
    with pytest.raises(Exception, match="input 'samples'.*not a LATENT from VEnhancer Conditioning"):
        run_node("VEK_VEnhancerDecode", samples=empty, vae=parts["vae"])
    with pytest.raises(Exception, match="input 'images'"):
        condition(run_node, parts, torch.rand(3, 16, 16, 4))
    with pytest.raises(Exception, match="input 'venhancer_model'.*VEK_VENHANCER_MODEL"):
        run_node("VEK_VEnhancerUpscale", venhancer_model=object(), images=clip(), fps=8.0, positive=parts["positive"], negative=parts["negative"], vae=parts["vae"])


def test_fp8_weights_run_with_manual_cast(run_node, parts, piece):  # noqa: F811
    (fp8,) = run_node("VEK_VEnhancerModelLoader", ckpt_name="vek-tiny-venhancer.safetensors", dtype="fp8_e4m3fn")
    assert fp8.model.diffusion_model.out[-1].weight.dtype == torch.float8_e4m3fn and fp8.model.manual_cast_dtype is not None
    out, _ = native(run_node, fp8, piece["positive"], piece["negative"], piece["latent"], piece["sigmas"], sampler_name="euler")
    ref, _ = native(run_node, parts["model"], piece["positive"], piece["negative"], piece["latent"], piece["sigmas"], sampler_name="euler")
    err = float((out["samples"] - ref["samples"]).abs().mean() / ref["samples"].abs().mean())
    assert 0 < err < 0.2  # 8-bit weights: close to fp32, not equal


@pytest.mark.parametrize("frames,size,target_fps,cfg,seed", [(3, (16, 24), 0.0, 2.0, SEED), (9, (64, 64), 24.0, 7.5, 666)])
def test_upscale_equals_the_graph_of_pieces_bit_for_bit(run_node, parts, frames, size, target_fps, cfg, seed):  # noqa: F811
    images = clip(frames=frames, h=size[0], w=size[1])
    kw = dict(up_scale=1.0, resolution_rule="exact", target_fps=target_fps, frame_interpolation=1, noise_aug=200, s_cond=8.0, padding="minimal")
    one, fps, _ = run_node("VEK_VEnhancerUpscale", venhancer_model=parts["model"], images=images, fps=8.0, positive=parts["positive"],
                           negative=parts["negative"], vae=parts["vae"], cfg=cfg, solver_mode="fast", steps=15, seed=seed,
                           chunk_length=32, chunk_overlap=0.5, **kw)
    pos, neg, latent = condition(run_node, parts, images, seed=seed, **kw)
    (sigmas,) = run_node("VEK_VEnhancerSigmas", solver_mode="fast", steps=15, start_timestep=899)
    out, _ = native(run_node, parts["model"], pos, neg, latent, sigmas, cfg=cfg, seed=seed)
    graph, graph_fps, _ = run_node("VEK_VEnhancerDecode", samples=out, vae=parts["vae"])
    assert torch.equal(one, graph) and fps == graph_fps


def test_workflow_saved_with_the_old_loader_type_runs(run_workflow):
    result = run_workflow(OLD_WORKFLOW, tiny=True, max_steps=3, fresh=True)
    assert result.success and any(str(f).endswith(".mp4") for f in result.files)


def test_windows_node_tiles_and_names_bad_sizes(run_node, parts, piece):  # noqa: F811
    before = parts["model"].model_options.get("transformer_options", {}).copy()
    pos, neg, latent = condition(run_node, parts, clip(frames=2, h=80, w=64))
    piece = dict(piece, positive=pos, negative=neg, latent=latent)
    h, w = latent["samples"].shape[-2:]
    assert (h, w) == (10, 8)
    (tiled,) = run_node("VEK_VEnhancerWindows", model=parts["model"], chunk_length=32, chunk_overlap=0.5, tile_size=6, tile_overlap=2)
    net = tiled.model.diffusion_model
    shapes = []
    hook = net.register_forward_pre_hook(lambda module, args: shapes.append(tuple(args[0].shape[-2:])) and None)
    try:
        out, _ = native(run_node, tiled, piece["positive"], piece["negative"], piece["latent"], piece["sigmas"], sampler_name="euler")
    finally:
        hook.remove()
    whole, _ = native(run_node, parts["model"], piece["positive"], piece["negative"], piece["latent"], piece["sigmas"], sampler_name="euler")
    assert shapes == [(6, 6)] * (4 * 4)  # 2 x 2 tiles of 6 x 6 latent pixels per step (cond and uncond in one call)
    assert torch.isfinite(out["samples"]).all() and (out["samples"] - whole["samples"]).abs().max() > 1e-5
    assert parts["model"].model_options.get("transformer_options", {}) == before
    (too_big,) = run_node("VEK_VEnhancerWindows", model=parts["model"], chunk_length=32, chunk_overlap=0.5, tile_size=w + 8, tile_overlap=2)
    with pytest.raises(Exception, match="input 'tile_size'.*larger than the latent"):
        native(run_node, too_big, piece["positive"], piece["negative"], piece["latent"], piece["sigmas"], sampler_name="euler")
    with pytest.raises(Exception, match="input 'model'.*not a VEnhancer MODEL"):
        run_node("VEK_VEnhancerWindows", model=object(), chunk_length=32, chunk_overlap=0.5, tile_size=0, tile_overlap=8)


def test_a_later_run_of_the_same_model_uses_its_own_key_frames(run_node, parts):  # noqa: F811
    """The windows wrapper lives on the loader's (cached) MODEL: a second clip of the same shape must not reuse the first's hint."""
    (sigmas,) = run_node("VEK_VEnhancerSigmas", solver_mode="normal", steps=2, start_timestep=899)
    first, second = (condition(run_node, parts, clip(frames=2, h=16, w=16, seed=s)) for s in (11, 12))
    native(run_node, parts["model"], *first, sigmas, sampler_name="euler")
    after, _ = native(run_node, parts["model"], *second, sigmas, sampler_name="euler")
    fresh = parts["model"].clone()
    pack_windows = type(parts["model"].model).__module__
    import sys

    sys.modules[pack_windows].set_windows(fresh)  # a new wrapper, no earlier run
    alone, _ = native(run_node, fresh, *second, sigmas, sampler_name="euler")
    assert torch.equal(after["samples"], alone["samples"])
