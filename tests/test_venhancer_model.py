"""VEnhancer network: the official state-dict layout, shapes, dtypes and the conditioning paths."""

import hashlib
from pathlib import Path

import pytest
import torch
from video_enhance_kit.models import venhancer as V
from video_enhance_kit.models import venhancer_blocks

MANIFEST = Path(__file__).parent / "data" / "venhancer_state_dict_manifest.tsv"
MANIFEST_SHA256 = "69ef7fc6ebb468ebfe90222feb60600daa4bc3636edf731e904a3c0fe0e1c48f"

TINY = V.VEnhancerConfig(
    model_channels=32, channel_mult=(1, 2), num_res_blocks=1, attention_levels=1, head_dim=16, context_dim=32, temporal_heads=2
)


def read_manifest():
    rows = [line.split("\t") for line in MANIFEST.read_text().splitlines() if line]
    return [(k, [int(s) for s in shape.strip("[]").split(",") if s.strip()]) for k, shape in rows]


def randomize(model, gen, scale=0.05):
    """Give the zero-initialised layers random weights so every path contributes."""
    with torch.no_grad():
        for p in model.parameters():
            if not p.any():
                p.copy_(torch.randn(p.shape, generator=gen) * scale)
    return model


def test_manifest_file_is_the_facts_file():
    assert hashlib.sha256(MANIFEST.read_bytes()).hexdigest() == MANIFEST_SHA256


def test_default_config_state_dict_equals_the_official_manifest():
    model = V.build_venhancer(device="meta")
    ours = [(V.official_key(k), list(v.shape)) for k, v in model.state_dict().items()]
    manifest = read_manifest()
    assert len(manifest) == V.OFFICIAL_TENSORS == 2180
    assert dict(ours) == dict(manifest)  # both directions: no missing, no extra key, same shapes
    assert ours == manifest  # and the same order
    assert V.count_parameters(model) == V.OFFICIAL_PARAMETERS == 2_044_809_796
    base = sum(p.numel() for k, p in model.named_parameters() if not k.startswith("VideoControlNet."))
    assert base == 1_411_233_860
    assert all(p.device.type == "meta" for p in model.parameters())


def test_key_map_is_identity_and_keeps_upstream_spelling():
    model = V.build_venhancer(device="meta")
    keys = list(model.state_dict())
    assert V.OFFICIAL_KEY_MAP == {}
    assert [V.official_key(k) for k in keys] == keys
    assert "input_blocks.1.0.temopral_conv.conv4.3.weight" in keys


def test_latent_size_rule_matches_the_padding_rule():
    # official: latent H = 2 mod 8 and W = 0 mod 8 (pixel H = 16 mod 64, W = 0 mod 64)
    assert V.latent_size_ok(90, 160) and V.latent_size_ok(146, 248)
    assert not V.latent_size_ok(88, 160) and not V.latent_size_ok(90, 164)
    with pytest.raises(ValueError, match="pad"):
        V.check_latent_size(89, 160, V.OFFICIAL_CONFIG)


def tiny_inputs(gen, f=5, h=6, w=8):
    x = torch.randn(1, 4, f, h, w, generator=gen)
    ctx = torch.randn(1, 7, 32, generator=gen)
    hint = torch.randn(1, 4, 3, h, w, generator=gen)
    mask = torch.tensor([[0, -1, 1, -1, 2]])
    return x, ctx, hint, mask


def test_forward_shape_and_zero_init_controlnet_is_inert(gen):
    model = V.build_venhancer(TINY)
    with torch.no_grad():
        for name, p in model.named_parameters():  # random base, zero ControlNet outputs as trained init
            if not p.any() and not name.startswith("VideoControlNet."):
                p.copy_(torch.randn(p.shape, generator=gen) * 0.05)
    x, ctx, hint, mask = tiny_inputs(gen)
    t = torch.tensor([500])
    with torch.no_grad():
        a = model(x, t, ctx)
        b = model(x, t, ctx, hint=hint, t_hint=torch.tensor([199]), s_cond=torch.tensor([8]), mask_cond=mask)
    assert a.shape == x.shape and torch.isfinite(a).all() and a.abs().max() > 1e-3
    assert torch.allclose(a, b)  # zero convs: the ControlNet adds nothing at initialisation


def test_controlnet_inputs_change_the_output(gen):
    model = randomize(V.build_venhancer(TINY), gen)
    x, ctx, hint, mask = tiny_inputs(gen)
    t = torch.tensor([500])
    with torch.no_grad():
        a = model(x, t, ctx, hint=hint, t_hint=torch.tensor([199]), s_cond=torch.tensor([8]), mask_cond=mask)
        b = model(x, t, ctx, hint=hint * 2, t_hint=torch.tensor([199]), s_cond=torch.tensor([8]), mask_cond=mask)
        c = model(x, t, ctx, hint=hint, t_hint=torch.tensor([199]), s_cond=torch.tensor([2]), mask_cond=mask)
    assert (a - b).abs().max() > 1e-3 and (a - c).abs().max() > 1e-3


def test_scatter_hint_places_key_frames(gen):
    conv = torch.nn.Identity()
    hint = torch.randn(1, 2, 3, 2, 2, generator=gen)
    out = V.scatter_hint(conv, hint, torch.tensor([[0, -1, -1, 1, -1, -1, 2]])).reshape(1, 7, 2, 2, 2)
    for frame, key in [(0, 0), (3, 1), (6, 2)]:
        assert torch.equal(out[0, frame], hint[0, :, key])
    assert out[0, [1, 2, 4, 5]].abs().sum() == 0


def test_sdpa_equals_naive_attention(gen):
    q, k, v = (torch.randn(3, 2, 10, 16, generator=gen) for _ in range(3))
    assert torch.allclose(V.sdpa_attention(q, k, v), V.naive_attention(q, k, v), atol=1e-5)


def test_temporal_transformer_mixes_frames_spatial_does_not(gen):
    model = randomize(V.build_venhancer(TINY), gen)
    x, ctx, _, _ = tiny_inputs(gen)
    x2 = x.clone()
    x2[:, :, 4] += 1.0  # change only the last frame
    with torch.no_grad():
        a, b = model(x, torch.tensor([500]), ctx), model(x2, torch.tensor([500]), ctx)
    assert (a[:, :, 0] - b[:, :, 0]).abs().max() > 1e-4  # frame 0 sees frame 4 through temporal layers


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_half_precision_matches_fp32(gen, dtype):
    model = randomize(V.build_venhancer(TINY), gen)
    x, ctx, hint, mask = tiny_inputs(gen)
    kw = {"hint": hint, "t_hint": torch.tensor([199]), "s_cond": torch.tensor([8]), "mask_cond": mask}
    with torch.no_grad():
        ref = model(x, torch.tensor([500]), ctx, **kw)
        half = model.to(dtype)(x, torch.tensor([500]), ctx, **kw)
    assert half.dtype == x.dtype  # output returned in the input dtype
    assert torch.isfinite(half).all()
    assert (half - ref).abs().max() < 0.05 * ref.abs().max() + 1e-2


def test_every_attention_call_goes_through_the_given_function(gen):
    """A recording stand-in sees every attention of both networks (spatial, temporal, cross); SDPA stays the default."""
    model = randomize(V.build_venhancer(TINY), gen)
    x, ctx, hint, mask = tiny_inputs(gen)
    t = torch.tensor([500])
    calls, layers = [], []
    for name, module in model.named_modules():
        if isinstance(module, venhancer_blocks.Attention):
            module.register_forward_hook(lambda m, args, out, name=name: layers.append(name))

    def recording(q, k, v):
        calls.append((q.shape, k.shape))
        return V.default_attention(q, k, v)

    kw = {"hint": hint, "t_hint": torch.tensor([199]), "s_cond": torch.tensor([8]), "mask_cond": mask}
    with torch.no_grad():
        plain = model(x, t, ctx, **kw)
        layers.clear()
        routed = model(x, t, ctx, attention=recording, **kw)
    assert len(calls) == len(layers) > 0
    assert any(n.startswith("VideoControlNet.") for n in layers) and any(not n.startswith("VideoControlNet.") for n in layers)
    assert {n.rsplit(".", 1)[-1] for n in layers} == {"attn1", "attn2"}
    assert all(len(q) == 4 for q, _ in calls)  # [N, heads, L, d]
    assert torch.equal(routed, plain)  # the default is that function: same bits
    with torch.no_grad():
        assert not torch.allclose(model(x, t, ctx, attention=lambda q, k, v: 0.5 * V.default_attention(q, k, v), **kw), plain)


def test_scatter_hint_is_sync_free_and_handles_a_batch(gen, monkeypatch):
    hint = torch.randn(2, 2, 3, 2, 2, generator=gen)
    mask = torch.tensor([[0, -1, 1, -1, 2], [-1, 2, 0, -1, 1]])
    reads = []
    for name in ("item", "__bool__", "__int__", "tolist", "cpu", "nonzero"):
        original = getattr(torch.Tensor, name)
        monkeypatch.setattr(torch.Tensor, name, lambda self, *a, _o=original, _n=name, **k: reads.append(_n) or _o(self, *a, **k))
    out = V.scatter_hint(torch.nn.Identity(), hint, mask).reshape(2, 5, 2, 2, 2)
    monkeypatch.undo()
    assert reads == []
    for b in range(2):
        for f in range(5):
            key = int(mask[b, f])
            expected = hint[b, :, key] if key >= 0 else torch.zeros(2, 2, 2)
            assert torch.equal(out[b, f], expected)


def test_operations_argument_builds_every_layer_from_the_given_classes(gen):
    """A host's layer classes (ComfyUI's comfy.ops) build every weight layer; same state dict, same output."""
    import types

    made = []

    def tracked(base):
        return type("Tracked" + base.__name__, (base,), {"__init__": lambda self, *a, **k: (base.__init__(self, *a, **k), made.append(self))[0]})

    names = ("Linear", "Conv1d", "Conv2d", "Conv3d", "GroupNorm", "LayerNorm")
    operations = types.SimpleNamespace(**{n: tracked(getattr(torch.nn, n)) for n in names})
    cfg = V.VEnhancerConfig(model_channels=32, channel_mult=(1, 2), num_res_blocks=1, attention_levels=1, head_dim=16, context_dim=16, temporal_heads=1)
    plain = randomize(V.build_venhancer(cfg), gen)
    hosted = V.build_venhancer(cfg, operations=operations)
    weight_layers = [m for m in hosted.modules() if isinstance(m, tuple(getattr(torch.nn, n) for n in names))]
    assert len(weight_layers) == len(made) > 50 and all(type(m).__name__.startswith("Tracked") for m in weight_layers)
    assert not any(type(m).__name__.startswith("Tracked") for m in V.build_venhancer(cfg).modules())  # the scope ends with the build
    hosted.load_state_dict(plain.state_dict())
    x = torch.randn(1, 4, 3, 10, 8, generator=gen)
    t, ctx = torch.tensor([500]), torch.randn(1, 5, 16, generator=gen)
    kw = {"hint": torch.randn(1, 4, 2, 10, 8, generator=gen), "t_hint": torch.tensor([199]), "s_cond": torch.tensor([8.0]), "mask_cond": torch.tensor([[0, -1, 1]])}
    assert torch.equal(plain(x, t, ctx, **kw), hosted(x, t, ctx, **kw))


def test_compute_dtype_runs_activations_in_another_dtype_than_the_weights(gen):
    cfg = V.VEnhancerConfig(model_channels=32, channel_mult=(1, 2), num_res_blocks=1, attention_levels=1, head_dim=16, context_dim=16, temporal_heads=1)
    model = V.build_venhancer(cfg)
    x, t, ctx = torch.randn(1, 4, 2, 10, 8, generator=gen), torch.tensor([300]), torch.randn(1, 5, 16, generator=gen)
    ref = model(x, t, ctx)
    model.compute_dtype = torch.float64
    assert model.dtype == torch.float64
    with pytest.raises(RuntimeError):  # float32 weights cannot run float64 activations without a host's casting layers
        model(x, t, ctx)
    model.compute_dtype = None
    assert torch.equal(model(x, t, ctx), ref)
