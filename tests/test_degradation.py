"""Degradation operators: adjoints, pseudo-inverses, layouts, low-light fitting and clear errors."""

from __future__ import annotations

import pytest
import torch
from video_enhance_kit.utils.checks import InputError
from video_enhance_kit.utils.degradation import (
    Denoise,
    Downsample,
    GaussianBlur,
    Grayscale,
    Inpaint,
    LowLight,
    add_noise,
    fit_low_light,
)


def _mask(frames=3, size=16, seed=0):
    g = torch.Generator().manual_seed(seed)
    return (torch.rand(frames, 1, size, size, generator=g) > 0.3).double()


OPERATORS = {
    "avgpool": lambda: Downsample(4, "avgpool"),
    "bicubic": lambda: Downsample(4, "bicubic"),
    "blur": lambda: GaussianBlur(1.6),
    "inpaint": lambda: Inpaint(_mask()),
    "gray": lambda: Grayscale(),
    "noise": lambda: Denoise(0.1),
    "lowlight": lambda: LowLight(torch.tensor([0.2, 0.3, 0.25]), torch.zeros(3)),
}


def _pair(op, seed=1):
    g = torch.Generator().manual_seed(seed)
    x = torch.rand(3, 3, 16, 16, generator=g, dtype=torch.float64)
    y = torch.rand(op(x).shape, generator=g, dtype=torch.float64)
    return x, y


@pytest.mark.parametrize("name", sorted(OPERATORS))
def test_adjoint_satisfies_the_inner_product_identity(name):
    op = OPERATORS[name]()
    x, y = _pair(op)
    linear = op(x) - (op(torch.zeros_like(x)) if name == "lowlight" else 0)  # the adjoint is of the linear part
    lhs = (linear * y).sum()
    rhs = (x * op.adjoint(y)).sum()
    assert torch.allclose(lhs, rhs, rtol=1e-5, atol=1e-8), (float(lhs), float(rhs))


@pytest.mark.parametrize("name", [n for n in sorted(OPERATORS) if OPERATORS[n]().has_pinv])
def test_pseudo_inverse_reproduces_the_observation(name):
    op = OPERATORS[name]()
    x, _ = _pair(op, seed=2)
    y = op(x)
    assert torch.allclose(op(op.pinv(y)), y, atol=1e-10)


def test_pseudo_inverse_is_the_minimum_norm_solution_for_avgpool():
    op = Downsample(2, "avgpool")
    x, _ = _pair(op, seed=3)
    y = op(x)
    x_pinv = op.pinv(y)
    null = x - x_pinv  # x = A^+ y + (I - A^+ A) x: the null-space part is orthogonal to the range of A^T
    assert torch.allclose(op(null), torch.zeros_like(y), atol=1e-12)
    assert abs(float((null * x_pinv).sum())) < 1e-10


@pytest.mark.parametrize("name", ["bicubic", "blur"])
def test_operators_without_pseudo_inverse_say_which_method_to_use(name):
    with pytest.raises(InputError, match="gdp"):
        OPERATORS[name]().pinv(torch.zeros(1, 3, 4, 4))


@pytest.mark.parametrize("name", sorted(OPERATORS))
def test_videos_are_degraded_frame_by_frame(name):
    op = OPERATORS[name]()
    x, _ = _pair(op, seed=4)
    video = x.unsqueeze(0).movedim(1, 2)  # [1, C, T, H, W]
    out = op(video)
    assert out.ndim == 5
    assert torch.equal(out[0].movedim(1, 0), op(x))


def test_operators_are_differentiable():
    x = torch.rand(2, 3, 8, 8, dtype=torch.float64, requires_grad=True)
    for name in sorted(OPERATORS):
        if name == "inpaint":
            continue  # its mask is 16 px
        op = OPERATORS[name]() if name != "avgpool" else Downsample(2)
        loss = (op(x) ** 2).sum()
        (grad,) = torch.autograd.grad(loss, x)
        assert torch.isfinite(grad).all() and grad.abs().sum() > 0, name


def test_low_light_parameters_are_recovered_from_a_darkened_clip():
    g = torch.Generator().manual_seed(5)
    clean = torch.rand(4, 3, 16, 16, generator=g)
    scale, offset = torch.tensor([0.18, 0.25, 0.31]), torch.tensor([0.02, 0.0, 0.05])
    dark = LowLight(scale, offset)(clean)
    noisy = add_noise(dark, 0.01, seed=6)
    fitted = fit_low_light(clean, noisy)
    assert torch.allclose(fitted.scale, scale, atol=1e-2) and torch.allclose(fitted.offset, offset, atol=1e-2)
    assert torch.allclose(fitted.pinv(dark), (dark - fitted.offset.view(1, 3, 1, 1)) / fitted.scale.view(1, 3, 1, 1))


def test_add_noise_has_the_requested_level_and_is_seeded():
    x = torch.zeros(8, 3, 32, 32)
    a, b = add_noise(x, 0.1, seed=1), add_noise(x, 0.1, seed=1)
    assert torch.equal(a, b)
    assert abs(float(a.std()) - 0.1) < 0.005


def test_bad_inputs_name_what_to_fix():
    with pytest.raises(InputError, match="multiple of the factor 4"):
        Downsample(4)(torch.zeros(1, 3, 18, 16))
    with pytest.raises(InputError, match="mask"):
        Inpaint(_mask(size=8))(torch.zeros(3, 3, 16, 16))
    with pytest.raises(InputError, match="binary"):
        Inpaint(torch.full((1, 1, 4, 4), 0.5))
    with pytest.raises(InputError, match="3 colour channels"):
        Grayscale()(torch.zeros(1, 1, 4, 4))
    with pytest.raises(InputError, match="scale"):
        LowLight(torch.tensor([0.0, 0.2, 0.2]))
    with pytest.raises(InputError, match="sigma"):
        GaussianBlur(0)
    with pytest.raises(InputError, match=r"\[F, C, H, W\]"):
        Grayscale()(torch.zeros(3, 4, 4))


def test_make_operator_names_and_observation_sizes():
    from video_enhance_kit.utils.degradation import (
        OPERATORS,
        make_operator,
        observation_size,
    )

    mask = torch.ones(1, 1, 16, 16)
    ops = {name: make_operator(name, 4, 1.0, 0.1, mask, 0.3, 0.05) for name in OPERATORS}
    assert ops["downsample_avgpool"].has_pinv and not ops["downsample_bicubic"].has_pinv and not ops["blur"].has_pinv
    assert observation_size(ops["downsample_avgpool"], 64, 32) == (16, 8)
    assert observation_size(ops["colourise"], 64, 32) == (64, 32)
    with pytest.raises(InputError, match="'degraded'.*multiple of the factor 4"):
        observation_size(ops["downsample_bicubic"], 62, 32)
    with pytest.raises(InputError, match="'mask'"):
        make_operator("inpaint")
    with pytest.raises(InputError, match="'operator'"):
        make_operator("sharpen")


def test_degrade_observation_and_block_mask():
    from video_enhance_kit.utils.degradation import (
        Grayscale,
        Inpaint,
        block_mask,
        degrade,
        observation,
    )

    x = torch.rand(3, 3, 16, 16, generator=torch.Generator().manual_seed(0))
    gray = degrade(x, Grayscale())
    assert gray.shape == x.shape and torch.equal(gray[:, 0], gray[:, 2])
    assert torch.allclose(observation(Grayscale(), gray), Grayscale()(x), atol=1e-6)  # luma of the shown gray = the gray
    noisy = degrade(x, Grayscale(), noise_sigma=0.05, seed=1)
    assert torch.equal(noisy, degrade(x, Grayscale(), noise_sigma=0.05, seed=1)) and not torch.equal(noisy, gray)
    mask = block_mask(3, 16, 16, block=4, missing=0.25, seed=2)
    assert mask.shape == (3, 1, 16, 16) and 0.0 < float(mask.mean()) < 1.0
    assert torch.equal(mask[..., :4, :4].amin(dim=(-1, -2)), mask[..., :4, :4].amax(dim=(-1, -2)))  # whole 4x4 blocks
    assert torch.equal(observation(Inpaint(mask), x), x * mask)
