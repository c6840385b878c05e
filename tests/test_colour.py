"""Colour correction (utils/colour.py): AdaIN, wavelet and histogram matching on synthetic clips."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from video_enhance_kit.utils.checks import InputError
from video_enhance_kit.utils.colour import (
    MODES,
    chunk_frames,
    colour_correct,
    high_band,
    histogram_match,
    low_band,
    resize_to,
    tie_midranks,
)

SHIFT = torch.tensor([0.08, -0.06, 0.04]).view(1, 3, 1, 1)
GAIN = torch.tensor([0.9, 1.1, 0.95]).view(1, 3, 1, 1)


def clip(frames=4, h=32, w=48, seed=0) -> torch.Tensor:
    """Smooth random frames in 0.25..0.75 with some fine detail: [F, 3, H, W]."""
    g = torch.Generator().manual_seed(seed)
    coarse = torch.rand(frames, 3, h // 8, w // 8, generator=g)
    x = F.interpolate(coarse, size=(h, w), mode="bilinear", align_corners=False)
    return 0.25 + 0.4 * x + 0.1 * torch.rand(frames, 3, h, w, generator=g)


def channel_means(x: torch.Tensor) -> torch.Tensor:
    return x.mean((-2, -1))


# ------------------------------------------------------------------------------------------- AdaIN
def test_adain_brings_a_colour_shifted_copy_back_within_one_level():
    source = clip()
    shifted = (source - 0.5) * GAIN + 0.5 + SHIFT
    assert (channel_means(shifted) - channel_means(source)).abs().max() > 0.03  # the drift is real
    out = colour_correct(shifted, source, "adain")
    assert (channel_means(out) - channel_means(source)).abs().max() < 1 / 255
    # an affine change per channel is inverted exactly (up to float32)
    assert torch.allclose(out, source, atol=1e-5)


def test_adain_matches_std_per_frame_and_channel():
    source, result = clip(seed=1), clip(seed=2) * 0.5
    out = colour_correct(result, source, "adain")
    assert torch.allclose(out.std((-2, -1), correction=0), source.std((-2, -1), correction=0), atol=1e-5)


def test_adain_flat_result_channel_gives_the_source_mean_not_nan():
    source, result = clip(), torch.full((4, 3, 32, 48), 0.3)
    out = colour_correct(result, source, "adain")
    assert torch.isfinite(out).all()
    assert torch.allclose(channel_means(out), channel_means(source), atol=1e-5)


# ----------------------------------------------------------------------------------------- wavelet
def test_wavelet_bands_add_back_exactly():
    x = clip()
    assert torch.allclose(low_band(x, 5) + high_band(x, 5), x, atol=1e-6)


def test_wavelet_keeps_the_results_high_band_exactly_and_takes_the_sources_low_band():
    source = clip(seed=3)
    result = clip(seed=4) * 0.8 + 0.1  # other content, other colours; values stay inside 0..1 (no clamping)
    out = colour_correct(result, source, "wavelet", levels=4)
    assert torch.allclose(out - low_band(source, 4), high_band(result, 4), atol=1e-6)
    assert torch.allclose(out - high_band(result, 4), low_band(source, 4), atol=1e-6)


def test_wavelet_removes_a_uniform_colour_shift_exactly():
    source = clip()
    out = colour_correct(source + SHIFT, source, "wavelet")
    assert (out - source).abs().max() < 1e-5
    assert (channel_means(out) - channel_means(source)).abs().max() < 1 / 255


def test_wavelet_low_band_removes_the_finest_detail():
    checker = (torch.arange(32).view(-1, 1) + torch.arange(32)).remainder(2).float().expand(1, 3, 32, 32)
    inner = (..., slice(8, -8), slice(8, -8))  # 1 + 2 + 4 px from the border see the replicate padding
    assert (low_band(checker, 3)[inner] - 0.5).abs().max() < 1e-6  # the binomial kernel cancels the Nyquist pattern
    assert (high_band(checker, 3)[inner].abs() - 0.5).abs().max() < 1e-6


def test_wavelet_keeps_detail_the_source_lacks():
    source = clip(h=128, w=128)
    texture = 0.05 * (torch.arange(128).view(-1, 1) + torch.arange(128)).remainder(2).float()
    result = source + texture - 0.025 + SHIFT  # detail added, colours drifted
    out = colour_correct(result, source, "wavelet")
    # the texture is kept (zero-mean, as added), the drift is gone; the frame's border rows see the padding
    inner = (..., slice(32, -32), slice(32, -32))  # 1 + 2 + ... + 16 = 31 px see the padding
    assert (out - source)[inner].numel() == 4 * 3 * 64 * 64
    assert torch.allclose((out - source)[inner], (texture - 0.025).expand_as(source)[inner], atol=1e-5)


# --------------------------------------------------------------------------------------- histogram
def test_histogram_makes_the_per_channel_cdfs_match():
    source = clip(seed=5)
    g = torch.Generator().manual_seed(6)
    ranks = torch.stack([torch.randperm(32 * 48, generator=g) for _ in range(12)]).view(4, 3, 32, 48)
    result = 0.1 + 0.8 * (ranks.float() + 0.5) / ranks[0, 0].numel()  # distinct values: no ties
    out = colour_correct(result, source, "histogram")
    # continuous values (no ties): the output holds exactly the source's values per frame and channel
    assert torch.allclose(out.flatten(2).sort(-1).values, source.flatten(2).sort(-1).values, atol=1e-6)
    # and keeps the result's order
    assert torch.equal(out.flatten(2).argsort(-1), result.flatten(2).argsort(-1))


def test_tie_midranks():
    ranks = tie_midranks(torch.tensor([[1.0, 1.0, 2.0, 3.0, 3.0, 3.0, 4.0], [0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0]]))
    assert ranks.tolist() == [[0.5, 0.5, 2.0, 4.0, 4.0, 4.0, 6.0], [3.0] * 7]


def test_histogram_ties_stay_equal_and_cdfs_match_up_to_the_tie_mass():
    source = clip(seed=7)
    result = (clip(seed=8) * 8).round() / 8  # a few levels only: big ties
    out = histogram_match(result, source)
    for f, c in ((0, 0), (1, 2), (3, 1)):
        for level in result[f, c].unique():
            picked = out[f, c][result[f, c] == level]
            assert picked.max() - picked.min() < 1e-6  # one output value per result value
    grid = torch.linspace(0, 1, 101)
    cdf = lambda x: (x.flatten(2).unsqueeze(-1) <= grid).float().mean(2)  # noqa: E731
    biggest_tie = max((result[0, 0] == v).float().mean() for v in result[0, 0].unique())
    assert (cdf(out) - cdf(source)).abs().max() <= biggest_tie + 1e-3


# ---------------------------------------------------------------------------------- shared behaviour
@pytest.mark.parametrize("mode", MODES)
def test_source_is_resized_to_the_result(mode):
    source = clip(h=16, w=24)
    big = resize_to(source, (64, 96))
    result = (big + SHIFT).clamp(0, 1)
    out = colour_correct(result, source, mode)
    assert out.shape == result.shape
    assert (channel_means(out) - channel_means(big)).abs().max() < 2 / 255


@pytest.mark.parametrize("mode", MODES)
def test_one_source_frame_is_the_reference_for_every_frame(mode):
    source, result = clip(frames=1, seed=9), clip(frames=5, seed=10)
    out = colour_correct(result, source, mode, chunk=2)
    assert torch.allclose(out, colour_correct(result, source.expand(5, -1, -1, -1), mode), atol=1e-6)


@pytest.mark.parametrize("mode", MODES)
def test_strength_blends_and_chunks_do_not_change_the_output(mode):
    source, result = clip(frames=5, seed=11), clip(frames=5, seed=12)
    full = colour_correct(result, source, mode)
    assert torch.equal(colour_correct(result, source, mode, strength=0.0), result)
    half = colour_correct(result, source, mode, strength=0.5)
    assert torch.allclose(half, (result + full) / 2, atol=1e-6)
    calls = []
    chunked = colour_correct(result, source, mode, chunk=2, on_chunk=lambda done, total: calls.append((done, total)))
    assert torch.allclose(chunked, full, atol=1e-6)
    assert calls == [(2, 5), (4, 5), (5, 5)]


def test_chunks_hold_fewer_frames_on_large_frames():
    assert (chunk_frames(64, 64), chunk_frames(1080, 1920), chunk_frames(2160, 3840), chunk_frames(8000, 8000)) == (8, 8, 2, 1)


def test_keeps_the_results_dtype_and_clamps():
    source, result = clip(), (clip(seed=2) + 0.5).half()
    out = colour_correct(result, source, "adain")
    assert out.dtype == torch.float16
    out = colour_correct(clip() * 3, clip(), "wavelet")
    assert out.min() >= 0 and out.max() <= 1


@pytest.mark.parametrize(
    ("result", "source", "name", "words"),
    [
        (clip(frames=3), clip(frames=2), "source", "has 2 frames, 'result' has 3"),
        (clip()[:0], clip(), "result", "empty"),
        (clip(), clip()[:0], "source", "empty"),
        (clip(), clip().index_fill(2, torch.tensor([3]), float("nan")), "source", "NaN"),
        (clip()[0], clip(), "result", "4-D"),
        (clip(), clip()[:, :2], "source", "channels"),
    ],
)
def test_bad_inputs_name_the_input(result, source, name, words):
    with pytest.raises(InputError, match=words) as err:
        colour_correct(result, source, "wavelet")
    assert err.value.input_name == name


@pytest.mark.parametrize(("kwargs", "name"), [({"mode": "lab"}, "mode"), ({"strength": 1.5}, "strength"), ({"levels": 0}, "levels"), ({"levels": 9}, "levels")])
def test_bad_settings_name_the_setting(kwargs, name):
    with pytest.raises(InputError) as err:
        colour_correct(clip(), clip(), **{"mode": "wavelet", **kwargs})
    assert err.value.input_name == name
