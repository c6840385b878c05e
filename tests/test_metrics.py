"""utils/metrics.py: each metric against kornia, a direct formula or a hand value."""

import itertools
import math

import pytest
import torch
import torch.nn.functional as F
from kornia.metrics import psnr as kornia_psnr
from kornia.metrics import ssim as kornia_ssim
from video_enhance_kit.utils import metrics as M
from video_enhance_kit.utils.checks import InputError


def _pair(gen, shape=(3, 3, 24, 32), noise=0.1):
    ref = torch.rand(shape, generator=gen, dtype=torch.float64)
    out = (ref + noise * torch.randn(shape, generator=gen, dtype=torch.float64)).clamp(0, 1)
    return out, ref


# ------------------------------------------------------------------------------ MSE / PSNR
def test_mse_and_psnr_match_direct_formula_and_kornia(gen):
    out, ref = _pair(gen)
    direct_mse = ((out - ref) ** 2).mean(dim=(1, 2, 3))
    torch.testing.assert_close(M.mse_per_frame(out, ref), direct_mse)
    torch.testing.assert_close(M.mse(out, ref), direct_mse.mean())
    per_frame = M.psnr_per_frame(out, ref)
    torch.testing.assert_close(per_frame, 10 * torch.log10(1.0 / direct_mse))
    for f in range(out.shape[0]):
        torch.testing.assert_close(per_frame[f], kornia_psnr(out[f], ref[f], 1.0))
    assert math.isclose(float(M.psnr(out, ref)), float(per_frame.mean()))


def test_psnr_data_range_scales_like_255(gen):
    out, ref = _pair(gen)
    torch.testing.assert_close(M.psnr_per_frame(out * 255, ref * 255, data_range=255.0), M.psnr_per_frame(out, ref))


def test_psnr_of_identical_frames_is_inf_never_nan(gen):
    ref = torch.rand(2, 3, 8, 8, generator=gen)
    assert torch.isinf(M.psnr(ref, ref)) and M.psnr(ref, ref) > 0
    with pytest.raises(InputError, match="data_range"):
        M.psnr(ref, ref, data_range=0.0)


# ------------------------------------------------------------------------------------ SSIM
def _direct_ssim(x, y, window=11, sigma=1.5, L=1.0):
    """SSIM straight from Wang et al. 2004 (gaussian window, reflect padding), one value per frame."""
    c1, c2 = (0.01 * L) ** 2, (0.03 * L) ** 2
    t = torch.arange(window, dtype=x.dtype) - window // 2
    g = torch.exp(-(t**2) / (2 * sigma**2))
    g = g / g.sum()
    k = (g[:, None] * g[None, :]).expand(x.shape[1], 1, window, window)
    pad = window // 2

    def blur(z):
        return F.conv2d(F.pad(z, [pad] * 4, mode="reflect"), k, groups=x.shape[1])

    mx, my = blur(x), blur(y)
    sxx, syy, sxy = blur(x * x) - mx**2, blur(y * y) - my**2, blur(x * y) - mx * my
    s = ((2 * mx * my + c1) * (2 * sxy + c2)) / ((mx**2 + my**2 + c1) * (sxx + syy + c2))
    return s.mean(dim=(1, 2, 3))


def test_ssim_matches_kornia_and_direct_formula(gen):
    out, ref = _pair(gen, noise=0.2)
    ours = M.ssim_per_frame(out, ref)
    torch.testing.assert_close(ours, kornia_ssim(out, ref, 11).mean(dim=(1, 2, 3)))
    torch.testing.assert_close(ours, _direct_ssim(out, ref), atol=1e-6, rtol=1e-6)
    assert float(M.ssim(ref, ref)) == pytest.approx(1.0, abs=1e-6)
    assert 0 < float(M.ssim(out, ref)) < 0.99


def test_ssim_on_frames_smaller_than_window_shrinks_window(gen):
    out, ref = _pair(gen, shape=(2, 3, 5, 7))
    assert M.ssim_window(11, 5, 7) == 7
    torch.testing.assert_close(M.ssim_per_frame(out, ref), _direct_ssim(out, ref, window=7), atol=1e-6, rtol=1e-6)
    with pytest.raises(InputError, match="window_size"):
        M.ssim(out, ref, window_size=10)


def test_five_d_video_is_flattened_to_frames(gen):
    out, ref = _pair(gen, shape=(2, 3, 4, 16, 16))  # [B, C, T, H, W]
    flat = lambda v: v.permute(0, 2, 1, 3, 4).reshape(8, 3, 16, 16)
    torch.testing.assert_close(M.ssim_per_frame(out, ref), M.ssim_per_frame(flat(out), flat(ref)))
    torch.testing.assert_close(M.mse_per_frame(out, ref), M.mse_per_frame(flat(out), flat(ref)))


# ----------------------------------------------------------------------------------- MSE_l
def test_mse_low_is_zero_for_identical_and_grows_with_low_frequency_error(gen):
    ref = torch.rand(3, 3, 32, 32, generator=gen, dtype=torch.float64)
    assert float(M.mse_low(ref, ref)) == 0.0
    yy, xx = torch.meshgrid(torch.arange(32.0), torch.arange(32.0), indexing="ij")
    smooth = torch.sin(2 * math.pi * xx / 32) * torch.cos(2 * math.pi * yy / 32)  # lowest non-DC bin: inside nu = 0.5
    values = [float(M.mse_low(ref + a * smooth, ref)) for a in (0.01, 0.05, 0.1, 0.2)]
    assert values[0] > 0
    assert all(b > a for a, b in itertools.pairwise(values))
    # a pure high-frequency change (Nyquist checkerboard) is outside the low band: MSE_l ignores it, MSE does not
    checker = ((xx + yy) % 2) * 0.2 - 0.1
    assert float(M.mse_low(ref + checker, ref)) < 1e-12 * float(M.mse(ref + checker, ref)) + 1e-20


def test_mse_low_cutoff_range(gen):
    ref = torch.rand(2, 3, 8, 8, generator=gen)
    for bad in (0.0, -0.1, 1.5, float("nan")):
        with pytest.raises(InputError, match="cutoff"):
            M.mse_low(ref, ref, cutoff=bad)


# ---------------------------------------------------------------------- spatial frequency
def test_spatial_frequency_hand_values():
    assert float(M.spatial_frequency(torch.full((2, 3, 6, 9), 0.7))) == 0.0
    stripes = (torch.arange(8.0) % 2).expand(1, 1, 6, 8)  # columns 0,1,0,1: every horizontal difference is +-1
    assert float(M.spatial_frequency(stripes)) == pytest.approx(1.0)
    checker = ((torch.arange(6.0)[:, None] + torch.arange(8.0)[None, :]) % 2).expand(1, 1, 6, 8)
    assert float(M.spatial_frequency(checker)) == pytest.approx(math.sqrt(2.0))
    ramp = (torch.arange(8.0) * 0.1).expand(1, 1, 6, 8)  # RF = 0.1, CF = 0
    assert float(M.spatial_frequency(ramp)) == pytest.approx(0.1)


def test_d_sf_sign_follows_detail(gen):
    ref = torch.rand(2, 3, 16, 16, generator=gen)
    blurred = F.avg_pool2d(F.pad(ref, [1, 1, 1, 1], mode="replicate"), 3, stride=1)
    assert float(M.d_sf(blurred, ref)) < 0 < float(M.d_sf(ref, blurred))
    torch.testing.assert_close(M.d_sf_per_frame(ref, blurred), M.spatial_frequency_per_frame(ref) - M.spatial_frequency_per_frame(blurred))


# -------------------------------------------------------------------------- warping error
def _shifted_video(gen, frames=4, h=12, w=16, dx=2, dy=1):
    """Frame i is a crop of one canvas shifted by i * (dx, dy): x_{i+1}(p) = x_i(p + (dx, dy))."""
    canvas = torch.rand(3, h + frames * dy + 2, w + frames * dx + 2, generator=gen, dtype=torch.float64)
    video = torch.stack([canvas[:, i * dy : i * dy + h, i * dx : i * dx + w] for i in range(frames)])
    flow = torch.zeros(frames - 1, 2, h, w, dtype=torch.float64)
    flow[:, 0], flow[:, 1] = dx, dy
    mask = torch.ones(frames - 1, 1, h, w, dtype=torch.float64)
    mask[..., h - dy :, :] = 0  # p + flow leaves the frame: occluded border
    mask[..., :, w - dx :] = 0
    return video, flow, mask


def test_warping_error_zero_for_exact_flow_warp_positive_otherwise(gen):
    video, flow, mask = _shifted_video(gen)
    assert float(M.warping_error(video, flow, mask)) < 1e-6
    assert float(M.warping_error(video, flow, mask)) == pytest.approx(0.0, abs=1e-12)
    assert float(M.warping_error(video, flow)) > 1e-4  # the unmasked border counts
    assert float(M.warping_error(video, torch.zeros_like(flow), mask)) > 1e-3  # wrong flow
    noisy = video + 0.05 * torch.randn(video.shape, generator=gen, dtype=torch.float64)
    assert float(M.warping_error(noisy, flow, mask)) > 1e-3  # flicker


def test_warping_error_constant_flow_and_direct_value(gen):
    video = torch.rand(1, 1, 8, 8, generator=gen, dtype=torch.float64).expand(3, 1, 8, 8).clone()
    video[2] += 0.1  # last frame brighter: WE of pair 1 is 0.01, pair 0 is 0
    flow = torch.zeros(2, 2, 8, 8, dtype=torch.float64)
    torch.testing.assert_close(M.warping_error_per_pair(video, flow), torch.tensor([0.0, 0.01], dtype=torch.float64))
    fully_occluded = torch.zeros(2, 1, 8, 8, dtype=torch.float64)
    assert torch.equal(M.warping_error_per_pair(video, flow, fully_occluded), torch.zeros(2, dtype=torch.float64))


def test_warping_error_5d_pairs_within_each_video(gen):
    video, flow, mask = _shifted_video(gen, frames=3)
    five_d = torch.stack([video, video]).permute(0, 2, 1, 3, 4)  # [2, C, 3, H, W]: 2 pairs per video
    per_pair = M.warping_error_per_pair(five_d, flow.repeat(2, 1, 1, 1), mask.repeat(2, 1, 1, 1))
    assert per_pair.shape == (4,) and float(per_pair.max()) < 1e-12


# -------------------------------------------------------------------------------- errors
def test_mismatched_shapes_name_the_inputs(gen):
    a = torch.rand(3, 3, 8, 8, generator=gen)
    with pytest.raises(InputError, match="'result'.*'reference'"):
        M.psnr(a, a[:2])
    with pytest.raises(InputError, match="'result'"):
        M.ssim(a, a[..., :4])
    with pytest.raises(InputError, match="'flow'"):
        M.warping_error(a, torch.zeros(3, 2, 8, 8))
    with pytest.raises(InputError, match="'flow'"):
        M.warping_error(a, torch.zeros(2, 2, 4, 4))
    with pytest.raises(InputError, match="'mask'"):
        M.warping_error(a, torch.zeros(2, 2, 8, 8), torch.ones(2, 1, 4, 4))
    with pytest.raises(InputError, match="at least 2"):
        M.warping_error(a[:1], torch.zeros(0, 2, 8, 8))
    with pytest.raises(InputError, match="3-D|4-D or 5-D"):
        M.mse(a[0], a[0])
    nan = a.clone()
    nan[0, 0, 0, 0] = float("nan")
    with pytest.raises(InputError, match="NaN"):
        M.mse(nan, a)


def test_mse_low_is_mse_of_the_nc_low_pass(gen):
    from video_enhance_kit.utils.fft import low_pass

    out, ref = _pair(gen, shape=(2, 3, 20, 24))
    expected = ((low_pass(out, 0.5) - low_pass(ref, 0.5)) ** 2).mean(dim=(1, 2, 3))
    torch.testing.assert_close(M.mse_low_per_frame(out, ref), expected)
    assert float(M.mse_low(out, ref, cutoff=1.0)) == pytest.approx(float(M.mse(out, ref)), rel=1e-9)  # nu = 1 keeps everything


def test_video_metrics_groups_and_values(gen):
    out, ref = _pair(gen, shape=(3, 3, 16, 16))
    flow = torch.zeros(2, 2, 16, 16, dtype=out.dtype)
    res = M.video_metrics(out, ref, flow=flow)
    assert set(res) == {"mse", "psnr", "ssim", "mse_l", "sf", "d_sf", "we"}
    torch.testing.assert_close(res["psnr"], M.psnr_per_frame(out, ref))
    torch.testing.assert_close(res["ssim"], M.ssim_per_frame(out, ref))
    torch.testing.assert_close(res["d_sf"], M.d_sf_per_frame(out, ref))
    torch.testing.assert_close(res["we"], M.warping_error_per_pair(out, flow))
    assert res["we"].shape == (2,)
    only = M.video_metrics(out, ref, metrics=("spatial_frequency",))
    assert set(only) == {"sf", "d_sf"}
    assert "we" not in M.video_metrics(out, ref, metrics=("warping_error",))  # no flow: no WE
    with pytest.raises(InputError, match="metrics"):
        M.video_metrics(out, ref, metrics=("fid",))
    with pytest.raises(InputError, match="'result'"):
        M.video_metrics(out, ref[:2], metrics=("warping_error",), flow=flow)


def test_chunked_metrics_equal_whole_video(gen, monkeypatch):
    out, ref = _pair(gen, shape=(5, 3, 16, 16))
    flow = 0.7 * torch.randn(4, 2, 16, 16, generator=gen, dtype=out.dtype)
    mask = (torch.rand(4, 1, 16, 16, generator=gen) > 0.2).to(out.dtype)
    whole = M.video_metrics(out, ref, flow=flow, mask=mask)  # 5 frames: one chunk
    monkeypatch.setattr(M, "CHUNK", 2)  # 3 chunks (2 + 2 + 1 frames)
    chunked = M.video_metrics(out, ref, flow=flow, mask=mask)
    for key in whole:
        torch.testing.assert_close(chunked[key], whole[key], rtol=1e-12, atol=1e-12)


def test_frame_similarity_is_one_on_a_still_clip_and_lower_with_change():
    from video_enhance_kit.utils.metrics import frame_similarity, frame_similarity_per_pair

    g = torch.Generator().manual_seed(0)
    still = torch.randn(1, 16, generator=g).repeat(5, 1)
    assert torch.allclose(frame_similarity(still), torch.tensor(1.0))
    drifting = still + torch.linspace(0, 3, 5).unsqueeze(1) * torch.randn(1, 16, generator=g)
    per = frame_similarity_per_pair(drifting)
    assert per.shape == (4,) and float(frame_similarity(drifting)) < 1.0


def test_flow_map_error_is_zero_on_equal_flows_and_ordered_with_the_motion_gap():
    from video_enhance_kit.utils.metrics import flow_map_error

    def constant(dx, frames=4, size=8):
        f = torch.zeros(frames - 1, 2, size, size)
        f[:, 0] = dx
        return f

    ref = constant(1.0)
    assert float(flow_map_error(ref, ref)) == 0.0
    near, far = flow_map_error(constant(1.5), ref), flow_map_error(constant(3.0), ref)
    assert abs(float(near) - 0.5) < 1e-6 and abs(float(far) - 2.0) < 1e-6
    mask = torch.zeros(3, 1, 8, 8)
    mask[..., :4] = 1
    half = constant(1.0)
    half[..., 4:] += 10.0  # a gap only where the mask says occluded
    assert float(flow_map_error(half, ref, mask)) == 0.0


def test_fs_and_ofme_bad_inputs_name_the_input():
    from video_enhance_kit.utils.metrics import flow_map_error, frame_similarity

    with pytest.raises(InputError, match="embeds"):
        frame_similarity(torch.zeros(1, 8))
    with pytest.raises(InputError, match="reference_flow"):
        flow_map_error(torch.zeros(3, 2, 8, 8), torch.zeros(2, 2, 8, 8))
