"""Custom ComfyUI socket types shared by several feature files."""

from comfy_api.latest import io

# Optical flow of a video: a ``video_enhance_kit.utils.flow.VideoFlow`` (flows + occlusion masks).
Flow = io.Custom("VEK_FLOW")
