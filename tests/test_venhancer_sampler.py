"""VEnhancer sampling: schedule, timesteps, chunks, padding and the solver, against the facts file."""


import pytest
import torch
from video_enhance_kit.models import venhancer as V
from video_enhance_kit.samplers import venhancer as S
from video_enhance_kit.samplers import venhancer_schedule as VS

# VP sigmas measured from the official code (facts file)
FACT_SIGMAS = {0: 0.0011063, 1: 0.0042518, 199: 0.59676, 249: 0.70071, 299: 0.78118, 499: 0.94261, 899: 0.99909, 998: 0.99999988, 999: 1.0}
FAST_CALLS = [899, 799, 699, 599, 500, 454, 409, 363, 318, 272, 227, 181, 136, 90]
NORMAL_CALLS = [899, 843, 786, 730, 674, 618, 562, 505, 449, 393, 336, 280, 224, 168, 112]


@pytest.mark.parametrize("t,sigma", sorted(FACT_SIGMAS.items()))
def test_schedule_sigmas_match_the_official_values(t, sigma):
    assert abs(VS.vp_sigmas()[t].item() - sigma) < 1e-5


def test_schedule_is_zero_terminal_snr_and_monotone():
    sig = VS.vp_sigmas()
    assert sig.shape == (1000,) and sig[-1] == 1.0 and (sig[1:] > sig[:-1]).all()


def test_start_sigma_ve():
    sched = VS.VEnhancerSchedule.official()
    assert abs(VS.solver_sigmas(sched)[0].item() - 23.4717) < 1e-3


def test_fast_mode_model_calls_are_the_14_listed():
    assert VS.model_call_timesteps("fast") == FAST_CALLS


def test_normal_mode_model_calls_are_the_15_listed():
    assert VS.model_call_timesteps("normal", 15) == NORMAL_CALLS


def test_sigma_t_roundtrip():
    sched = VS.VEnhancerSchedule.official()
    t = torch.tensor([3.0, 90.25, 500.0, 898.5])
    assert torch.allclose(sched.sigma_to_t(sched.t_to_sigma(t)), t, atol=1e-3)


def test_chunk_windows_match_the_facts():
    assert S.make_chunks(61, 1) == [(0, 31), (16, 47), (32, 61)]
    assert S.make_chunks(100, 0) == [(0, 32), (16, 48), (32, 64), (48, 80), (64, 100)]
    assert S.make_chunks(32, 0) is None  # one window: no chunking


def test_chunks_start_on_key_frames():
    for interp in range(9):
        frames = 17 * (interp + 1) + 1
        for a, _ in S.make_chunks(frames, interp) or []:
            assert a % (interp + 1) == 0


def test_padding_matches_the_facts():
    # (left, right, top, bottom) as F.pad takes it, the official pad_to_fit tuple
    assert S.pad_to_fit(1080, 1920) == (0, 64, 0, 24)
    assert S.pad_to_fit(512, 896) == (192, 192, 104, 104)
    for h, w in [(1080, 1920), (512, 896), (720, 1280), (1440, 2560)]:
        left, r, t, b = S.pad_to_fit(h, w)
        assert V.latent_size_ok((h + t + b) // 8, (w + left + r) // 8)


def test_minimal_padding_fits_and_is_small():
    for h, w in [(64, 64), (100, 180), (1080, 1920)]:
        left, r, t, b = S.pad_minimal(h, w, V.latent_size_ok)
        assert V.latent_size_ok((h + t + b) // 8, (w + left + r) // 8)
        assert t + b < 64 and left + r < 64


def test_adjust_resolution_keeps_the_area_window():
    h, w = S.adjust_resolution(320, 512, 4)  # 16x area would exceed 1152x2048
    assert h * w <= 1152 * 2048 and abs(h / w - 320 / 512) < 0.01
    h, w = S.adjust_resolution(240, 426, 2)  # too small: raised to 1.5 x 720p
    assert h * w >= 720 * 1280 * 1.5 * 0.99
    assert S.adjust_resolution(360, 640, 2.5) == (900, 1600)
    assert S.scaled_resolution(33, 50, 2) == (66, 100)


def test_interp_and_mask_cond():
    assert S.interp_frames(8, 24) == 2 and S.interp_frames(24, 24) == 0 and S.interp_frames(1, 240) == 8
    assert S.make_mask_cond(3, 2) == [0, -1, -1, 1, -1, -1, 2]
    frames = torch.arange(3.0)[:, None]
    assert S.repeat_key_frames(frames, 2).flatten().tolist() == [0, 0, 0, 1, 1, 1, 2]


def test_crossfade_is_linear_over_the_overlap():
    windows = [(0, 6), (3, 9)]
    a = torch.zeros(1, 1, 6, 1, 1)
    b = torch.ones(1, 1, 6, 1, 1)
    out = S.crossfade_chunks([a, b], windows).flatten().tolist()
    assert out == pytest.approx([0, 0, 0, 0, 1 / 3, 2 / 3, 1, 1, 1])


def test_crossfade_of_a_constant_is_exact():
    windows = S.make_chunks(100, 0)
    chunks = [torch.full((1, 2, b - a, 1, 1), 3.0) for a, b in windows]
    out = S.crossfade_chunks(chunks, windows)
    assert out.shape[2] == 100 and torch.allclose(out, torch.tensor(3.0))


def test_rescaled_cfg():
    c = torch.randn(2, 3, 4, 5, 5)
    u = torch.randn(2, 3, 4, 5, 5)
    out = S.rescaled_cfg(c, u, 7.5, 0.2)
    plain = u + 7.5 * (c - u)
    ratio = c.flatten(1).std(1) / plain.flatten(1).std(1)
    assert torch.allclose(out, plain * (0.2 * ratio.view(2, 1, 1, 1, 1) + 0.8), atol=1e-5)
    assert torch.allclose(S.rescaled_cfg(c, u, 1.0, 0.2), c, atol=1e-5)  # g = 1: the conditional output


def _oracle_model(x0_true, sched):
    """A v-prediction model that knows the clean latents: v = (alpha x_t - x0) / sigma."""

    def model(xt, t, context, **kw):
        ti = int(t[0])
        a, s = sched.alphas[ti], sched.sigmas[ti]
        f0 = kw["mask_cond"].shape[1]
        return (a * xt - x0_true[:, :, : xt.shape[2]] if xt.shape[2] == x0_true.shape[2] else a * xt - x0_true[:, :, :f0]) / s

    return model


def test_sampler_recovers_the_clean_latents_with_an_oracle(gen):
    sched = VS.VEnhancerSchedule.official()
    x0 = torch.randn(1, 4, 5, 6, 8, generator=gen)
    calls = []
    inputs = S.VEnhancerInputs(x0, torch.tensor([[0, -1, 1, -1, 2]]), torch.zeros(1, 2, 4), torch.zeros(1, 2, 4), 1)
    out = S.venhancer_sample(_oracle_model(x0, sched), inputs, generator=gen, on_model_call=lambda: calls.append(1))
    assert torch.allclose(out, x0, atol=1e-4)
    assert len(calls) == 14 * 2  # cond + uncond per step


def test_chunked_sampling_calls_every_window_each_step(gen):
    frames, interp = 50, 0
    x0 = torch.randn(1, 4, frames, 2, 8, generator=gen)
    seen = []

    def model(xt, t, context, **kw):
        seen.append((int(t[0]), xt.shape[2], tuple(kw["mask_cond"][0, :1].tolist())))
        return torch.zeros_like(xt)

    inputs = S.VEnhancerInputs(x0, torch.arange(frames)[None], torch.zeros(1, 2, 4), torch.zeros(1, 2, 4), interp)
    out = S.venhancer_sample(model, inputs, cfg=1.0, generator=gen)
    windows = S.make_chunks(frames, interp)
    assert windows == [(0, 32), (16, 50)]  # the last window absorbs a tail up to 1.33 windows
    assert len(seen) == 14 * len(windows)
    assert [s[1] for s in seen[:2]] == [32, 34] and seen[1][2] == (16,)  # mask_cond sliced per window
    assert out.shape == x0.shape and torch.isfinite(out).all()


def test_seed_reproducible_and_noise_aug_changes_the_hint(gen):
    x0 = torch.randn(1, 4, 3, 2, 8, generator=gen)
    hints = []

    def model(xt, t, context, **kw):
        hints.append(kw["hint"].clone())
        return torch.zeros_like(xt)

    inputs = S.VEnhancerInputs(x0, torch.tensor([[0, 1, 2]]), torch.zeros(1, 2, 4), torch.zeros(1, 2, 4), 0)
    a = S.venhancer_sample(model, inputs, cfg=1.0, generator=torch.Generator().manual_seed(1))
    b = S.venhancer_sample(model, inputs, cfg=1.0, generator=torch.Generator().manual_seed(1))
    assert torch.equal(a, b)
    S.venhancer_sample(model, inputs, cfg=1.0, noise_aug=0, generator=torch.Generator().manual_seed(1))
    assert torch.equal(hints[-1], x0)  # noise_aug 0: clean key-frame latents
    S.venhancer_sample(model, inputs, cfg=1.0, noise_aug=300, generator=torch.Generator().manual_seed(1))
    sched = VS.VEnhancerSchedule.official()
    err = (hints[-1] - sched.alphas[299] * x0).std() / sched.sigmas[299]
    assert 0.5 < err < 1.5  # hint = alpha_299 x0 + sigma_299 eps


def test_dpmpp_2m_sde_eta0_is_deterministic_and_exact_for_constant_x0():
    sched = VS.VEnhancerSchedule.official()
    sig = VS.solver_sigmas(sched)
    target = torch.full((1, 1, 1, 1, 1), 0.7)
    out = S.sample_dpmpp_2m_sde(lambda x, s: target, torch.randn(1, 1, 1, 1, 1) * sig[0], sig, eta=0.0)
    assert torch.allclose(out, target)


def test_no_host_sync_per_step(gen, monkeypatch):
    """The sampling loop reads nothing back from the device: the syncs of a run do not grow with the steps."""
    x0 = torch.randn(1, 4, 3, 2, 8, generator=gen)

    def model(xt, t, context, **kw):
        return xt * 0.5 + kw["hint"].mean()

    inputs = S.VEnhancerInputs(x0, torch.tensor([[0, 1, 2]]), torch.zeros(1, 2, 4), torch.zeros(1, 2, 4), 0)
    counts = {}
    for steps in (3, 6):
        reads = []
        for name in ("item", "__bool__", "__float__", "__int__", "tolist", "cpu"):
            original = getattr(torch.Tensor, name)
            monkeypatch.setattr(torch.Tensor, name, lambda self, *a, _o=original, _n=name, _r=reads, **k: _r.append(_n) or _o(self, *a, **k))
        S.venhancer_sample(model, inputs, cfg=2.0, mode="normal", steps=steps, generator=torch.Generator().manual_seed(1),
                           schedule=VS.VEnhancerSchedule.official())
        monkeypatch.undo()
        counts[steps] = len(reads)
    # per run: the integer timesteps of the schedule and where it ends (one read each); none per step
    # (before: model_timestep(sigma).item() and `if s_next == 0` at every step, 2 x 3 more reads with 6 steps)
    assert counts[6] == counts[3]


def test_sigma_to_timestep_on_any_table_equals_the_schedule_rule():
    """The host's model sampling uses sigma_to_timestep on its own table: on the schedule's table it is sigma_to_t."""
    from video_enhance_kit.samplers.venhancer_schedule import sigma_to_timestep

    sched = S.VEnhancerSchedule.official()
    sig = S.solver_sigmas(sched, "normal", 15)[:-1]
    table = sched.log_ve_sigmas.clone()
    table[-1] = 8.4  # a finite stand-in for the infinite last entry (ComfyUI's zsnr value, log 4518.8)
    assert torch.equal(sigma_to_timestep(sig, table), sched.sigma_to_t(sig))
    assert sigma_to_timestep(sig, table).round().long().tolist() == [899, 843, 786, 730, 674, 618, 562, 505, 449, 393, 336, 280, 224, 168, 112]
