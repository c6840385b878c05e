"""Input checks that fail with a message naming the input and the fix.

Every node (and every public core function that takes user data) validates
through these helpers, so a user never sees a bare IndexError or a shape error
from deep inside torch. Messages read::

    input 'cutoff': must be in [0, 1], got 1.5. Fix: set cutoff between 0 and 1.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import torch


class InputError(ValueError):
    """A node input that cannot be used. ``str(err)`` names the input, the problem and the fix."""

    def __init__(self, name: str, problem: str, fix: str | None = None):
        self.input_name = name
        message = f"input '{name}': {problem}"
        if fix:
            message += f". Fix: {fix}"
        super().__init__(message)


def check_tensor(x, name: str) -> torch.Tensor:
    """Fail unless ``x`` is a tensor."""
    if not isinstance(x, torch.Tensor):
        raise InputError(name, f"expected a tensor, got {type(x).__name__}", "connect the matching output type")
    return x


def check_rank(x: torch.Tensor, name: str, ranks: int | Sequence[int], layout: str) -> torch.Tensor:
    """Fail unless ``x.ndim`` is one of ``ranks``; ``layout`` describes the expected shape, e.g. '[F, H, W, C]'."""
    check_tensor(x, name)
    ranks = (ranks,) if isinstance(ranks, int) else tuple(ranks)
    if x.ndim not in ranks:
        raise InputError(
            name,
            f"expected a {' or '.join(f'{r}-D' for r in ranks)} tensor {layout}, got shape {tuple(x.shape)}",
            "connect a tensor of that layout",
        )
    return x


def check_nonempty(x: torch.Tensor, name: str) -> torch.Tensor:
    """Fail on a tensor with a zero-sized axis."""
    if x.numel() == 0:
        raise InputError(name, f"is empty (shape {tuple(x.shape)})", "connect a non-empty input")
    return x


def check_finite(x: torch.Tensor, name: str) -> torch.Tensor:
    """Fail if ``x`` holds NaN or infinity."""
    if x.is_floating_point() and not bool(torch.isfinite(x).all()):
        bad = int((~torch.isfinite(x)).sum())
        raise InputError(
            name,
            f"contains {bad} NaN or infinite values",
            "check the node that produced it (a VAE in fp16 or a diverged sampler are common causes)",
        )
    return x


def check_frames(count: int, name: str, minimum: int = 2) -> int:
    """Fail unless a video has at least ``minimum`` frames."""
    if count < minimum:
        raise InputError(
            name,
            f"has {count} frame(s), this node needs at least {minimum}",
            "connect a video (a batch of frames), not a single image",
        )
    return count


def check_range(value, name: str, low=None, high=None, *, integer: bool = False):
    """Fail unless ``low <= value <= high`` (either bound may be None) and finite."""
    if integer and (isinstance(value, bool) or int(value) != value):
        raise InputError(name, f"must be a whole number, got {value!r}", f"set {name} to an integer")
    if isinstance(value, float) and not math.isfinite(value):
        raise InputError(name, f"must be a finite number, got {value!r}", f"set {name} to a finite value")
    if (low is not None and value < low) or (high is not None and value > high):
        span = f"[{'-inf' if low is None else low}, {'inf' if high is None else high}]"
        raise InputError(name, f"must be in {span}, got {value!r}", f"set {name} within {span}")
    return value


@dataclass(frozen=True)
class Range:
    """An input's legal interval, one place for a node's schema (``min``/``max``) and its checks.

    ``io.Float.Input("x", **R.bounds, ...)`` declares it; ``R.check(value, "x")`` enforces it (for calls that
    bypass ComfyUI's validation: the API, Python, other nodes) with :func:`check_range`'s message.
    """

    low: float | int | None = None
    high: float | int | None = None
    integer: bool = False

    @property
    def bounds(self) -> dict:
        """``{"min": low, "max": high}`` without the open ends, for a V3 schema input."""
        return {k: v for k, v in (("min", self.low), ("max", self.high)) if v is not None}

    def check(self, value, name: str):
        """:func:`check_range` with these bounds."""
        return check_range(value, name, self.low, self.high, integer=self.integer)


def check_choice(value, name: str, choices: Iterable):
    """Fail unless ``value`` is one of ``choices``."""
    choices = list(choices)
    if value not in choices:
        raise InputError(name, f"must be one of {choices}, got {value!r}", f"pick one of {choices}")
    return value


def check_same_shape(a: torch.Tensor, b: torch.Tensor, name_a: str, name_b: str, dims: slice | None = None):
    """Fail unless ``a`` and ``b`` have the same shape (or the same ``shape[dims]``)."""
    sa, sb = tuple(a.shape), tuple(b.shape)
    if dims is not None:
        sa, sb = sa[dims], sb[dims]
    if sa != sb:
        raise InputError(
            name_a,
            f"shape {tuple(a.shape)} does not match '{name_b}' shape {tuple(b.shape)}",
            f"give '{name_a}' and '{name_b}' the same size and frame count (resize or trim one of them)",
        )


def check_sigmas(sigmas: torch.Tensor, name: str = "sigmas") -> torch.Tensor:
    """Fail unless ``sigmas`` is a 1-D, finite, non-increasing schedule with at least one step."""
    check_rank(sigmas, name, 1, "[steps + 1]")
    if sigmas.numel() < 2:
        raise InputError(name, f"has {sigmas.numel()} value(s); a schedule needs at least 2", "connect a scheduler with steps >= 1 (and denoise > 0)")
    check_finite(sigmas, name)
    if bool((sigmas[1:] > sigmas[:-1]).any()):
        raise InputError(name, "must be non-increasing (from high noise to low)", "connect a scheduler's output, or flip the sigmas")
    if float(sigmas[0]) <= 0:
        raise InputError(name, "starts at 0: there is no noise to remove", "raise denoise or steps")
    return sigmas
