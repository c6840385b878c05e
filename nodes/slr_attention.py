"""SLR Temporal Attention (ZVRD): patches an image UNet so the decoder's self-attention looks across frames.

MODEL -> MODEL. The clone gets an ``attn1`` replacement in the chosen output (decoder) blocks that runs
cross-neighbour-frame attention (Eq. 5) and, below the trajectory start, self-corrected trajectory
attention (Eq. 6-7) at the decoder's largest attention resolution (the paper injects it at the largest
resolution only). A post-CFG function on the same clone records ``x0_hat`` of every step, which the next
step uses for the trajectories' warp errors and, without a FLOW input, to estimate the flow (classical
estimator on the latent ``x0_hat``: no VAE decode, no weights).

Frames are the latent batch (one latent per frame, sampled together); ComfyUI stacks cond and uncond on
the batch axis, so frames = batch / len(cond_or_uncond).

Attention runs through ComfyUI's ``optimized_attention`` (the backend the user chose: sage, flash,
xformers, pytorch, sub-quadratic, ... and the layer's ``attn_precision``), read at call time.

Per run (SAMPLER_SAMPLE wrapper): the schedule is read once into Python floats (:class:`StepClock`) and
the step advanced by the sampler's callback, so the trajectory decision (``sigma <= sigma_start``) reads
no device value; the layer's per-run caches are dropped at the start and end of every run (OUTER_SAMPLE).
"""

from __future__ import annotations

import logging

import comfy.patcher_extension
import torch
from comfy_api.latest import io

from ..attention.cross_frame import BOUNDARIES
from ..attention.trajectory import RADIUS, WINDOW, SLRTemporalAttention, check_window
from ..samplers.step_clock import StepClock
from ..utils.checks import InputError, Range, check_choice
from ..utils.flow import classical_flow
from ..utils.video import both_directions
from ._common import comfy_attention
from ._registry import CATEGORY
from ._types import Flow
from .optical_flow import check_video_flow

FEATURE = f"{CATEGORY}/zvrd"
DEFAULT_TRAJECTORY_START = 0.9  # T_TA = 100 of 1000 DDPM steps (GDP backbone): the last 10 % of the schedule
DEFAULT_WINDOW = 5
TRAJECTORY_START = Range(0.0, 1.0)


def unet_of(model):
    """The diffusion model of a ComfyUI MODEL if it is an SD1.x/SD2.x/SDXL-style UNet, else a clear error."""
    dm = getattr(getattr(model, "model", None), "diffusion_model", None)
    name = type(dm).__name__
    if dm is None or not hasattr(dm, "output_blocks") or name != "UNetModel":
        raise InputError(
            "model",
            f"{name} is not an image UNet with per-frame self-attention (SD1.x, SD2.x, SDXL). Video DiT models "
            "(Wan, HunyuanVideo, LTX-Video, ...) and video UNets already attend across all frames, so SLR temporal "
            "attention does not apply to them",
            "use this node with an SD1.5, SD2.x or SDXL-family checkpoint that refines the video frame by frame",
        )
    for module in dm.modules():
        if type(module).__name__ == "SpatialVideoTransformer":
            raise InputError("model", "this UNet already has temporal attention (a video UNet such as SVD)", "use an image checkpoint (SD1.x, SD2.x, SDXL)")
    return dm


def decoder_attention_blocks(dm) -> dict[int, int]:
    """Output blocks with self-attention -> their downsampling factor relative to the latent."""
    downs = sum(1 for block in dm.input_blocks for m in block if type(m).__name__ == "Downsample")
    factor = 2**downs
    blocks = {}
    for i, block in enumerate(dm.output_blocks):
        if any(type(m).__name__ == "SpatialTransformer" for m in block.modules()):
            blocks[i] = factor
        if any(type(m).__name__ == "Upsample" for m in block):
            factor //= 2
    return blocks


def parse_blocks(text: str, available: dict[int, int]) -> list[int]:
    """'all' or a comma list of output block indices -> sorted indices that have attention."""
    text = (text or "").strip().lower()
    if text in ("", "all"):
        return sorted(available)
    try:
        wanted = sorted({int(t) for t in text.replace(" ", "").split(",") if t})
    except ValueError:
        raise InputError("output_blocks", f"{text!r} is not 'all' or a comma-separated list of integers", f"use 'all' or e.g. '{','.join(map(str, sorted(available)))}'") from None
    missing = [b for b in wanted if b not in available]
    if missing or not wanted:
        raise InputError("output_blocks", f"output blocks {missing or wanted} have no self-attention in this model (these do: {sorted(available)})", "pick output blocks from that list, or 'all'")
    return wanted


def stream_ids(cond_or_uncond) -> list[tuple[int, int]]:
    """``(kind, occurrence)`` per stream: ids independent of the cond/uncond order in the batch."""
    seen: dict[int, int] = {}
    ids = []
    for c in cond_or_uncond:
        ids.append((c, seen.get(c, 0)))
        seen[c] = seen.get(c, 0) + 1
    return ids


class SLRPatch:
    """The patch state shared by the attn1 replacements and the post-CFG hook of one patched clone."""

    def __init__(self, layer: SLRTemporalAttention, trajectory_blocks: set[int], sigma_start: float):
        self.layer = layer
        self.trajectory_blocks = trajectory_blocks
        self.sigma_start = sigma_start
        self.clock: StepClock | None = None

    def __deepcopy__(self, memo):
        """ModelPatcher.clone deep-copies model_options: clones share this state (and its OUTER_SAMPLE reset)."""
        return self

    def reset(self) -> None:
        """A new sampling run: forget x0_hat, its flow, the grid caches, the trajectory history and the run's clock."""
        self.layer.reset()
        self.clock = None

    def outer_sample(self, executor, *args, **kwargs):
        """OUTER_SAMPLE wrapper: reset before each sampling run and drop x0_hat after it."""
        self.reset()
        try:
            return executor(*args, **kwargs)
        finally:
            self.reset()

    def sampler_sample(self, executor, guider, sigmas, extra_args, callback=None, *args, **kwargs):
        """SAMPLER_SAMPLE wrapper: the run's sigmas read once (:class:`StepClock`), the step counted by the callback."""
        self.clock = StepClock(sigmas)
        return executor(guider, sigmas, extra_args, self.clock.wrap(callback), *args, **kwargs)

    def sigma(self) -> float:
        """Noise level of the current step (inf outside a sampling run: no trajectory attention)."""
        return float("inf") if self.clock is None else self.clock.sigma

    def attn1(self, q, k, v, extra_options):
        """attn1 replacement: SLR attention on the projections ``[S * F, N, H * D]``."""
        cond_or_uncond = list(extra_options.get("cond_or_uncond") or [0])
        streams = len(cond_or_uncond)
        batch = q.shape[0]
        if batch % streams:
            raise InputError(
                "latent batch",
                f"a batch of {batch} latents does not split into {streams} conditioning streams ({cond_or_uncond})",
                "sample the whole video as one latent batch with one latent per frame (every conditioning must cover all frames)",
            )
        block = extra_options.get("block") or ("output", -1)
        shape = extra_options.get("activations_shape") or extra_options.get("original_shape")
        size = (int(shape[-2]), int(shape[-1]))
        if size[0] * size[1] != q.shape[1]:  # odd sizes rounded differently: fall back to the original shape ratio
            raise InputError("latent", f"token grid {size} does not match {q.shape[1]} attention tokens", "use a latent whose width and height are multiples of 8")
        active = block[1] in self.trajectory_blocks and self.sigma() <= self.sigma_start
        layer_key = (block[0], block[1], extra_options.get("block_index", 0))
        return self.layer(q, k, v, extra_options["n_heads"], streams, size, layer=layer_key, stream_ids=stream_ids(cond_or_uncond),
                          trajectory_active=active, attention=comfy_attention(extra_options.get("attn_precision"), extra_options))

    def post_cfg(self, args):
        """Record x0_hat (the guided prediction of this step) for the next step; returns it unchanged."""
        denoised = args["denoised"]
        if self.layer.trajectory:
            self.layer.set_x0(denoised)
        return denoised


def estimate_latent_flow(x0: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Forward/backward flow of latent frames ``x0 [F, C, H, W]`` with the classical estimator (no weights, no decode)."""
    a, b = both_directions(x0)
    with torch.no_grad():
        both = classical_flow(a, b)
    n = x0.shape[0] - 1
    return both[:n], both[n:]


def slr_patch(model, cross_neighbour=True, trajectory=True, trajectory_start=DEFAULT_TRAJECTORY_START, output_blocks="all", search_window=DEFAULT_WINDOW, boundary="clamp", flow=None, trajectory_radius=0):
    """A patched clone of ``model`` (the input is never modified) and its :class:`SLRPatch`."""
    TRAJECTORY_START.check(trajectory_start, "trajectory_start")
    check_window(search_window)
    check_choice(boundary, "boundary", BOUNDARIES)
    RADIUS.check(trajectory_radius, "trajectory_radius")
    if flow is not None:
        check_video_flow(flow)
    if not cross_neighbour and not trajectory:
        raise InputError("cross_neighbour", "both cross_neighbour and trajectory are off: the patch would do nothing", "enable at least one, or bypass the node")
    dm = unet_of(model)
    available = decoder_attention_blocks(dm)
    if not available:
        raise InputError("model", "this UNet has no self-attention in its decoder", "use an SD1.x, SD2.x or SDXL checkpoint")
    blocks = parse_blocks(output_blocks, available)
    finest = min(available[b] for b in blocks)
    trajectory_blocks = {b for b in blocks if available[b] == finest}
    sigma_start = float(model.get_model_object("model_sampling").percent_to_sigma(trajectory_start))
    layer = SLRTemporalAttention(cross_neighbour, trajectory, search_window, boundary, flow_estimator=estimate_latent_flow, radius=trajectory_radius)
    if flow is not None:
        layer.set_flow(flow.forward, flow.backward)
    patch = SLRPatch(layer, trajectory_blocks, sigma_start)
    patched = model.clone()
    for b in blocks:
        patched.set_model_attn1_replace(patch.attn1, "output", b)
    if trajectory:
        patched.set_model_sampler_post_cfg_function(patch.post_cfg)
    patched.add_wrapper_with_key(comfy.patcher_extension.WrappersMP.OUTER_SAMPLE, "video_enhance_kit_slr", patch.outer_sample)
    patched.add_wrapper_with_key(comfy.patcher_extension.WrappersMP.SAMPLER_SAMPLE, "video_enhance_kit_slr", patch.sampler_sample)
    logging.info("video-enhance-kit SLR attention: output blocks %s, trajectory blocks %s, trajectory below sigma %.4g", blocks, sorted(trajectory_blocks), sigma_start)
    return patched, patch


class SLRTemporalAttentionNode(io.ComfyNode):
    @classmethod
    def define_schema(cls):
        return io.Schema(
            node_id="VEK_SLRTemporalAttention",
            display_name="SLR Temporal Attention (ZVRD)",
            category=FEATURE,
            description=(
                "Short-long-range temporal attention (ZVRD) for image models refining a video frame by frame "
                "(frames = latent batch). Replaces the decoder's self-attention with cross-neighbour-frame attention "
                "(each frame attends to frames i-1 and i+1) and, late in sampling, self-corrected trajectory attention "
                "along motion trajectories. Less flicker, same model. SD1.x / SD2.x / SDXL UNets only."
            ),
            inputs=[
                io.Model.Input("model", tooltip="An SD1.x, SD2.x or SDXL-family model (not a video DiT: those already attend across frames)."),
                io.Boolean.Input("cross_neighbour", default=True, tooltip="Short range: each frame's self-attention uses the keys and values of frames i-1 and i+1 (Eq. 5)."),
                io.Boolean.Input("trajectory", default=True, tooltip="Long range: each token attends along its motion trajectory through all frames, the trajectory corrected per token by x0 warp error (Eq. 6-7). Applied at the decoder's largest attention resolution."),
                io.Float.Input("trajectory_start", default=DEFAULT_TRAJECTORY_START, **TRAJECTORY_START.bounds, step=0.01, tooltip="Fraction of the model's noise schedule after which trajectory attention starts (0 = from the start, 1 = never). Paper: T_TA = 100 of 1000 steps = 0.9; x0 is too blurry for reliable motion earlier."),
                io.String.Input("output_blocks", default="all", tooltip="Decoder (output) blocks whose self-attention is replaced: 'all' (paper: the whole decoder) or a comma list such as '3,4,5,6,7,8,9,10,11' (SD1.5) / '0,1,2,3,4,5' (SDXL)."),
                io.Int.Input("search_window", default=DEFAULT_WINDOW, **WINDOW.bounds, step=2, tooltip="Side (odd, in attention tokens) of the square searched around the flow's match for the most similar token (similarity-based trajectory)."),
                io.Combo.Input("boundary", options=list(BOUNDARIES), default="clamp", tooltip="First/last frame's missing neighbour: clamp = the frame itself (frame 0 attends to frames 0 and 1); reflect = the mirrored frame (frame 0 attends to frame 1 only)."),
                io.Int.Input("trajectory_radius", default=0, **RADIUS.bounds, tooltip="Frames on each side a trajectory reaches: 0 = all frames (paper; cost grows with frames squared), e.g. 8 keeps long videos fast (cost linear in frames)."),
                Flow.Input("flow", optional=True, tooltip="Optional flow of the input video (Estimate Optical Flow, same frame count). Without it the flow is estimated from x0 during sampling."),
            ],
            outputs=[io.Model.Output(display_name="model", tooltip="A patched copy of the model; the input model is unchanged.")],
        )

    @classmethod
    def execute(cls, model, cross_neighbour=True, trajectory=True, trajectory_start=DEFAULT_TRAJECTORY_START, output_blocks="all", search_window=DEFAULT_WINDOW, boundary="clamp", trajectory_radius=0, flow=None) -> io.NodeOutput:
        patched, _ = slr_patch(model, cross_neighbour, trajectory, trajectory_start, output_blocks, search_window, boundary, flow, trajectory_radius)
        return io.NodeOutput(patched)


NODES = [SLRTemporalAttentionNode]
