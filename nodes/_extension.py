"""The pack's ComfyExtension: every feature's nodes (see _registry.py), and the sample clip on load."""

from __future__ import annotations

import logging

from comfy_api.latest import ComfyExtension, io

from ._registry import all_nodes, place_sample_clip


class VideoEnhanceKitExtension(ComfyExtension):
    async def get_node_list(self) -> list[type[io.ComfyNode]]:
        place_sample_clip()
        nodes = all_nodes()
        logging.getLogger(__name__).info("video-enhance-kit: %d nodes", len(nodes))
        return nodes
