"""EVS Sampler in real ComfyUI: tiny SD1.5 as T2I and as a same-space T2V stand-in, tiny Wan through the VAE bridge."""

import pytest
import torch

NODE = "VEK_EVSSampler"


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


def settings(t2i, t2v, **over):
    model, pos, neg, _ = t2i
    vmodel, vpos, vneg, _ = t2v
    kw = {"t2i_model": model, "t2i_positive": pos, "t2i_negative": neg, "t2v_model": vmodel, "t2v_positive": vpos, "t2v_negative": vneg,
              "seed": 5, "t2i_steps": 10, "t2i_strength": 0.4, "t2v_at": 0.2, "t2i_sampler": "ddim", "t2i_scheduler": "ddim_uniform", "t2i_cfg": 3.0,
              "t2v_steps": 4, "t2v_strength": 0.5, "t2v_block_steps": 0, "t2v_sampler": "euler", "t2v_scheduler": "sgm_uniform", "t2v_cfg": 1.0,
              "t2v_enabled": True, "sfi": False, "sfi_gamma": 0.8, "sfi_depth_min": 0.0, "sfi_depth_max": 1.0, "latent": latent()}
    kw.update(over)
    return kw


def counted(model, key="vek_test_count"):
    """A clone of ``model`` that counts its model calls (and can run a hook on each)."""
    import comfy.patcher_extension

    m = model.clone()
    m.vek_calls = 0
    m.vek_hook = None

    def wrapper(executor, *args, **kwargs):
        out = executor(*args, **kwargs)
        m.vek_calls += 1
        if m.vek_hook is not None:
            m.vek_hook(m.vek_calls)
        return out

    m.add_wrapper_with_key(comfy.patcher_extension.WrappersMP.APPLY_MODEL, key, wrapper)
    return m


def snapshot(model):
    """What a node must not change on a MODEL it receives."""
    mo = model.model_options
    to = mo.get("transformer_options", {})
    return (repr(sorted(to.get("patches_replace", {}).items(), key=str)), sorted(to), repr(to.get("wrappers", {})), len(model.patches),
            model.model_options is mo)


def test_disabled_equals_ksampler_advanced_bit_for_bit(run_node, sd15):
    kw = settings(sd15, sd15, t2v_enabled=False)
    out, image = run_node(NODE, **kw)
    model, pos, neg, _ = sd15
    (ref,) = run_node("KSamplerAdvanced", model=model, add_noise="enable", noise_seed=5, steps=10, cfg=3.0, sampler_name="ddim",
                      scheduler="ddim_uniform", positive=pos, negative=neg, latent_image=kw["latent"], start_at_step=6,
                      end_at_step=10000, return_with_leftover_noise="disable")
    assert torch.equal(out["samples"], ref["samples"])
    assert image is None  # no t2i_vae given


@pytest.mark.parametrize("sfi", [False, True])
def test_model_calls_and_models_unchanged(run_node, sd15, sfi):
    t2i = counted(sd15[0])
    t2v = counted(sd15[0])
    before = (snapshot(t2i), snapshot(t2v))
    kw = settings((t2i, *sd15[1:]), (t2v, *sd15[1:]), sfi=sfi, sfi_gamma=1.0)
    out, _ = run_node(NODE, **kw)
    n_i = 4  # round(10 * 0.4)
    m_v = 2  # round(4 * 0.5), t2v_block_steps 0 = all of them
    assert t2i.vek_calls == n_i
    assert t2v.vek_calls == m_v + (m_v if sfi else 0)
    assert (snapshot(t2i), snapshot(t2v)) == before
    assert out["samples"].shape == kw["latent"]["samples"].shape and torch.isfinite(out["samples"]).all()


def test_block_changes_result_and_sfi_injects(run_node, sd15, pack, monkeypatch):
    fi = pack("attention.feature_injection").FeatureInjection
    seen = {"record": 0, "inject": 0}
    original = fi.qkv

    def spy(self, q, k, v, layer, depth, sigma):
        if self.mode in seen:
            seen[self.mode] += 1
        return original(self, q, k, v, layer, depth, sigma)

    monkeypatch.setattr(fi, "qkv", spy)
    plain, _ = run_node(NODE, **settings(sd15, sd15, t2v_enabled=False))
    sdedit, _ = run_node(NODE, **settings(sd15, sd15))
    assert seen == {"record": 0, "inject": 0}
    injected, _ = run_node(NODE, **settings(sd15, sd15, sfi=True, sfi_gamma=1.0))
    # tiny SD1.5: 2 self-attention layers (input 1, output 3... one level) x 2 inversion and 2 denoising calls
    assert seen["record"] > 0 and seen["inject"] == seen["record"]
    assert not torch.equal(plain["samples"], sdedit["samples"])
    assert not torch.equal(sdedit["samples"], injected["samples"])


def test_one_progress_bar_spans_both_models(run_node, sd15, pack, monkeypatch):
    """One ProgressBar whose total is every model call of both models (here SFI: 4 T2I + 2 inversion + 2 T2V)."""
    import comfy.utils

    bars = []

    class Recorder:
        def __init__(self, total, node_id=None):
            self.total, self.values = total, []
            bars.append(self)

        def update_absolute(self, value, total=None, preview=None):
            self.values.append((value, total, preview is not None))

    monkeypatch.setattr(comfy.utils, "ProgressBar", Recorder)
    run_node(NODE, **settings(sd15, sd15, sfi=True))
    assert len(bars) == 1 and bars[0].total == 4 + 2 + 2
    assert [v for v, _, _ in bars[0].values] == list(range(1, 9))
    # order: 2 T2I steps, 2 inversion calls, 2 T2V steps, 2 T2I steps; previews on sampling steps only when the
    # host enables previews (ComfyUI's --preview-method; none by default)
    import latent_preview
    from comfy.cli_args import LatentPreviewMethod, args

    with_previews = args.preview_method != LatentPreviewMethod.NoPreviews and latent_preview is not None
    expected = [True] * 2 + [False] * 2 + [True] * 4 if with_previews else [False] * 8
    assert [p for _, _, p in bars[0].values] == expected


def test_interruption_between_model_calls(run_node, sd15):
    import comfy.model_management as mm

    t2i = counted(sd15[0])
    t2i.vek_hook = lambda n: mm.interrupt_current_processing(True) if n == 2 else None
    try:
        with pytest.raises(mm.InterruptProcessingException):
            run_node(NODE, **settings((t2i, *sd15[1:]), sd15))
    finally:
        mm.interrupt_current_processing(False)
    assert t2i.vek_calls == 2  # stopped before the third model call


def test_wan_through_the_vae_bridge(run_node, sd15, wan, pack, monkeypatch):
    fi = pack("attention.feature_injection").FeatureInjection
    seen = {"record": 0, "inject": 0}
    original = fi.qkv

    def spy(self, q, k, v, layer, depth, sigma):
        if self.mode in seen:
            seen[self.mode] += 1
        return original(self, q, k, v, layer, depth, sigma)

    monkeypatch.setattr(fi, "qkv", spy)
    t2v = counted(wan[0])
    before = snapshot(t2v)
    kw = settings(sd15, (t2v, *wan[1:]), latent=latent(frames=5, size=2), t2i_vae=sd15[3], t2v_vae=wan[3], t2v_scheduler="simple", sfi=True,
                  sfi_gamma=1.0)
    out, image = run_node(NODE, **kw)
    assert out["samples"].shape == (5, 4, 2, 2) and torch.isfinite(out["samples"]).all()
    assert image.shape == (5, 16, 16, 3)
    assert t2v.vek_calls == 2 + 2
    assert seen["record"] == 2 * 2 and seen["inject"] == 2 * 2  # 2 Wan blocks x 2 calls, self-attention only
    assert snapshot(t2v) == before


def test_errors_name_the_input(run_node, sd15, wan):
    cases = [
        (settings(sd15, wan, latent=latent(frames=4, size=2), t2i_vae=sd15[3], t2v_vae=wan[3]), "latent"),
        (settings(sd15, wan, latent=latent(frames=5, size=2), t2i_vae=sd15[3]), "t2v_vae"),
        (settings(sd15, sd15, t2v_at=0.5), "t2v_at"),
        (settings(wan, sd15), "t2i_model"),
        (settings(sd15, sd15, latent=latent(frames=1)), "latent"),
        (settings(sd15, sd15, latent={"samples": torch.full((3, 4, 4, 4), float("nan"))}), "latent"),
        (settings(sd15, sd15, t2v_block_steps=3), "t2v_block_steps"),
        (settings(sd15, sd15, t2i_strength=0.0, t2v_at=0.0), "t2i_strength"),
        (settings(sd15, sd15, latent=None), "latent"),
        (settings(sd15, sd15, latent=None, images=torch.rand(3, 32, 32, 3)), "t2i_vae"),
    ]
    for kw, name in cases:
        with pytest.raises(ValueError) as err:
            run_node(NODE, **kw)
        assert f"input '{name}'" in str(err.value), (name, str(err.value))


def test_images_input_with_vae(run_node, sd15):
    out, image = run_node(NODE, **settings(sd15, sd15, latent=None, images=torch.rand(3, 32, 32, 3), t2i_vae=sd15[3]))
    assert out["samples"].shape == (3, 4, 4, 4) and image.shape == (3, 32, 32, 3)
    assert float(image.min()) >= 0.0 and float(image.max()) <= 1.0


SYNC_CALLS = ("item", "__bool__", "__float__", "__int__", "tolist", "cpu")


def pack_syncs(monkeypatch, pack_root):
    """Count the host reads of tensors (``.item()``, ``bool()``, ``float()``, ``int()``, ``.tolist()``, ``.cpu()``)
    made by the pack's own code, as ``{(file relative to the pack, call): n}``."""
    import sys
    from collections import Counter

    seen = Counter()
    for name in SYNC_CALLS:
        original = getattr(torch.Tensor, name)

        def wrapped(self, *args, _original=original, _name=name, **kwargs):
            caller = sys._getframe(1).f_code.co_filename
            if caller.startswith(pack_root):
                seen[(caller[len(pack_root):], _name)] += 1
            return _original(self, *args, **kwargs)

        monkeypatch.setattr(torch.Tensor, name, wrapped)
    return seen


def test_no_host_sync_per_attention_call_or_stage(run_node, sd15, pack, monkeypatch):
    """SFI's injection reads nothing back per attention call and the stages hand latents on without .cpu():
    the pack's syncs in the injection and the node are per run (the same for 2 and 4 T2V steps)."""
    from pathlib import Path

    root = str(Path(pack("attention.feature_injection").__file__).parents[1]) + "/"
    fi = pack("attention.feature_injection").FeatureInjection
    calls = {"n": 0}
    original = fi.qkv

    def counted_qkv(self, *args, **kwargs):
        calls["n"] += 1
        return original(self, *args, **kwargs)

    monkeypatch.setattr(fi, "qkv", counted_qkv)
    per_run = {}
    for t2v_steps in (4, 8):
        seen = pack_syncs(monkeypatch, root)
        calls["n"] = 0
        run_node(NODE, **settings(sd15, sd15, sfi=True, sfi_gamma=1.0, t2v_steps=t2v_steps))
        per_run[t2v_steps] = (dict(seen), calls["n"])
        monkeypatch.undo()
        monkeypatch.setattr(fi, "qkv", counted_qkv)
    (few, few_calls), (more, more_calls) = per_run[4], per_run[8]
    assert more_calls == 2 * few_calls > 0  # twice the attention calls ...
    hot = ("attention/feature_injection.py", "nodes/_feature_injection.py", "nodes/evs.py", "nodes/_evs.py", "samplers/evs_block.py")
    assert {k: v for k, v in few.items() if k[0] in hot} == {k: v for k, v in more.items() if k[0] in hot}  # ... not one sync more
    assert few.get(("attention/feature_injection.py", "tolist")) == 1  # the recorded levels, read once per run
    # .cpu() only on the two schedules (once per run each): no latent goes through the CPU between stages
    assert [(k, v) for k, v in few.items() if k[1] == "cpu"] == [(("nodes/_evs.py", "cpu"), 2)]
