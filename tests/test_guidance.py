"""ZVRD temporal consistency guidance (Eq. 8-10)."""

import pytest
import torch
import torch.nn.functional as F
from video_enhance_kit.samplers.guidance import (
    GuidanceSettings,
    TemporalConsistencyGuidance,
    pixel_consistency_loss,
    semantic_consistency_loss,
)
from video_enhance_kit.utils.checks import InputError
from video_enhance_kit.utils.flow import subsample_flow


def smooth(gen, *shape):
    x = torch.randn(*shape, generator=gen)
    return F.avg_pool2d(F.pad(x, (1, 1, 1, 1), mode="circular"), 3, 1)


def moving_pair(gen, frames=2, c=4, h=16, w=16, dx=2):
    """Frames of one texture shifted right by dx px per frame, plus independent flicker; exact backward flow."""
    base = smooth(gen, 1, c, h, w + dx * frames)
    clip = torch.cat([base[..., dx * (frames - 1 - i): dx * (frames - 1 - i) + w] for i in range(frames)])
    clip = clip + 0.3 * torch.randn(clip.shape, generator=gen)
    flow = torch.zeros(frames - 1, 2, h, w)
    flow[:, 0] = -dx
    mask = torch.ones(frames - 1, 1, h, w)
    mask[..., :dx] = 0  # uncovered at the left border
    return clip, flow, mask


class Encoder(torch.nn.Module):
    """A small stand-in for a CLIP image encoder: RGB [N, 3, H, W] -> [N, 16]."""

    def __init__(self):
        super().__init__()
        g = torch.Generator().manual_seed(0)
        self.conv = torch.nn.Conv2d(3, 16, 3, padding=1)
        with torch.no_grad():
            self.conv.weight.copy_(torch.randn(self.conv.weight.shape, generator=g) * 0.3)

    def forward(self, x):
        return torch.relu(self.conv(x)).mean((2, 3))


def test_one_guided_step_lowers_pixel_loss_on_known_flow(gen):
    x0, flow, mask = moving_pair(gen)
    before = float(pixel_consistency_loss(x0, flow, mask))
    guide = TemporalConsistencyGuidance(GuidanceSettings(scale=0.1, gamma=0.0), flow=(flow, mask))
    out = guide(x0, sigma=0.5)
    after = float(pixel_consistency_loss(out, flow, mask))
    assert after < 0.9 * before
    assert out.shape == x0.shape and not out.requires_grad


def test_pixel_loss_zero_for_exact_motion_and_masked(gen):
    x0, flow, mask = moving_pair(gen, frames=3)
    clean = x0.clone()
    base = smooth(gen, 1, 4, 16, 40)
    clean = torch.cat([base[..., 4:20], base[..., 2:18], base[..., 0:16]])
    assert float(pixel_consistency_loss(clean, flow, mask)) < 1e-6
    assert float(pixel_consistency_loss(x0, flow, torch.zeros_like(mask))) == 0.0


def test_zero_scale_is_bit_identical_and_pixel_term_only_below_threshold(gen):
    x0, flow, mask = moving_pair(gen)
    off = TemporalConsistencyGuidance(GuidanceSettings(scale=0.0), flow=(flow, mask))
    assert off(x0, 0.5) is x0
    late = TemporalConsistencyGuidance(GuidanceSettings(scale=0.1, gamma=0.0, pixel_sigma=1.0), flow=(flow, mask))
    assert torch.equal(late(x0, 5.0), x0)  # above T_TC, no semantic encoder: nothing to do
    assert not torch.equal(late(x0, 0.5), x0)


def test_semantic_step_raises_cosine_similarity(gen):
    enc = Encoder()
    rgb = torch.rand(2, 3, 16, 16, generator=gen)
    rgb[0, 0] *= 0.2  # a colour cast on frame 0
    rgb[1, 2] *= 0.2
    with torch.no_grad():
        before = float(semantic_consistency_loss(enc(rgb)))
    guide = TemporalConsistencyGuidance(GuidanceSettings(scale=0.02, gamma=1.0, pixel_sigma=0.0, loss_space="pixel"),
                                        to_rgb=lambda x: x, embed=enc)
    out = guide(rgb, sigma=3.0)
    with torch.no_grad():
        after = float(semantic_consistency_loss(enc(out)))
    assert after < 0.9 * before
    assert all(p.grad is None for p in enc.parameters())


def test_no_grad_into_model_and_one_call_per_step(gen):
    model = torch.nn.Conv2d(4, 4, 3, padding=1)
    calls = []

    def denoise(x, sigma):
        calls.append(torch.is_grad_enabled())
        return model(x)

    x0, flow, mask = moving_pair(gen)
    sigmas = torch.tensor([2.0, 1.0, 0.5, 0.0])
    guide = TemporalConsistencyGuidance(GuidanceSettings(scale=0.2, gamma=0.0), flow=(flow, mask))

    def run(guided):
        x = x0 * sigmas[0]
        with torch.no_grad():
            for i in range(3):
                d = denoise(x, sigmas[i])
                if guided:
                    d = guide(d, float(sigmas[i]))
                x = d + (x - d) / sigmas[i] * sigmas[i + 1]
        return x

    plain = run(False)
    n_plain = len(calls)
    guided = run(True)
    assert len(calls) - n_plain == n_plain == 3
    assert not any(calls)
    assert all(p.grad is None for p in model.parameters())
    assert float(pixel_consistency_loss(guided, flow, mask)) < float(pixel_consistency_loss(plain, flow, mask))


def test_video_latent_5d_and_flow_resized(gen):
    clip, flow, mask = moving_pair(gen, frames=3, h=16, w=16, dx=2)
    video = clip.permute(1, 0, 2, 3)[None]  # [1, C, T, H, W]
    big_flow = F.interpolate(flow, scale_factor=2.0) * 2
    big_mask = F.interpolate(mask, scale_factor=2.0)
    guide = TemporalConsistencyGuidance(GuidanceSettings(scale=0.1, gamma=0.0), flow=(big_flow, big_mask))
    out = guide(video, 0.1)
    assert out.shape == video.shape
    frames = out[0].permute(1, 0, 2, 3)
    assert float(pixel_consistency_loss(frames, flow, mask)) < float(pixel_consistency_loss(clip, flow, mask))


def test_flow_reestimated_from_previous_x0(gen):
    x0, flow, mask = moving_pair(gen)
    seen = []

    def estimate(frames):
        seen.append(frames.clone())
        return flow, mask

    guide = TemporalConsistencyGuidance(GuidanceSettings(scale=0.1, gamma=0.0), estimate_flow=estimate)
    assert torch.equal(guide(x0, 0.5), x0)  # first step: no previous x0 yet
    out = guide(x0 + 0.01, 0.4)
    assert len(seen) == 1 and torch.equal(seen[0], x0)
    assert not torch.equal(out, x0 + 0.01)


def test_subsample_flow_composes_translations():
    flow = torch.zeros(8, 2, 8, 12)
    flow[:, 0] = -1.0
    mask = torch.ones(8, 1, 8, 12)
    mask[0, :, :, 5] = 0  # an occlusion in the first pair's chain shows up in the composed mask
    out, m = subsample_flow(flow, mask, 4)
    assert out.shape == (2, 2, 8, 12) and m.shape == (2, 1, 8, 12)
    assert float(m[1].min()) == 1.0 and float(m[0].min()) == 0.0
    assert torch.allclose(out[:, 0, :, 4:], torch.full((2, 8, 8), -4.0))
    with pytest.raises(InputError, match="flow"):
        subsample_flow(flow[:7], mask[:7], 4)


def test_settings_checked():
    with pytest.raises(InputError, match="guidance_scale"):
        GuidanceSettings(scale=-1).check()
    with pytest.raises(InputError, match="loss_space"):
        GuidanceSettings(loss_space="rgb").check()
    with pytest.raises(InputError, match="vae"):
        TemporalConsistencyGuidance(GuidanceSettings(loss_space="pixel"))


def test_latent_flow_aligns_frames_and_grid():
    from video_enhance_kit.utils.flow import VideoFlow, latent_flow

    fwd = torch.zeros(8, 2, 64, 64)
    fwd[:, 0] = 2.0
    ones = torch.ones(8, 1, 64, 64)
    flow = VideoFlow(fwd, -fwd, ones, ones)
    back, mask = latent_flow(flow, 9, (8, 8))  # image model: one latent per frame
    assert back.shape == (8, 2, 8, 8) and torch.allclose(back[:, 0], torch.full((8, 8, 8), -0.25))
    back, mask = latent_flow(flow, 3, (8, 8))  # video latent, frames 4 apart (Wan)
    assert back.shape == (2, 2, 8, 8) and mask.shape == (2, 1, 8, 8)
    assert torch.allclose(back[:, 0, :, 2:], torch.full((2, 8, 6), -1.0))
    with pytest.raises(InputError, match="flow"):
        latent_flow(flow, 4, (8, 8))
    with pytest.raises(InputError, match="latent"):
        latent_flow(flow, 1, (8, 8))


def test_chunked_gradient_equals_full_graph_gradient(gen):
    """Pixel space + semantic term: decoding / encoding a few frames at a time gives the exact gradient."""
    torch.manual_seed(0)
    dec = torch.nn.Sequential(torch.nn.ConvTranspose2d(4, 3, 2, stride=2), torch.nn.Sigmoid())
    enc = Encoder()
    x0, flow, mask = moving_pair(gen, frames=5, h=8, w=8, dx=1)
    big = F.interpolate(flow, scale_factor=2.0) * 2
    big_mask = F.interpolate(mask, scale_factor=2.0)
    leaf = x0.clone().requires_grad_(True)
    rgb = dec(leaf)
    ref = pixel_consistency_loss(rgb, big, big_mask) + 0.5 * semantic_consistency_loss(enc(rgb))
    (expected,) = torch.autograd.grad(ref, leaf)
    for chunk in (1, 2, 16):
        guide = TemporalConsistencyGuidance(GuidanceSettings(scale=0.1, gamma=0.5, loss_space="pixel", chunk=chunk),
                                            to_rgb=dec, embed=enc, flow=(flow, mask))
        got = guide.video_gradient(x0.clone(), 0.1)
        assert torch.allclose(got, expected, atol=1e-6, rtol=1e-5)
    assert all(p.grad is None for p in list(dec.parameters()) + list(enc.parameters()))
