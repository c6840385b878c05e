"""FFT low/high-pass filters (utils/fft.py): reference equality, identity, mask properties, layouts."""

import pytest
import torch
from video_enhance_kit.utils import fft
from video_enhance_kit.utils.checks import InputError


def published_filter(x, scale, is_low):
    """The published code's filter, written from the facts file: shifted box slicing, `.real`."""
    X = torch.fft.fftshift(torch.fft.fftn(x, dim=(-2, -1)), dim=(-2, -1))
    H, W = x.shape[-2:]
    crow, ccol = H // 2, W // 2
    box = torch.zeros_like(X.real)
    box[..., crow - int(crow * scale): crow + int(crow * scale), ccol - int(ccol * scale): ccol + int(ccol * scale)] = 1
    mask = box if is_low else 1 - box
    X = torch.fft.ifftshift(X * mask, dim=(-2, -1))
    return torch.fft.ifftn(X, dim=(-2, -1)).real


@pytest.mark.parametrize("shape", [(1, 4, 3, 10, 16), (1, 4, 3, 9, 13), (2, 4, 2, 8, 7)])
@pytest.mark.parametrize("nu", [0.0, 0.3, 0.5, 1.0])
def test_ideal_reference_matches_published_code(gen, shape, nu):
    x = torch.randn(shape, generator=gen, dtype=torch.float64)
    assert torch.allclose(fft.low_pass(x, nu), published_filter(x, nu, True), atol=1e-12)
    assert torch.allclose(fft.high_pass(x, nu), published_filter(x, nu, False), atol=1e-12)


def test_ideal_reference_full_band_even_sizes(gen):
    x = torch.randn(2, 4, 8, 12, generator=gen, dtype=torch.float64)
    assert fft.high_pass(x, 1.0).abs().max() < 1e-12
    # odd sizes: the box misses one edge bin, so some high band is left (as in the published code)
    y = torch.randn(2, 4, 9, 13, generator=gen, dtype=torch.float64)
    assert fft.high_pass(y, 1.0).abs().max() > 1e-3


@pytest.mark.parametrize("mask", fft.MASKS)
@pytest.mark.parametrize("dims", [2, 3])
def test_low_plus_high_is_identity(gen, mask, dims):
    x = torch.randn(1, 3, 4, 9, 10, generator=gen)
    low, high = fft.split_frequencies(x, 0.4, mask=mask, dims=dims)
    assert low.shape == x.shape and low.dtype == x.dtype
    assert torch.allclose(low + high, x, atol=1e-6)
    assert torch.allclose(fft.low_pass(x, 0.4, mask, dims) + fft.high_pass(x, 0.4, mask, dims), x, atol=1e-6)


@pytest.mark.parametrize("mask", ["ideal", "gaussian", "butterworth"])
def test_symmetric_masks_are_real_projections(gen, mask):
    x = torch.randn(2, 3, 11, 12, generator=gen, dtype=torch.float64)
    low = fft.low_pass(x, 0.5, mask)
    # same result through a full complex FFT: the imaginary part is round-off only
    sizes = x.shape[-2:]
    m = fft._mask(mask, tuple(sizes), 0.5, 2, x.device, torch.float64)
    full = torch.fft.ifftn(torch.fft.fftn(x, dim=(-2, -1)) * torch.cat([m, m[:, 1:(sizes[1] + 1) // 2].flip(-1)], -1), dim=(-2, -1))
    assert full.imag.abs().max() < 1e-12
    assert torch.allclose(full.real, low, atol=1e-12)


def test_ideal_is_idempotent_and_orthogonal(gen):
    x = torch.randn(2, 3, 12, 10, generator=gen, dtype=torch.float64)
    low, high = fft.split_frequencies(x, 0.5, "ideal")
    assert torch.allclose(fft.low_pass(low, 0.5, "ideal"), low, atol=1e-12)
    assert abs(float((low * high).sum())) < 1e-9


def test_low_pass_keeps_constant_and_removes_checkerboard():
    const = torch.full((1, 1, 8, 8), 3.0)
    checker = ((torch.arange(8)[:, None] + torch.arange(8)[None, :]) % 2 * 2 - 1).float()[None, None]
    for mask in ("ideal", "gaussian", "butterworth"):
        assert torch.allclose(fft.low_pass(const, 0.5, mask), const, atol=1e-5)
        assert fft.low_pass(checker, 0.5, mask).abs().max() < 0.02  # gaussian: exp(-4) at the corner
    assert torch.allclose(fft.low_pass(const, 0.5), const, atol=1e-5)  # ideal_reference keeps DC


def test_cutoff_zero_is_empty_low_band(gen):
    x = torch.randn(1, 2, 6, 6, generator=gen)
    for mask in fft.MASKS:
        assert fft.low_pass(x, 0.0, mask).abs().max() == 0
        assert torch.equal(fft.high_pass(x, 0.0, mask), x)


def test_dims3_filters_over_time(gen):
    # a clip that flickers frame to frame: a 3-D low-pass removes the flicker, a 2-D one keeps it
    flicker = torch.tensor([1.0, -1.0, 1.0, -1.0]).view(1, 1, 4, 1, 1).expand(1, 2, 4, 6, 6)
    assert torch.allclose(fft.low_pass(flicker, 0.5, "ideal", dims=2), flicker, atol=1e-5)
    assert fft.low_pass(flicker, 0.5, "ideal", dims=3).abs().max() < 1e-5
    # 4-D frames [F, C, H, W]: the frame axis is time
    frames = flicker[0].permute(1, 0, 2, 3)
    assert fft.low_pass(frames, 0.5, "ideal", dims=3).abs().max() < 1e-5


def test_5d_and_frames_layouts_agree_in_2d(gen):
    video = torch.randn(1, 4, 3, 8, 10, generator=gen)
    frames = video[0].permute(1, 0, 2, 3)
    for mask in fft.MASKS:
        a = fft.low_pass(video, 0.5, mask)[0].permute(1, 0, 2, 3)
        assert torch.allclose(a, fft.low_pass(frames, 0.5, mask), atol=1e-6)


def test_half_precision_is_computed_in_float32(gen):
    x = torch.randn(1, 4, 16, 16, generator=gen)
    for dtype in (torch.float16, torch.bfloat16):
        low = fft.low_pass(x.to(dtype), 0.5, "gaussian")
        assert low.dtype == dtype
        assert torch.allclose(low.float(), fft.low_pass(x.to(dtype).float(), 0.5, "gaussian"), atol=1e-2)


def test_butterworth_order_sharpens_towards_ideal(gen):
    x = torch.randn(1, 3, 32, 32, generator=gen, dtype=torch.float64)
    ideal = fft.low_pass(x, 0.5, "ideal")
    errs = [float((fft.low_pass(x, 0.5, "butterworth", order=o) - ideal).norm()) for o in (1, 2, 8)]
    assert errs[0] > errs[1] > errs[2]


def test_masks_are_cached(gen):
    fft._mask.cache_clear()
    x = torch.randn(1, 2, 8, 8, generator=gen)
    fft.low_pass(x, 0.5)
    fft.low_pass(x + 1, 0.5)
    info = fft._mask.cache_info()
    assert info.misses == 1 and info.hits == 1


def test_merge_takes_low_from_a_and_high_from_b(gen):
    a = torch.randn(1, 2, 8, 8, generator=gen, dtype=torch.float64)
    b = torch.randn(1, 2, 8, 8, generator=gen, dtype=torch.float64)
    m = fft.merge_frequencies(a, b, 0.5, "ideal")
    assert torch.allclose(fft.low_pass(m, 0.5, "ideal"), fft.low_pass(a, 0.5, "ideal"), atol=1e-12)
    assert torch.allclose(fft.high_pass(m, 0.5, "ideal"), fft.high_pass(b, 0.5, "ideal"), atol=1e-12)


@pytest.mark.parametrize(
    "kwargs, name",
    [
        (dict(cutoff=1.5), "cutoff"),
        (dict(cutoff=-0.1), "cutoff"),
        (dict(cutoff=0.5, mask="box"), "mask"),
        (dict(cutoff=0.5, dims=4), "dims"),
        (dict(cutoff=0.5, mask="butterworth", order=0), "order"),
    ],
)
def test_bad_arguments_name_the_input(kwargs, name):
    with pytest.raises(InputError) as err:
        fft.low_pass(torch.zeros(1, 1, 4, 4), **kwargs)
    assert err.value.input_name == name


def test_bad_rank_and_mismatched_merge():
    with pytest.raises(InputError, match="latent"):
        fft.low_pass(torch.zeros(4), 0.5)
    with pytest.raises(InputError, match="low_source"):
        fft.merge_frequencies(torch.zeros(1, 1, 4, 4), torch.zeros(1, 1, 4, 6), 0.5)


@pytest.mark.parametrize("mask", fft.MASKS)
def test_extreme_cutoffs_stay_finite(gen, mask):
    x = torch.randn(1, 2, 9, 8, generator=gen)
    for cutoff in (1e-6, 1e-3, 1.0):
        for order in (1, 16):
            low = fft.low_pass(x, cutoff, mask, order=order)
            assert torch.isfinite(low).all()
    # a tiny cutoff keeps at most the mean (DC)
    low = fft.low_pass(x, 1e-6, mask)
    assert torch.allclose(low, x.mean(dim=(-2, -1), keepdim=True).expand_as(x), atol=1e-5) or low.abs().max() < 1e-6
