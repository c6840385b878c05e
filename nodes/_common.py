"""Small adapters shared by the feature files (ComfyUI types <-> core tensors)."""

from __future__ import annotations

import logging
from collections.abc import Mapping

import comfy.ldm.modules.attention
import comfy.model_management
import comfy.utils
import latent_preview
import torch

from ..utils.checks import (
    InputError,
    Range,
    check_finite,
    check_nonempty,
    check_rank,
)

log = logging.getLogger("video_enhance_kit")

#: ``{input name: (low, high)}``: a node's numeric input ranges, read by its V3 schema (:func:`bounds`) and by
#: its own checks (:func:`check_ranges`; nodes are also called directly, without ComfyUI's validation).
#: Integer bounds make an integer input.
Ranges = Mapping[str, tuple]


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


def show_text(text: str) -> None:
    """Show ``text`` on the running node in ComfyUI's graph (``PromptServer.send_progress_text``, under the
    progress bar) and log it; only logged where no PromptServer runs (headless in-process runs)."""
    log.info("video-enhance-kit: %s", text)
    from comfy_execution.utils import get_executing_context

    context = get_executing_context()
    try:
        from server import PromptServer
    except ImportError:  # pragma: no cover - ComfyUI without its server module
        return
    server = getattr(PromptServer, "instance", None)
    if context is not None and server is not None and hasattr(server, "send_progress_text"):
        server.send_progress_text(text, context.node_id)


def as_range(spec: Range | tuple) -> Range:
    """A table entry as a :class:`Range`: ``(low, high)`` is an integer input when both bounds are ints."""
    if isinstance(spec, Range):
        return spec
    low, high = spec
    return Range(low, high, integer=isinstance(low, int) and isinstance(high, int))


def bounds(ranges: Ranges, name: str) -> dict:
    """The ``min`` / ``max`` keywords of a V3 Int / Float input, from the node's ranges."""
    return as_range(ranges[name]).bounds


def check_ranges(ranges: Ranges, **values) -> None:
    """Check each ``name=value`` against ``ranges[name]`` (:meth:`Range.check`)."""
    for name, value in values.items():
        as_range(ranges[name]).check(value, name)


def attention_backend():
    """ComfyUI's ``optimized_attention``, the backend the user chose (sage, flash, xformers, pytorch, sub-quadratic).

    Looked up at every call: ComfyUI binds the name at start-up from its command line.
    """
    return comfy.ldm.modules.attention.optimized_attention


def comfy_attention(attn_precision=None, transformer_options: dict | None = None):
    """The attention function the node layer hands the core: ``attend(q, k, v, heads, mask=None, skip_reshape=False)``
    through :func:`attention_backend` with the layer's ``attn_precision`` (and transformer options, for ComfyUI's
    attention overrides). q, k, v ``[B, tokens, heads * dim]``, or ``[B, heads, tokens, dim]`` with ``skip_reshape``.
    """

    def attend(q, k, v, heads, **kwargs):
        kwargs.setdefault("attn_precision", attn_precision)
        if transformer_options is not None:
            kwargs.setdefault("transformer_options", transformer_options)
        return attention_backend()(q, k, v, heads, **kwargs)

    return attend


class Progress:
    """One ComfyUI progress bar over ``total`` units of work (model calls, frames, ...), with latent previews.

    ``tick()`` advances by one, ``at(done)`` sets the position; both take an optional ``x0`` latent to show
    (with the ``model`` whose latent format decodes it). ``call()`` is a model-call hook: Cancel check, then tick.
    """

    def __init__(self, total: int):
        self.total, self.done = total, 0
        self.bar = comfy.utils.ProgressBar(total)
        self.previewers: dict = {}

    def preview(self, model, x0):
        """The JPEG preview of latent ``x0`` for ``model``'s latent format (None when previews are off)."""
        if model is None or x0 is None:
            return None
        key = type(model.model.latent_format)
        if key not in self.previewers:
            self.previewers[key] = latent_preview.get_previewer(model.load_device, model.model.latent_format)
        previewer = self.previewers[key]
        return previewer.decode_latent_to_preview_image("JPEG", x0) if previewer is not None else None

    def at(self, done: int, model=None, x0=None) -> None:
        """Move the bar to ``done`` of ``total``."""
        self.done = done
        self.bar.update_absolute(done, self.total, self.preview(model, x0))

    def tick(self, model=None, x0=None) -> None:
        """One more unit done."""
        self.at(self.done + 1, model, x0)

    def call(self) -> None:
        """Before a model call: raise if the user pressed Cancel, then advance by one."""
        throw_if_interrupted()
        self.tick()
