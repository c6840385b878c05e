"""video-enhance-kit: training-free video enhancement nodes for ComfyUI.

This file is ComfyUI's entry point only. It imports nothing from ComfyUI at
module level so that ``import video_enhance_kit`` works without the host;
the node layer is imported when ComfyUI calls :func:`comfy_entrypoint`.
"""

__version__ = "0.1.0"


async def comfy_entrypoint():
    """Return the pack's ``ComfyExtension`` (ComfyUI V3 entry point)."""
    from .nodes._extension import VideoEnhanceKitExtension

    return VideoEnhanceKitExtension()
