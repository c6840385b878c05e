"""Optical flow nodes: Estimate Optical Flow (IMAGE -> VEK_FLOW) and Visualize Flow (VEK_FLOW -> IMAGE).

RAFT weights are read from the ``optical_flow`` models folder (``ComfyUI/models/optical_flow``), e.g.
torchvision's ``raft_large_C_T_SKHT_V2`` or ``raft_small_C_T_V2`` state dict saved as .safetensors or
.pth (loaded with ``weights_only=True``). Without a weights file the classical estimator is used.
"""

from __future__ import annotations

import math
import os

import folder_paths
import torch
from comfy_api.latest import io
from kornia.color import hsv_to_rgb

from ..utils.checks import InputError, Range, check_choice
from ..utils.flow import METHODS, VideoFlow, estimate_flow
from ..utils.video import frames_to_image, image_to_frames
from ._common import Progress, image_frames, throw_if_interrupted
from ._registry import CATEGORY
from ._types import Flow

FEATURE = f"{CATEGORY}/optical_flow"
FOLDER = "optical_flow"
NONE = "none"
DIRECTIONS = ("forward", "backward")
MAX_MAGNITUDE = Range(0.0, 1024.0)
OVERLAY = Range(0.0, 1.0)

if FOLDER not in folder_paths.folder_names_and_paths:
    folder_paths.add_model_folder_path(FOLDER, os.path.join(folder_paths.models_dir, FOLDER))
folder_paths.folder_names_and_paths[FOLDER] = (folder_paths.folder_names_and_paths[FOLDER][0], {".safetensors", ".pth", ".pt", ".bin"})


def raft_files() -> list[str]:
    """RAFT checkpoints in the optical_flow folder, then 'none'."""
    return folder_paths.get_filename_list(FOLDER) + [NONE]


def raft_path(name: str) -> str | None:
    """Full path of a RAFT file name from the combo (None for 'none')."""
    if not name or name == NONE:
        return None
    path = folder_paths.get_full_path(FOLDER, name)
    if path is None:
        raise InputError("raft_weights", f"{name!r} is not in models/{FOLDER}", f"put the file in ComfyUI/models/{FOLDER} or pick 'none'")
    return path


def check_video_flow(flow, name: str = "flow") -> VideoFlow:
    """Fail unless ``flow`` is a VideoFlow (the VEK_FLOW value)."""
    if isinstance(flow, VideoFlow):
        return flow
    if not all(hasattr(flow, a) for a in ("forward", "backward", "valid_forward", "valid_backward", "resized")):
        raise InputError(name, f"expected a VEK_FLOW value, got {type(flow).__name__}", "connect the output of Estimate Optical Flow")
    return flow


class EstimateOpticalFlow(io.ComfyNode):
    @classmethod
    def define_schema(cls):
        files = raft_files()
        return io.Schema(
            node_id="VEK_EstimateOpticalFlow",
            display_name="Estimate Optical Flow",
            category=FEATURE,
            description=(
                "Optical flow between consecutive frames of a video in both directions, with forward-backward "
                "occlusion masks. Uses RAFT when weights are in models/optical_flow (auto), otherwise a classical "
                "coarse-to-fine Lucas-Kanade estimator that needs no weights. Feeds SLR Temporal Attention, "
                "temporal guidance and the warping error of the Video Quality Report."
            ),
            inputs=[
                io.Image.Input("images", tooltip="The video as a batch of frames (at least 2), e.g. from Get Video Components."),
                io.Combo.Input("method", options=list(METHODS), default="auto", tooltip="auto: RAFT if a weights file is selected, else classical. classical: no weights, CPU friendly. raft: torchvision RAFT with the selected weights (more accurate on real footage)."),
                io.Combo.Input("raft_weights", options=files, default=files[0], tooltip=f"RAFT checkpoint from models/{FOLDER} (torchvision raft_large or raft_small state dict, .safetensors or .pth). 'none' = classical."),
            ],
            outputs=[Flow.Output(display_name="flow", tooltip="Forward and backward flows (pixels) plus occlusion masks.")],
        )

    @classmethod
    def execute(cls, images, method="auto", raft_weights=NONE) -> io.NodeOutput:
        image_frames(images, "images", min_frames=2)
        check_choice(method, "method", METHODS)
        path = raft_path(raft_weights) if method != "classical" else None
        if method == "raft" and path is None:
            raise InputError("raft_weights", "method 'raft' needs a weights file", f"put RAFT weights in ComfyUI/models/{FOLDER} and select them, or use method 'classical'")
        frames = image_to_frames(images).float()
        progress = Progress(1)
        throw_if_interrupted()
        if path is not None:
            import comfy.model_management as mm

            from ..utils.flow import load_raft

            load_raft(path).to(mm.get_torch_device())
            flow = estimate_flow(frames.to(mm.get_torch_device()), "raft", path).to(mm.intermediate_device())
        else:
            flow = estimate_flow(frames, "classical")
        progress.tick()
        return io.NodeOutput(flow)


def flow_to_color(flow: torch.Tensor, max_magnitude: float | None = None) -> torch.Tensor:
    """Colour-wheel rendering ``[N, 3, H, W]`` of ``flow [N, 2, H, W]``: hue = direction, saturation = speed."""
    dx, dy = flow[:, 0], flow[:, 1]
    mag = torch.sqrt(dx * dx + dy * dy)
    top = float(mag.max()) if not max_magnitude else float(max_magnitude)
    hue = torch.atan2(-dy, -dx) + math.pi  # 0..2pi
    sat = (mag / max(top, 1e-6)).clamp(0, 1)
    hsv = torch.stack([hue, sat, torch.ones_like(sat)], 1)
    return hsv_to_rgb(hsv)


class VisualizeFlow(io.ComfyNode):
    @classmethod
    def define_schema(cls):
        return io.Schema(
            node_id="VEK_VisualizeFlow",
            display_name="Visualize Flow",
            category=FEATURE,
            description=(
                "Renders a VEK_FLOW as images (F-1 frames): colour wheel (hue = direction, saturation = speed, "
                "white = still) with occluded pixels tinted."
            ),
            inputs=[
                Flow.Input("flow", tooltip="Output of Estimate Optical Flow."),
                io.Combo.Input("direction", options=list(DIRECTIONS), default="forward", tooltip="forward: flow from frame i to i+1 (drawn on frame i). backward: from frame i+1 to i (drawn on frame i+1)."),
                io.Float.Input("max_magnitude", default=0.0, **MAX_MAGNITUDE.bounds, step=0.5, tooltip="Speed in pixels per frame drawn at full saturation; 0 = the largest speed in the video."),
                io.Float.Input("occlusion_overlay", default=0.6, **OVERLAY.bounds, step=0.05, tooltip="How strongly occluded (forward-backward inconsistent) pixels are tinted dark red; 0 = off."),
            ],
            outputs=[io.Image.Output(display_name="images", tooltip="F-1 colour-coded flow frames.")],
        )

    @classmethod
    def execute(cls, flow, direction="forward", max_magnitude=0.0, occlusion_overlay=0.6) -> io.NodeOutput:
        check_video_flow(flow)
        check_choice(direction, "direction", DIRECTIONS)
        MAX_MAGNITUDE.check(max_magnitude, "max_magnitude")
        OVERLAY.check(occlusion_overlay, "occlusion_overlay")
        vectors = (flow.forward if direction == "forward" else flow.backward).float().cpu()
        valid = (flow.valid_forward if direction == "forward" else flow.valid_backward).float().cpu()
        rgb = flow_to_color(vectors, max_magnitude or None)
        tint = torch.tensor([0.5, 0.0, 0.0]).view(1, 3, 1, 1)
        occluded = (1 - valid) * occlusion_overlay
        rgb = rgb * (1 - occluded) + tint * occluded
        return io.NodeOutput(frames_to_image(rgb.clamp(0, 1)))


NODES = [EstimateOpticalFlow, VisualizeFlow]
