"""Colour Correction node: an enhanced video's colours brought back to its source (wavelet, AdaIN, histogram)."""

from __future__ import annotations

import comfy.model_management
from comfy_api.latest import io

from ..utils.colour import LEVELS, MODES, chunk_frames, colour_correct
from ..utils.video import frames_to_image, image_to_frames
from ._common import Progress, bounds, check_ranges, image_frames, throw_if_interrupted
from ._registry import CATEGORY

FEATURE = f"{CATEGORY}/colour"
RANGES = {"strength": (0.0, 1.0), "levels": LEVELS}

TIP_RESULT = "The enhanced frames to correct [F, H, W, C] (VEnhancer, EVS, NC-SDEdit or any upscaler's output); any size and length."
TIP_SOURCE = ("The frames the result was made from: the same frame count as the result, or 1 frame (used as the reference for "
              "every frame). Resized to the result's size first (bicubic, antialiased), so a lower-resolution input works.")
TIP_MODE = ("wavelet: the source's low frequencies (colour, shading) with the result's high frequencies (detail): the usual "
            "fix for upscalers (StableSR / SeedVR2 / FlashVSR). adain: per frame and channel, the result's mean and "
            "standard deviation set to the source's (global colour cast and contrast only). histogram: per frame and "
            "channel, the result's value distribution mapped onto the source's (strongest; can flatten generated contrast).")
TIP_STRENGTH = "1 = fully corrected, 0 = the result unchanged; in between a linear blend of the two."
TIP_LEVELS = ("wavelet only: blur levels of the band split (dilations 1, 2, 4, ...): detail finer than about 2^levels pixels "
              "is taken from the result, coarser from the source. 5 (about 32 px) as in StableSR; raise it when the "
              "result is upscaled a lot and its coarse shading should be kept, lower it to take more from the source.")


class ColourCorrection(io.ComfyNode):
    @classmethod
    def define_schema(cls) -> io.Schema:
        return io.Schema(
            node_id="VEK_ColourCorrection",
            display_name="Colour Correction",
            category=FEATURE,
            description=("Correct the colour drift of an enhanced video against its source, frame by frame: wavelet (low "
                         "frequencies from the source, detail from the result), AdaIN (per-channel mean and std) or "
                         "histogram matching (per-channel value distribution). The source is resized to the result "
                         "first; the output has the result's size and frame count, clamped to 0..1."),
            inputs=[
                io.Image.Input("result", tooltip=TIP_RESULT),
                io.Image.Input("source", tooltip=TIP_SOURCE),
                io.Combo.Input("mode", options=list(MODES), default="wavelet", tooltip=TIP_MODE),
                io.Float.Input("strength", default=1.0, **bounds(RANGES, "strength"), step=0.05, tooltip=TIP_STRENGTH),
                io.Int.Input("levels", default=5, **bounds(RANGES, "levels"), tooltip=TIP_LEVELS),
            ],
            outputs=[io.Image.Output(tooltip="The corrected frames: the result's size and frame count.")],
        )

    @classmethod
    def execute(cls, result, source, mode, strength=1.0, levels=5) -> io.NodeOutput:
        check_ranges(RANGES, strength=strength, levels=levels)
        r = image_to_frames(image_frames(result, "result"))
        s = image_to_frames(image_frames(source, "source"))
        progress = Progress(-(-r.shape[0] // chunk_frames(*r.shape[-2:])))

        def on_chunk(done, total):
            throw_if_interrupted()
            progress.tick()

        out = colour_correct(r, s, mode, strength, levels, on_chunk=on_chunk, device=comfy.model_management.get_torch_device())
        return io.NodeOutput(frames_to_image(out).to(comfy.model_management.intermediate_device()))


NODES = [ColourCorrection]
