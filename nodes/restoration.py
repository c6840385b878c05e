"""ZVRD zero-shot video restoration as ComfyUI nodes: Degradation Consistency Guider (GUIDER -> GUIDER) and Degrade Video.

The guider keeps every x0 prediction consistent with an observed degraded video ``y = A(x)`` (GDP's gradient step or
DDNM's range-null-space projection, :mod:`..samplers.restoration`) through the model's VAE; it wraps any guider the
way the Temporal Consistency Guider does (:class:`.temporal_guidance.WrappedGuider`), so the two stack in either
order with Shared Noise, SLR Temporal Attention and Early Stop (the paper's backbone + ZVRD).
"""

from __future__ import annotations

import comfy.model_management
import torch
from comfy_api.latest import io

from ..samplers.restoration import METHODS, RestorationGuidance, RestorationSettings
from ..utils.checks import InputError, check_choice
from ..utils.degradation import (
    OPERATORS,
    Inpaint,
    block_mask,
    degrade,
    make_operator,
    observation,
    observation_size,
)
from ..utils.video import frames_to_image, image_to_frames
from ._common import bounds, check_ranges, image_frames
from .temporal_guidance import WrappedGuider, grad_ready, schedule_sigma, vae_to_rgb

CATEGORY = "video-enhance-kit/zvrd"
WRAPPER_KEY = "video_enhance_kit.restoration_guidance"
RANGES = {"factor": (1, 16), "blur_sigma": (0.1, 10.0), "noise_sigma": (0.0, 1.0), "light_scale": (0.01, 1.0),
          "light_offset": (-0.5, 0.5), "scale": (0.0, 10.0), "start": (0.0, 1.0), "end": (0.0, 1.0), "chunk": (1, 64),
          "seed": (0, 2**32 - 1)}
OPERATOR_HELP = ("The degradation A: downsample_avgpool (f x f mean; exact pseudo-inverse), downsample_bicubic "
                 "(antialiased), blur (Gaussian, blur_sigma), inpaint (mask), colourise (BT.601 grayscale), denoise "
                 "(identity + noise of noise_sigma), low_light (scale x + offset per channel, GDP's model).")


def operator_inputs() -> list:
    """The operator combo and its parameters, shared by the guider and Degrade Video."""
    return [
        io.Combo.Input("operator", options=list(OPERATORS), default="downsample_avgpool", tooltip=OPERATOR_HELP),
        io.Int.Input("factor", default=4, **bounds(RANGES, "factor"),
                     tooltip="Downsampling factor f (downsample_* only): the degraded video is (H/f) x (W/f)."),
        io.Float.Input("blur_sigma", default=1.6, **bounds(RANGES, "blur_sigma"), step=0.1,
                       tooltip="Gaussian blur sigma in pixels (blur only; kernel 2 ceil(3 sigma) + 1)."),
        io.Float.Input("noise_sigma", default=0.0, **bounds(RANGES, "noise_sigma"), step=0.01,
                       tooltip="Standard deviation of the additive noise of the degraded video (0..1 pixel units), for "
                               "every operator (denoise: the task itself). The guider brings each frame's residual "
                               "down to this level instead of 0, so it does not fit the noise."),
        io.Float.Input("light_scale", default=0.25, **bounds(RANGES, "light_scale"), step=0.01,
                       tooltip="low_light only: brightness factor of y = scale x + offset (ignored with blind_light)."),
        io.Float.Input("light_offset", default=0.0, **bounds(RANGES, "light_offset"), step=0.01,
                       tooltip="low_light only: offset of y = scale x + offset (ignored with blind_light)."),
    ]


def observed_mask(mask: torch.Tensor | None) -> torch.Tensor | None:
    """ComfyUI MASK ``[F, H, W]`` or ``[H, W]`` (1 = missing) -> Inpaint's ``[F, 1, H, W]`` (1 = observed)."""
    if mask is None:
        return None
    if not isinstance(mask, torch.Tensor) or mask.ndim not in (2, 3):
        raise InputError("mask", f"expected a MASK [F, H, W], got {getattr(mask, 'shape', type(mask).__name__)}",
                         "connect a MASK (1 = missing), e.g. Degrade Video's mask output")
    mask = mask if mask.ndim == 3 else mask.unsqueeze(0)
    return (mask < 0.5).float().unsqueeze(1)


def vae_to_latent(vae, model_patcher):
    """The VAE encoder for RGB frames ``[N, 3, H, W]`` (0..1) -> model-space latent frames ``[N, C, h, w]`` (no graph needed)."""
    comfy.model_management.load_models_gpu([vae.patcher])
    encoder = grad_ready(vae.first_stage_model)
    fmt = model_patcher.get_model_object("latent_format")
    device, dtype = vae.device, vae.vae_dtype

    def to_latent(x):
        z = encoder.encode(vae.process_input(x).to(device, dtype)).float()
        return fmt.process_in(z).to(x.device)

    return to_latent


class DegradationConsistencyGuider(WrappedGuider):
    """Every x0 prediction is made consistent with the degraded video (GDP step or DDNM projection)."""

    wrapper_key = WRAPPER_KEY

    def __init__(self, inner, settings: RestorationSettings, op, y: torch.Tensor, vae, start: float, end: float):
        super().__init__(inner)
        self.settings, self.op, self.y, self.vae = settings, op, y, vae
        self.start, self.end = start, end

    def guidance(self, latent_shape):
        return self.build(latent_shape) if self.settings.scale > 0 else None

    def check_fits(self, latent_shape) -> None:
        """The degraded video (and the mask) against the frames the latent decodes to."""
        if len(latent_shape) != 4:
            raise InputError("guider", f"samples a {len(latent_shape)}-D latent; restoration guidance works on image models",
                             "use an image model (SD1.x, SD2.x, SDXL) that samples the video's frames as one batch")
        ratio = int(self.vae.spacial_compression_decode())
        frames, height, width = latent_shape[0], latent_shape[2] * ratio, latent_shape[3] * ratio
        if self.y.shape[0] != frames:
            raise InputError("degraded", f"has {self.y.shape[0]} frames, the latent has {frames}",
                             "encode the clean-size video of the same clip (same frame count) as the latent")
        if isinstance(self.op, Inpaint) and tuple(self.op.mask.shape[-2:]) != (height, width):
            raise InputError("mask", f"is {self.op.mask.shape[-1]}x{self.op.mask.shape[-2]}, the latent decodes to {width}x{height}",
                             "give the mask the size of the restored frames")
        expected = observation_size(self.op, height, width, "latent_image")
        if tuple(self.y.shape[-2:]) != expected:
            raise InputError("degraded", f"is {self.y.shape[-1]}x{self.y.shape[-2]}, but the latent decodes to {width}x{height} "
                             f"and {self.op.name} of that is {expected[1]}x{expected[0]}",
                             "give the latent the restored size (e.g. upscale the degraded video by the factor, then VAE "
                             "Encode it) or fix the operator's parameters")

    def build(self, latent_shape) -> RestorationGuidance:
        """The per-run guidance: the sizes checked, the schedule fractions as noise levels, decoder and encoder ready."""
        self.check_fits(latent_shape)
        patcher = self.inner.model_patcher
        settings = RestorationSettings(**{**vars(self.settings), "sigma_max": schedule_sigma(patcher, self.start),
                                          "sigma_min": schedule_sigma(patcher, self.end)})
        decode = vae_to_rgb(self.vae, patcher, video=False)
        encode = vae_to_latent(self.vae, patcher) if settings.method == "ddnm" else None
        return RestorationGuidance(settings, self.op, self.y, decode, encode)


def check_guider(guider) -> None:
    if not hasattr(guider, "model_patcher") or not hasattr(guider, "model_options") or not hasattr(guider, "sample"):
        raise InputError("guider", f"a {type(guider).__name__} is not a ComfyUI guider", "connect a CFGGuider, DualCFGGuider or BasicGuider output")


def check_vae(vae) -> None:
    if not all(hasattr(vae, a) for a in ("first_stage_model", "patcher", "spacial_compression_decode")):
        raise InputError("vae", f"a {type(vae).__name__} is not a VAE", "connect the model's VAE (e.g. the checkpoint loader's)")


class DegradationConsistencyGuiderNode(io.ComfyNode):
    @classmethod
    def define_schema(cls) -> io.Schema:
        return io.Schema(
            node_id="VEK_DegradationConsistencyGuider",
            display_name="Degradation Consistency Guider (ZVRD restoration)",
            category=CATEGORY,
            description="Zero-shot video restoration with any image model: wraps a GUIDER so that every x0 prediction "
                        "stays consistent with the degraded video y = A(x) (4x super-resolution, deblurring, denoising, "
                        "inpainting, colourisation, low light). gdp: one gradient step on ||A(D(x0)) - y||^2 through the "
                        "VAE decoder; ddnm: decode, replace the part A sees by A^+ y, encode back. Stack the Temporal "
                        "Consistency Guider, Shared Noise, SLR Temporal Attention and Early Stop on it for ZVRD.",
            inputs=[
                io.Guider.Input("guider", tooltip="The guider to wrap (its model, conditioning and cfg are used as they are)."),
                io.Vae.Input("vae", tooltip="The model's VAE: decodes x0 (differentiably for gdp) and encodes back (ddnm)."),
                io.Image.Input("degraded", tooltip="The observed degraded video y (e.g. Degrade Video's output, or your old "
                                                   "footage). Same frame count as the latent; for downsample_* its size is the "
                                                   "restored size / factor, else the restored size."),
                *operator_inputs(),
                io.Boolean.Input("blind_light", default=True,
                                 tooltip="low_light only: estimate the per-channel scale and offset during sampling (GDP's "
                                         "blind enhancement, refitted to every x0) instead of using light_scale / light_offset."),
                io.Combo.Input("method", options=list(METHODS), default="gdp",
                               tooltip="gdp: gradient step through the decoder (every operator; the decoder's backward pass "
                                       "costs about 2 decodes per step). ddnm: exact range-null-space projection, then VAE "
                                       "encode (downsample_avgpool, inpaint, colourise, denoise, low_light; 1 decode + 1 encode per step)."),
                io.Float.Input("scale", default=1.0, **bounds(RANGES, "scale"), step=0.05,
                               tooltip="gdp: step size in units of x0's RMS. ddnm ignores it unless 0. 0 = off, bit-identical "
                                       "to the wrapped guider."),
                io.Float.Input("start", default=0.0, **bounds(RANGES, "start"), step=0.01,
                               tooltip="Fraction of the model's schedule where the guidance starts (0 = from the first step)."),
                io.Float.Input("end", default=1.0, **bounds(RANGES, "end"), step=0.01,
                               tooltip="Fraction of the schedule where it stops (1 = to the last step)."),
                io.Int.Input("chunk", default=4, **bounds(RANGES, "chunk"),
                             tooltip="Frames per VAE decoder / encoder pass (bounds memory; the result does not depend on it)."),
                io.Mask.Input("mask", optional=True,
                              tooltip="inpaint only: 1 = missing (ComfyUI's convention), per frame or one for all, at the "
                                      "restored size (Degrade Video's mask output)."),
            ],
            outputs=[io.Guider.Output()],
        )

    @classmethod
    def execute(cls, guider, vae, degraded, operator, factor, blur_sigma, noise_sigma, light_scale, light_offset,
                blind_light, method, scale, start, end, chunk, mask=None) -> io.NodeOutput:
        check_guider(guider)
        check_vae(vae)
        check_choice(operator, "operator", OPERATORS)
        check_choice(method, "method", METHODS)
        check_ranges(RANGES, factor=factor, blur_sigma=blur_sigma, noise_sigma=noise_sigma, light_scale=light_scale,
                     light_offset=light_offset, scale=scale, start=start, end=end, chunk=chunk)
        if end < start:
            raise InputError("end", f"({end}) comes before start ({start})", "set end at or after start")
        frames = image_to_frames(image_frames(degraded, "degraded")).float()
        op = make_operator(operator, factor, blur_sigma, noise_sigma, observed_mask(mask), light_scale, light_offset)
        if method == "ddnm" and not op.has_pinv:
            raise InputError("method", f"'ddnm' needs a pseudo-inverse and the {op.name} operator has none",
                             "use method 'gdp', or operator downsample_avgpool for super-resolution")
        y = observation(op, frames)
        settings = RestorationSettings(method=method, scale=scale, chunk=chunk, noise_sigma=noise_sigma,
                                       fit_low_light=operator == "low_light" and blind_light).check()
        return io.NodeOutput(DegradationConsistencyGuider(guider, settings, op, y, vae, start, end))


class DegradeVideo(io.ComfyNode):
    @classmethod
    def define_schema(cls) -> io.Schema:
        return io.Schema(
            node_id="VEK_DegradeVideo",
            display_name="Degrade Video",
            category=CATEGORY,
            description="Applies a degradation to a clean clip: downsampling, blur, an inpainting mask, grayscale, noise or "
                        "low light, y = A(x) + noise_sigma n (seeded). For trying zero-shot restoration on a known ground "
                        "truth (score the restored video against the clean one with the Video Quality Report).",
            inputs=[
                io.Image.Input("images", tooltip="The clean video (a batch of frames)."),
                *operator_inputs(),
                io.Int.Input("seed", default=0, **bounds(RANGES, "seed"),
                             tooltip="Seed of the noise (noise_sigma) and of the random inpainting mask."),
                io.Mask.Input("mask", optional=True,
                              tooltip="inpaint only: 1 = missing. Unconnected: a seeded mask removing a quarter of the 8x8 "
                                      "blocks of every frame."),
            ],
            outputs=[io.Image.Output(display_name="degraded", tooltip="The degraded video (grayscale shown in all three channels)."),
                     io.Mask.Output(display_name="mask", tooltip="The inpainting mask used (1 = missing); zeros for the other operators.")],
        )

    @classmethod
    def execute(cls, images, operator, factor, blur_sigma, noise_sigma, light_scale, light_offset, seed,
                mask=None) -> io.NodeOutput:
        check_choice(operator, "operator", OPERATORS)
        check_ranges(RANGES, factor=factor, blur_sigma=blur_sigma, noise_sigma=noise_sigma, light_scale=light_scale,
                     light_offset=light_offset, seed=seed)
        frames = image_to_frames(image_frames(images, "images")).float()
        f, _, h, w = frames.shape
        observed = observed_mask(mask)
        if operator == "inpaint" and observed is None:
            observed = block_mask(f, h, w, seed=seed)
        op = make_operator(operator, factor, blur_sigma, noise_sigma, observed, light_scale, light_offset)
        observation_size(op, h, w, "images")
        out = degrade(frames, op, noise_sigma, seed)
        missing = torch.zeros(f, h, w) if operator != "inpaint" else (1.0 - op.mask[:, 0]).expand(f, h, w).clone()
        return io.NodeOutput(frames_to_image(out).contiguous(), missing)


NODES = [DegradationConsistencyGuiderNode, DegradeVideo]
