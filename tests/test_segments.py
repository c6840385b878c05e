"""Long-video segments: planning under frame rules, and stitching with a linear cross-fade."""

from __future__ import annotations

import itertools

import pytest
import torch

from video_enhance_kit.utils.checks import InputError
from video_enhance_kit.utils.segments import FrameRule, Segment, crossfade_weights, plan_segments, stitch


def _clip(frames=50, size=4):
    return torch.arange(frames, dtype=torch.float64).view(frames, 1, 1, 1).expand(frames, size, size, 3).clone()


def test_plan_covers_the_clip_with_equal_valid_segments_and_the_overlap():
    plan = plan_segments(50, 17, 4, FrameRule(4, 1))
    assert plan[0].start == 0 and plan[-1].end == 50
    assert {s.frames for s in plan} == {17}
    for a, b in itertools.pairwise(plan):
        assert a.end - b.start >= 4 and b.start > a.start


def test_plan_refuses_counts_the_rule_rejects_and_bad_overlaps():
    with pytest.raises(InputError, match="use 17"):
        plan_segments(50, 18, 4, FrameRule(4, 1))
    with pytest.raises(InputError, match="overlap"):
        plan_segments(50, 17, 17)
    assert plan_segments(10, 17, 4) == [Segment(0, 10)]


def test_pass_through_segments_stitch_back_to_the_clip():
    clip = _clip()
    plan = plan_segments(50, 16, 5)
    out = stitch([clip[s.start:s.end] for s in plan], plan)
    assert out.shape == clip.shape
    assert torch.allclose(out, clip, atol=1e-12)


def test_overlaps_are_the_exact_linear_crossfade_and_the_rest_is_copied():
    clip = _clip(30)
    plan = plan_segments(30, 12, 4)
    results = [clip[s.start:s.end] + 100 * i for i, s in enumerate(plan)]  # each run adds its own offset
    out = stitch(results, plan)
    first, second = plan[0], plan[1]
    assert torch.equal(out[:second.start], results[0][:second.start])
    shared = first.end - second.start
    w = crossfade_weights(shared, clip)
    expected = (1 - w) * results[0][second.start:] + w * results[1][:shared]
    assert torch.equal(out[second.start:first.end], expected)
    assert torch.equal(out[-1], results[-1][-1])


def test_interpolated_results_map_frames_by_the_interpolation_factor():
    clip = _clip(21)
    plan = plan_segments(21, 9, 3)

    def interpolate(x, k=2):  # (n - 1) * k + 1 frames, linear in between
        t = torch.linspace(0, x.shape[0] - 1, (x.shape[0] - 1) * k + 1, dtype=x.dtype)
        lo = t.floor().long().clamp(max=x.shape[0] - 2)
        frac = (t - lo).view(-1, 1, 1, 1)
        return x[lo] * (1 - frac) + x[lo + 1] * frac

    out = stitch([interpolate(clip[s.start:s.end]) for s in plan], plan)
    assert torch.allclose(out, interpolate(clip), atol=1e-9)


def test_results_of_mismatched_lengths_are_refused():
    plan = plan_segments(20, 8, 2)
    results = [torch.zeros(s.frames, 2, 2, 3) for s in plan]
    results[1] = torch.zeros(5, 2, 2, 3)
    with pytest.raises(InputError, match="workflow"):
        stitch(results, plan)
