"""ZVRD restoration inside real ComfyUI (tiny SD1.5): Degradation Consistency Guider and Degrade Video.

A synthetic clip (a smooth texture panning right, so its flow is known) is the ground truth; Degrade Video makes the
observation; the guided SDEdit run starts from the same latent and noise as plain SDEdit. The model and VAE have
random weights, so the numbers say what the guidance does to consistency and to the distance from the truth, not
how good a real restoration looks (the README quotes the paper for that).
"""

import pytest
import torch
import torch.nn.functional as F
from video_enhance_kit.utils.degradation import Downsample, Grayscale, Inpaint
from video_enhance_kit.utils.flow import VideoFlow
from video_enhance_kit.utils.metrics import psnr, warping_error

FRAMES, SIZE, SHIFT, STEPS, DENOISE = 4, 64, 8, 4, 0.6
GUIDER = "VEK_DegradationConsistencyGuider"


@pytest.fixture(scope="module")
def host(comfy_host):
    return comfy_host


@pytest.fixture(scope="module")
def InputError(pack):
    return pack("utils.checks").InputError


def panning_clip(frames=FRAMES, size=SIZE, shift=SHIFT, seed=0):
    """IMAGE ``[F, S, S, 3]`` of a smooth texture panning right by ``shift`` px per frame, and its VideoFlow."""
    g = torch.Generator().manual_seed(seed)
    width = size + shift * (frames - 1)
    tex = torch.rand(1, 3, size // 8, width // 8 + 1, generator=g)
    tex = F.interpolate(tex, size=(size, width + 8), mode="bicubic", align_corners=False).clamp(0, 1)
    clip = torch.cat([tex[..., width - size - i * shift: width - i * shift] for i in range(frames)])
    fwd = torch.zeros(frames - 1, 2, size, size)
    fwd[:, 0] = shift
    valid_b = torch.ones(frames - 1, 1, size, size)
    valid_b[..., :shift] = 0
    valid_f = torch.ones(frames - 1, 1, size, size)
    valid_f[..., size - shift:] = 0
    return clip.movedim(1, -1).contiguous(), VideoFlow(fwd, -fwd, valid_f, valid_b)


@pytest.fixture(scope="module")
def setup(host):
    model, clip, vae = host.run_node("CheckpointLoaderSimple", ckpt_name="vek-tiny-sd15.safetensors")
    pos, = host.run_node("CLIPTextEncode", clip=clip, text="a sharp photo")
    neg, = host.run_node("CLIPTextEncode", clip=clip, text="blurry")
    truth, flow = panning_clip()
    return {"model": model, "pos": pos, "neg": neg, "vae": vae, "truth": truth, "flow": flow}


def degrade(host, s, operator, **kw):
    args = {"images": s["truth"], "operator": operator, "factor": 4, "blur_sigma": 1.6, "noise_sigma": 0.0,
            "light_scale": 0.25, "light_offset": 0.0, "seed": 3}
    args.update(kw)
    return host.run_node("VEK_DegradeVideo", **args)


def start_latent(host, s, degraded):
    """SDEdit's start: the degraded video brought to the restored size (bicubic), VAE-encoded."""
    x = degraded.movedim(-1, 1)
    if x.shape[-1] != SIZE:
        x = F.interpolate(x, size=(SIZE, SIZE), mode="bicubic", align_corners=False).clamp(0, 1)
    latent, = host.run_node("VAEEncode", pixels=x.movedim(1, -1).contiguous(), vae=s["vae"])
    return latent


def consistency(host, s, operator, degraded, mask=None, **kw):
    args = {"vae": s["vae"], "degraded": degraded, "operator": operator, "factor": 4, "blur_sigma": 1.6,
            "noise_sigma": 0.0, "light_scale": 0.25, "light_offset": 0.0, "blind_light": True, "method": "gdp",
            "scale": 1.0, "start": 0.0, "end": 1.0, "chunk": 2}
    args.update(kw)
    if mask is not None:
        args["mask"] = mask
    return lambda guider: host.run_node(GUIDER, guider=guider, **args)[0]


def restore(host, s, latent, wrap=None, shared=False, seed=7):
    guider, = host.run_node("CFGGuider", model=s["model"], positive=s["pos"], negative=s["neg"], cfg=3.0)
    for w in wrap or []:
        guider = w(guider)
    if shared:
        noise, = host.run_node("VEK_SharedNoise", noise_seed=seed, share_weight=1.0, blend_lambda=0.2,
                               blend_mode="variance_preserving", flow=s["flow"])
    else:
        noise, = host.run_node("RandomNoise", noise_seed=seed)
    sampler, = host.run_node("KSamplerSelect", sampler_name="euler")
    sigmas, = host.run_node("BasicScheduler", model=s["model"], scheduler="normal", steps=STEPS, denoise=DENOISE)
    out, _ = host.run_node("SamplerCustomAdvanced", noise=noise, guider=guider, sampler=sampler, sigmas=sigmas,
                           latent_image=latent)
    image, = host.run_node("VAEDecode", samples=out, vae=s["vae"])
    return out["samples"], image.movedim(-1, 1).float()


def operator_of(name, mask=None):
    return {"downsample_avgpool": lambda: Downsample(4, "avgpool"), "colourise": Grayscale,
            "inpaint": lambda: Inpaint((mask < 0.5).float().unsqueeze(1))}[name]()


def rms(x):
    return float(x.pow(2).mean().sqrt())


@pytest.mark.parametrize("operator", ["downsample_avgpool", "inpaint", "colourise"])
def test_gdp_is_more_consistent_and_closer_to_the_truth_than_plain_sdedit(host, setup, operator):
    degraded, mask = degrade(host, setup, operator)
    op, truth = operator_of(operator, mask), setup["truth"].movedim(-1, 1)
    y = op(degraded.movedim(-1, 1)) if operator != "downsample_avgpool" else degraded.movedim(-1, 1)
    latent = start_latent(host, setup, degraded)
    _, plain = restore(host, setup, latent)
    _, guided = restore(host, setup, latent, [consistency(host, setup, operator, degraded, mask if operator == "inpaint" else None)])
    err = [rms(op(x) - y) for x in (plain, guided)]
    quality = [float(psnr(x, truth)) for x in (plain, guided)]
    print(f"\n{operator}: ||A(x) - y|| RMS plain SDEdit {err[0]:.4f} -> guided {err[1]:.4f}; "
          f"PSNR vs truth {quality[0]:.2f} -> {quality[1]:.2f} dB")
    assert err[1] < err[0]
    assert quality[1] > quality[0]


def round_trip(host, s, frames):
    """VAE Decode(VAE Encode(frames)) of frames ``[F, 3, H, W]``."""
    latent, = host.run_node("VAEEncode", pixels=frames.movedim(1, -1).contiguous(), vae=s["vae"])
    return host.run_node("VAEDecode", samples=latent, vae=s["vae"])[0].movedim(-1, 1).float()


@pytest.mark.parametrize("operator", ["downsample_avgpool", "inpaint"])
def test_ddnm_final_decode_is_as_consistent_as_the_vae_round_trip(host, setup, operator, pack, monkeypatch):
    """The last projection is exact in pixel space (A P = y); what is left of ||A(D(x)) - y|| is the VAE round trip of P."""
    degraded, mask = degrade(host, setup, operator)
    op = operator_of(operator, mask)
    y = degraded.movedim(-1, 1) if operator != "inpaint" else op(degraded.movedim(-1, 1))
    latent = start_latent(host, setup, degraded)
    core = pack("samplers.restoration")
    projected, project = [], core.range_null_space
    monkeypatch.setattr(core, "range_null_space", lambda *a: projected.append(project(*a)) or projected[-1])
    wrap = consistency(host, setup, operator, degraded, mask if operator == "inpaint" else None, method="ddnm")
    _, restored = restore(host, setup, latent, [wrap])
    _, plain = restore(host, setup, latent)
    assert len(projected) == STEPS and rms(op(projected[-1]) - y) < 1e-5  # exact in pixel space (before the clamp to 0..1)
    err = {"plain SDEdit": rms(op(plain) - y), "ddnm final decode": rms(op(restored) - y),
           "round trip of the last projection": rms(op(round_trip(host, setup, projected[-1].clamp(0, 1))) - y),
           "round trip of the truth": rms(op(round_trip(host, setup, setup["truth"].movedim(-1, 1))) - y)}
    print(f"\n{operator} ddnm: ||A(D(x)) - y|| RMS " + ", ".join(f"{k} {v:.4f}" for k, v in err.items()))
    assert err["ddnm final decode"] <= err["round trip of the last projection"] + 1e-4
    assert err["ddnm final decode"] < err["plain SDEdit"]


@pytest.mark.parametrize("method", ["gdp", "ddnm"])
def test_scale_zero_is_bit_identical_and_the_input_guider_is_untouched(host, setup, method):
    degraded, _ = degrade(host, setup, "downsample_avgpool")
    latent = start_latent(host, setup, degraded)
    plain, _ = restore(host, setup, latent)
    off, _ = restore(host, setup, latent, [consistency(host, setup, "downsample_avgpool", degraded, method=method, scale=0.0)])
    assert torch.equal(off, plain)
    on, _ = restore(host, setup, latent, [consistency(host, setup, "downsample_avgpool", degraded, method=method)])
    assert torch.isfinite(on).all() and not torch.equal(on, plain)
    early, _ = restore(host, setup, latent, [consistency(host, setup, "downsample_avgpool", degraded, method=method, end=0.05)])
    assert torch.equal(early, plain)  # the window [start, end] = the first 5 % of the schedule holds no step of this SDEdit run


def temporal(host, s, scale=0.5):
    return lambda guider: host.run_node("VEK_TemporalConsistencyGuider", guider=guider, guidance_scale=scale,
                                        semantic_weight=0.0, pixel_start=0.0, loss_space="latent", flow=s["flow"])[0]


def test_temporal_guider_and_shared_noise_on_top_lower_the_warping_error(host, setup):
    degraded, _ = degrade(host, setup, "downsample_avgpool")
    latent = start_latent(host, setup, degraded)
    restoring = consistency(host, setup, "downsample_avgpool", degraded)
    flow = setup["flow"]
    results = {
        "consistency guider alone": restore(host, setup, latent, [restoring])[1],
        "+ temporal guider + shared noise": restore(host, setup, latent, [restoring, temporal(host, setup)], shared=True)[1],
        "temporal guider first (other order)": restore(host, setup, latent, [temporal(host, setup), restoring], shared=True)[1],
    }
    we = {k: 100 * float(warping_error(v, flow.backward, flow.valid_backward)) for k, v in results.items()}
    print("\nWE x100: " + ", ".join(f"{k} {v:.3f}" for k, v in we.items()))
    assert we["+ temporal guider + shared noise"] < we["consistency guider alone"]
    assert we["temporal guider first (other order)"] < we["consistency guider alone"]


def test_degrade_video_operators(host, setup):
    truth = setup["truth"]
    small, mask = degrade(host, setup, "downsample_avgpool")
    assert small.shape == (FRAMES, SIZE // 4, SIZE // 4, 3) and not mask.any()
    assert torch.allclose(small.movedim(-1, 1), F.avg_pool2d(truth.movedim(-1, 1), 4), atol=1e-6)
    gray, _ = degrade(host, setup, "colourise")
    assert torch.equal(gray[..., 0], gray[..., 1]) and torch.equal(gray[..., 0], gray[..., 2])
    holes, mask = degrade(host, setup, "inpaint")
    assert mask.shape == (FRAMES, SIZE, SIZE) and 0.1 < float(mask.mean()) < 0.4
    assert torch.equal(holes[mask > 0.5], torch.zeros_like(holes[mask > 0.5]))
    noisy_a, _ = degrade(host, setup, "denoise", noise_sigma=0.1)
    noisy_b, _ = degrade(host, setup, "denoise", noise_sigma=0.1)
    assert torch.equal(noisy_a, noisy_b) and 0.07 < rms(noisy_a - truth) < 0.11  # seeded (clamping trims a little)
    dark, _ = degrade(host, setup, "low_light", light_scale=0.3, light_offset=0.02)
    assert torch.allclose(dark, 0.3 * truth + 0.02, atol=1e-6)


def test_blind_low_light_restores_brightness(host, setup):
    dark, _ = degrade(host, setup, "low_light", light_scale=0.3)
    latent = start_latent(host, setup, dark)
    _, plain = restore(host, setup, latent)
    _, guided = restore(host, setup, latent, [consistency(host, setup, "low_light", dark, light_scale=0.3, blind_light=False)])
    assert torch.isfinite(guided).all() and not torch.equal(guided, plain)


def test_bad_inputs_name_the_input(host, setup, InputError):
    cfg, = host.run_node("CFGGuider", model=setup["model"], positive=setup["pos"], negative=setup["neg"], cfg=3.0)
    degraded, mask = degrade(host, setup, "downsample_avgpool")
    latent = start_latent(host, setup, degraded)
    with pytest.raises(InputError, match="'degraded'.*16x16"):  # factor 2 wants 32x32 observations
        restore(host, setup, latent, [consistency(host, setup, "downsample_avgpool", degraded, factor=2)])
    with pytest.raises(InputError, match="'degraded'.*frames"):
        restore(host, setup, latent, [consistency(host, setup, "downsample_avgpool", degraded[:2])])
    with pytest.raises(InputError, match="'method'"):
        consistency(host, setup, "downsample_bicubic", degraded, method="ddnm")(cfg)
    with pytest.raises(InputError, match="'method'"):
        consistency(host, setup, "blur", setup["truth"], method="ddnm")(cfg)
    holes, mask = degrade(host, setup, "inpaint")
    with pytest.raises(InputError, match="'mask'"):
        consistency(host, setup, "inpaint", holes, mask[:, :32, :32])(cfg)
    with pytest.raises(InputError, match="'mask'"):
        consistency(host, setup, "inpaint", holes)(cfg)
    with pytest.raises(InputError, match="'images'"):
        degrade(host, setup, "downsample_avgpool", images=setup["truth"][:, :62, :62])
    with pytest.raises(InputError, match="'guider'"):
        consistency(host, setup, "blur", setup["truth"])("not a guider")
    with pytest.raises(InputError, match="'end'"):
        consistency(host, setup, "blur", setup["truth"], start=0.8, end=0.2)(cfg)
