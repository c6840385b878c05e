"""ZVRD spatial-temporal noise sharing (Eq. 11) and shared initial noise."""

import pytest
import torch
from video_enhance_kit.samplers.shared_noise import (
    SharedNoiseSampler,
    blend_noise,
    mix_weights,
    share_noise,
    shared_step_noise,
)
from video_enhance_kit.utils.checks import InputError


def shift_flow(frames, h, w, dx, dy=0.0):
    flow = torch.zeros(frames - 1, 2, h, w)
    flow[:, 0], flow[:, 1] = dx, dy
    return flow


def test_full_share_makes_all_frames_identical_4d_and_5d(gen):
    z = torch.randn(5, 4, 8, 8, generator=gen)
    out = share_noise(z, 1.0)
    assert torch.equal(out[0], z[0])
    assert all(torch.allclose(out[i], z[0]) for i in range(5))
    v = torch.randn(2, 4, 3, 8, 8, generator=gen)
    out5 = share_noise(v, 1.0)
    for t in range(3):
        assert torch.allclose(out5[:, :, t], v[:, :, 0])


def test_zero_share_is_unchanged_and_partial_share_keeps_variance(gen):
    z = torch.randn(4, 64, 32, 32, generator=gen)
    assert torch.equal(share_noise(z, 0.0), z)
    out = share_noise(z, [0.0, 0.25, 0.5, 0.9])
    assert torch.equal(out[0], z[0])
    for i in range(1, 4):
        assert abs(float(out[i].var()) - 1.0) < 0.03
    corr = [float(torch.corrcoef(torch.stack([out[0].flatten(), out[i].flatten()]))[0, 1]) for i in range(1, 4)]
    assert corr == pytest.approx([0.5, 0.7071, 0.9487], abs=0.02)  # sqrt(w)


def test_share_weight_checked():
    z = torch.zeros(3, 1, 4, 4)
    with pytest.raises(InputError, match="share_weight"):
        share_noise(z, 1.5)
    with pytest.raises(InputError, match="share_weight"):
        share_noise(z, [0.1, 0.2])


def test_variance_preserving_blend_keeps_unit_variance_per_element(gen):
    # 100k independent draws stacked on the channel axis; fractional flow, random 0/1 and soft mask.
    frames, h, w = 4, 4, 4
    z = torch.randn(frames, 100_000, h, w, generator=gen)
    flow = torch.rand(frames - 1, 2, h, w, generator=gen) * 3 - 1.5
    mask = (torch.rand(frames - 1, 1, h, w, generator=gen) > 0.3).float()
    mask[:, :, 0, 0] = 0.5
    out = blend_noise(z, flow, mask, lam=0.3, mode="variance_preserving")
    var = out.var(dim=1)  # per element (frame, y, x) over the draws
    assert float((var - 1).abs().max()) < 0.02
    exact = blend_noise(z, flow, torch.ones_like(mask), lam=0.5, mode="exact")
    assert float(exact[1].var(dim=0).mean()) == pytest.approx(0.5, abs=0.02)  # lambda^2 + (1-lambda)^2


def test_lambda_one_or_zero_mask_leaves_noise_unchanged(gen):
    z = torch.randn(4, 4, 8, 8, generator=gen)
    flow = shift_flow(4, 8, 8, 1.0)
    assert torch.equal(blend_noise(z, flow, None, lam=1.0), z)
    assert torch.equal(blend_noise(z, flow, torch.zeros(3, 1, 8, 8), lam=0.2), z)
    assert torch.equal(blend_noise(z, flow, torch.zeros(3, 1, 8, 8), lam=0.2, mode="exact"), z)


def test_lambda_zero_copies_the_warped_previous_frame(gen):
    z = torch.randn(3, 2, 8, 8, generator=gen)
    flow = shift_flow(3, 8, 8, -1.0)  # frame i+1 at x sees frame i at x - 1: content moves right
    out = blend_noise(z, flow, None, lam=0.0, mode="exact")
    assert torch.equal(out[1][..., 1:], z[0][..., :-1])
    assert torch.equal(out[2][..., 2:], z[0][..., :-2])  # chained through frame 1


def test_mix_weights_match_eq11():
    m = torch.tensor([0.0, 0.5, 1.0])
    a, b = mix_weights(m, 0.25, "exact")
    assert torch.allclose(a, 1 - m * 0.75) and torch.allclose(b, m * 0.75)
    a, b = mix_weights(m, 0.25, "variance_preserving")
    assert torch.allclose(a * a + b * b, torch.ones(3))


def test_shared_sampler_passthrough_when_off_and_blends_5d(gen):
    draws = [torch.randn(1, 4, 3, 8, 8, generator=gen) for _ in range(2)]
    it = iter(draws)
    ns = SharedNoiseSampler(lambda s, sn: next(it), share_weight=0.0, flow=None)
    assert torch.equal(ns(1.0, 0.5), draws[0])
    flow = (shift_flow(3, 8, 8, 0.0), torch.ones(2, 1, 8, 8))
    out = shared_step_noise(draws[1], 0.0, flow, lam=0.0, mode="exact")
    assert torch.equal(out[:, :, 2], draws[1][:, :, 0])


def test_blend_rejects_mismatched_flow(gen):
    with pytest.raises(InputError, match="flow"):
        blend_noise(torch.zeros(4, 1, 8, 8), torch.zeros(2, 2, 8, 8))
    with pytest.raises(InputError, match="blend_lambda"):
        blend_noise(torch.zeros(4, 1, 8, 8), torch.zeros(3, 2, 8, 8), lam=1.5)
