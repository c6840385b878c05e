"""Small adapters shared by the feature files (ComfyUI types <-> core tensors)."""

from __future__ import annotations

import torch

import comfy.model_management

from ..utils.checks import InputError, check_finite, check_nonempty, check_rank


def latent_samples(latent: dict, name: str = "latent", ranks=(4, 5)) -> torch.Tensor:
    """The checked ``samples`` tensor of a LATENT dict (rank, emptiness, NaN)."""
    if not isinstance(latent, dict) or "samples" not in latent:
        raise InputError(name, "is not a LATENT (no 'samples')", "connect a LATENT output, e.g. VAE Encode")
    x = latent["samples"]
    check_rank(x, name, ranks, "[F, C, H, W] (image model) or [B, C, T, H, W] (video model)")
    check_nonempty(x, name)
    check_finite(x, name)
    return x


def with_samples(latent: dict, samples: torch.Tensor) -> dict:
    """A shallow copy of ``latent`` with new ``samples`` (the input dict is never mutated)."""
    out = latent.copy()
    out["samples"] = samples
    return out


def image_frames(image: torch.Tensor, name: str = "images", min_frames: int = 1) -> torch.Tensor:
    """Checked IMAGE ``[F, H, W, C]``."""
    check_rank(image, name, 4, "[F, H, W, C]")
    check_nonempty(image, name)
    check_finite(image, name)
    if image.shape[0] < min_frames:
        raise InputError(name, f"has {image.shape[0]} frame(s), this node needs at least {min_frames}", "connect a video (a batch of frames)")
    return image


def throw_if_interrupted() -> None:
    """Raise ComfyUI's interruption exception if the user pressed Cancel."""
    comfy.model_management.throw_exception_if_processing_interrupted()
