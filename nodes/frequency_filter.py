"""Frequency Filter nodes: FFT low-pass / high-pass of a LATENT or IMAGE, and "low from A + high from B" merges."""

from __future__ import annotations

from comfy_api.latest import io

from ..utils.checks import InputError, check_choice, check_same_shape
from ..utils.fft import DEFAULT_MASK, MASKS, high_pass, low_pass, merge_frequencies
from ..utils.video import frames_to_image, image_to_frames
from ._common import bounds, check_ranges, image_frames, latent_samples, with_samples
from ._registry import CATEGORY

FEATURE = f"{CATEGORY}/frequency"
MODES = ("low_pass", "high_pass")
DIMS = {"2d (per frame)": 2, "3d (spatio-temporal)": 3}
RANGES = {"cutoff": (0.0, 1.0), "order": (1, 16)}

TIP_CUTOFF = "Threshold frequency nu in [0, 1]: the fraction of each axis' half spectrum counted as low (0 = nothing is low, 1 = everything up to Nyquist)."
TIP_MASK = "ideal_reference: the Noise Calibration authors' box (slightly asymmetric); ideal: symmetric box; gaussian / butterworth: smooth roll-off without ringing."
TIP_DIMS = "2d filters each frame in space; 3d also filters across frames (the batch of an image latent or IMAGE counts as time)."
TIP_ORDER = "Butterworth order (sharper cut-off when higher); ignored by the other masks."


def filter_inputs() -> list:
    return [
        io.Float.Input("cutoff", default=0.5, **bounds(RANGES, "cutoff"), step=0.05, tooltip=TIP_CUTOFF),
        io.Combo.Input("mask", options=list(MASKS), default=DEFAULT_MASK, tooltip=TIP_MASK),
        io.Combo.Input("dims", options=list(DIMS), default="2d (per frame)", tooltip=TIP_DIMS),
        io.Int.Input("order", default=2, **bounds(RANGES, "order"), tooltip=TIP_ORDER),
    ]


def check_filter_inputs(cutoff, mask, dims, order) -> None:
    """The filter widgets (ranges from :data:`RANGES`)."""
    check_ranges(RANGES, cutoff=cutoff)
    check_choice(mask, "mask", MASKS)
    check_choice(dims, "dims", DIMS)
    check_ranges(RANGES, order=order)


def check_min_size(x, name, dims) -> None:
    """An FFT filter needs at least 2 samples along each filtered axis."""
    sizes = tuple(x.shape[-2:])
    if min(sizes) < 2:
        raise InputError(name, f"is {sizes[0]}x{sizes[1]}: too small to filter", "use an input at least 2x2 (latent) or 2x2 pixels")
    if dims == 3:
        frames = x.shape[2] if x.ndim == 5 else x.shape[0]
        if frames < 2:
            raise InputError(name, f"has {frames} frame(s): a 3d filter needs a video", "use 2d (per frame), or connect several frames")


class FrequencyFilterLatent(io.ComfyNode):
    @classmethod
    def define_schema(cls) -> io.Schema:
        return io.Schema(
            node_id="VEK_FrequencyFilterLatent",
            display_name="Frequency Filter (Latent)",
            category=FEATURE,
            description="FFT low-pass (structure, colour layout) or high-pass (detail, texture) of a latent [F, C, H, W] or video latent [B, C, T, H, W], computed in float32. Low-pass + high-pass of the same settings add back to the input.",
            inputs=[
                io.Latent.Input("latent", tooltip="Image-batch or video latent to filter."),
                io.Combo.Input("mode", options=list(MODES), default="low_pass", tooltip="Keep the low frequencies or the high ones."),
                *filter_inputs(),
            ],
            outputs=[io.Latent.Output(tooltip="The filtered latent (same shape).")],
        )

    @classmethod
    def execute(cls, latent, mode, cutoff, mask, dims, order) -> io.NodeOutput:
        check_filter_inputs(cutoff, mask, dims, order)
        check_choice(mode, "mode", MODES)
        x = latent_samples(latent, "latent")
        check_min_size(x, "latent", DIMS[dims])
        fn = low_pass if mode == "low_pass" else high_pass
        return io.NodeOutput(with_samples(latent, fn(x, cutoff, mask, DIMS[dims], order)))


class FrequencyFilterImage(io.ComfyNode):
    @classmethod
    def define_schema(cls) -> io.Schema:
        return io.Schema(
            node_id="VEK_FrequencyFilterImage",
            display_name="Frequency Filter (Image)",
            category=FEATURE,
            description="FFT low-pass (blurred structure) or high-pass (edges and texture, shown around mid-grey 0.5) of an IMAGE batch or video frames, per frame or across frames. The output is clamped to 0..1.",
            inputs=[
                io.Image.Input("images", tooltip="Frames to filter [F, H, W, C]."),
                io.Combo.Input("mode", options=list(MODES), default="low_pass", tooltip="Keep the low frequencies, or the high ones (offset by +0.5 so they can be viewed)."),
                *filter_inputs(),
            ],
            outputs=[io.Image.Output(tooltip="The filtered frames.")],
        )

    @classmethod
    def execute(cls, images, mode, cutoff, mask, dims, order) -> io.NodeOutput:
        check_filter_inputs(cutoff, mask, dims, order)
        check_choice(mode, "mode", MODES)
        frames = image_to_frames(image_frames(images, "images"))
        check_min_size(frames, "images", DIMS[dims])
        if mode == "low_pass":
            out = low_pass(frames, cutoff, mask, DIMS[dims], order)
        else:
            out = high_pass(frames, cutoff, mask, DIMS[dims], order) + 0.5
        return io.NodeOutput(frames_to_image(out.clamp(0.0, 1.0)))


class FrequencyMergeLatent(io.ComfyNode):
    @classmethod
    def define_schema(cls) -> io.Schema:
        return io.Schema(
            node_id="VEK_FrequencyMergeLatent",
            display_name="Frequency Merge (Latent)",
            category=FEATURE,
            description="Low frequencies from A plus high frequencies from B: keep A's structure and colours with B's detail (e.g. the input video's layout with a refined video's texture). A and B must have the same shape.",
            inputs=[
                io.Latent.Input("low_from", tooltip="A: the latent whose low frequencies (structure) are kept."),
                io.Latent.Input("high_from", tooltip="B: the latent whose high frequencies (detail) are kept; same shape as A."),
                *filter_inputs(),
            ],
            outputs=[io.Latent.Output(tooltip="LP(A) + HP(B); other latent fields are taken from A.")],
        )

    @classmethod
    def execute(cls, low_from, high_from, cutoff, mask, dims, order) -> io.NodeOutput:
        check_filter_inputs(cutoff, mask, dims, order)
        a = latent_samples(low_from, "low_from")
        b = latent_samples(high_from, "high_from")
        check_same_shape(a, b, "high_from", "low_from")
        check_min_size(a, "low_from", DIMS[dims])
        return io.NodeOutput(with_samples(low_from, merge_frequencies(a, b.to(a), cutoff, mask, DIMS[dims], order)))


class FrequencyMergeImage(io.ComfyNode):
    @classmethod
    def define_schema(cls) -> io.Schema:
        return io.Schema(
            node_id="VEK_FrequencyMergeImage",
            display_name="Frequency Merge (Image)",
            category=FEATURE,
            description="Low frequencies from image A plus high frequencies from image B, frame by frame (or across frames with 3d); clamped to 0..1. A and B must have the same size and frame count.",
            inputs=[
                io.Image.Input("low_from", tooltip="A: frames whose low frequencies (structure, colour) are kept."),
                io.Image.Input("high_from", tooltip="B: frames whose high frequencies (detail) are kept; same size and count as A."),
                *filter_inputs(),
            ],
            outputs=[io.Image.Output(tooltip="LP(A) + HP(B), clamped to 0..1.")],
        )

    @classmethod
    def execute(cls, low_from, high_from, cutoff, mask, dims, order) -> io.NodeOutput:
        check_filter_inputs(cutoff, mask, dims, order)
        a = image_to_frames(image_frames(low_from, "low_from"))
        b = image_to_frames(image_frames(high_from, "high_from"))
        check_same_shape(b, a, "high_from", "low_from")
        check_min_size(a, "low_from", DIMS[dims])
        merged = merge_frequencies(a, b.to(a), cutoff, mask, DIMS[dims], order)
        return io.NodeOutput(frames_to_image(merged.clamp(0.0, 1.0)))


NODES = [FrequencyFilterLatent, FrequencyFilterImage, FrequencyMergeLatent, FrequencyMergeImage]
