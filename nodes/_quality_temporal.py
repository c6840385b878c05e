"""The Video Quality Report's temporal metrics from ZVRD: FS (CLIP frame similarity) and OFME (optical flow map error).

FS: mean cosine similarity of the CLIP image embeddings of neighbouring frames (Wu et al. 2023), the embeddings from
the connected CLIP_VISION as ComfyUI's CLIP Vision Encode gets them (``encode_image(...)["image_embeds"]``, whole
frame, no crop). OFME: mean end-point error between the backward flow of the scored video and the reference's flow
(the ``flow`` input, or estimated from the reference), both from the pack's estimator at ``flow_resolution``.
"""

from __future__ import annotations

import torch

from ..utils import metrics as M
from ._common import throw_if_interrupted

FS_CHUNK = 16


def clip_embeddings(clip_vision, frames: torch.Tensor) -> torch.Tensor:
    """CLIP image embeddings ``[F, D]`` of frames ``[F, 3, H, W]`` (0..1), ``FS_CHUNK`` frames per encoder call."""
    image = frames.movedim(1, -1)
    parts = []
    for i in range(0, image.shape[0], FS_CHUNK):
        throw_if_interrupted()
        parts.append(clip_vision.encode_image(image[i:i + FS_CHUNK], crop=False)["image_embeds"].float().cpu())
    return torch.cat(parts)


def frame_similarities(videos: dict[str, torch.Tensor], reference: torch.Tensor, clip_vision):
    """``({name: FS per pair [F-1]}, FS per pair of the reference, note)``; None and the reason when FS cannot be computed."""
    if reference.shape[0] < 2:
        return None, None, "n/a: frame similarity needs at least 2 frames"
    if clip_vision is None:
        return None, None, "n/a: no clip_vision connected (connect Load CLIP Vision to compute it)"
    if not hasattr(clip_vision, "encode_image"):
        from ..utils.checks import InputError

        raise InputError("clip_vision", f"a {type(clip_vision).__name__} is not a CLIP vision model", "connect Load CLIP Vision")
    per = {name: M.frame_similarity_per_pair(clip_embeddings(clip_vision, v)) for name, v in videos.items()}
    return per, M.frame_similarity_per_pair(clip_embeddings(clip_vision, reference)), \
        "mean cosine similarity of CLIP image embeddings of neighbouring frames (ZVRD, Wu et al. 2023)"


def flow_map_errors(videos: dict[str, torch.Tensor], reference_backward, flow_resolution: int, estimated_flow):
    """``({name: OFME per pair [F-1]}, note)``: each video's flow against the reference's, in pixels."""
    if reference_backward is None:
        return None, "n/a: it needs at least 2 frames and a flow of the reference"
    per = {}
    for name, frames in videos.items():
        throw_if_interrupted()
        flow, _ = estimated_flow(frames, flow_resolution)
        per[name] = M.flow_map_error_per_pair(flow.backward, reference_backward)
    return per, "mean end-point error (px) between the flow of each video and of the reference (ZVRD)"
