"""ZVRD temporal consistency guidance as a ComfyUI node: Temporal Consistency Guider (GUIDER -> GUIDER)."""

from __future__ import annotations

import copy
import logging

import comfy.model_management
import comfy.model_patcher
import comfy.patcher_extension
import torch
import torch.nn.functional as F
from comfy_api.latest import io

from ..samplers.guidance import (
    GAMMA,
    LOSS_SPACES,
    SCALE,
    GuidanceSettings,
    TemporalConsistencyGuidance,
)
from ..samplers.step_clock import StepClock
from ..utils.checks import InputError, Range, check_choice
from ..utils.flow import latent_flow
from ._common import throw_if_interrupted
from ._compat import check_vae
from ._types import Flow
from .optical_flow import check_video_flow

CATEGORY = "video-enhance-kit/zvrd"
log = logging.getLogger(__name__)
WRAPPER_KEY = "video_enhance_kit.temporal_guidance"
FLOW_METHODS = ("classical",)
PIXEL_START = Range(0.0, 1.0)


def grad_ready(module: torch.nn.Module) -> torch.nn.Module:
    """``module`` itself, or a copy whose weights autograd can use (weights loaded inside ComfyUI's inference mode cannot)."""
    if any(p.is_inference() for p in module.parameters()) or any(b.is_inference() for b in module.buffers()):
        with torch.inference_mode(False):
            module = copy.deepcopy(module)
    return module.requires_grad_(False)


def preview_to_rgb(model_patcher):
    """The model's linear latent-to-RGB preview projection as a differentiable ``[N, C, h, w] -> [N, 3, h, w]`` (about 0..1), or None."""
    fmt = model_patcher.get_model_object("latent_format")
    if getattr(fmt, "latent_rgb_factors", None) is None:
        return None
    factors = [list(map(float, row)) for row in fmt.latent_rgb_factors]
    bias = [float(v) for v in (fmt.latent_rgb_factors_bias or [0.0, 0.0, 0.0])]

    def to_rgb(x):
        w = torch.tensor(factors, device=x.device, dtype=x.dtype)  # [C, 3]
        b = torch.tensor(bias, device=x.device, dtype=x.dtype).view(1, 3, 1, 1)
        return (torch.einsum("nchw,cr->nrhw", x, w) + b + 1.0) / 2.0

    return to_rgb


def vae_to_rgb(vae, model_patcher, video: bool):
    """A differentiable VAE decoder for model-space latent frames ``[N, C, h, w] -> [N, 3, H, W]`` in 0..1.

    Video latents: each latent frame is decoded on its own (a causal video VAE decodes a lone latent frame as an image).
    """
    comfy.model_management.load_models_gpu([vae.patcher])
    decoder = grad_ready(vae.first_stage_model)
    with torch.inference_mode(False):
        fmt = copy.deepcopy(model_patcher.get_model_object("latent_format"))
    device, dtype = vae.device, vae.vae_dtype

    def to_rgb(x):
        if video:  # each latent frame as a one-frame video [N, C, 1, h, w]
            out = decoder.decode(fmt.process_out(x.unsqueeze(2)).to(device, dtype))[:, :, 0]
        else:
            out = decoder.decode(fmt.process_out(x).to(device, dtype))
        return ((out.float() + 1.0) / 2.0).to(x.device)

    return to_rgb


def clip_embedder(clip_vision):
    """A differentiable CLIP image encoder ``RGB [N, 3, H, W] (0..1) -> image embeddings [N, D]``."""
    comfy.model_management.load_model_gpu(clip_vision.patcher)
    model = grad_ready(clip_vision.model)
    size = int(clip_vision.image_size)
    mean = [float(v) for v in clip_vision.image_mean]
    std = [float(v) for v in clip_vision.image_std]
    device = clip_vision.load_device

    def embed(rgb):
        x = F.interpolate(rgb.to(device).float(), size=(size, size), mode="bicubic", align_corners=False)
        m = torch.tensor(mean, device=device).view(1, 3, 1, 1)
        s = torch.tensor(std, device=device).view(1, 3, 1, 1)
        out = model(pixel_values=(x - m) / s, intermediate_output=-2)
        return out[2].float().to(rgb.device)

    return embed


def estimate_backward(method: str):
    """``frames [F, C, H, W] -> (backward, valid_backward)`` with the pack's flow estimator."""
    from ..utils.flow import estimate_flow

    def estimate(frames):
        flow = estimate_flow(frames.float(), method=method, trusted=True)  # x0 of the previous step, inside the loop
        return flow.backward, flow.valid_backward

    return estimate


def schedule_sigma(model_patcher, fraction: float) -> float:
    """The noise level at ``fraction`` of the model's schedule (0 -> inf: from the first step, 1 -> 0: never reached)."""
    if fraction <= 0.0:
        return float("inf")
    if fraction >= 1.0:
        return 0.0  # the model is not called at sigma 0
    return float(model_patcher.get_model_object("model_sampling").percent_to_sigma(fraction))


class WrappedGuider:
    """A GUIDER that wraps another and changes every x0 prediction with a per-run guidance ``(x0, sigma) -> x0``.

    The wrapped guider is never modified: each run samples with a shallow copy whose model options carry a
    PREDICT_NOISE wrapper (under ``wrapper_key``). Attributes the host reads (model_patcher, model_options, ...) come
    from the inner guider. Subclasses implement :meth:`guidance` (None: sample exactly as the wrapped guider).
    """

    wrapper_key = WRAPPER_KEY

    def __init__(self, inner):
        self.inner = inner

    def __getattr__(self, name):
        if name == "inner":
            raise AttributeError(name)
        return getattr(self.inner, name)

    def guidance(self, latent_shape):
        raise NotImplementedError

    def sample(self, noise, latent_image, sampler, sigmas, denoise_mask=None, callback=None, disable_pbar=False, seed=None):
        """One sampling run: a fresh guidance, the schedule read once, the step counted by the callback."""
        guide = self.guidance(tuple(noise.shape))
        runner = copy.copy(self.inner)
        if guide is not None:
            runner.model_options = comfy.model_patcher.create_model_options_clone(self.inner.model_options)
            clock = StepClock(sigmas)
            callback = clock.wrap(callback)

            def guided_predict(executor, x, timestep, model_options=None, seed=None):
                x0 = executor(x, timestep, {} if model_options is None else model_options, seed)
                throw_if_interrupted()
                return guide(x0, clock.sigma)

            comfy.patcher_extension.add_wrapper_with_key(comfy.patcher_extension.WrappersMP.PREDICT_NOISE, self.wrapper_key,
                                                         guided_predict, runner.model_options, is_model_options=True)
        return runner.sample(noise, latent_image, sampler, sigmas, denoise_mask=denoise_mask, callback=callback,
                             disable_pbar=disable_pbar, seed=seed)


class TemporalConsistencyGuider(WrappedGuider):
    """Every x0 prediction gets one Eq. 10 gradient step (see samplers/guidance.py)."""

    def __init__(self, inner, settings: GuidanceSettings, pixel_start: float, flow=None, clip_vision=None, vae=None,
                 flow_method: str = "classical"):
        super().__init__(inner)
        self.settings = settings
        self.pixel_start = pixel_start
        self.flow = flow
        self.clip_vision = clip_vision
        self.vae = vae
        self.flow_method = flow_method

    def guidance(self, latent_shape):
        return self.build(latent_shape) if self.settings.scale > 0 else None

    def build(self, latent_shape) -> TemporalConsistencyGuidance:
        """The per-run guidance for a latent of ``latent_shape`` (flow aligned, decoder and encoder ready)."""
        patcher = self.inner.model_patcher
        settings = copy.copy(self.settings)
        settings.pixel_sigma = schedule_sigma(patcher, self.pixel_start)
        video = len(latent_shape) == 5
        frames = latent_shape[2] if video else latent_shape[0]
        if frames < 2:
            raise InputError("latent_image", f"has {frames} frame(s); temporal guidance needs a video",
                             "sample all frames of the video as one batch (image model) or one video latent")
        if settings.loss_space == "pixel":
            if self.vae is None:
                raise InputError("vae", "loss_space 'pixel' needs a VAE", "connect the model's VAE, or set loss_space to 'latent'")
            to_rgb = vae_to_rgb(self.vae, patcher, video)
        else:
            to_rgb = preview_to_rgb(patcher)
            if to_rgb is None and self.vae is not None:
                to_rgb = vae_to_rgb(self.vae, patcher, video)
        embed = clip_embedder(self.clip_vision) if (self.clip_vision is not None and settings.gamma > 0) else None
        if embed is not None and to_rgb is None:
            log.warning("video-enhance-kit: no latent preview for this model and no VAE: semantic guidance is off")
        flow = None
        if self.flow is not None:
            flow = latent_flow(self.flow, frames, self.flow.size)
        estimate = None if flow is not None else estimate_backward(self.flow_method)
        return TemporalConsistencyGuidance(settings, to_rgb=to_rgb, embed=embed, flow=flow, estimate_flow=estimate)


class TemporalConsistencyGuiderNode(io.ComfyNode):
    @classmethod
    def define_schema(cls) -> io.Schema:
        return io.Schema(
            node_id="VEK_TemporalConsistencyGuider",
            display_name="Temporal Consistency Guider (ZVRD)",
            category=CATEGORY,
            description="Wraps any GUIDER (CFGGuider, DualCFGGuider, BasicGuider, ...) with ZVRD's temporal consistency "
                        "guidance: at every step the x0 prediction of the video's frames takes one gradient step on a "
                        "flow-warped pixel loss (Eq. 8, late steps only) plus a CLIP semantic loss (Eq. 9, all steps). "
                        "The model is called once per step, as without guidance, and never differentiated.",
            inputs=[
                io.Guider.Input("guider", tooltip="The guider to wrap (its model, conditioning and cfg are used as they are)."),
                io.Float.Input("guidance_scale", default=0.2, **SCALE.bounds, step=0.01,
                               tooltip="s: size of the gradient step on x0, in units of x0's RMS (0 = off, bit-identical to "
                                       "the wrapped guider). Higher = less flicker but softer detail."),
                io.Float.Input("semantic_weight", default=1.0, **GAMMA.bounds, step=0.1,
                               tooltip="gamma (Eq. 10): weight of the CLIP semantic loss against the pixel loss. Needs "
                                       "clip_vision; the paper gives no value."),
                io.Float.Input("pixel_start", default=0.7, **PIXEL_START.bounds, step=0.01,
                               tooltip="T_TC as a fraction of the schedule: the pixel (flow) loss is used from this point on "
                                       "(0.7 = the last 30%, the paper's t < 300 of 1000). Early x0 predictions are too blurry "
                                       "for flow. 1 = never, 0 = always."),
                io.Combo.Input("loss_space", options=list(LOSS_SPACES), default="latent",
                               tooltip="latent (default): pixel loss on the latent itself (flow resized to the latent grid); "
                                       "fast, no decoder backward pass. pixel: decode x0 with the VAE (differentiably) and "
                                       "compute both losses on pixels, as the paper (a pixel-space model) does; much slower."),
                Flow.Input("flow", optional=True,
                           tooltip="Optical flow of the input video (VEK Optical Flow). Without it the flow is re-estimated "
                                   "every step from the previous step's x0 (classical estimator), as in the paper."),
                io.ClipVision.Input("clip_vision", optional=True,
                                    tooltip="CLIP vision model for the semantic loss (Eq. 9). Without it only the pixel loss is used."),
                io.Vae.Input("vae", optional=True,
                             tooltip="The model's VAE; needed for loss_space 'pixel' (and for the semantic loss on models "
                                     "without a latent preview)."),
            ],
            outputs=[io.Guider.Output()],
        )

    @classmethod
    def execute(cls, guider, guidance_scale, semantic_weight, pixel_start, loss_space, flow=None, clip_vision=None,
                vae=None) -> io.NodeOutput:
        SCALE.check(guidance_scale, "guidance_scale")
        GAMMA.check(semantic_weight, "semantic_weight")
        PIXEL_START.check(pixel_start, "pixel_start")
        check_choice(loss_space, "loss_space", LOSS_SPACES)
        if not hasattr(guider, "model_patcher") or not hasattr(guider, "model_options") or not hasattr(guider, "sample"):
            raise InputError("guider", f"a {type(guider).__name__} is not a ComfyUI guider", "connect a CFGGuider, DualCFGGuider or BasicGuider output")
        check_vae(guider.model_patcher, vae, "vae", "guider's model")
        if loss_space == "pixel" and vae is None:
            raise InputError("vae", "loss_space 'pixel' needs a VAE", "connect the model's VAE, or set loss_space to 'latent'")
        if flow is not None:
            check_video_flow(flow)
        settings = GuidanceSettings(scale=guidance_scale, gamma=semantic_weight, loss_space=loss_space).check()
        return io.NodeOutput(TemporalConsistencyGuider(guider, settings, pixel_start, flow, clip_vision, vae))


NODES = [TemporalConsistencyGuiderNode]
