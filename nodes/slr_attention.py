"""SLR Temporal Attention (ZVRD): patches an image UNet so the decoder's self-attention looks across frames.

MODEL -> MODEL. The clone gets an ``attn1`` replacement in the chosen output (decoder) blocks that runs
cross-neighbour-frame attention (Eq. 5) and, below the trajectory start, self-corrected trajectory
attention (Eq. 6-7) at the decoder's largest attention resolution (the paper injects it at the largest
resolution only). A post-CFG function on the same clone records ``x0_hat`` of every step, which the next
step uses for the trajectories' warp errors and, without a FLOW input, to estimate the flow (classical
estimator on the latent ``x0_hat``: no VAE decode, no weights).

Frames are the latent batch (one latent per frame, sampled together); ComfyUI stacks cond and uncond on
the batch axis, so frames = batch / len(cond_or_uncond).
"""

from __future__ import annotations

import logging

import torch
from comfy_api.latest import io

import comfy.patcher_extension

from ..attention.cross_frame import BOUNDARIES
from ..attention.trajectory import SLRTemporalAttention
from ..utils.checks import InputError, check_choice, check_range
from ..utils.flow import classical_flow
from ._registry import CATEGORY
from ._types import Flow
from .optical_flow import check_video_flow

FEATURE = f"{CATEGORY}/zvrd"
DEFAULT_TRAJECTORY_START = 0.9  # T_TA = 100 of 1000 DDPM steps (GDP backbone): the last 10 % of the schedule
DEFAULT_WINDOW = 5


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


class SLRPatch:
    """The patch state shared by the attn1 replacements and the post-CFG hook of one patched clone."""

    def __init__(self, layer: SLRTemporalAttention, trajectory_blocks: set[int], sigma_start: float):
        self.layer = layer
        self.trajectory_blocks = trajectory_blocks
        self.sigma_start = sigma_start
        self.last_sigma: float | None = None
        self.x0_sigma: float | None = None

    def __deepcopy__(self, memo):
        """ModelPatcher.clone deep-copies model_options: clones share this state (and its OUTER_SAMPLE reset)."""
        return self

    def reset(self) -> None:
        """A new sampling run: forget x0_hat, its flow and the trajectory history of the previous one."""
        self.layer.reset()
        self.last_sigma = None
        self.x0_sigma = None

    def outer_sample(self, executor, *args, **kwargs):
        """OUTER_SAMPLE wrapper: reset before each sampling run and drop x0_hat after it."""
        self.reset()
        try:
            return executor(*args, **kwargs)
        finally:
            self.reset()

    def _step(self, sigma: float) -> None:
        """Fallback when the OUTER_SAMPLE wrapper did not run: a new run shows as sigma going up."""
        if self.last_sigma is not None and sigma > self.last_sigma * (1 + 1e-5):
            self.layer.reset()
            self.x0_sigma = None
        self.last_sigma = sigma
        if self.x0_sigma is not None and self.x0_sigma < sigma * (1 - 1e-5):  # x0_hat from a later step: stale
            self.layer.reset()
            self.x0_sigma = None

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
        sigmas = extra_options.get("sigmas")
        sigma = float(sigmas.max()) if isinstance(sigmas, torch.Tensor) and sigmas.numel() else float("inf")
        self._step(sigma)
        block = extra_options.get("block") or ("output", -1)
        shape = extra_options.get("activations_shape") or extra_options.get("original_shape")
        size = (int(shape[-2]), int(shape[-1]))
        if size[0] * size[1] != q.shape[1]:  # odd sizes rounded differently: fall back to the original shape ratio
            raise InputError("latent", f"token grid {size} does not match {q.shape[1]} attention tokens", "use a latent whose width and height are multiples of 8")
        seen: dict[int, int] = {}
        ids = []
        for c in cond_or_uncond:  # stream ids independent of the cond/uncond order in the batch
            ids.append((c, seen.get(c, 0)))
            seen[c] = seen.get(c, 0) + 1
        active = block[1] in self.trajectory_blocks and sigma <= self.sigma_start
        layer_key = (block[0], block[1], extra_options.get("block_index", 0))
        return self.layer(q, k, v, extra_options["n_heads"], streams, size, layer=layer_key, stream_ids=ids, trajectory_active=active)

    def post_cfg(self, args):
        """Record x0_hat (the guided prediction of this step) for the next step; returns it unchanged."""
        denoised = args["denoised"]
        sigma = args.get("sigma")
        if self.layer.trajectory:
            self.layer.set_x0(denoised)
            self.x0_sigma = float(sigma.max()) if isinstance(sigma, torch.Tensor) else None
        return denoised


def latent_flow(x0: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Forward/backward flow of latent frames ``x0 [F, C, H, W]`` with the classical estimator."""
    a = torch.cat([x0[:-1], x0[1:]])
    b = torch.cat([x0[1:], x0[:-1]])
    with torch.no_grad():
        both = classical_flow(a, b)
    n = x0.shape[0] - 1
    return both[:n], both[n:]


def slr_patch(model, cross_neighbour=True, trajectory=True, trajectory_start=DEFAULT_TRAJECTORY_START, output_blocks="all", search_window=DEFAULT_WINDOW, boundary="clamp", flow=None, trajectory_radius=0):
    """A patched clone of ``model`` (the input is never modified) and its :class:`SLRPatch`."""
    check_range(trajectory_start, "trajectory_start", 0.0, 1.0)
    check_range(search_window, "search_window", 1, 15, integer=True)
    if search_window % 2 == 0:
        raise InputError("search_window", f"must be odd, got {search_window}", "use 1, 3, 5, 7, ...")
    check_choice(boundary, "boundary", BOUNDARIES)
    check_range(trajectory_radius, "trajectory_radius", 0, 1024, integer=True)
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
    layer = SLRTemporalAttention(cross_neighbour, trajectory, search_window, boundary, flow_estimator=latent_flow, radius=trajectory_radius)
    if flow is not None:
        layer.set_flow(flow.forward, flow.backward)
    patch = SLRPatch(layer, trajectory_blocks, sigma_start)
    patched = model.clone()
    for b in blocks:
        patched.set_model_attn1_replace(patch.attn1, "output", b)
    if trajectory:
        patched.set_model_sampler_post_cfg_function(patch.post_cfg)
    patched.add_wrapper_with_key(comfy.patcher_extension.WrappersMP.OUTER_SAMPLE, "video_enhance_kit_slr", patch.outer_sample)
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
                io.Float.Input("trajectory_start", default=DEFAULT_TRAJECTORY_START, min=0.0, max=1.0, step=0.01, tooltip="Fraction of the model's noise schedule after which trajectory attention starts (0 = from the start, 1 = never). Paper: T_TA = 100 of 1000 steps = 0.9; x0 is too blurry for reliable motion earlier."),
                io.String.Input("output_blocks", default="all", tooltip="Decoder (output) blocks whose self-attention is replaced: 'all' (paper: the whole decoder) or a comma list such as '3,4,5,6,7,8,9,10,11' (SD1.5) / '0,1,2,3,4,5' (SDXL)."),
                io.Int.Input("search_window", default=DEFAULT_WINDOW, min=1, max=15, step=2, tooltip="Side (odd, in attention tokens) of the square searched around the flow's match for the most similar token (similarity-based trajectory)."),
                io.Combo.Input("boundary", options=list(BOUNDARIES), default="clamp", tooltip="First/last frame's missing neighbour: clamp = the frame itself (frame 0 attends to frames 0 and 1); reflect = the mirrored frame (frame 0 attends to frame 1 only)."),
                io.Int.Input("trajectory_radius", default=0, min=0, max=1024, tooltip="Frames on each side a trajectory reaches: 0 = all frames (paper; cost grows with frames squared), e.g. 8 keeps long videos fast (cost linear in frames)."),
                Flow.Input("flow", optional=True, tooltip="Optional flow of the input video (Estimate Optical Flow, same frame count). Without it the flow is estimated from x0 during sampling."),
            ],
            outputs=[io.Model.Output(display_name="model", tooltip="A patched copy of the model; the input model is unchanged.")],
        )

    @classmethod
    def execute(cls, model, cross_neighbour=True, trajectory=True, trajectory_start=DEFAULT_TRAJECTORY_START, output_blocks="all", search_window=DEFAULT_WINDOW, boundary="clamp", trajectory_radius=0, flow=None) -> io.NodeOutput:
        patched, _ = slr_patch(model, cross_neighbour, trajectory, trajectory_start, output_blocks, search_window, boundary, flow, trajectory_radius)
        return io.NodeOutput(patched)


NODES = [SLRTemporalAttentionNode]
