"""Windows and tiles of VEnhancer's prediction at the model-call level (samplers/venhancer_windows.py, issues 11.4, 13.1)."""

import pytest
import torch
import torch.nn.functional as F
from video_enhance_kit.models import venhancer as V
from video_enhance_kit.samplers import venhancer as S
from video_enhance_kit.samplers import venhancer_windows as W
from video_enhance_kit.samplers.venhancer_window_fit import auto_window, call_bytes, longest_window
from video_enhance_kit.utils.checks import InputError

# (frames, interp, chunk_length, chunk_overlap): official ones, a 3-way overlap (interp 2), a dense 0.75 overlap
WINDOW_CASES = [(100, 0, 32, 0.5), (61, 1, 32, 0.5), (100, 2, 32, 0.5), (77, 4, 20, 0.5), (45, 6, 32, 0.5), (40, 0, 16, 0.75)]


def stand_in(x, conds):
    """A nonlinear, frame-dependent stand-in prediction that reads mask_cond per frame."""
    m = conds["mask_cond"].to(x.dtype)[:, None, :, None, None]
    return torch.tanh(x) * (1.5 + 0.1 * m) + 0.01 * conds["s_cond"].view(-1, 1, 1, 1, 1)


def blur(x, conds=None):
    """A smooth local stand-in: a 5x5 box blur per frame (zero padding at the borders of what it is given)."""
    b, c, f, h, w = x.shape
    y = F.avg_pool2d(x.transpose(1, 2).reshape(b * f, c, h, w), 5, stride=1, padding=2, count_include_pad=True)
    return y.reshape(b, f, c, h, w).transpose(1, 2)


def mask_for(frames, interp):
    keys = (frames - 1) // (interp + 1) + 1
    return torch.tensor([S.make_mask_cond(keys, interp)])


def test_windows_and_tiles_off_is_exactly_predict(gen):
    x = torch.randn(2, 4, 9, 6, 8, generator=gen)
    conds = {"mask_cond": mask_for(9, 1).expand(2, -1), "s_cond": torch.full((2,), 8.0)}
    for plan in (W.plan_windows(9, 6, 8, interp=1, chunk_length=None), W.plan_windows(9, 6, 8, interp=1)):
        assert not plan.windowed and not plan.tiled and plan.calls == 1
        assert torch.equal(W.windowed_prediction(stand_in, x, plan, conds), stand_in(x, conds))


@pytest.mark.parametrize("frames, interp, chunk, ratio", WINDOW_CASES)
def test_windows_equal_crossfade_chunks_bit_for_bit(gen, frames, interp, chunk, ratio):
    frames = (frames - 1) // (interp + 1) * (interp + 1) + 1
    x = torch.randn(1, 4, frames, 3, 4, generator=gen)
    conds = {"mask_cond": mask_for(frames, interp), "s_cond": torch.tensor([8.0])}
    plan = W.plan_windows(frames, 3, 4, interp=interp, chunk_length=chunk, chunk_overlap=ratio)
    windows = S.make_chunks(frames, interp, chunk, ratio)
    assert plan.windows == tuple(windows) and plan.windowed
    ref = S.crossfade_chunks([stand_in(x[:, :, a:b], {**conds, "mask_cond": conds["mask_cond"][:, a:b]}) for a, b in windows], windows)
    assert torch.equal(W.windowed_prediction(stand_in, x, plan, conds), ref)


def test_windows_equal_the_faithful_chunked_denoiser(gen):
    frames, interp = 61, 1
    x = torch.randn(1, 4, frames, 4, 4, generator=gen)
    mask = mask_for(frames, interp)
    sched = S.VEnhancerSchedule.official()

    def official(xt, t, sl):  # GuidedPrediction's interface: mask_cond sliced by the window
        return sched.alphas[t] * xt - sched.sigmas[t] * torch.sin(3 * xt) * (1 + mask[:, None, sl, None, None])

    sigma = torch.tensor(2.5)
    windows = S.make_chunks(frames, interp)
    ref = S.chunked_denoiser(official, [500], windows)(x, sigma)
    plan = W.plan_windows(frames, 4, 4, interp=interp)
    xt = x * (1 / (sigma**2 + 1.0) ** 0.5)
    ours = W.windowed_prediction(lambda xs, c: sched.alphas[500] * xs - sched.sigmas[500] * torch.sin(3 * xs) * (1 + c["mask_cond"][:, None, :, None, None]),
                                 xt, plan, {"mask_cond": mask})
    assert torch.equal(ours, ref)


def test_tiles_as_large_as_the_latent_equal_untiled_bit_for_bit(gen):
    x = torch.randn(1, 4, 61, 6, 8, generator=gen)
    conds = {"mask_cond": mask_for(61, 1), "s_cond": torch.tensor([8.0])}
    whole = W.plan_windows(61, 6, 8, interp=1, tile_size=(6, 8), tile_overlap=2)
    assert not whole.tiled and whole.windowed
    plain = W.plan_windows(61, 6, 8, interp=1)
    assert torch.equal(W.windowed_prediction(stand_in, x, whole, conds), W.windowed_prediction(stand_in, x, plain, conds))


def rel_rms(a, b):
    return float((a - b).pow(2).mean().sqrt() / b.pow(2).mean().sqrt())


def test_real_tiles_on_a_smooth_stand_in_stay_close(gen):
    x = F.avg_pool3d(torch.randn(1, 4, 5, 40, 48, generator=gen), (1, 3, 3), stride=1, padding=(0, 1, 1))  # smooth content
    plan = W.plan_windows(5, 40, 48, tile_size=16, tile_overlap=6)
    assert plan.tiled and len(plan.tiles) == 4 * 5
    err = rel_rms(W.windowed_prediction(blur, x, plan), blur(x))
    assert err < 0.025, err  # measured 0.0149 (abutting tiles: 0.179)
    hard = W.plan_windows(5, 40, 48, tile_size=16, tile_overlap=0)  # abutting tiles: the zero padding shows more
    assert rel_rms(W.windowed_prediction(blur, x, hard), blur(x)) > 2 * err


def test_conditions_are_sliced_like_x(gen):
    frames, interp, h, w = 41, 1, 10, 12
    x = torch.randn(2, 4, frames, h, w, generator=gen)
    mask = mask_for(frames, interp).expand(2, -1)
    conds = {"hint": x[:, :, :: interp + 1].clone(), "mask_cond": mask, "s_cond": torch.full((2,), 8.0),
             "per_frame": x.clone(), "note": "kept"}
    axes = {**W.VENHANCER_COND_AXES, "per_frame": W.CondAxes(frame=2, height=3, width=4)}
    seen = []

    def predict(xs, c):
        assert torch.equal(c["per_frame"], xs) and c["note"] == "kept" and c["s_cond"] is conds["s_cond"]
        assert c["hint"].shape[2] == conds["hint"].shape[2] and c["hint"].shape[3:] == xs.shape[3:]  # all key frames, tile's pixels
        keys = c["mask_cond"][0]
        for j in range(xs.shape[2]):
            if keys[j] >= 0:  # the key frame the mask names is this frame, within the same tile
                assert torch.equal(c["hint"][:, :, int(keys[j])], xs[:, :, j])
        seen.append(xs.shape)
        return xs

    plan = W.plan_windows(frames, h, w, interp=interp, chunk_length=16, tile_size=(6, 8), tile_overlap=2)
    out = W.windowed_prediction(predict, x, plan, conds, axes)
    assert len(seen) == plan.calls == len(plan.windows) * 4 and plan.windowed
    assert torch.allclose(out, x, atol=1e-6)  # identity prediction: the blend of x with itself


@pytest.mark.parametrize("shape, tile, overlap", [((40, 48), 16, 6), ((90, 160), 64, 16), ((18, 16), (10, 8), 3), ((33, 21), 7, 6)])
def test_tile_weights_sum_to_one_and_are_never_zero(shape, tile, overlap):
    plan = W.plan_windows(3, *shape, tile_size=tile, tile_overlap=overlap)
    total = torch.zeros(shape, dtype=torch.float64)
    for (h0, h1, w0, w1), wt in zip(plan.tiles, W.tile_weights(plan)):
        assert (h1 - h0, w1 - w0) == plan.tile_size and float(wt.min()) > 0
        total[h0:h1, w0:w1] += wt
    assert torch.allclose(total, torch.ones_like(total), atol=1e-12, rtol=0)
    ones = W.windowed_prediction(lambda xs, c: torch.ones_like(xs), torch.zeros(1, 1, 3, *shape), plan)
    assert torch.allclose(ones, torch.ones_like(ones), atol=1e-6, rtol=0)


def test_raised_cosine_is_a_partition_of_unity_over_an_overlap():
    r = W.raised_cosine(7)
    assert float(r.min()) > 0 and float(r.max()) < 1
    assert torch.allclose(r + r.flip(0), torch.ones(7, dtype=torch.float64), atol=1e-15)


def test_tile_starts_cover_with_at_least_the_overlap():
    for length, tile, overlap in [(40, 16, 6), (160, 64, 16), (90, 90, 8), (17, 5, 0)]:
        starts = W.tile_starts(length, tile, overlap)
        assert starts[0] == 0 and starts[-1] + tile == length
        assert all(a + tile - b >= overlap for a, b in zip(starts, starts[1:]))


def test_size_ok_rounds_tiles_to_what_the_network_takes():
    ok = V.latent_size_ok  # official: H = 2 mod 8, W = 0 mod 8
    plan = W.plan_windows(3, 90, 160, tile_size=64, tile_overlap=16, size_ok=ok)
    assert plan.tile_size == (58, 64) and ok(*plan.tile_size)


def test_weights_are_built_once_per_device_and_a_call_makes_no_host_sync(gen, monkeypatch):
    x = torch.randn(1, 4, 41, 10, 12, generator=gen)
    plan = W.plan_windows(41, 10, 12, interp=1, chunk_length=16, tile_size=6, tile_overlap=2)
    conds = {"mask_cond": mask_for(41, 1), "s_cond": torch.tensor([8.0])}
    W.windowed_prediction(stand_in, x, plan, conds)
    assert plan.weights(x.device, x.dtype) is plan.weights(x.device, x.dtype)
    calls = []
    for name in ("item", "__bool__", "__float__", "__int__", "tolist", "cpu"):
        monkeypatch.setattr(torch.Tensor, name, lambda self, *a, _n=name, **k: calls.append(_n))
    monkeypatch.setattr(W, "build_weights", lambda *a: calls.append("build_weights"))
    W.windowed_prediction(stand_in, x, plan, conds)
    assert calls == []


def test_errors_name_the_input_and_the_fix(gen):
    with pytest.raises(InputError, match="tile_size.*larger than the latent.*Fix") as e:
        W.plan_windows(5, 6, 8, tile_size=10)
    assert e.value.input_name == "tile_size"
    with pytest.raises(InputError, match="tile_size"):
        W.plan_windows(5, 6, 8, tile_size=(6, 9))
    with pytest.raises(InputError, match="tile_overlap.*less than the tile.*Fix") as e:
        W.plan_windows(5, 16, 16, tile_size=8, tile_overlap=8)
    assert e.value.input_name == "tile_overlap"
    with pytest.raises(InputError, match="chunk_length.*at least 4"):
        W.plan_windows(50, 6, 8, interp=2, chunk_length=3)
    plan = W.plan_windows(9, 6, 8, tile_size=4, tile_overlap=1)
    with pytest.raises(InputError, match="latent.*window plan"):
        W.windowed_prediction(blur, torch.zeros(1, 4, 9, 6, 9), plan)
    with pytest.raises(InputError, match="hint.*height"):
        W.windowed_prediction(blur, torch.zeros(1, 4, 9, 6, 8), plan, {"hint": torch.zeros(1, 4, 5, 7, 8)})


def test_seam_error_sees_a_hard_seam_and_not_a_blended_one(gen):
    x = F.avg_pool3d(torch.randn(1, 4, 3, 40, 48, generator=gen), (1, 5, 5), stride=1, padding=(0, 2, 2))
    plan = W.plan_windows(3, 40, 48, tile_size=16, tile_overlap=6)
    assert W.border_lines(40, [(0, 16), (12, 28), (24, 40)]) == [11, 15, 23, 27]
    smooth = W.seam_error(W.windowed_prediction(blur, x, plan), plan)
    base = W.seam_error(blur(x), plan)
    stepped = x.clone()
    stepped[..., :, :24] += 0.5  # a visible seam on a border line (w = 23 -> 24)
    hard = W.seam_error(stepped, W.plan_windows(3, 40, 48, tile_size=(40, 24), tile_overlap=0))
    assert hard.ratio > 3 and abs(smooth.ratio - base.ratio) < 0.1 * base.ratio


# ------------------------------------------------------------------------------------- auto window

PER, FIXED = 1000.0, 5e6  # bytes per frame x latent pixel, fixed bytes (weights, workspace)


def test_auto_window_keeps_the_official_window_when_it_fits():
    free = call_bytes(PER, FIXED, 42, 90 * 160)  # the longest official window of 100 frames holds 36
    assert auto_window(free, PER, FIXED, 100, 90, 160, tiles_allowed=False) == (32, None)
    assert auto_window(free, PER, FIXED, 20, 90, 160, tiles_allowed=False) == (20, None)  # one window: the clip


@pytest.mark.parametrize("interp", [0, 1, 3])
def test_auto_window_is_the_longest_key_frame_aligned_window_that_fits(interp):
    frames = 16 * (interp + 1) * 4 + 1
    free = call_bytes(PER, FIXED, 20, 60 * 64)
    chunk, tile = auto_window(free, PER, FIXED, frames, 60, 64, tiles_allowed=False, interp=interp)
    f = longest_window(frames, interp, chunk)
    assert tile is None and call_bytes(PER, FIXED, f, 60 * 64) <= free
    longer = [longest_window(frames, interp, c) for c in range(chunk + 1, 33)]
    assert all(call_bytes(PER, FIXED, g, 60 * 64) > free for g in longer if g > f)  # nothing longer fits
    assert all(a % (interp + 1) == 0 for a, _ in S.make_chunks(frames, interp, chunk))  # windows start on key frames


def test_auto_window_with_tiles_keeps_32_frames_and_picks_the_largest_tile_that_fits():
    ok = V.latent_size_ok
    free = call_bytes(PER, FIXED, 36, 58 * 64)  # 100 frames at 32: windows of up to 36 frames
    chunk, tile = auto_window(free, PER, FIXED, 100, 90, 160, tiles_allowed=True, size_ok=ok)
    assert chunk == 32 and tile is not None and ok(*tile)
    assert call_bytes(PER, FIXED, 36, tile[0] * tile[1]) <= free
    assert tile == (58, 64)
    W.plan_windows(100, 90, 160, chunk_length=chunk, tile_size=tile, size_ok=ok)  # a plan the result builds


def test_auto_window_says_when_nothing_fits():
    with pytest.raises(InputError, match="chunk_length.*GiB.*Fix") as e:
        auto_window(FIXED, PER, FIXED, 100, 90, 160, tiles_allowed=True)
    assert e.value.input_name == "chunk_length"


def test_cost_per_frame_pixel_scales_the_measured_constant_by_width_dtype_and_batch():
    from video_enhance_kit.samplers import venhancer_window_fit as fit

    small = fit.bytes_per_frame_pixel(32, 4, batch=1)
    assert small == pytest.approx(6750, rel=0.01)  # the measured small-config figure: 139,960,320 B / (9 x 48 x 48)
    assert fit.bytes_per_frame_pixel(320, 2) == pytest.approx(small * 10 / 2 * 2)  # official width, fp16, cond + uncond
    official = fit.bytes_per_frame_pixel(320, 2)
    chunk, tile = auto_window(24 * 2**30 - fit.HEADROOM_BYTES, official, 0, 64, 136, 240, tiles_allowed=True, tile_overlap=8)
    assert chunk == 32 and tile is not None and tile[0] * tile[1] < 136 * 240  # 1080p-class output on 24 GB needs tiles
