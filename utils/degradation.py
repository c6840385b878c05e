"""Linear degradation operators ``y = A(x)`` for zero-shot restoration (DDNM, GDP), with adjoints and pseudo-inverses.

Every operator works on frames ``[F, C, H, W]`` and on videos ``[B, C, T, H, W]`` (each frame degraded
alike) in pixel space, values in ``0..1`` as ComfyUI's IMAGE. Each is differentiable (GDP's guidance
backpropagates ``||A(x0) - y||^2`` through it) and offers:

- ``A(x)``: the degradation (``op(x)``);
- ``op.adjoint(y)``: ``A^T y``, so ``<A x, y> = <x, A^T y>`` (for the affine low-light model, the adjoint
  of its linear part);
- ``op.pinv(y)``: ``A^+ y`` with ``A A^+ y = y`` for every ``y`` in the range of ``A``, where one exists
  (``op.has_pinv``); DDNM's range-null-space step ``x <- A^+ y + (I - A^+ A) x`` needs it.

Operators (paper settings of ZVRD / DDNM / GDP):

- :class:`Downsample` ``factor``, ``mode``: ``"avgpool"`` (exact pseudo-inverse: nearest upsampling) or
  ``"bicubic"`` (antialiased; adjoint through autograd, no pseudo-inverse).
- :class:`GaussianBlur` ``sigma`` (kernel ``2 * ceil(3 sigma) + 1``, zero border so it is self-adjoint).
- :class:`Inpaint` a binary ``mask`` ``[F or 1, 1, H, W]`` (1 = observed).
- :class:`Grayscale` BT.601 luma (colourisation).
- :class:`Denoise` identity with a noise level ``sigma`` (denoising: ``y = x + sigma n``).
- :class:`LowLight` per-channel ``y = scale * x + offset`` (GDP's blind low-light model); its parameters are
  estimated from the current estimate with :func:`fit_low_light` (closed-form least squares, the exact
  minimiser of the loss GDP descends by gradient steps).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from .checks import InputError

LUMA_BT601 = (0.299, 0.587, 0.114)


def frames_of(x: torch.Tensor, name: str) -> tuple[torch.Tensor, tuple[int, int] | None]:
    """``[F, C, H, W]`` as is, ``[B, C, T, H, W]`` -> ``[B * T, C, H, W]``; returns the frames and the (B, T) to restore."""
    if x.ndim == 4:
        return x, None
    if x.ndim == 5:
        b, c, t, h, w = x.shape
        return x.movedim(2, 1).reshape(b * t, c, h, w), (b, t)
    raise InputError(name, f"expected frames [F, C, H, W] or a video [B, C, T, H, W], got shape {tuple(x.shape)}",
                     "connect frames or a video of that layout")


def restore_layout(frames: torch.Tensor, layout: tuple[int, int] | None) -> torch.Tensor:
    """Inverse of :func:`frames_of`."""
    if layout is None:
        return frames
    b, t = layout
    return frames.reshape(b, t, *frames.shape[1:]).movedim(1, 2)


class Degradation:
    """Base class: subclasses implement the frame-wise ``_apply``, ``_adjoint`` and (optionally) ``_pinv``."""

    name = "degradation"
    has_pinv = False

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        """``y = A(x)``."""
        frames, layout = frames_of(x, "x")
        return restore_layout(self._apply(frames), layout)

    def adjoint(self, y: torch.Tensor) -> torch.Tensor:
        """``A^T y``."""
        frames, layout = frames_of(y, "y")
        return restore_layout(self._adjoint(frames), layout)

    def pinv(self, y: torch.Tensor) -> torch.Tensor:
        """``A^+ y`` (only where ``has_pinv``)."""
        if not self.has_pinv:
            raise InputError("method", f"the {self.name} operator has no pseudo-inverse", "use method 'gdp' instead of 'ddnm'")
        frames, layout = frames_of(y, "y")
        return restore_layout(self._pinv(frames), layout)

    def _apply(self, x):
        raise NotImplementedError

    def _adjoint(self, y):
        raise NotImplementedError

    def _pinv(self, y):
        raise NotImplementedError


def linear_adjoint(apply, y: torch.Tensor, x_shape: tuple[int, ...]) -> torch.Tensor:
    """``A^T y`` of a linear ``apply`` by one vector-Jacobian product at 0 (exact for linear maps)."""
    with torch.inference_mode(False), torch.enable_grad():
        x = torch.zeros(x_shape, dtype=y.dtype, device=y.device, requires_grad=True)
        (grad,) = torch.autograd.grad(apply(x), x, grad_outputs=y)
    return grad


@dataclass
class Downsample(Degradation):
    """``y = down_f(x)``: ``"avgpool"`` (f x f mean, ``A^+`` = nearest upsampling) or ``"bicubic"`` (antialiased)."""

    factor: int = 4
    mode: str = "avgpool"

    def __post_init__(self):
        if self.factor < 1:
            raise InputError("factor", f"must be at least 1, got {self.factor}", "set factor to 1 or more")
        if self.mode not in ("avgpool", "bicubic"):
            raise InputError("mode", f"unknown downsampling {self.mode!r}", "choose 'avgpool' or 'bicubic'")
        self.name = f"{self.mode} downsampling x{self.factor}"
        self.has_pinv = self.mode == "avgpool"

    def check_size(self, h: int, w: int, name: str) -> None:
        """Sizes must be multiples of the factor (so ``A`` is defined on whole blocks)."""
        if h % self.factor or w % self.factor:
            raise InputError(name, f"{w}x{h} is not a multiple of the factor {self.factor}",
                             f"crop or resize it to a multiple of {self.factor}")

    def _apply(self, x):
        self.check_size(*x.shape[-2:], "x")
        if self.mode == "avgpool":
            return F.avg_pool2d(x, self.factor)
        size = (x.shape[-2] // self.factor, x.shape[-1] // self.factor)
        return F.interpolate(x, size=size, mode="bicubic", align_corners=False, antialias=True)

    def _adjoint(self, y):
        if self.mode == "avgpool":
            return self._pinv(y) / self.factor**2
        shape = (*y.shape[:2], y.shape[-2] * self.factor, y.shape[-1] * self.factor)
        return linear_adjoint(self._apply, y, shape)

    def _pinv(self, y):
        return y.repeat_interleave(self.factor, dim=-2).repeat_interleave(self.factor, dim=-1)


def gaussian_kernel(sigma: float, dtype=torch.float32, device=None) -> torch.Tensor:
    """Normalised 2-D Gaussian ``[k, k]`` with ``k = 2 * ceil(3 sigma) + 1``."""
    radius = max(1, math.ceil(3 * sigma))
    t = torch.arange(-radius, radius + 1, dtype=torch.float64)
    g = torch.exp(-0.5 * (t / sigma) ** 2)
    g = g / g.sum()
    return torch.outer(g, g).to(dtype=dtype, device=device)


@dataclass
class GaussianBlur(Degradation):
    """``y = k_sigma * x`` with a zero border: symmetric kernel, so ``A^T = A``; no pseudo-inverse."""

    sigma: float = 1.6

    def __post_init__(self):
        if not self.sigma > 0:
            raise InputError("sigma", f"the blur must be above 0, got {self.sigma}", "set sigma above 0")
        self.name = f"Gaussian blur (sigma {self.sigma:g})"

    def _apply(self, x):
        c = x.shape[1]
        k = gaussian_kernel(self.sigma, x.dtype, x.device)
        return F.conv2d(x, k.expand(c, 1, *k.shape), padding=k.shape[-1] // 2, groups=c)

    def _adjoint(self, y):
        return self._apply(y)


@dataclass
class Inpaint(Degradation):
    """``y = m * x`` for a binary mask ``m`` (1 = observed, broadcast over channels); ``A^T = A^+ = A``."""

    mask: torch.Tensor = None
    name = "inpainting mask"
    has_pinv = True

    def __post_init__(self):
        if self.mask is None or self.mask.ndim != 4 or self.mask.shape[1] != 1:
            shape = None if self.mask is None else tuple(self.mask.shape)
            raise InputError("mask", f"expected [F or 1, 1, H, W], got {shape}", "connect a MASK")
        if not torch.all((self.mask == 0) | (self.mask == 1)):
            raise InputError("mask", "must be binary (0 = missing, 1 = observed)", "threshold it first")

    def _masked(self, x):
        if self.mask.shape[-2:] != x.shape[-2:] or self.mask.shape[0] not in (1, x.shape[0]):
            raise InputError("mask", f"{tuple(self.mask.shape)} does not fit frames {tuple(x.shape)}",
                             "give one mask per frame (or one for all) of the video's size")
        return x * self.mask.to(dtype=x.dtype, device=x.device)

    def _apply(self, x):
        return self._masked(x)

    def _adjoint(self, y):
        return self._masked(y)

    def _pinv(self, y):
        return self._masked(y)


class Grayscale(Degradation):
    """``y = w . x`` over RGB (BT.601 luma); ``A^T y = w y``, ``A^+ y = w y / |w|^2``."""

    name = "grayscale"
    has_pinv = True

    def _weights(self, like):
        return torch.tensor(LUMA_BT601, dtype=like.dtype, device=like.device).view(1, 3, 1, 1)

    def _apply(self, x):
        if x.shape[1] != 3:
            raise InputError("x", f"grayscale needs 3 colour channels, got {x.shape[1]}", "connect an RGB video")
        return (x * self._weights(x)).sum(dim=1, keepdim=True)

    def _adjoint(self, y):
        return y * self._weights(y)

    def _pinv(self, y):
        w = self._weights(y)
        return y * w / (w * w).sum()


@dataclass
class Denoise(Degradation):
    """``y = x + sigma n``: ``A = A^T = A^+ = I``; ``sigma`` is the noise level (0..1 pixel units)."""

    sigma: float = 0.1
    has_pinv = True

    def __post_init__(self):
        if self.sigma < 0:
            raise InputError("sigma", f"the noise level must be at least 0, got {self.sigma}", "set sigma to 0 or more")
        self.name = f"noise (sigma {self.sigma:g})"

    def _apply(self, x):
        return x

    def _adjoint(self, y):
        return y

    def _pinv(self, y):
        return y


@dataclass
class LowLight(Degradation):
    """``y = scale_c x + offset_c`` per channel; adjoint of the linear part ``scale_c y``; ``A^+ y = (y - offset) / scale``."""

    scale: torch.Tensor = None
    offset: torch.Tensor = None
    check: bool = True  # False for parameters fitted during sampling (no host round trip per call)
    name = "low light"
    has_pinv = True

    def __post_init__(self):
        self.scale = torch.as_tensor(0.25 if self.scale is None else self.scale, dtype=torch.float32).reshape(-1)
        self.offset = torch.as_tensor(0.0 if self.offset is None else self.offset, dtype=torch.float32).reshape(-1)
        if self.check and bool(torch.any(self.scale <= 0)):
            raise InputError("scale", f"every channel's light factor must be above 0, got {self.scale.tolist()}", "set each scale above 0")

    def _params(self, like):
        view = (1, -1, 1, 1)
        return (self.scale.to(like.dtype).to(like.device).view(view),
                self.offset.to(like.dtype).to(like.device).view(view))

    def _apply(self, x):
        s, b = self._params(x)
        return s * x + b

    def _adjoint(self, y):
        return self._params(y)[0] * y

    def _pinv(self, y):
        s, b = self._params(y)
        return (y - b) / s


def fit_low_light(x: torch.Tensor, y: torch.Tensor, min_scale: float = 1e-3) -> LowLight:
    """Per-channel least squares ``argmin_{s, b} ||s x + b - y||^2`` (GDP's blind low-light parameters), s >= ``min_scale``."""
    xf, _ = frames_of(x, "x")
    yf, _ = frames_of(y, "y")
    if xf.shape != yf.shape:
        raise InputError("y", f"shape {tuple(yf.shape)} does not match the estimate's {tuple(xf.shape)}", "give the degraded video of the same size and length")
    xc = xf.movedim(1, 0).reshape(xf.shape[1], -1).double()
    yc = yf.movedim(1, 0).reshape(yf.shape[1], -1).double()
    xm, ym = xc.mean(dim=1, keepdim=True), yc.mean(dim=1, keepdim=True)
    var = ((xc - xm) ** 2).mean(dim=1)
    cov = ((xc - xm) * (yc - ym)).mean(dim=1)
    scale = (cov / var.clamp_min(1e-12)).clamp_min(min_scale)
    offset = ym.squeeze(1) - scale * xm.squeeze(1)
    return LowLight(scale.float(), offset.float(), check=False)


def add_noise(x: torch.Tensor, sigma: float, seed: int = 0) -> torch.Tensor:
    """``x + sigma n`` with ``n ~ N(0, I)`` drawn on the CPU from ``seed`` (the same noise on every device)."""
    generator = torch.Generator().manual_seed(seed)
    noise = torch.randn(x.shape, generator=generator, dtype=torch.float32)
    return x + sigma * noise.to(dtype=x.dtype, device=x.device)


OPERATORS = ("downsample_avgpool", "downsample_bicubic", "blur", "inpaint", "colourise", "denoise", "low_light")


def make_operator(name: str, factor: int = 4, blur_sigma: float = 1.6, noise_sigma: float = 0.0,
                  mask: torch.Tensor | None = None, light_scale: float = 0.25, light_offset: float = 0.0) -> Degradation:
    """The operator a node's ``operator`` combo names, from the node's parameters (``mask`` ``[F or 1, 1, H, W]``, 1 = observed)."""
    if name not in OPERATORS:
        raise InputError("operator", f"unknown operator {name!r}", f"pick one of {list(OPERATORS)}")
    if name.startswith("downsample_"):
        return Downsample(int(factor), name.split("_", 1)[1])
    if name == "blur":
        return GaussianBlur(float(blur_sigma))
    if name == "inpaint":
        if mask is None:
            raise InputError("mask", "operator 'inpaint' needs a mask", "connect a MASK (1 = missing), e.g. Degrade Video's mask output")
        return Inpaint(mask)
    if name == "colourise":
        return Grayscale()
    if name == "denoise":
        return Denoise(float(noise_sigma))
    return LowLight(torch.tensor([float(light_scale)]), torch.tensor([float(light_offset)]))


def observation_size(op: Degradation, height: int, width: int, name: str = "degraded") -> tuple[int, int]:
    """``(H_y, W_y)`` of ``A`` applied to ``height x width`` frames (the size check of a downsampling factor included)."""
    if isinstance(op, Downsample):
        op.check_size(height, width, name)
        return height // op.factor, width // op.factor
    return height, width


def observation(op: Degradation, frames: torch.Tensor) -> torch.Tensor:
    """``y`` from degraded RGB frames ``[F, 3, h, w]`` as an IMAGE holds them (grayscale: its luma, one channel;
    inpainting: the observed pixels only, so ``y`` lies in the range of ``A``)."""
    return op(frames) if isinstance(op, (Grayscale, Inpaint)) else frames


def degrade(frames: torch.Tensor, op: Degradation, noise_sigma: float = 0.0, seed: int = 0) -> torch.Tensor:
    """``clamp(A(x) + noise_sigma n, 0, 1)`` for frames ``[F, 3, H, W]``, shown as RGB (grayscale in all three channels)."""
    y = op(frames)
    if noise_sigma > 0:
        y = add_noise(y, noise_sigma, seed)
    if y.shape[1] == 1:
        y = y.expand(-1, 3, -1, -1)
    return y.clamp(0, 1)


def block_mask(frames: int, height: int, width: int, block: int = 8, missing: float = 0.25, seed: int = 0) -> torch.Tensor:
    """A seeded inpainting mask ``[F, 1, H, W]`` (1 = observed): ``missing`` of the ``block`` x ``block`` cells of every frame removed."""
    g = torch.Generator().manual_seed(seed)
    cells = torch.rand(frames, 1, -(-height // block), -(-width // block), generator=g) >= missing
    full = cells.repeat_interleave(block, dim=-2).repeat_interleave(block, dim=-1)
    return full[..., :height, :width].float()


__all__ = [
    "OPERATORS", "block_mask", "degrade", "make_operator", "observation", "observation_size",
    "Degradation", "Denoise", "Downsample", "GaussianBlur", "Grayscale", "Inpaint", "LowLight",
    "add_noise", "fit_low_light", "frames_of", "gaussian_kernel", "linear_adjoint", "restore_layout",
]
