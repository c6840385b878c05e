"""The sampling hot path reads no device value on the host: SLR attention (trajectory on), temporal guidance and
shared noise are run for several steps with the sync-prone tensor methods wrapped to count (issue 10, item 4).

Everything that depends only on the run is built once per run (flow at each token grid, share and mix weights);
the count per step must not grow with steps or layers, and an attention call makes none.
"""

import pytest
import torch
from video_enhance_kit.attention.trajectory import SLRTemporalAttention
from video_enhance_kit.samplers.guidance import GuidanceSettings, TemporalConsistencyGuidance
from video_enhance_kit.samplers.shared_noise import SharedNoiseSampler
from video_enhance_kit.samplers.step_clock import StepClock

SYNCS = ("item", "__bool__", "__float__", "__int__", "tolist", "cpu")
FRAMES, H, W, WIDTH, HEADS = 4, 6, 8, 16, 2


@pytest.fixture
def syncs(monkeypatch):
    """``counts``: how often each sync-prone ``torch.Tensor`` method was called since the fixture started."""
    counts = dict.fromkeys(SYNCS, 0)
    for name in SYNCS:
        original = getattr(torch.Tensor, name)

        def counted(self, *args, _name=name, _original=original, **kwargs):
            counts[_name] += 1
            return _original(self, *args, **kwargs)

        monkeypatch.setattr(torch.Tensor, name, counted)
    return counts


def slr_run(steps: int, layers: int, syncs: dict) -> list[int]:
    """Syncs per step of an SLR run (trajectory on, fixed flow, x0_hat set after every step)."""
    g = torch.Generator().manual_seed(0)
    fwd = torch.randn(FRAMES - 1, 2, 2 * H, 2 * W, generator=g)
    slr = SLRTemporalAttention(window=3)
    slr.reset()
    slr.set_flow(fwd, -fwd)
    per_step = []
    for step in range(steps):
        q, k, v = (torch.randn(2 * FRAMES, H * W, WIDTH, generator=g) for _ in range(3))
        before = sum(syncs.values())
        for layer in range(layers):
            slr(q, k, v, HEADS, 2, (H, W), layer=layer, stream_ids=[0, 1], trajectory_active=step > 0)
        slr.set_x0(torch.randn(FRAMES, 4, 2 * H, 2 * W, generator=g))
        per_step.append(sum(syncs.values()) - before)
    return per_step


def test_slr_attention_makes_no_host_sync_per_call_or_step(syncs):
    assert slr_run(3, 1, syncs) == [0, 0, 0]
    assert slr_run(5, 3, syncs) == [0] * 5  # more steps and layers: still none
    assert sum(syncs.values()) == 0


def test_correction_stats_are_read_once_at_the_end(syncs):
    slr = SLRTemporalAttention(window=3)
    g = torch.Generator().manual_seed(1)
    slr.set_flow(torch.zeros(FRAMES - 1, 2, H, W), torch.zeros(FRAMES - 1, 2, H, W))
    slr.set_x0(torch.randn(FRAMES, 4, H, W, generator=g))
    for _ in range(3):
        q, k, v = (torch.randn(FRAMES, H * W, WIDTH, generator=g) for _ in range(3))
        slr(q, k, v, HEADS, 1, (H, W), layer="l")
    assert sum(syncs.values()) == 0
    counts = slr.corrector.stats.counts  # the one host read
    assert sum(counts.values()) == 3 * 2 * (FRAMES - 1) * H * W  # every token of both directions, every call
    assert syncs["tolist"] == 1


def guidance_run(steps: int, syncs: dict) -> list[int]:
    g = torch.Generator().manual_seed(2)
    back = torch.randn(FRAMES - 1, 2, 16, 16, generator=g)
    mask = (torch.rand(FRAMES - 1, 1, 16, 16, generator=g) > 0.2).float()
    embed = torch.nn.Linear(3, 5)
    guide = TemporalConsistencyGuidance(GuidanceSettings(scale=0.3, gamma=0.5, pixel_sigma=2.0), to_rgb=lambda x: torch.sigmoid(x[:, :3]),
                                        embed=lambda rgb: embed(rgb.mean((2, 3))), flow=(back, mask))
    clock = StepClock(torch.linspace(4.0, 0.0, steps + 1))  # the one read of the run's sigmas
    per_step = []
    for step in range(steps):
        x0 = torch.randn(FRAMES, 4, 8, 8, generator=g)
        before = sum(syncs.values())
        out = guide(x0, clock.sigma)
        clock.tick(step)
        per_step.append(sum(syncs.values()) - before)
        assert not torch.equal(out, x0)
    return per_step


def test_guidance_makes_no_host_sync_per_step(syncs):
    assert guidance_run(3, syncs) == [0, 0, 0]
    assert guidance_run(6, syncs) == [0] * 6


def test_shared_noise_sampler_makes_no_host_sync_per_step(syncs):
    g = torch.Generator().manual_seed(3)
    back = torch.randn(FRAMES - 1, 2, 8, 8, generator=g)
    mask = (torch.rand(FRAMES - 1, 1, 8, 8, generator=g) > 0.3).float()
    ns = SharedNoiseSampler(lambda s, t: torch.randn(FRAMES, 4, 8, 8, generator=g), [0.0, 0.5, 1.0, 0.7], (back, mask), 0.2)
    ns(1.0, 0.5)  # the first draw builds the run's plan (host checks of the weights and the mask, once)
    setup = sum(syncs.values())
    for _ in range(5):
        ns(1.0, 0.5)
    assert sum(syncs.values()) == setup  # none per step


def test_step_clock_reads_the_schedule_once_and_follows_the_callback():
    seen = []
    clock = StepClock(torch.tensor([3.0, 2.0, 1.0, 0.0]))
    callback = clock.wrap(lambda step, *rest: seen.append((step, clock.sigma)))
    assert clock.sigma == 3.0
    callback(0, "x0", "x", 3)
    callback(1, "x0", "x", 3)
    assert seen == [(0, 2.0), (1, 1.0)] and clock.sigma == 1.0
    clock.wrap(None)(2)
    assert clock.sigma == 0.0
