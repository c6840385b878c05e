"""VEnhancer Model Loader + VEnhancer Upscale inside real ComfyUI, on the tiny VEnhancer, tiny VAE and CLIP."""

import pytest
import torch
from video_enhance_kit.host import describe_missing_comfyui, find_comfyui

if find_comfyui() is None:
    pytest.skip(describe_missing_comfyui(), allow_module_level=True)

from video_enhance_kit.host import tiny as tm

TINY = "vek-tiny-venhancer.safetensors"


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


def clip(frames=3, h=32, w=40, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.rand(frames, h, w, 3, generator=g)


def upscale(run_node, parts, images, **kw):
    args = dict(parts, fps=8.0, up_scale=1.0, resolution_rule="exact", target_fps=0.0, frame_interpolation=1,
                noise_aug=200, s_cond=8.0, cfg=2.0, solver_mode="fast", steps=15, seed=1, chunk_length=32,
                chunk_overlap=0.5, padding="minimal")
    args.pop("model")
    args.update(kw)
    return run_node("VEK_VEnhancerUpscale", venhancer_model=parts["model"], images=images, **args)


def test_loader_gives_a_managed_model(parts, comfy_host):
    import comfy.model_patcher

    patcher = parts["model"]
    assert isinstance(patcher, comfy.model_patcher.ModelPatcher)
    cfg = patcher.model.venhancer_config
    assert cfg.context_dim == 768 and cfg.channel_mult == (1, 2)
    assert patcher.model_size() > 0
    assert type(patcher.get_model_object("model_sampling")).__name__ == "VEnhancerModelSampling"


def test_upscale_frames_size_fps_and_inputs_unchanged(run_node, parts):
    images = clip()
    before = images.clone()
    out, fps, video = upscale(run_node, parts, images, up_scale=2.0, frame_interpolation=2)
    assert out.shape == (7, 64, 80, 3)  # 3 key frames + 2 new per gap, 2x size
    assert fps == pytest.approx(24.0)
    assert torch.isfinite(out).all() and 0 <= out.min() and out.max() <= 1
    assert torch.equal(images, before)
    comps = video.get_components()
    assert comps.images.shape == out.shape and float(comps.frame_rate) == pytest.approx(24.0)


def test_seed_reproducible_and_target_fps_rule(run_node, parts):
    images = clip(frames=2, h=24, w=32)
    a, fps_a, _ = upscale(run_node, parts, images, target_fps=16.0)
    b, _, _ = upscale(run_node, parts, images, target_fps=16.0)
    assert torch.equal(a, b)
    assert a.shape[0] == 3 and fps_a == pytest.approx(16.0)  # round(16 / 8) - 1 = 1 new frame per gap
    c, _, _ = upscale(run_node, parts, images, target_fps=16.0, seed=2)
    assert (a - c).abs().max() > 1e-4


def test_chunked_long_clip_matches_length(run_node, parts):
    images = clip(frames=9, h=16, w=16)
    out, _, _ = upscale(run_node, parts, images, frame_interpolation=1, chunk_length=8, cfg=1.0)
    assert out.shape == (17, 16, 16, 3) and torch.isfinite(out).all()


def test_bad_inputs_are_named(run_node, parts):
    from video_enhance_kit.utils.checks import InputError

    with pytest.raises(Exception, match="input 'images'.*at least 2"):
        upscale(run_node, parts, clip(frames=1))
    with pytest.raises(Exception, match="input 'positive'.*token width"):
        upscale(run_node, parts, clip(), positive=[[torch.zeros(1, 77, 1024), {}]])
    with pytest.raises(Exception, match="input 'chunk_length'"):
        upscale(run_node, parts, clip(), frame_interpolation=8, chunk_length=8)
    with pytest.raises(Exception, match="input 'venhancer_model'"):
        run_node("VEK_VEnhancerUpscale", venhancer_model="nope", images=clip(), fps=8.0, positive=parts["positive"],
                 negative=parts["negative"], vae=parts["vae"])
    with pytest.raises(Exception, match="input 'noise_aug'"):
        upscale(run_node, parts, clip(), noise_aug=301)
    with pytest.raises(Exception, match="input 'images'.*NaN"):
        bad = clip()
        bad[0, 0, 0, 0] = float("nan")
        upscale(run_node, parts, bad)
    assert InputError


def test_prompt_with_loaders_progress_and_save(run_prompt):
    prompt = {
        "1": {"class_type": "VEK_VEnhancerModelLoader", "inputs": {"ckpt_name": "venhancer_v2.pt", "dtype": "auto"}},
        "2": {"class_type": "CLIPLoader", "inputs": {"clip_name": "open_clip_vit_h.safetensors", "type": "stable_diffusion"}},
        "3": {"class_type": "CLIPTextEncode", "inputs": {"clip": ["2", 0], "text": "a video"}},
        "4": {"class_type": "CLIPTextEncode", "inputs": {"clip": ["2", 0], "text": "lowres"}},
        "5": {"class_type": "VAELoader", "inputs": {"vae_name": "vae-ft-mse-840000-ema-pruned.safetensors"}},
        "6": {"class_type": "EmptyImage", "inputs": {"width": 24, "height": 16, "batch_size": 3, "color": 8421504}},
        "7": {"class_type": "VEK_VEnhancerUpscale", "inputs": {
            "venhancer_model": ["1", 0], "images": ["6", 0], "fps": 8.0, "positive": ["3", 0], "negative": ["4", 0],
            "vae": ["5", 0], "up_scale": 1.0, "resolution_rule": "exact", "target_fps": 16.0, "frame_interpolation": 0,
            "noise_aug": 250, "s_cond": 8.0, "cfg": 7.5, "solver_mode": "fast", "steps": 15, "seed": 666,
            "chunk_length": 32, "chunk_overlap": 0.5, "padding": "minimal"}},
        "8": {"class_type": "SaveVideo", "inputs": {"video": ["7", 2], "filename_prefix": "vek_venhancer", "format": "auto", "codec": "auto"}},
    }
    seen = []
    result = run_prompt(prompt, on_progress=lambda node, value, maximum: seen.append((node, value, maximum)))
    assert result.success
    ticks = [v for n, v, m in seen if str(n) == "7" and m == 14]  # one tick per solver step (ComfyUI's sampler progress)
    assert ticks == list(range(1, 15))
    assert any(str(f).endswith(".mp4") for f in result.files)


def test_cancel_stops_sampling_between_model_calls(run_node, parts, monkeypatch):
    import comfy.model_management as mm
    import comfy.utils

    ticks = []
    original = comfy.utils.ProgressBar.update_absolute

    def update_absolute(self, value, total=None, preview=None):
        ticks.append(value)
        if len(ticks) == 2 + 3:  # after the resize and encode bars (one batch each): Cancel during the third model call
            mm.interrupt_current_processing(True)
        return original(self, value, total, preview)

    monkeypatch.setattr(comfy.utils.ProgressBar, "update_absolute", update_absolute)
    try:
        with pytest.raises(mm.InterruptProcessingException):
            upscale(run_node, parts, clip(frames=2, h=16, w=16), cfg=1.0)
    finally:
        mm.interrupt_current_processing(False)
    assert len(ticks) == 2 + 3  # stopped before the fourth call


def test_attention_goes_through_comfyui_optimized_attention(run_node, parts, pack, monkeypatch):
    """Every attention call of the network (UNet and ControlNet) goes through ComfyUI's optimized_attention, read at
    call time; with ComfyUI's pytorch backend the result is the core default's (torch SDPA) bit for bit."""
    import comfy.ldm.modules.attention as comfy_attention

    blocks = pack("models.venhancer_blocks")
    net = parts["model"].model.diffusion_model
    layer_calls, seen = [], []
    hooks = [m.register_forward_hook(lambda *_: layer_calls.append(1)) for m in net.modules() if isinstance(m, blocks.Attention)]

    def recording(q, k, v, heads, **kwargs):
        seen.append((tuple(q.shape), heads, kwargs.get("skip_reshape")))
        return comfy_attention.attention_pytorch(q, k, v, heads, **kwargs)

    images = clip(frames=2, h=16, w=16)
    try:
        monkeypatch.setattr(comfy_attention, "optimized_attention", recording)
        routed, _, _ = upscale(run_node, parts, images, cfg=1.0)
        monkeypatch.undo()
        monkeypatch.setattr(pack("nodes._venhancer_model"), "comfy_attention",
                            lambda attn_precision=None: lambda q, k, v, heads, **kw: blocks.default_attention(q, k, v))
        layer_calls.clear()
        core, _, _ = upscale(run_node, parts, images, cfg=1.0)
    finally:
        for h in hooks:
            h.remove()
    assert len(seen) == len(layer_calls) > 0  # one optimized_attention call per attention layer call
    assert all(len(shape) == 4 and shape[1] == heads and skip for shape, heads, skip in seen)  # [N, heads, L, d]
    assert torch.equal(routed, core)


class TextRecorder:
    """Stands in for ComfyUI's PromptServer: records what nodes show under their progress bar."""

    def __init__(self):
        self.texts = []

    def send_progress_text(self, text, node_id, sid=None):
        self.texts.append((str(node_id), text))

    def send_sync(self, *args, **kwargs):
        pass


def test_cancel_during_vae_encode_stops_within_one_batch_and_progress_moves(run_node, parts, monkeypatch):
    """Issue 16, item 2: Cancel pressed while the VAE encodes stops before the next frame batch; the encode reports progress;
    the host runs the next upscale normally."""
    import comfy.model_management as mm
    import comfy.utils

    vae, encoded, bars = parts["vae"], [], []
    original_encode, original_update = vae.encode, comfy.utils.ProgressBar.update_absolute

    def encode(pixels):
        out = original_encode(pixels)
        encoded.append(pixels.shape[0])
        if len(encoded) == 1:
            mm.interrupt_current_processing(True)  # the user presses Cancel during the first encoded batch
        return out

    def update_absolute(self, value, total=None, preview=None):
        bars.append((len(encoded), value, total))
        return original_update(self, value, total, preview)

    monkeypatch.setattr(vae, "encode", encode)
    monkeypatch.setattr(comfy.utils.ProgressBar, "update_absolute", update_absolute)
    images = clip(frames=9, h=16, w=16)  # 1 new frame per gap: 17 frames, encoded in batches of 8, 8, 1
    try:
        with pytest.raises(mm.InterruptProcessingException):
            upscale(run_node, parts, images, cfg=1.0)
    finally:
        mm.interrupt_current_processing(False)
    assert encoded == [8]  # stopped within one frame batch
    assert (1, 1, 3) in bars  # the encode's bar moved: batch 1 of 3
    monkeypatch.undo()
    out, _, _ = upscale(run_node, parts, images, cfg=1.0)
    assert out.shape == (17, 16, 16, 3) and torch.isfinite(out).all()


def test_every_phase_is_named_and_reports_progress(run_node, parts, monkeypatch):
    """Resize, VAE encode, sampling and VAE decode each name themselves under the node's bar and move it to its end."""
    import comfy.utils
    import server

    recorder, bars = TextRecorder(), []
    original_update = comfy.utils.ProgressBar.update_absolute

    def update_absolute(self, value, total=None, preview=None):
        bars.append((len(recorder.texts), value, total))
        return original_update(self, value, total, preview)

    monkeypatch.setattr(server.PromptServer, "instance", recorder, raising=False)
    monkeypatch.setattr(comfy.utils.ProgressBar, "update_absolute", update_absolute)
    upscale(run_node, parts, clip(frames=9, h=16, w=16), cfg=1.0)
    *phases, report = [text for _, text in recorder.texts]
    assert phases == [f"VEnhancer: {name} ({i}/4)" for i, name in enumerate(["resize", "VAE encode", "sampling", "VAE decode"], 1)]
    assert report.startswith("VEnhancer Upscale peak memory") and all(f"  {p}" in report for p in ("encode", "sampling", "decode"))
    assert {node for node, _ in recorder.texts} == {"run_node"}
    finished = {phase for phase, value, total in bars if value == total}
    assert finished == {1, 2, 3, 4}  # each phase's bar reaches its end (2: 3 encode batches, 4: 3 decode batches)
    assert [(v, t) for p, v, t in bars if p == 2] == [(1, 3), (2, 3), (3, 3)]


def test_largest_seed_runs(run_node, parts):
    out, _, _ = upscale(run_node, parts, clip(frames=2, h=16, w=16), cfg=1.0, seed=0xFFFFFFFFFFFFFFFF)
    assert out.shape == (3, 16, 16, 3) and torch.isfinite(out).all()
