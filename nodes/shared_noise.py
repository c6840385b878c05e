"""ZVRD spatial-temporal noise sharing as ComfyUI nodes: Shared Noise (NOISE) and Shared Noise Sampler (SAMPLER)."""

from __future__ import annotations

import logging

import comfy.sample
import torch
from comfy.k_diffusion.sampling import default_noise_sampler
from comfy_api.latest import io

from ..samplers.shared_noise import (
    BLEND_MODES,
    LAMBDA,
    SHARE,
    SharedNoiseSampler,
    shared_step_noise,
)
from ..utils.checks import InputError
from ..utils.flow import latent_flow
from ..utils.video import frame_count
from ._compat import sampler_seed
from ._sampling import check_ksampler, wrap_ksampler
from ._types import Flow
from .optical_flow import check_video_flow

CATEGORY = "video-enhance-kit/zvrd"
log = logging.getLogger(__name__)


def parse_frame_weights(text: str):
    """``"1, 0.8, 0.5"`` -> ``[1.0, 0.8, 0.5]``; empty -> None."""
    text = (text or "").strip()
    if not text:
        return None
    try:
        values = [float(v) for v in text.replace(";", ",").split(",") if v.strip()]
    except ValueError:
        raise InputError("frame_weights", f"cannot read {text!r} as numbers", "write comma-separated numbers in [0, 1], e.g. '1, 0.9, 0.8'") from None
    for v in values:
        SHARE.check(v, "frame_weights")
    return values


def frame_weight_for(weights, frames: int, default: float):
    """The share weight(s) for a latent of ``frames`` frames (a list shorter than the video repeats its last value)."""
    if weights is None:
        return default
    if len(weights) >= frames:
        return weights[:frames]
    return weights + [weights[-1]] * (frames - len(weights))


def noise_flow(flow, latent: torch.Tensor):
    """A VideoFlow aligned with a latent's frames and grid, or None."""
    if flow is None:
        return None
    return latent_flow(flow, frame_count(latent), tuple(latent.shape[-2:]))


class SharedInitialNoise:
    """A NOISE: the seed's standard noise, shared across frames (ZVRD's shared x_T) and optionally flow-blended (Eq. 11)."""

    def __init__(self, seed: int, share_weight: float, frame_weights=None, flow=None, lam: float = 0.2,
                 mode: str = "variance_preserving"):
        self.noise_seed = seed
        self.seed = sampler_seed(seed)  # what SamplerCustomAdvanced hands the sampler (see nodes/_compat.sampler_seed)
        self.share_weight = share_weight
        self.frame_weights = frame_weights
        self.flow = flow
        self.lam = lam
        self.mode = mode

    def generate_noise(self, input_latent: dict) -> torch.Tensor:
        latent = input_latent["samples"]
        noise = comfy.sample.prepare_noise(latent, self.noise_seed, input_latent.get("batch_index"))
        if latent.ndim not in (4, 5):
            raise InputError("latent_image", f"expected a 4-D or 5-D latent, got shape {tuple(latent.shape)}", "connect an image or video latent")
        frames = frame_count(latent)
        weight = frame_weight_for(self.frame_weights, frames, self.share_weight)
        return shared_step_noise(noise, weight, noise_flow(self.flow, noise), self.lam, self.mode)


def _common_inputs():
    return [
        io.Float.Input("share_weight", default=1.0, **SHARE.bounds, step=0.01,
                       tooltip="How much every frame's noise is replaced by frame 0's noise: 1 = all frames share one noise "
                               "(ZVRD), 0 = independent noise. Unit variance is kept for every value."),
        io.Float.Input("blend_lambda", default=0.2, **LAMBDA.bounds, step=0.01,
                       tooltip="Eq. 11's lambda, used only with a flow: the weight each frame keeps of its own noise where the "
                               "flow is valid; the rest is the previous frame's noise warped along the motion. 1 = no blending. "
                               "The paper gives no value; 0.2 (this pack's default) keeps some fresh noise per frame so nearest-neighbour warping does not pile up duplicated noise over long clips."),
        io.Combo.Input("blend_mode", options=list(BLEND_MODES), default="variance_preserving",
                       tooltip="variance_preserving (default): Eq. 11's mix rescaled so the noise keeps variance 1, as the "
                               "sampler expects. exact: the paper's formula (noise variance drops to lambda^2 + (1-lambda)^2 "
                               "inside the mask, which softens results)."),
        Flow.Input("flow", optional=True,
                   tooltip="Optical flow of the input video (VEK Optical Flow node). With it, noise follows the motion "
                           "(Eq. 11); without it only the sharing across frames applies."),
    ]


class SharedNoise(io.ComfyNode):
    @classmethod
    def define_schema(cls) -> io.Schema:
        return io.Schema(
            node_id="VEK_SharedNoise",
            display_name="Shared Noise (ZVRD)",
            category=CATEGORY,
            description="Initial noise for SamplerCustomAdvanced shared by all frames of a video (ZVRD's spatial-temporal "
                        "noise sharing): static areas get the same details in every frame, so less flicker. With a flow, the "
                        "noise is also blended along the motion (Eq. 11).",
            inputs=[
                io.Int.Input("noise_seed", default=0, min=0, max=0xFFFFFFFFFFFFFFFF, control_after_generate=True,
                             tooltip="Seed of the base noise (the same as Random Noise's for this seed)."),
                *_common_inputs(),
                io.String.Input("frame_weights", default="", optional=True,
                                tooltip="Optional per-frame share weights, comma-separated (e.g. '0, 1, 1, 0.5'); overrides "
                                        "share_weight. A list shorter than the video repeats its last value."),
            ],
            outputs=[io.Noise.Output()],
        )

    @classmethod
    def execute(cls, noise_seed, share_weight, blend_lambda, blend_mode, flow=None, frame_weights="") -> io.NodeOutput:
        SHARE.check(share_weight, "share_weight")
        LAMBDA.check(blend_lambda, "blend_lambda")
        weights = parse_frame_weights(frame_weights)
        if flow is not None:
            check_video_flow(flow)
        return io.NodeOutput(SharedInitialNoise(noise_seed, share_weight, weights, flow, blend_lambda, blend_mode))


def shared_noise_sampler(sampler, share_weight: float, flow=None, lam: float = 0.2, mode: str = "variance_preserving"):
    """A KSAMPLER whose per-step noise (ancestral / SDE samplers) is shared across frames and blended along the flow."""
    check_ksampler(sampler, " (it has no per-step noise hook)")
    inner = sampler.sampler_function
    off = share_weight == 0.0 and (flow is None or lam == 1.0)

    def sample_shared_noise(model, x, sigmas, extra_args=None, callback=None, disable=None, **options):
        if not off:
            base = options.get("noise_sampler") or default_noise_sampler(x, seed=(extra_args or {}).get("seed"))
            options["noise_sampler"] = SharedNoiseSampler(base, share_weight, noise_flow(flow, x), lam, mode)
        return inner(model, x, sigmas, extra_args=extra_args, callback=callback, disable=disable, **options)

    if not off:
        import inspect
        params = inspect.signature(inner).parameters
        if "noise_sampler" not in params and not any(p.kind == p.VAR_KEYWORD for p in params.values()):
            log.warning("video-enhance-kit: sampler %s draws no per-step noise; Shared Noise Sampler changes nothing",
                            getattr(inner, "__name__", inner))
            return sampler
    return wrap_ksampler(sampler, sample_shared_noise)


class SharedNoiseSamplerNode(io.ComfyNode):
    @classmethod
    def define_schema(cls) -> io.Schema:
        return io.Schema(
            node_id="VEK_SharedNoiseSampler",
            display_name="Shared Noise Sampler (ZVRD)",
            category=CATEGORY,
            description="Wraps a SAMPLER so the fresh noise that ancestral and SDE samplers add at every step (z in ZVRD "
                        "Eq. 2) is shared across frames and, with a flow, blended along the motion (Eq. 11). Deterministic "
                        "samplers (euler, dpmpp_2m, ...) add no noise and are returned unchanged. SDE samplers' Brownian "
                        "noise is replaced by seeded Gaussian noise when sharing is on.",
            inputs=[io.Sampler.Input("sampler", tooltip="The sampler to wrap, e.g. KSamplerSelect with euler_ancestral."),
                    *_common_inputs()],
            outputs=[io.Sampler.Output()],
        )

    @classmethod
    def execute(cls, sampler, share_weight, blend_lambda, blend_mode, flow=None) -> io.NodeOutput:
        SHARE.check(share_weight, "share_weight")
        LAMBDA.check(blend_lambda, "blend_lambda")
        if flow is not None:
            check_video_flow(flow)
        return io.NodeOutput(shared_noise_sampler(sampler, share_weight, flow, blend_lambda, blend_mode))


NODES = [SharedNoise, SharedNoiseSamplerNode]
