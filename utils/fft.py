"""FFT low/high-pass filters (Noise Calibration, paper Eq. 9: x = f_l(x) + f_h(x)).

Layouts: latents ``[N, C, H, W]`` (frames as batch) and ``[B, C, T, H, W]`` (video); any tensor
whose last two axes are ``H, W`` works with ``dims=2``. With ``dims=3`` the filter also runs over time:
axis ``T`` of a 5-D latent, axis ``N`` (the frames) of a 4-D one. IMAGE ``[F, H, W, C]`` batches are
filtered after :func:`utils.video.image_to_frames`.

``cutoff`` is the paper's threshold frequency nu in [0, 1]: the fraction of each axis' half extent
that counts as "low". ``cutoff = 0`` gives an empty low band (low-pass 0, high-pass = input).

Masks (all built once per shape, cutoff and device, then cached):

- ``ideal_reference``: exactly the published code's box: on the ``fftshift``-ed spectrum, indices
  ``c - int(c * nu)`` up to (not including) ``c + int(c * nu)`` per axis, ``c = n // 2``, then the real part
  of the inverse FFT. The box is one bin asymmetric around DC, so the result is not the exact
  projection a symmetric mask gives; use it to reproduce the paper's numbers.
- ``ideal``: a symmetric box, ``|k| <= nu * n / 2`` per axis (``k`` the integer frequency).
- ``gaussian``: ``exp(-d^2 / (2 nu^2))``, ``d`` the frequency radius normalised to 1 at each axis' Nyquist.
- ``butterworth``: ``1 / (1 + (d / nu)^(2 order))``.

The transform runs in float32 (float64 stays float64) on the input's device and the result comes back
in the input's dtype. ``low + high == x`` for every mask (``high`` is computed as ``x - low``).
"""

from __future__ import annotations

import functools

import torch

from .checks import check_choice, check_range, check_rank, check_tensor

MASKS = ("ideal_reference", "ideal", "gaussian", "butterworth")
DEFAULT_MASK = "ideal_reference"


def _filter_axes(ndim: int, dims: int) -> tuple[int, ...]:
    """Axes the FFT runs over: (H, W) for dims=2; (T, H, W) for dims=3 (T = axis 2 of 5-D, axis 0 of 4-D)."""
    if dims == 2:
        return (ndim - 2, ndim - 1)
    if ndim == 5:
        return (2, 3, 4)
    if ndim == 4:
        return (0, 2, 3)
    return tuple(range(ndim - 3, ndim))


def _frequencies(n: int, half: bool, device) -> torch.Tensor:
    """Integer frequencies of an axis of length ``n`` in torch.fft order (``rfft`` order when ``half``)."""
    if half:
        return torch.arange(n // 2 + 1, device=device, dtype=torch.float64)
    return torch.fft.fftfreq(n, d=1.0 / n, device=device, dtype=torch.float64).round()


@functools.lru_cache(maxsize=64)
def _mask(kind: str, sizes: tuple[int, ...], cutoff: float, order: int, device: torch.device, dtype: torch.dtype) -> torch.Tensor:
    """Low-pass mask over the filter axes ``sizes``, unshifted (torch.fft order); rfft-shaped unless ``ideal_reference``."""
    half = kind != "ideal_reference"
    freqs = [_frequencies(n, half and i == len(sizes) - 1, device) for i, n in enumerate(sizes)]
    grids = torch.meshgrid(*freqs, indexing="ij")
    if cutoff <= 0:
        return torch.zeros(grids[0].shape, device=device, dtype=dtype)
    if kind == "ideal_reference":
        keep = torch.ones(grids[0].shape, device=device, dtype=torch.bool)
        for k, n in zip(grids, sizes):
            m = int((n // 2) * cutoff)  # the published slicing: [c - m, c + m) around c = n // 2
            keep &= (k >= -m) & (k < m)
        return keep.to(dtype)
    if kind == "ideal":
        keep = torch.ones(grids[0].shape, device=device, dtype=torch.bool)
        for k, n in zip(grids, sizes):
            keep &= k.abs() <= cutoff * (n / 2) + 1e-9
        return keep.to(dtype)
    d2 = sum((k / (n / 2)) ** 2 for k, n in zip(grids, sizes))
    if kind == "gaussian":
        return torch.exp(-d2 / (2 * cutoff**2)).to(dtype)
    return (1.0 / (1.0 + (d2 / cutoff**2) ** order)).to(dtype)


def _check(x, cutoff, mask, dims, order) -> None:
    check_tensor(x, "latent")
    check_range(cutoff, "cutoff", 0.0, 1.0)
    check_choice(mask, "mask", MASKS)
    check_choice(dims, "dims", (2, 3))
    check_range(order, "order", 1, 16, integer=True)
    check_rank(x, "latent", tuple(range(dims, 9)), "[N, C, H, W] or [B, C, T, H, W]")


def low_pass(x: torch.Tensor, cutoff: float, mask: str = DEFAULT_MASK, dims: int = 2, order: int = 2) -> torch.Tensor:
    """Low-frequency component f_l^nu(x) (paper Eq. 9), same shape and dtype as ``x``.

    Args:
        x: ``[N, C, H, W]`` or ``[B, C, T, H, W]`` (any tensor with ``H, W`` last for ``dims=2``).
        cutoff: threshold frequency nu in [0, 1] (paper default 1.0; its MSE_l uses 0.5).
        mask: one of ``MASKS`` (default ``ideal_reference``, the published code's box).
        dims: 2 = per-frame spatial filter (the paper's), 3 = spatio-temporal.
        order: butterworth order (ignored by the other masks).
    """
    _check(x, cutoff, mask, dims, order)
    axes = _filter_axes(x.ndim, dims)
    work = x.to(torch.promote_types(x.dtype, torch.float32))
    sizes = tuple(x.shape[a] for a in axes)
    m = _mask(mask, sizes, float(cutoff), int(order), work.device, work.dtype)
    view = [1] * x.ndim
    for a, s in zip(axes, m.shape):
        view[a] = s
    m = m.reshape(view)
    if mask == "ideal_reference":
        low = torch.fft.ifftn(torch.fft.fftn(work, dim=axes) * m, dim=axes).real
    else:
        low = torch.fft.irfftn(torch.fft.rfftn(work, dim=axes) * m, s=sizes, dim=axes)
    return low.to(x.dtype)


def high_pass(x: torch.Tensor, cutoff: float, mask: str = DEFAULT_MASK, dims: int = 2, order: int = 2) -> torch.Tensor:
    """High-frequency component f_h^nu(x) = x - f_l^nu(x) (paper Eq. 9); arguments as :func:`low_pass`."""
    return x - low_pass(x, cutoff, mask, dims, order)


def split_frequencies(x: torch.Tensor, cutoff: float, mask: str = DEFAULT_MASK, dims: int = 2, order: int = 2) -> tuple[torch.Tensor, torch.Tensor]:
    """``(low, high)`` with ``low + high == x`` (paper Eq. 9), one FFT; arguments as :func:`low_pass`."""
    low = low_pass(x, cutoff, mask, dims, order)
    return low, x - low


def merge_frequencies(low_source: torch.Tensor, high_source: torch.Tensor, cutoff: float, mask: str = DEFAULT_MASK, dims: int = 2, order: int = 2) -> torch.Tensor:
    """f_l^nu(low_source) + f_h^nu(high_source): structure from one input, detail from the other (shapes must match)."""
    from .checks import check_same_shape

    check_tensor(low_source, "low_source")
    check_tensor(high_source, "high_source")
    check_same_shape(low_source, high_source, "low_source", "high_source")
    return low_pass(low_source, cutoff, mask, dims, order) + high_pass(high_source, cutoff, mask, dims, order)
